"""zswap_core.advise._scan on real processes: exact counts, exact bytes, uniform samples.

Each test starts Python children that map memory of a known layout and report its
address and the sha256 of every page they wrote (never the bytes). Children are driven
through their stdin and answer on stdout, so every change to their memory happens at a
known point: no test waits and hopes.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import threading
import time
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from zswap_core.advise import _scan
from zswap_core.advise._scan import (
    EXCLUSIVE,
    FILE_OR_SHARED,
    GUARD,
    PAGE,
    PRESENT,
    SOFT_DIRTY,
    SWAPPED,
    Census,
    Region,
    Target,
    TargetCounts,
    census,
    choose,
    find_targets,
    read_pages,
)
from zswap_core.workload import WorkloadError

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux /proc")

ROOT = os.geteuid() == 0

# The child: N written pages, M pages only read (the zero page), K untouched pages and
# Z pages written with zeros (real memory that happens to be zero), in one mapping, in
# that order. With "shm" it also maps S pages of each kind of shared memory, written.
CHILD = r"""
import ctypes, hashlib, json, mmap, os, sys
PAGE = mmap.PAGESIZE
N, M, K, Z = map(int, sys.argv[1:5])
S = int(sys.argv[5]) if len(sys.argv) > 5 else 0
libc = ctypes.CDLL(None, use_errno=True)
libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
libc.shmat.restype = ctypes.c_void_p
libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]

def content(i, gen=0):
    return hashlib.sha256(f"{i}:{gen}".encode()).digest() * (PAGE // 32)

def sha(b):
    return hashlib.sha256(b).hexdigest()

total = N + M + K + Z
m = mmap.mmap(-1, total * PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
libc.madvise(addr, total * PAGE, 15)  # MADV_NOHUGEPAGE: 4 KiB pages, as counted
hashes = {}
for i in range(N):
    m[i * PAGE:(i + 1) * PAGE] = content(i)
    hashes[addr + i * PAGE] = sha(content(i))
for i in range(N, N + M):
    m[i * PAGE]
for i in range(N + M + K, total):
    m[i * PAGE:(i + 1) * PAGE] = bytes(PAGE)
    hashes[addr + i * PAGE] = sha(bytes(PAGE))
hexes = {str(a): h for a, h in hashes.items()}
out = {"pid": os.getpid(), "addr": addr, "pages": total, "hashes": hexes}
keep = []
if S:
    shm = {}
    def fill(buf, tag):
        a = ctypes.addressof(ctypes.c_char.from_buffer(buf))
        for i in range(S):
            buf[i * PAGE:(i + 1) * PAGE] = content(i, tag)
        shm[tag] = a
        keep.append(buf)
    fd = os.memfd_create("zswap-test")
    os.ftruncate(fd, S * PAGE)
    fill(mmap.mmap(fd, S * PAGE, flags=mmap.MAP_SHARED), "memfd")
    fill(mmap.mmap(-1, S * PAGE, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS), "anon")
    path = sys.argv[6]
    tf = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.ftruncate(tf, S * PAGE)
    fill(mmap.mmap(tf, S * PAGE, flags=mmap.MAP_SHARED), "tmpfs")
    sid = libc.shmget(0, S * PAGE, 0o1000 | 0o600)  # IPC_PRIVATE, IPC_CREAT
    a = libc.shmat(sid, None, 0)
    libc.shmctl(sid, 0, None)  # IPC_RMID: gone once detached
    for i in range(S):
        ctypes.memmove(a + i * PAGE, content(i, "sysv"), PAGE)
    shm["sysv"] = a
    out["shm"] = shm
print(json.dumps(out), flush=True)
for line in sys.stdin:
    cmd = line.split()
    reply = {}
    if cmd[0] == "dontneed":  # free pages i..j
        i, j = int(cmd[1]), int(cmd[2])
        libc.madvise(addr + i * PAGE, (j - i) * PAGE, 4)
    elif cmd[0] == "munmap":  # unmap pages i..j: a hole in the middle of the mapping
        i, j = int(cmd[1]), int(cmd[2])
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        libc.munmap(addr + i * PAGE, (j - i) * PAGE)
    elif cmd[0] == "mlock":  # lock pages i..j in RAM: never swapped
        i, j = int(cmd[1]), int(cmd[2])
        libc.mlock.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        reply["rc"] = libc.mlock(addr + i * PAGE, (j - i) * PAGE)
    elif cmd[0] == "rewrite":  # write pages i, i+step, ... below j
        i, j, step = int(cmd[1]), int(cmd[2]), int(cmd[3])
        for k in range(i, j, step):
            m[k * PAGE:(k + 1) * PAGE] = content(k, 1)
    elif cmd[0] == "fork":  # a second process sharing everything, until we exit
        r, w = os.pipe()
        ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(w)
            if S:  # map the shared memory in this process too: read each page
                for tag, a in shm.items():
                    for i in range(S):
                        ctypes.string_at(a + i * PAGE, 1)
            os.write(ready_w, b"!")
            os.read(r, 1)
            os._exit(0)
        os.close(r)
        os.read(ready_r, 1)  # reply once the twin has touched its shared memory
        keep.append(w)
        reply["pid"] = pid
    print(json.dumps(reply), flush=True)
"""


class Child:
    def __init__(self, n: int, m: int, k: int, z: int, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(n), str(m), str(k), str(z), *extra],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        info = self._line()
        self.pid: int = info["pid"]
        self.addr: int = info["addr"]
        self.pages: int = info["pages"]
        self.hashes = {int(a): h for a, h in info["hashes"].items()}
        self.shm: dict[str, int] = info.get("shm", {})
        self.n, self.m, self.k, self.z = n, m, k, z

    def _line(self) -> Any:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, "the child died"
        return json.loads(line)

    def ask(self, *cmd: object) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write(" ".join(map(str, cmd)) + "\n")
        self.proc.stdin.flush()
        return self._line()

    def region(self) -> Region:
        return Region(self.addr, self.addr + self.pages * PAGE, "anon")

    def target(self, regions: list[Region] | None = None) -> Target:
        """The child as find_targets sees it, scanning only ``regions`` (default: ours)."""
        targets, skipped = find_targets(pids=[self.pid])
        assert skipped == [] and len(targets) == 1
        t = targets[0]
        t.regions = regions if regions is not None else [self.region()]
        return t

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                f.close()


@pytest.fixture
def child() -> Iterator[Child]:
    c = Child(40, 24, 16, 8)
    try:
        yield c
    finally:
        c.stop()


def expected_addrs(c: Child) -> list[int]:
    written = [c.addr + i * PAGE for i in range(c.n)]
    zeroed = [c.addr + i * PAGE for i in range(c.n + c.m + c.k, c.pages)]
    return written + zeroed


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


# ------------------------------------------------------------------------ targets


def test_find_targets_sees_the_child_and_its_mapping(child: Child) -> None:
    targets, skipped = find_targets(pids=[child.pid, child.pid])
    assert skipped == []
    assert len(targets) == 1  # named twice, listed once
    t = targets[0]
    assert (t.kind, t.pid, t.path, t.name) == ("pid", child.pid, None, "python" + t.name[6:])
    assert t.start_time is not None
    ours = [r for r in t.regions if r.start <= child.addr and child.region().end <= r.end]
    assert len(ours) == 1 and ours[0].kind == "anon" and ours[0].shared_key is None
    assert any(r.kind == "heap" for r in t.regions)
    assert any(r.kind == "stack" for r in t.regions)


def test_locked_memory_is_not_a_candidate(child: Child) -> None:
    assert child.ask("mlock", 0, 8) == {"rc": 0}
    targets, _ = find_targets(pids=[child.pid])
    locked = (child.addr, child.addr + 8 * PAGE)
    assert not [r for r in targets[0].regions if r.start < locked[1] and locked[0] < r.end]
    rest = [r for r in targets[0].regions if r.start <= locked[1] < r.end]
    assert len(rest) == 1 and rest[0].kind == "anon"


def test_a_thread_id_names_its_process() -> None:
    started, stop = threading.Event(), threading.Event()
    tid: list[int] = []

    def run() -> None:
        tid.append(threading.get_native_id())
        started.set()
        stop.wait(10)

    th = threading.Thread(target=run)
    th.start()
    try:
        started.wait(10)
        assert tid[0] != os.getpid()
        targets, skipped = find_targets(pids=[tid[0], os.getpid()])
        assert skipped == [] and [t.pid for t in targets] == [os.getpid()]
    finally:
        stop.set()
        th.join()


def _kernel_thread() -> int | None:
    for name in sorted(os.listdir("/proc")):
        if name.isdigit():
            try:
                stat = Path(f"/proc/{name}/stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[6]) & 0x00200000:
                return int(name)
    return None


def test_find_targets_skips_with_reasons(tmp_path: Path) -> None:
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        # a zombie until waited for: poll /proc until it has exited (bounded)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{zombie.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        gone = _unused_pid()
        kthread = _kernel_thread()
        pids = [zombie.pid, gone] + ([kthread] if kthread else [])
        targets, skipped = find_targets(pids=pids)
        assert targets == []
        assert skipped[0] == f"pid {zombie.pid} is a zombie (it has exited): no user memory"
        assert skipped[1] == f"pid {gone}: no such process"
        if kthread:
            assert skipped[2] == f"pid {kthread} is a kernel thread: no user memory"
    finally:
        zombie.wait()
    with pytest.raises(WorkloadError, match="not a valid process id"):
        find_targets(pids=[0])
    with pytest.raises(WorkloadError, match="No such file"):
        find_targets(files=[str(tmp_path / "missing")])
    with pytest.raises(WorkloadError, match="no such cgroup v2 directory"):
        find_targets(cgroups=["zswap-no-such-cgroup"])


def _unused_pid() -> int:
    pid = 4_000_000
    while os.path.exists(f"/proc/{pid}"):
        pid -= 1
    return pid


def test_host_leaves_out_itself_and_its_children(child: Child) -> None:
    targets, skipped = find_targets(host=True)
    pids = {t.pid for t in targets}
    assert os.getpid() not in pids
    assert child.pid not in pids  # a descendant of this process: as the CLI's workers
    assert all(t.kind == "pid" for t in targets)
    assert not any(s.startswith((f"pid {os.getpid()}", f"pid {child.pid}")) for s in skipped)


def test_host_includes_a_process_that_is_not_ours() -> None:
    # the orphan waits on a pipe that we hold open: it is alive until we close it
    r, w = os.pipe()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, sys\n"
            f"r = {r}\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    os.setsid(); os.read(r, 1); os._exit(0)\n"
            "print(pid, flush=True)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
        pass_fds=(r,),
    )
    os.close(r)
    try:
        assert proc.stdout is not None
        orphan = int(proc.stdout.readline())
        proc.wait(timeout=10)  # its parent is gone: it is nobody's child of ours
        targets, _ = find_targets(host=True)
        assert orphan in {t.pid for t in targets}
    finally:
        os.close(w)
        if proc.stdout is not None:
            proc.stdout.close()
        proc.wait()


# ------------------------------------------------------------------------- census


@pytest.mark.skipif(not ROOT, reason="PFNs are visible to root only")
def test_census_counts_exactly_by_pfn(child: Child) -> None:
    c = census([child.target()])
    assert c.zero_page_detection == "pfn"
    assert c.nr_skipped_targets == 0 and c.skipped == []
    assert list(c.pages[0]) == expected_addrs(child)
    assert c.nr_candidates == child.n + child.z
    assert c.nr_zero_page == child.m
    assert c.nr_not_present == child.k
    assert (c.nr_swapped, c.nr_shmem, c.nr_duplicates) == (0, 0, 0)
    assert c.counts[0] == TargetCounts(
        candidates=child.n + child.z, zero_page=child.m, not_present=child.k
    )
    assert c.cold is None and c.idle_method is None


def test_census_content_fallback_counts_the_same(child: Child) -> None:
    # as without CAP_SYS_ADMIN: the zero page is told by content, only for pages not
    # mapped exclusively; the zero-written pages are this process's own and stay in
    c = census([child.target()], zero_page_detection="content")
    assert c.zero_page_detection == "content"
    assert list(c.pages[0]) == expected_addrs(child)
    assert (c.nr_zero_page, c.nr_not_present) == (child.m, child.k)


def test_census_of_the_whole_process(child: Child) -> None:
    targets, _ = find_targets(pids=[child.pid])
    c = census(targets)
    pages = set(c.pages[0])
    assert set(expected_addrs(child)) <= pages
    assert not {child.addr + i * PAGE for i in range(child.n, child.n + child.m + child.k)} & pages
    assert list(c.pages[0]) == sorted(pages)
    assert c.nr_zero_page >= child.m


@pytest.mark.skipif(not ROOT, reason="PFNs are visible to root only")
def test_forked_copies_count_once() -> None:
    c = Child(32, 8, 8, 4)
    try:
        twin = c.ask("fork")["pid"]
        t1 = c.target()
        t2 = Target("pid", twin, None, "twin", [c.region()], _scan._start_time(twin))
        got = census([t1, t2])
        # copy-on-write after fork: the same physical pages, counted once
        assert list(got.pages[0]) == expected_addrs(c) and list(got.pages[1]) == []
        assert got.counts[1].duplicates == c.n + c.z
        assert got.nr_zero_page == 2 * c.m
        # once the child writes some, they are its own again, in both processes
        c.ask("rewrite", 0, c.n, 2)
        got = census([t1, t2])
        assert len(got.pages[0]) == c.n + c.z
        assert list(got.pages[1]) == [c.addr + i * PAGE for i in range(0, c.n, 2)]
    finally:
        c.stop()


def test_a_process_that_exits_is_skipped(child: Child) -> None:
    t = child.target()
    child.stop()
    c = census([t])
    assert c.targets == [] and c.nr_candidates == 0
    assert c.skipped == [f"pid {child.pid} exited while being read"]
    assert c.nr_skipped_targets == 1
    vanished = [0]
    assert list(read_pages(t, expected_addrs(child), vanished=vanished)) == []
    assert vanished == [len(expected_addrs(child))]


def test_a_reused_pid_is_not_read(child: Child) -> None:
    t = child.target()
    assert t.start_time is not None
    t.start_time -= 1  # as if this pid had been another process's
    c = census([t])
    assert c.targets == [] and c.skipped == [f"pid {child.pid} exited while being read"]


@pytest.mark.skipif(not ROOT, reason="shared memory of the child: PFN mode")
def test_shared_memory_only_when_asked_and_counted_once(tmp_path: Path) -> None:
    shm_dir = Path("/dev/shm")
    if not shm_dir.is_dir():
        pytest.skip("no /dev/shm")
    path = shm_dir / f"zswap-test-{os.getpid()}"
    s = 6
    c = Child(4, 0, 0, 0, str(s), str(path))
    try:
        twin = c.ask("fork")["pid"]
        targets, skipped = find_targets(pids=[c.pid, twin], include_shmem=True)
        assert skipped == []
        kinds = {r.kind: r for r in targets[0].regions if r.kind in _scan.SHARED_KINDS}
        assert set(kinds) == {"shmem", "sysv", "tmpfs"}
        tmpfs = kinds["tmpfs"]
        assert tmpfs.shared_key == (os.stat(path).st_dev, os.stat(path).st_ino, 0)
        starts = set(c.shm.values())
        for t in targets:  # scan only our mappings: exact counts
            t.regions = [r for r in t.regions if r.start in starts or r.start == c.addr]
        got = census(targets)
        assert got.nr_shmem == 4 * s  # memfd, shared anonymous, tmpfs file, SysV
        assert got.counts[0].shmem == 4 * s and got.counts[1].shmem == 0
        assert got.counts[1].duplicates == 4 * s + c.n
        assert got.nr_candidates == 4 * s + c.n
        pages = read_pages(got.targets[0], got.pages[0])
        want = {
            hashlib.sha256(
                hashlib.sha256(f"{i}:{tag}".encode()).digest() * (PAGE // 32)
            ).hexdigest()
            for tag in c.shm
            for i in range(s)
        } | set(c.hashes.values())
        assert {sha(p) for p in pages} == want
        # the tmpfs file named as a file too: its pages are the ones counted already
        files, _ = find_targets(files=[str(path)])
        both = census([*targets, *files])
        assert both.counts[2] == TargetCounts(duplicates=s)
        assert both.nr_candidates == got.nr_candidates
        # without include_shmem: no shared mappings at all
        plain, _ = find_targets(pids=[c.pid])
        assert not [r for r in plain[0].regions if r.kind in _scan.SHARED_KINDS]
    finally:
        c.stop()
        path.unlink(missing_ok=True)


def _thp_zero_page() -> bool:
    try:
        enabled = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
        zero = Path("/sys/kernel/mm/transparent_hugepage/use_zero_page").read_text()
    except OSError:
        return False
    return "[never]" not in enabled and zero.strip() == "1"


HUGE_CHILD = r"""
import ctypes, mmap, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
pmd = int(open("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size").read())
m = mmap.mmap(-1, 3 * pmd, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
base = ctypes.addressof(ctypes.c_char.from_buffer(m))
aligned = (base + pmd - 1) & ~(pmd - 1)
libc.madvise(aligned, 2 * pmd, 14)  # MADV_HUGEPAGE
m[aligned - base]  # read faults: the huge zero page, in two PMDs
m[aligned - base + pmd]
print(aligned, pmd, flush=True)
sys.stdin.read()
"""


@pytest.mark.skipif(not _thp_zero_page(), reason="THP or its huge zero page is off here")
@pytest.mark.parametrize("mode", ["auto", "content"])
def test_huge_zero_page_is_excluded(mode: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", HUGE_CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        aligned, pmd = map(int, proc.stdout.readline().split())
        targets, _ = find_targets(pids=[proc.pid])
        t = targets[0]
        t.regions = [Region(aligned, aligned + 2 * pmd, "anon")]
        got = census([t], zero_page_detection=mode)
        assert got.nr_zero_page == 2 * pmd // PAGE
        assert got.nr_candidates == 0 and got.nr_not_present == 0
    finally:
        proc.kill()
        proc.wait()
        for f in (proc.stdin, proc.stdout):
            if f is not None:
                f.close()


# ------------------------------------------------------------------ the decoder


def _decode(
    entries: list[int],
    region: Region,
    *,
    zero_pfns: set[int] = frozenset(),
    idle: str | None = None,
    content: bool = False,  # type: ignore[assignment]
) -> tuple[list[int], bytes, TargetCounts, _scan._Scanner]:
    zero = _scan._ZeroPages()
    zero.close()  # no kpageflags: only the given PFNs are the zero page
    zero.pfns = set(zero_pfns)
    scanner = _scan._Scanner(zero, content, idle)
    counts = TargetCounts()
    addrs, cold, _maybe, _pfns = scanner.decode(entries, region.start, region, counts)
    return list(addrs), bytes(cold), counts, scanner


def test_decoder_swapped_guard_migration_and_not_present() -> None:
    base = 0x10000000
    region = Region(base, base + 8 * PAGE, "anon")
    entries = [
        PRESENT | EXCLUSIVE | 100,  # candidate
        SWAPPED | (7 << 5) | 1,  # swapped out, type 1 offset 7
        SWAPPED | GUARD,  # a guard region marker: not memory
        SWAPPED | (3 << 5) | 30,  # type 30: a migration or marker entry, not swap
        0,  # never touched
        SOFT_DIRTY,  # not present (a soft-dirty mapping's hole)
        PRESENT | 42,  # the zero page
        PRESENT | FILE_OR_SHARED | 43,  # not anonymous, not the zero page
    ]
    addrs, cold, counts, _ = _decode(entries, region, zero_pfns={42})
    assert addrs == [base]
    assert counts == TargetCounts(zero_page=1, swapped=1, not_present=4)
    assert cold == b""


def test_decoder_soft_dirty_is_hot() -> None:
    base = 0x20000000
    region = Region(base, base + 4 * PAGE, "heap")
    entries = [
        PRESENT | EXCLUSIVE | SOFT_DIRTY | 5,
        PRESENT | EXCLUSIVE | 6,
        PRESENT | EXCLUSIVE | 7,
        PRESENT | EXCLUSIVE | SOFT_DIRTY | 8,
    ]
    addrs, cold, counts, _ = _decode(entries, region, idle="soft-dirty")
    assert addrs == [base + i * PAGE for i in range(4)]
    assert cold == bytes([0, 1, 1, 0])  # written since clear_refs: hot
    assert counts.candidates == 0 and counts.zero_page == 0  # candidates: set by scan()


def test_decoder_copy_on_write_and_sharing() -> None:
    base = 0x30000000
    cow = Region(base, base + 4 * PAGE, "cow")
    entries = [
        PRESENT | FILE_OR_SHARED | 9,  # a page cache page in a private file mapping
        PRESENT | EXCLUSIVE | 10,  # copied on write: anonymous
        PRESENT | 11,  # anonymous, also mapped elsewhere (first time: counted)
        SWAPPED | (1 << 5) | 0,  # an anonymous copy, swapped out
    ]
    addrs, _, counts, scanner = _decode(entries, cow)
    assert addrs == [base + PAGE, base + 2 * PAGE]
    assert counts == TargetCounts(swapped=1)
    again = TargetCounts()
    addrs2, _, _, _ = scanner.decode([PRESENT | 11, PRESENT | EXCLUSIVE | 12], base, cow, again)
    assert list(addrs2) == [base + PAGE] and again.duplicates == 1
    # shared memory: by (dev, inode, page offset), across mappings at other offsets
    shm1 = Region(base, base + 4 * PAGE, "shmem", (1, 77, 0))
    shm2 = Region(base + 8 * PAGE, base + 10 * PAGE, "shmem", (1, 77, 2))
    c1, c2 = TargetCounts(), TargetCounts()
    a1, *_ = scanner.decode([PRESENT] * 3 + [0], shm1.start, shm1, c1)
    a2, *_ = scanner.decode([PRESENT, PRESENT], shm2.start, shm2, c2)
    assert list(a1) == [base, base + PAGE, base + 2 * PAGE]
    assert c1 == TargetCounts(shmem=3, not_present=1)
    assert list(a2) == [base + 9 * PAGE]  # page 2 counted already, page 3 is new
    assert c2 == TargetCounts(shmem=1, duplicates=1)


# ------------------------------------------------------------------------ idle


def test_soft_dirty_unavailable_is_said(child: Child) -> None:
    if _scan._soft_dirty_supported():
        pytest.skip("this kernel has soft-dirty: test_soft_dirty_half_written covers it")
    c = census([child.target()], idle="soft-dirty", idle_interval=0)
    assert c.idle_method is None and c.cold is None
    assert c.idle_note is not None and "CONFIG_MEM_SOFT_DIRTY" in c.idle_note


@pytest.mark.skipif(
    not _scan._soft_dirty_supported(),
    reason="this kernel is built without CONFIG_MEM_SOFT_DIRTY: pagemap bit 55 is never set",
)
def test_soft_dirty_half_written(child: Child) -> None:
    marked = []

    def write_half() -> None:  # after clear_refs, before the pagemap pass
        child.ask("rewrite", 0, child.n, 2)
        marked.append(True)

    c = census([child.target()], idle="soft-dirty", idle_interval=0, on_marked=write_half)
    assert marked == [True]
    assert c.idle_method == "soft-dirty" and c.cold is not None
    cold = dict(zip(c.pages[0], c.cold[0], strict=True))
    for i in range(child.n):
        assert cold[child.addr + i * PAGE] == (i % 2), i
    assert c.counts[0].cold == child.n // 2 + child.z


def test_page_idle_unavailable_is_said(child: Child) -> None:
    if os.path.exists(_scan.PAGE_IDLE_BITMAP):
        pytest.skip("page_idle is here: test_page_idle_with_a_bitmap covers it")
    c = census([child.target()], idle="page_idle", idle_interval=0)
    assert c.idle_method is None and c.cold is None
    assert c.idle_note is not None and "page_idle" in c.idle_note


@pytest.mark.skipif(
    not (ROOT and os.path.exists(_scan.PAGE_IDLE_BITMAP)), reason="no idle page tracking here"
)
def test_page_idle_with_a_bitmap(child: Child) -> None:
    def touch_half() -> None:
        child.ask("rewrite", 0, child.n, 2)

    c = census([child.target()], idle="page_idle", idle_interval=0, on_marked=touch_half)
    assert c.idle_method == "page_idle" and c.cold is not None
    cold = dict(zip(c.pages[0], c.cold[0], strict=True))
    for i in range(0, child.n, 2):
        assert cold[child.addr + i * PAGE] == 0, i  # written: not idle


def _pfns(pid: int, addrs: list[int]) -> list[int]:
    fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY)
    try:
        out = []
        for a in addrs:
            e = int.from_bytes(os.pread(fd, 8, 8 * (a // PAGE)), sys.byteorder)
            out.append(e & _scan.PFN_MASK)
        return out
    finally:
        os.close(fd)


@pytest.mark.skipif(not ROOT, reason="PFNs are visible to root only")
def test_page_idle_logic_with_a_stand_in_bitmap(
    child: Child, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # This kernel may have no /sys/kernel/mm/page_idle: a plain file stands in for the
    # bitmap (one bit per PFN, in 8-byte words), and "touching" a page is what the
    # kernel does then: it clears that page's bit.
    bitmap = tmp_path / "bitmap"
    bitmap.write_bytes(b"")
    monkeypatch.setattr(_scan, "PAGE_IDLE_BITMAP", str(bitmap))
    written = [child.addr + i * PAGE for i in range(child.n)]
    marked: list[int] = []

    def touch_even() -> None:
        fd = os.open(bitmap, os.O_RDWR)
        try:
            for pfn in _pfns(child.pid, expected_addrs(child)):
                word = int.from_bytes(os.pread(fd, 8, 8 * (pfn >> 6)), sys.byteorder)
                marked.append(word >> (pfn & 63) & 1)
            for pfn in _pfns(child.pid, written[::2]):
                word = int.from_bytes(os.pread(fd, 8, 8 * (pfn >> 6)), sys.byteorder)
                word &= ~(1 << (pfn & 63))
                os.pwrite(fd, word.to_bytes(8, sys.byteorder), 8 * (pfn >> 6))
        finally:
            os.close(fd)

    c = census([child.target()], idle="page_idle", idle_interval=0, on_marked=touch_even)
    assert marked == [1] * len(expected_addrs(child))  # every candidate marked idle
    assert c.idle_method == "page_idle" and c.cold is not None
    cold = dict(zip(c.pages[0], c.cold[0], strict=True))
    assert [cold[a] for a in written] == [i % 2 for i in range(child.n)]
    assert c.counts[0].cold == child.n // 2 + child.z


# -------------------------------------------------------------------- reading


def test_read_pages_gives_the_exact_bytes(child: Child) -> None:
    t = child.target()
    c = census([t])
    vanished = [0]
    got = [sha(p) for p in read_pages(t, c.pages[0], vanished=vanished)]
    assert got == [child.hashes[a] for a in c.pages[0]]
    assert vanished == [0]
    # a sample: the same pages, the same bytes
    (sample,) = choose(c, 13, seed=5)
    assert [sha(p) for p in read_pages(t, sample)] == [child.hashes[a] for a in sample]


def test_read_pages_counts_what_vanished(child: Child) -> None:
    t = child.target()
    c = census([t])
    child.ask("dontneed", 10, 30)  # freed after the census
    vanished = [0]
    got = [sha(p) for p in read_pages(t, c.pages[0], vanished=vanished)]
    left = [a for a in c.pages[0] if not 10 <= (a - child.addr) // PAGE < 30]
    assert got == [child.hashes[a] for a in left]
    assert vanished == [20]
    assert len(list(read_pages(t, []))) == 0


def test_a_hole_in_a_run_loses_only_its_pages(child: Child) -> None:
    # /proc/PID/mem returns what it read up to a page it cannot read: the pages after
    # the hole are still read
    t = child.target()
    child.ask("munmap", 5, 7)
    fd = os.open(f"/proc/{child.pid}/mem", os.O_RDONLY)
    try:
        got = list(_scan._read_run(child.pid, fd, child.addr, child.n))
    finally:
        os.close(fd)
    assert [a for a, p in got] == [child.addr + i * PAGE for i in range(child.n)]
    for a, p in got:
        i = (a - child.addr) // PAGE
        if 5 <= i < 7:
            assert p is None
        else:
            assert p is not None and sha(p) == child.hashes[a]
    vanished = [0]
    pages = [sha(p) for p in read_pages(t, expected_addrs(child), vanished=vanished)]
    assert vanished == [2] and len(pages) == len(expected_addrs(child)) - 2


def test_read_pages_streams_in_bounded_runs(child: Child, monkeypatch: pytest.MonkeyPatch) -> None:
    sizes: list[int] = []
    real = os.pread

    def pread(fd: int, n: int, off: int) -> bytes:
        sizes.append(n)
        return real(fd, n, off)

    t = child.target()
    c = census([t])
    monkeypatch.setattr(_scan, "_RUN", 4)
    monkeypatch.setattr(_scan.os, "pread", pread)
    it = read_pages(t, c.pages[0])
    next(it)
    assert max(sizes) <= 4 * PAGE  # one run read, not the whole list
    rest = list(it)
    assert len(rest) == len(c.pages[0]) - 1


# ---------------------------------------------------------------------- files


def test_files_are_pages_as_they_are(tmp_path: Path) -> None:
    rng = random.Random(3)
    data = rng.randbytes(10 * PAGE + 100)
    (tmp_path / "a.bin").write_bytes(data)
    (tmp_path / "empty").write_bytes(b"")
    sub = tmp_path / "d"
    sub.mkdir()
    (sub / "b.txt").write_bytes(b"hello")
    (sub / "link").symlink_to(tmp_path / "a.bin")
    targets, skipped = find_targets(
        files=[str(tmp_path / "a.bin"), str(sub), str(tmp_path / "empty")]
    )
    assert skipped == []
    assert [t.path for t in targets] == [
        str(tmp_path / "a.bin"),
        str(sub / "b.txt"),
        str(tmp_path / "empty"),
    ]
    c = census(targets)
    assert [len(p) for p in c.pages] == [11, 1, 0]  # never padded with made-up pages
    assert c.nr_candidates == 12
    pages = list(read_pages(c.targets[0], c.pages[0]))
    assert b"".join(pages) == data + bytes(PAGE - 100)  # the last page zero-tailed
    (sample,) = choose(Census([c.targets[0]], [c.pages[0]], None, [TargetCounts()]), 3, seed=1)
    assert list(read_pages(c.targets[0], sample)) == [
        data[a : a + PAGE].ljust(PAGE, b"\0") for a in sample
    ]
    # shorter since the census: the pages past its end vanished
    (tmp_path / "a.bin").write_bytes(data[: 4 * PAGE])
    vanished = [0]
    assert len(list(read_pages(c.targets[0], c.pages[0], vanished=vanished))) == 4
    assert vanished == [7]


# ----------------------------------------------------------------------- choose


def fake_census(sizes: list[int]) -> Census:
    pages = [array("Q", range(t << 32, (t << 32) + n * PAGE, PAGE)) for t, n in enumerate(sizes)]
    targets = [Target("file", None, f"f{t}", f"f{t}", []) for t in range(len(sizes))]
    return Census(targets, pages, None, [TargetCounts() for _ in sizes])


def test_choose_is_a_deterministic_sample_without_replacement() -> None:
    c = fake_census([500, 0, 1500, 2000])
    for k in (0, 1, 700, 2000, 3999):  # 2000 and 3999: past half, drawn by complement
        a = choose(c, k, seed=11)
        assert a == choose(c, k, seed=11)
        assert sum(len(x) for x in a) == k
        for sel, pages in zip(a, c.pages, strict=True):
            assert list(sel) == sorted(set(sel)) and set(sel) <= set(pages)
    assert choose(c, 700, seed=11) != choose(c, 700, seed=12)
    assert choose(c, None, seed=1) == c.pages == choose(c, 10**9, seed=1)
    with pytest.raises(WorkloadError):
        choose(c, -1, seed=1)


def test_choose_small_and_large_samples_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    # a small sample is sorted, a large one read off the bit mask: the same pages
    c = fake_census([300, 0, 900, 1200])
    small = choose(c, 800, seed=4)
    monkeypatch.setattr(_scan, "_SORT_SAMPLE", 0)
    assert choose(c, 800, seed=4) == small


# chi-square critical values at p = 0.001 (so a uniform sampler fails 1 time in 1000
# seeds; the seeds are fixed, so the outcome is too)
CHI2_999 = {9: 27.877, 19: 43.820, 39: 73.402}


@pytest.mark.parametrize("k", [400, 3000])
def test_choose_is_uniform_across_targets_and_addresses(k: int) -> None:
    sizes = [1000, 3000, 6000]
    c = fake_census(sizes)
    total = sum(sizes)
    # where in the whole population the chosen pages fall: 40 equal buckets
    counts = [0] * 40
    per_target = [0, 0, 0]
    for seed in range(10):
        for t, sel in enumerate(choose(c, k, seed=seed)):
            per_target[t] += len(sel)
            for a in sel:
                i = sum(sizes[:t]) + (a - (t << 32)) // PAGE
                counts[i * 40 // total] += 1
    draws = 10 * k
    exp = draws / 40
    chi2 = sum((o - exp) ** 2 / exp for o in counts)
    assert chi2 < CHI2_999[39], chi2
    # each target gets its share: sizes 10%, 30%, 60% (a hypergeometric sum, tight)
    for got, size in zip(per_target, sizes, strict=True):
        assert abs(got - draws * size / total) < 4 * (draws * size / total) ** 0.5


def test_choose_inclusion_is_equal_for_every_page() -> None:
    # every page is in a sample of k out of n with probability k/n: over 2000 seeds
    c = fake_census([7, 13])
    hits = [0] * 20
    for seed in range(2000):
        for t, sel in enumerate(choose(c, 5, seed=seed)):
            for a in sel:
                hits[t * 7 + (a - (t << 32)) // PAGE] += 1
    exp = 2000 * 5 / 20
    chi2 = sum((h - exp) ** 2 / exp for h in hits)
    assert chi2 < CHI2_999[19], chi2


# ---------------------------------------------------------------------- cgroup


CGROUP2 = _scan._cgroup2_mounts()


def _cgroup_root() -> str | None:
    for mnt in CGROUP2:
        probe = os.path.join(mnt, f"zswap-probe-{os.getpid()}")
        try:
            os.mkdir(probe)
        except OSError:
            continue
        os.rmdir(probe)
        return mnt
    return None


CG_ROOT = _cgroup_root()


@pytest.mark.skipif(CG_ROOT is None, reason="no writable cgroup v2 hierarchy here")
def test_cgroup_finds_every_process_in_it_and_below() -> None:
    assert CG_ROOT is not None
    name = f"zswap-test-{os.getpid()}"
    top = os.path.join(CG_ROOT, name)
    below = os.path.join(top, "below")
    os.mkdir(top)
    os.mkdir(below)
    kids = [Child(2, 0, 0, 0), Child(2, 0, 0, 0), Child(2, 0, 0, 0)]
    try:
        Path(top, "cgroup.procs").write_text(str(kids[0].pid))
        Path(below, "cgroup.procs").write_text(str(kids[1].pid))
        for path in (name, "/" + name, top):  # relative, as /proc/PID/cgroup says, absolute
            targets, skipped = find_targets(cgroups=[path])
            assert skipped == []
            assert sorted(t.pid for t in targets if t.pid) == sorted([kids[0].pid, kids[1].pid])
        targets, _ = find_targets(cgroups=[os.path.join(name, "below")])
        assert [t.pid for t in targets] == [kids[1].pid]
    finally:
        for k in kids:
            k.stop()
        deadline = time.monotonic() + 10
        for d in (below, top):
            while True:  # rmdir fails (EBUSY) until the killed children are gone from it
                try:
                    os.rmdir(d)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)


def test_cgroup_v1_is_refused() -> None:
    v1 = [
        d
        for d in ("/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids")
        if os.path.isfile(d + "/cgroup.procs") and not os.path.isfile(d + "/cgroup.controllers")
    ]
    if not v1:
        pytest.skip("no cgroup v1 hierarchy here")
    with pytest.raises(WorkloadError, match="cgroup v1"):
        find_targets(cgroups=[v1[0]])
