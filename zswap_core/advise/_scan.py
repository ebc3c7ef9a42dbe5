"""Which pages zswap could take, in live processes and files: find, count, sample, read.

``find_targets`` lists the processes (``--pid``, ``--cgroup``, ``--host``) and files to
look at; ``census`` reads each process's ``/proc/PID/pagemap`` once and keeps, per
target, the sorted addresses of its candidate pages (8 bytes each: a 1 GiB process costs
2 MiB); ``choose`` draws a uniform sample without replacement across all targets;
``read_pages`` streams the chosen pages' bytes from ``/proc/PID/mem`` (or the file).

A candidate page is memory zswap could compress: an anonymous page present in RAM (in a
private anonymous mapping, or copied-on-write in a private file mapping), or, with
``include_shmem``, a present page of shared memory (shared anonymous, SysV shm, memfd,
tmpfs files mapped shared), each physical page counted once across all targets.
Not candidates: pages mapped to the shared zero page (reading never-written anonymous
memory maps it: freeing them frees nothing), pages already swapped out (counted apart),
file pages (the page cache is not swapped), pages not present, and mappings whose pages
are never swapped (mlocked, hugetlb, I/O).

pagemap (Documentation/admin-guide/mm/pagemap.rst): bits 0-54 the PFN when present (0
without CAP_SYS_ADMIN) or the swap type (0-4) and offset when swapped; 55 soft-dirty;
56 exclusively mapped; 58 guard region; 61 file page or shared anonymous; 62 swapped;
63 present.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import random
import re
import sys
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from ..workload._base import WorkloadError
from ..workload._process import PF_KTHREAD, check_user_process
from ._files import file_pages, file_targets

__all__ = [
    "Census",
    "Region",
    "Target",
    "TargetCounts",
    "census",
    "choose",
    "find_targets",
    "read_pages",
]

PAGE = os.sysconf("SC_PAGE_SIZE")

PRESENT = 1 << 63
SWAPPED = 1 << 62
FILE_OR_SHARED = 1 << 61
GUARD = 1 << 58
EXCLUSIVE = 1 << 56
SOFT_DIRTY = 1 << 55
PFN_MASK = (1 << 55) - 1
# Swap types at or above this are not swap devices but migration, device-private,
# hwpoison or PTE-marker entries (include/linux/swap.h: MAX_SWAPFILES on a kernel with
# all of them configured); pagemap shows them with bit 62 as well.
_MAX_SWAPFILES = 24

KPF_THP = 1 << 22
KPF_ZERO_PAGE = 1 << 24  # include/uapi/linux/kernel-page-flags.h: the (huge) zero page

_CHUNK = 1 << 14  # pagemap entries per read (128 KiB)
_RUN = (1 << 20) // PAGE  # pages per read of memory: at most 1 MiB held at once
# A mapping with nothing resident nor swapped is skipped unless it is small: a huge
# PROT_NONE reservation (JITs, sanitizers) would cost 8 bytes of pagemap per page for
# nothing. smaps does not count zero-page mappings in Rss, so zero pages in a large
# mapping that has nothing else resident are not counted either.
_SMALL_REGION = 64 << 20
_SORT_SAMPLE = 1 << 20  # choose(): samples up to this many pages are sorted, not scanned

# smaps VmFlags of mappings whose pages reclaim never swaps: hugetlb ("ht"), mlocked
# ("lo": unevictable), I/O and raw PFN mappings ("io", "pf")
_NEVER_SWAPPED = frozenset({"ht", "lo", "io", "pf"})

PAGE_IDLE_BITMAP = "/sys/kernel/mm/page_idle/bitmap"
_THP_SIZE = "/sys/kernel/mm/transparent_hugepage/hpage_pmd_size"

ANON_KINDS = frozenset({"anon", "heap", "stack", "cow"})
SHARED_KINDS = frozenset({"shmem", "sysv", "tmpfs"})
IDLE_METHODS = ("page_idle", "soft-dirty", "auto")
ZERO_PAGE_MODES = ("auto", "pfn", "content")


@dataclass(frozen=True)
class Region:
    """One mapping to scan, ``start``..``end`` (bytes; file offsets for a file target).

    ``kind``: "anon" (private anonymous), "heap", "stack", "cow" (a private file
    mapping: only its copied-on-write anonymous pages count), "shmem" (shared anonymous
    or memfd), "sysv" (SysV shm), "tmpfs" (a tmpfs file mapped shared) or "file" (a file
    target). ``shared_key`` = (dev, inode, page offset of ``start`` in the object) for the
    shared kinds, so that a page mapped by several processes counts once.
    """

    start: int
    end: int
    kind: str
    shared_key: tuple[int, int, int] | None = None

    @property
    def nr_pages(self) -> int:
        return (self.end - self.start) // PAGE


@dataclass
class Target:
    """A process (``kind`` "pid") or a regular file (``kind`` "file") to look at.

    ``name`` is the process's comm or the file's path. ``start_time`` (clock ticks after
    boot, /proc/PID/stat) tells the process from a later one given the same pid.
    """

    kind: str
    pid: int | None
    path: str | None
    name: str
    regions: list[Region]
    start_time: int | None = None


@dataclass
class TargetCounts:
    """Per target: what its census found (see :class:`Census` for each count)."""

    candidates: int = 0
    zero_page: int = 0
    swapped: int = 0
    not_present: int = 0
    shmem: int = 0
    duplicates: int = 0
    cold: int | None = None


@dataclass
class Census:
    """The candidate pages of every target that could be read, and what was left out.

    - ``targets``: the targets counted (those that vanished meanwhile are left out);
      ``pages``, ``cold`` and ``counts`` are aligned with it.
    - ``pages[i]``: sorted ``array('Q')`` of candidate page addresses (file offsets).
    - ``cold[i]``: 1 per candidate found idle (not touched, or for soft-dirty not
      written, during the idle interval), 0 otherwise; None when not asked or not
      available (``idle_note`` says why). Files count as cold: nothing touches them.
    - ``nr_candidates``: all candidates (sum of ``len(pages[i])``).
    - ``nr_zero_page``: present pages mapped to the shared zero page or the huge zero
      page, excluded (with ``zero_page_detection`` "content": present pages, shared
      with another mapping, that read as all zero).
    - ``nr_swapped``: already swapped out (pagemap bit 62), reported apart, not read.
    - ``nr_not_present``: pages of the scanned anonymous and shared mappings neither in
      RAM nor swapped (never touched, or freed); mappings with nothing resident that are
      larger than 64 MiB are not scanned.
    - ``nr_shmem``: candidates from shared memory mappings (each page counted once).
    - ``nr_duplicates``: present pages already counted in another mapping or process
      (copy-on-write sharing after fork, KSM, the same shared memory), not counted again.
      Needs PFNs for anonymous pages (``zero_page_detection`` "pfn").
    - ``nr_skipped_targets``: targets that vanished (or could not be read) during the
      census; ``skipped`` has one line for each, with why.
    - ``zero_page_detection``: "pfn" (exact: the zero page's frame number, found from a
      mapping of this process that was read and never written, checked against
      /proc/kpageflags) or "content" (PFNs hidden without CAP_SYS_ADMIN: a page not
      exclusively mapped that reads as all zero is counted as the zero page).
    - ``idle_method``: "page_idle", "soft-dirty" (write-tracking only: pages read during
      the interval still count as cold) or None.
    """

    targets: list[Target]
    pages: list[array[int]]
    cold: list[bytearray] | None
    counts: list[TargetCounts]
    nr_candidates: int = 0
    nr_zero_page: int = 0
    nr_swapped: int = 0
    nr_not_present: int = 0
    nr_shmem: int = 0
    nr_duplicates: int = 0
    nr_skipped_targets: int = 0
    skipped: list[str] = field(default_factory=list)
    zero_page_detection: str = "pfn"
    idle_method: str | None = None
    idle_note: str | None = None
    idle_interval: float | None = None


class _Gone(Exception):
    """The process exited (or its pid was reused) while it was read."""


def _exited(pid: int) -> str:
    return f"pid {pid} exited while being read"


# ---------------------------------------------------------------------------- finding


def _stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state, ppid, flags, start time) from /proc/PID/stat; None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            text = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    # "PID (COMM) STATE PPID ...": COMM may hold ")" and spaces
    fields = text.rpartition(")")[2].split()
    try:
        return fields[0], int(fields[1]), int(fields[6]), int(fields[19])
    except (IndexError, ValueError):
        return None


def _start_time(pid: int) -> int | None:
    st = _stat(pid)
    return None if st is None else st[3]


def _cgroup2_mounts() -> list[str]:
    out = []
    try:
        with open("/proc/self/mountinfo") as fh:
            for line in fh:
                left, _, right = line.partition(" - ")
                if right.split(" ", 1)[0] == "cgroup2":
                    # mount points escape spaces and such as \040 (octal)
                    mnt = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), left.split()[4])
                    out.append(mnt)
    except OSError:
        pass
    return out


def _resolve_cgroup(path: str) -> str:
    """The cgroup v2 directory for ``path``: absolute, or relative to the cgroup2 mount.

    A path as /proc/PID/cgroup prints it ("/system.slice/x.service") works too.
    """
    candidates = []
    if os.path.isabs(path):
        candidates.append(path)
    rel = path.lstrip("/")
    for mnt in ["/sys/fs/cgroup", *_cgroup2_mounts()]:
        candidates.append(os.path.join(mnt, rel))
    v1 = None
    for cand in candidates:
        if not os.path.isfile(os.path.join(cand, "cgroup.procs")):
            continue
        # every cgroup v2 directory has cgroup.controllers; v1 hierarchies do not
        if os.path.isfile(os.path.join(cand, "cgroup.controllers")):
            return os.path.realpath(cand)
        v1 = v1 or cand
    if v1 is not None:
        raise WorkloadError(f"cgroup {path}: {v1} is a cgroup v1 directory (cgroup v2 only)")
    raise WorkloadError(f"cgroup {path}: no such cgroup v2 directory")


def _cgroup_pids(path: str) -> list[int]:
    """Every pid in cgroup.procs of the cgroup ``path`` and of all its descendants."""
    root = _resolve_cgroup(path)
    pids: list[int] = []
    for dirpath, dirs, _files in os.walk(root):
        dirs.sort()
        try:
            with open(os.path.join(dirpath, "cgroup.procs")) as fh:
                pids.extend(int(x) for x in fh.read().split())
        except FileNotFoundError:
            continue  # removed while we walked
        except OSError as exc:
            raise WorkloadError(
                f"cgroup {path}: cannot read {dirpath}/cgroup.procs: {exc.strerror or exc}"
            ) from None
    return pids


def _host_pids(skipped: list[str]) -> list[int]:
    """Every process but kernel threads, this process and its descendants (its workers)."""
    me = os.getpid()
    parent: dict[int, int] = {}
    kthreads = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        st = _stat(int(name))
        if st is None:
            continue  # exited since the listing
        if st[2] & PF_KTHREAD:
            kthreads += 1
            continue
        parent[int(name)] = st[1]

    def ours(pid: int) -> bool:
        seen = 0
        while pid > 1 and seen < 4096:  # 4096: a cycle cannot happen, but never loop forever
            if pid == me:
                return True
            pid = parent.get(pid, 0)
            seen += 1
        return False

    if kthreads:
        skipped.append(f"host: {kthreads} kernel threads skipped (no user memory)")
    return sorted(p for p in parent if not ours(p))


def _hexdev(text: str) -> int:
    major, _, minor = text.partition(":")
    return os.makedev(int(major, 16), int(minor, 16))


class _Mounts:
    """Devices of the tmpfs mounts, per mount namespace (a shared tmpfs file is shmem)."""

    def __init__(self) -> None:
        self._cache: dict[int, frozenset[int]] = {}

    def tmpfs_devs(self, pid: int) -> frozenset[int]:
        try:
            ns = os.stat(f"/proc/{pid}/ns/mnt").st_ino
        except OSError:
            ns = -1
        if ns in self._cache:
            return self._cache[ns]
        devs = set()
        try:
            with open(f"/proc/{pid}/mountinfo") as fh:
                for line in fh:
                    left, _, right = line.partition(" - ")
                    if right.split(" ", 1)[0] == "tmpfs":
                        major, _, minor = left.split()[2].partition(":")
                        devs.add(os.makedev(int(major), int(minor)))
        except OSError:
            pass
        self._cache[ns] = frozenset(devs)
        return self._cache[ns]


def _classify(
    perms: str, offset: int, dev: int, inode: int, name: str
) -> tuple[str, tuple[int, int, int] | None] | None:
    """(kind, shared_key) of a mapping, before the tmpfs check; None: never a candidate."""
    if perms[3] == "p":
        if not name or name.startswith("[anon:"):
            return "anon", None
        if name == "[heap]":
            return "heap", None
        if name.startswith("[stack"):
            return "stack", None
        if name.startswith("["):
            return None  # [vdso], [vvar], [vsyscall], [uprobes]...: kernel's pages
        return "cow", None
    key = (dev, inode, offset // PAGE)
    if name.startswith("/SYSV"):
        return "sysv", key
    if not name or name.startswith(("/dev/zero", "/memfd:", "[anon_shmem:")):
        return "shmem", key  # shared anonymous memory shows as "/dev/zero (deleted)"
    if name.startswith("["):
        return None
    return "tmpfs", key  # kept only if ``dev`` is a tmpfs mount's


def _read_regions(pid: int, include_shmem: bool, mounts: _Mounts) -> list[Region]:
    """The mappings of ``pid`` that may hold candidate pages (from /proc/PID/smaps)."""
    path = f"/proc/{pid}/smaps"
    try:
        with open(path) as fh:
            text = fh.read()
    except (FileNotFoundError, ProcessLookupError):
        raise WorkloadError(f"pid {pid}: no such process") from None
    except PermissionError:
        raise WorkloadError(f"pid {pid}: permission denied reading {path}") from None
    except OSError as exc:
        raise WorkloadError(f"pid {pid}: cannot read {path}: {exc.strerror or exc}") from None
    regions: list[Region] = []
    tmpfs: frozenset[int] | None = None
    head: list[str] | None = None
    sizes: dict[str, int] = {}
    flags: set[str] = set()

    def flush() -> None:
        nonlocal tmpfs
        if head is None or flags & _NEVER_SWAPPED:
            return
        lo, _, hi = head[0].partition("-")
        start, end = int(lo, 16), int(hi, 16)
        perms, offset, dev, inode = head[1], int(head[2], 16), _hexdev(head[3]), int(head[4])
        name = head[5].strip() if len(head) > 5 else ""
        got = _classify(perms, offset, dev, inode, name)
        if got is None:
            return
        kind, key = got
        if kind in SHARED_KINDS:
            if not include_shmem:
                return
            if kind == "tmpfs":
                if tmpfs is None:
                    tmpfs = mounts.tmpfs_devs(pid)
                if dev not in tmpfs:
                    return  # a shared file mapping: page cache, not swapped
            if not (sizes.get("Rss", 0) or sizes.get("Swap", 0)):
                return
        elif kind == "cow":
            if not (sizes.get("Anonymous", 0) or sizes.get("Swap", 0)):
                return
        elif not (sizes.get("Rss", 0) or sizes.get("Swap", 0)) and end - start > _SMALL_REGION:
            return
        regions.append(Region(start, end, kind, key))

    for line in text.splitlines():
        first = line.split(None, 1)[0] if line else ""
        if first.endswith(":"):
            if head is not None and len(first) > 1:
                value = line[len(first) :].split()
                if first == "VmFlags:":
                    flags = set(value)
                elif value and value[0].isdigit():
                    sizes[first[:-1]] = int(value[0])
            continue
        if "-" in first:
            flush()
            head = line.split(None, 5)
            sizes = {}
            flags = set()
    flush()
    return regions


def _tgid(pid: int) -> int:
    """The process a thread id belongs to (/proc/TID exists, unlisted, for every thread)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("Tgid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return pid


def _pid_target(pid: int, include_shmem: bool, mounts: _Mounts) -> Target:
    check_user_process(pid)
    st = _stat(pid)
    if st is None:
        raise WorkloadError(f"pid {pid}: no such process")
    try:
        with open(f"/proc/{pid}/comm") as fh:
            name = fh.read().strip()
    except OSError:
        name = str(pid)
    regions = _read_regions(pid, include_shmem, mounts)
    return Target("pid", pid, None, name, regions, st[3])


def find_targets(
    pids: Sequence[int] = (),
    cgroups: Sequence[str] = (),
    host: bool = False,
    files: Sequence[str] = (),
    include_shmem: bool = False,
) -> tuple[list[Target], list[str]]:
    """The processes and files to look at, and one line per process skipped (and why).

    ``pids`` as given; ``cgroups``: cgroup v2 directories (absolute, or relative to the
    cgroup2 mount), every pid in cgroup.procs of each and of its descendants; ``host``:
    every process but kernel threads, this process and its descendants; ``files``:
    regular files, and the regular files under directories (sorted). A process appears
    once however often it is named. Bad input (a pid <= 0, a missing cgroup or file)
    raises :class:`WorkloadError` before anything is read; a process that cannot be
    read (no such process, kernel thread, zombie, permission) is skipped with a line.
    ``include_shmem`` adds the shared memory mappings (see :class:`Region`).
    """
    skipped: list[str] = []
    wanted: list[int] = []
    for pid in pids:
        if int(pid) <= 0:
            raise WorkloadError(f"pid {pid}: not a valid process id")
        wanted.append(_tgid(int(pid)))
    for cg in cgroups:
        wanted.extend(_cgroup_pids(cg))
    found_files, file_skips = file_targets(files)
    if host:
        wanted.extend(_host_pids(skipped))
    targets: list[Target] = []
    mounts = _Mounts()
    seen: set[int] = set()
    for pid in wanted:
        if pid in seen:
            continue
        seen.add(pid)
        try:
            targets.append(_pid_target(pid, include_shmem, mounts))
        except WorkloadError as exc:
            skipped.append(str(exc))
    for path, n in found_files:
        targets.append(Target("file", None, path, path, [Region(0, n * PAGE, "file")]))
    skipped.extend(file_skips)
    return targets, skipped


# ----------------------------------------------------------------------------- census


class _Bitmap:
    """A growable set of small non-negative ints, one bit each."""

    __slots__ = ("bits",)

    def __init__(self) -> None:
        self.bits = bytearray()

    def test(self, i: int) -> bool:
        byte = i >> 3
        return byte < len(self.bits) and bool(self.bits[byte] & (1 << (i & 7)))

    def test_and_set(self, i: int) -> bool:
        byte, bit = i >> 3, 1 << (i & 7)
        bits = self.bits
        if byte >= len(bits):
            bits.extend(bytes(max(byte + 1 - len(bits), len(bits) // 2)))
        if bits[byte] & bit:
            return True
        bits[byte] |= bit
        return False


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    ]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return libc


def _self_pagemap(addr: int, n: int = 1) -> array[int]:
    fd = os.open("/proc/self/pagemap", os.O_RDONLY)
    try:
        out = array("Q")
        out.frombytes(os.pread(fd, 8 * n, 8 * (addr // PAGE)))
        return out
    finally:
        os.close(fd)


def _kpageflags(fd: int | None, pfn: int) -> int | None:
    if fd is None:
        return None
    try:
        raw = os.pread(fd, 8, 8 * pfn)
    except OSError:
        return None
    return int.from_bytes(raw, sys.byteorder) if len(raw) == 8 else None


class _ZeroPages:
    """The zero page's and the huge zero page's PFNs, from mappings read, never written.

    The mappings are PROT_READ (nothing can write them) and stay mapped during the census:
    the huge zero page is freed when nobody maps it, and could then come back elsewhere.
    """

    def __init__(self) -> None:
        self.pfns: set[int] = set()
        self.visible = False
        self.huge = False
        self.thp_nr = 512
        self._maps: list[tuple[int, int]] = []
        self._libc: ctypes.CDLL | None = None
        try:
            self.kpf: int | None = os.open("/proc/kpageflags", os.O_RDONLY)
        except OSError:
            self.kpf = None

    def _map(self, size: int) -> int | None:
        if self._libc is None:
            self._libc = _libc()
        flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_NORESERVE", 0)
        addr = self._libc.mmap(None, size, mmap.PROT_READ, flags, -1, 0)
        if addr is None or addr == ctypes.c_void_p(-1).value:
            return None
        self._maps.append((addr, size))
        return int(addr)

    def probe(self) -> None:
        addr = self._map(PAGE)
        if addr is None:
            return
        ctypes.string_at(addr, 1)  # a read fault maps the shared zero page
        e = _self_pagemap(addr)[0]
        if not e & PRESENT or not e & PFN_MASK:
            return  # PFNs are hidden (no CAP_SYS_ADMIN)
        self.visible = True
        self.pfns.add(e & PFN_MASK)
        try:
            with open(_THP_SIZE) as fh:
                pmd = int(fh.read())
        except (OSError, ValueError):
            return
        self.thp_nr = pmd // PAGE
        big = self._map(2 * pmd)
        if big is None:
            return
        aligned = (big + pmd - 1) & ~(pmd - 1)
        assert self._libc is not None
        self._libc.madvise(aligned, pmd, 14)  # MADV_HUGEPAGE
        ctypes.string_at(aligned, 1)
        es = _self_pagemap(aligned, 2)
        head = es[0] & PFN_MASK
        # a huge zero page is PMD-mapped (consecutive PFNs), and pagemap calls it a file
        # page (it is not anonymous); kpageflags, when readable, says so exactly
        if es[0] & PRESENT and es[0] & FILE_OR_SHARED and es[1] & PFN_MASK == head + 1:
            flags = _kpageflags(self.kpf, head)
            if flags is None or flags & KPF_ZERO_PAGE:
                base = head & ~(self.thp_nr - 1)
                self.pfns.update(range(base, base + self.thp_nr))
                self.huge = True

    def is_zero(self, pfn: int) -> bool:
        """Exact with /proc/kpageflags (it learns a zero page seen for the first time)."""
        if pfn in self.pfns:
            return True
        flags = _kpageflags(self.kpf, pfn)
        if flags is None or not flags & KPF_ZERO_PAGE:
            return False
        if flags & KPF_THP:
            base = pfn & ~(self.thp_nr - 1)
            self.pfns.update(range(base, base + self.thp_nr))
        else:
            self.pfns.add(pfn)
        return True

    def close(self) -> None:
        if self.kpf is not None:
            os.close(self.kpf)
            self.kpf = None
        if self._libc is not None:
            for addr, size in self._maps:
                self._libc.munmap(addr, size)
        self._maps = []


def _soft_dirty_supported() -> bool:
    """True if this kernel tracks soft-dirty (CONFIG_MEM_SOFT_DIRTY).

    Such a kernel flags every new mapping soft-dirty ("sd" in smaps VmFlags) until
    clear_refs clears it; make one, then look.
    """
    m = mmap.mmap(-1, PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        with open("/proc/self/smaps") as fh:
            return any(line.startswith("VmFlags:") and " sd" in f" {line[8:]}" for line in fh)
    finally:
        m.close()


def _page_idle_usable() -> bool:
    return os.access(PAGE_IDLE_BITMAP, os.R_OK | os.W_OK)


class _Scanner:
    """Classifies pagemap entries into candidates and counts; one per census."""

    def __init__(self, zero: _ZeroPages, content: bool, idle: str | None) -> None:
        self.zero = zero
        self.content = content  # PFNs hidden (or content mode forced)
        self.idle = idle
        self.seen_pfn = _Bitmap()  # non-exclusive anonymous pages already counted
        self.seen_shared: dict[tuple[int, int], _Bitmap] = {}
        self.idle_fd: int | None = None

    def decode(
        self,
        entries: Sequence[int],
        addr0: int,
        region: Region,
        counts: TargetCounts,
    ) -> tuple[array[int], bytearray, list[int], list[int]]:
        """Classify one run of pagemap entries for addresses ``addr0`` onwards.

        Returns (candidate addresses, soft-dirty cold bits aligned with them, indexes of
        the candidates whose content decides if they are the zero page, their PFNs for
        page_idle marking).
        """
        addrs = array("Q")
        cold = bytearray()
        maybe_zero: list[int] = []
        pfns: list[int] = []
        soft = self.idle == "soft-dirty"
        keep_pfns = self.idle == "page_idle"
        kind = region.kind
        shared = region.shared_key is not None and kind in SHARED_KINDS
        if shared:
            assert region.shared_key is not None
            dev, ino, pgoff = region.shared_key
            seen = self.seen_shared.setdefault((dev, ino), _Bitmap())
            first = pgoff + (addr0 - region.start) // PAGE
        anon_mapping = kind != "cow"
        zero = self.zero
        seen_pfn = self.seen_pfn
        content = self.content
        for i, e in enumerate(entries):
            if e & PRESENT:
                pfn = 0 if content else e & PFN_MASK  # content: as if PFNs were hidden
                if shared:
                    if seen.test_and_set(first + i):
                        counts.duplicates += 1
                        continue
                    counts.shmem += 1
                elif e & FILE_OR_SHARED:
                    # not an anonymous page: in a private anonymous mapping that is the
                    # (PMD-mapped) huge zero page; in a private file mapping, page cache
                    if anon_mapping and (zero.is_zero(pfn) if pfn else content):
                        counts.zero_page += 1
                    continue
                elif not e & EXCLUSIVE:
                    # mapped more than once: the zero page, or shared (fork, KSM); a
                    # shared page seen before was found not to be the zero page then
                    if pfn:
                        if pfn in zero.pfns:
                            counts.zero_page += 1
                            continue
                        if seen_pfn.test(pfn):
                            counts.duplicates += 1
                            continue
                        if zero.is_zero(pfn):
                            counts.zero_page += 1
                            continue
                        seen_pfn.test_and_set(pfn)
                    elif content:
                        maybe_zero.append(len(addrs))
                addrs.append(addr0 + i * PAGE)
                if soft:
                    cold.append(0 if e & SOFT_DIRTY else 1)
                if keep_pfns:
                    pfns.append(pfn)
            elif e & SWAPPED and not e & GUARD and (content or (e & 31) < _MAX_SWAPFILES):
                if shared and seen.test_and_set(first + i):
                    counts.duplicates += 1
                    continue
                counts.swapped += 1
            elif anon_mapping:
                counts.not_present += 1
        return addrs, cold, maybe_zero, pfns

    def scan(self, target: Target) -> tuple[array[int], bytearray | None, TargetCounts]:
        """One pass over ``target``'s pagemap. Raises :class:`_Gone`."""
        assert target.pid is not None
        pid = target.pid
        counts = TargetCounts()
        pages = array("Q")
        cold = bytearray() if self.idle else None
        fds = _open_process(target, ("pagemap", "mem") if self.content else ("pagemap",))
        try:
            pagemap = fds[0]
            for region in target.regions:
                n = region.nr_pages
                for base in range(0, n, _CHUNK):
                    k = min(_CHUNK, n - base)
                    raw = _pread(pid, pagemap, 8 * k, 8 * (region.start // PAGE + base))
                    entries = array("Q")
                    entries.frombytes(raw[: len(raw) // 8 * 8])
                    addr0 = region.start + base * PAGE
                    addrs, soft, maybe_zero, pfns = self.decode(entries, addr0, region, counts)
                    if maybe_zero:
                        addrs, soft = self._drop_zero(pid, fds[1], addrs, soft, maybe_zero, counts)
                    if self.idle == "page_idle":
                        self._mark_idle(pfns)
                    pages.extend(addrs)
                    if cold is not None:
                        cold.extend(soft if self.idle == "soft-dirty" else bytes(len(addrs)))
        finally:
            for fd in fds:
                os.close(fd)
        counts.candidates = len(pages)
        return pages, cold, counts

    def _drop_zero(
        self,
        pid: int,
        mem: int,
        addrs: array[int],
        soft: bytearray,
        maybe_zero: list[int],
        counts: TargetCounts,
    ) -> tuple[array[int], bytearray]:
        """Content mode: drop the candidates in ``maybe_zero`` that read as all zero."""
        drop: set[int] = set()
        zero_page = bytes(PAGE)
        for run in _runs([addrs[i] for i in maybe_zero]):
            for addr, data in _read_run(pid, mem, run[0], len(run)):
                if data is None:
                    counts.not_present += 1  # gone between pagemap and now
                    drop.add(addr)
                elif data == zero_page:
                    counts.zero_page += 1
                    drop.add(addr)
        keep = [i for i, a in enumerate(addrs) if a not in drop]
        return array("Q", (addrs[i] for i in keep)), (
            bytearray(soft[i] for i in keep) if soft else soft
        )

    def _mark_idle(self, pfns: list[int]) -> None:
        if not pfns or self.idle_fd is None:
            return
        words: dict[int, int] = {}
        for pfn in pfns:
            if pfn:
                words[pfn >> 6] = words.get(pfn >> 6, 0) | (1 << (pfn & 63))
        for word, mask in sorted(words.items()):
            # a 1 bit marks that page idle; 0 bits change nothing
            os.pwrite(self.idle_fd, mask.to_bytes(8, sys.byteorder), 8 * word)

    def idle_bits(self, target: Target, pages: array[int]) -> bytearray:
        """page_idle, after the wait: 1 for each candidate still idle (same page, untouched)."""
        assert target.pid is not None and self.idle_fd is not None
        cold = bytearray(len(pages))
        fds = _open_process(target, ("pagemap",))
        try:
            i = 0
            while i < len(pages):
                # one pagemap read for the candidates within _CHUNK pages of pages[i]
                lo = pages[i] // PAGE
                j = i
                while j < len(pages) and pages[j] // PAGE - lo < _CHUNK:
                    j += 1
                hi = pages[j - 1] // PAGE + 1
                raw = _pread(target.pid, fds[0], 8 * (hi - lo), 8 * lo)
                entries = array("Q")
                entries.frombytes(raw[: len(raw) // 8 * 8])
                words: dict[int, int] = {}
                want: list[tuple[int, int]] = []
                for k in range(i, j):
                    idx = pages[k] // PAGE - lo
                    e = entries[idx] if idx < len(entries) else 0
                    if e & PRESENT and e & PFN_MASK:
                        want.append((k, e & PFN_MASK))
                        words[(e & PFN_MASK) >> 6] = 0
                for word in words:
                    raw_word = os.pread(self.idle_fd, 8, 8 * word)
                    words[word] = int.from_bytes(raw_word, sys.byteorder) if raw_word else 0
                for k, pfn in want:
                    cold[k] = (words[pfn >> 6] >> (pfn & 63)) & 1
                i = j
        finally:
            os.close(fds[0])
        return cold


def _pread(pid: int, fd: int, n: int, offset: int) -> bytes:
    try:
        raw = os.pread(fd, n, offset)
    except PermissionError:
        raise WorkloadError(f"pid {pid}: permission denied reading pagemap") from None
    except ProcessLookupError:
        raise _Gone from None
    except OSError as exc:
        raise WorkloadError(f"pid {pid}: reading pagemap: {exc.strerror}") from None
    if not raw and n:
        raise _Gone  # end of file: the address space is gone
    return raw


def _open_process(target: Target, names: Sequence[str]) -> list[int]:
    """Open /proc/PID/<name>..., then check that PID is still the same process.

    Raises :class:`_Gone` if it is not (an open fd stays bound to the process it opened).
    """
    assert target.pid is not None
    pid = target.pid
    fds: list[int] = []
    try:
        for name in names:
            try:
                fds.append(os.open(f"/proc/{pid}/{name}", os.O_RDONLY))
            except (FileNotFoundError, ProcessLookupError):
                raise _Gone from None
            except PermissionError:
                raise WorkloadError(
                    f"pid {pid}: permission denied reading its memory "
                    "(needs ptrace access: the same user and kernel.yama.ptrace_scope=0, "
                    "or root)"
                ) from None
        if target.start_time is not None and _start_time(pid) != target.start_time:
            raise _Gone
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return fds


def _runs(addrs: Sequence[int]) -> Iterator[list[int]]:
    """Adjacent pages of sorted ``addrs`` grouped, at most 1 MiB per group."""
    run: list[int] = []
    for a in addrs:
        if run and (a != run[-1] + PAGE or len(run) >= _RUN):
            yield run
            run = []
        run.append(a)
    if run:
        yield run


def _read_run(pid: int, mem: int, addr: int, n: int) -> Iterator[tuple[int, bytes | None]]:
    """(address, page or None if it could not be read) for ``n`` pages from ``addr``.

    Raises :class:`_Gone` once the process's memory is gone (ESRCH or end of file),
    where a page that is merely not mapped fails with EIO. The kernel returns what it
    read up to the first page it cannot read (EIO if that is the first): go on after it.
    """
    while n > 0:
        try:
            data = os.pread(mem, n * PAGE, addr)
        except OSError as exc:
            if exc.errno == errno.ESRCH:
                raise _Gone from None
            if exc.errno not in (errno.EIO, errno.EFAULT):
                raise WorkloadError(f"pid {pid}: reading its memory: {exc.strerror}") from None
            yield addr, None  # the first page cannot be read: skip it
            addr += PAGE
            n -= 1
            continue
        if not data:
            raise _Gone
        full = len(data) // PAGE
        for k in range(full):
            yield addr + k * PAGE, data[k * PAGE : (k + 1) * PAGE]
        if not full:  # cannot happen (pages are read whole); never loop on it
            yield addr, None
            full = 1
        addr += full * PAGE
        n -= full


def census(
    targets: Sequence[Target],
    *,
    idle: str | None = None,
    idle_interval: float = 10.0,
    zero_page_detection: str = "auto",
    on_marked: Callable[[], None] | None = None,
) -> Census:
    """Count and list every target's candidate pages: one pagemap pass per process.

    Memory: 8 bytes per candidate page (+1 with ``idle``), plus a bit per PFN for pages
    mapped more than once and per page of shared memory objects.

    ``idle``: None; "page_idle" (/sys/kernel/mm/page_idle/bitmap: the candidates are
    marked idle during the pass, and after ``idle_interval`` seconds those still idle are
    cold: sees reads and writes, needs PFNs); "soft-dirty" (``--mark-idle``: writes 4 to
    each target's /proc/PID/clear_refs, waits ``idle_interval``, then reads pagemap bit
    55: a page written since is hot; reads are not seen); "auto": page_idle when
    usable, else no idle information. When the method is not usable here, ``cold`` is
    None and ``idle_note`` says why. ``on_marked`` is called once pages are marked idle,
    just before the wait (to tell the user, or for tests to touch memory at a known
    point).

    ``zero_page_detection``: "auto" (by PFN when visible, else by content), "pfn" (an
    error when PFNs are hidden), "content" (force the fallback, as without privileges).
    """
    if idle is not None and idle not in IDLE_METHODS:
        raise WorkloadError(f"idle: unknown method {idle!r} (page_idle, soft-dirty, auto)")
    if zero_page_detection not in ZERO_PAGE_MODES:
        raise WorkloadError(f"zero_page_detection: unknown mode {zero_page_detection!r}")
    zero = _ZeroPages()
    try:
        zero.probe()
        if zero_page_detection == "pfn" and not zero.visible:
            raise WorkloadError("page frame numbers are hidden (needs CAP_SYS_ADMIN)")
        content = zero_page_detection == "content" or not zero.visible
        if content:
            zero.pfns.clear()
        method, note = _idle_method(idle, content)
        scanner = _Scanner(zero, content, method)
        return _census(list(targets), scanner, method, note, idle_interval, on_marked)
    finally:
        zero.close()


def _idle_method(idle: str | None, content: bool) -> tuple[str | None, str | None]:
    if idle is None:
        return None, None
    if idle in ("page_idle", "auto"):
        if not os.path.exists(PAGE_IDLE_BITMAP):
            why = "idle page tracking is not available (no /sys/kernel/mm/page_idle/bitmap)"
        elif content or not _page_idle_usable():
            why = "idle page tracking needs root (page frame numbers and the idle bitmap)"
        else:
            return "page_idle", None
        return None, why
    if not _soft_dirty_supported():
        return None, (
            "soft-dirty tracking is not built into this kernel (CONFIG_MEM_SOFT_DIRTY): "
            "no hot/cold estimate"
        )
    return "soft-dirty", "soft-dirty sees writes only: pages only read count as cold"


def _census(
    targets: list[Target],
    scanner: _Scanner,
    method: str | None,
    note: str | None,
    idle_interval: float,
    on_marked: Callable[[], None] | None,
) -> Census:
    skipped: list[str] = []
    gone: set[int] = set()
    if method == "soft-dirty":
        for t in targets:
            if t.pid is None:
                continue
            try:
                with open(f"/proc/{t.pid}/clear_refs", "w") as fh:
                    fh.write("4")  # clear the soft-dirty bits of all its pages
            except OSError as exc:
                gone.add(id(t))
                if isinstance(exc, (FileNotFoundError, ProcessLookupError)):
                    skipped.append(_exited(t.pid))
                else:
                    skipped.append(f"pid {t.pid}: cannot clear its soft-dirty bits: {exc}")
        _wait(on_marked, idle_interval)
    if method == "page_idle":
        scanner.idle_fd = os.open(PAGE_IDLE_BITMAP, os.O_RDWR)
    try:
        out = Census([], [], [] if method else None, [])
        out.zero_page_detection = "content" if scanner.content else "pfn"
        out.idle_method, out.idle_note = method, note
        out.idle_interval = idle_interval if method else None
        for t in targets:
            if id(t) in gone:
                continue
            if t.kind == "file":
                _census_file(t, out, skipped, scanner)
                continue
            assert t.pid is not None
            try:
                pages, cold, counts = scanner.scan(t)
            except _Gone:
                skipped.append(_exited(t.pid))
                continue
            except WorkloadError as exc:
                skipped.append(str(exc))
                continue
            _add(out, t, pages, cold, counts)
        if method == "page_idle":
            _wait(on_marked, idle_interval)
            assert out.cold is not None
            keep = []
            for i, t in enumerate(out.targets):
                if t.kind == "file":
                    keep.append(i)
                    continue
                try:
                    out.cold[i] = scanner.idle_bits(t, out.pages[i])
                except (_Gone, WorkloadError):
                    assert t.pid is not None
                    skipped.append(_exited(t.pid))
                    continue
                keep.append(i)
            if len(keep) < len(out.targets):
                _keep(out, keep)
    finally:
        if scanner.idle_fd is not None:
            os.close(scanner.idle_fd)
            scanner.idle_fd = None
    if out.cold is not None:
        for c, bits in zip(out.counts, out.cold, strict=True):
            c.cold = bits.count(1)
    _total(out)
    out.skipped = skipped
    out.nr_skipped_targets = len(skipped)
    return out


def _wait(on_marked: Callable[[], None] | None, seconds: float) -> None:
    if on_marked is not None:
        on_marked()
    if seconds > 0:
        time.sleep(seconds)


def _census_file(t: Target, out: Census, skipped: list[str], scanner: _Scanner) -> None:
    assert t.path is not None
    try:
        n = file_pages(t.path)
        st = os.stat(t.path)
    except OSError as exc:
        skipped.append(f"{t.path}: {exc.strerror or exc}")
        return
    t.regions = [Region(0, n * PAGE, "file")]
    counts = TargetCounts()
    seen = scanner.seen_shared.get((st.st_dev, st.st_ino))
    if seen is None:
        pages = array("Q", range(0, n * PAGE, PAGE))
    else:
        # a tmpfs file some target maps shared: its pages counted there count once
        pages = array("Q", (i * PAGE for i in range(n) if not seen.test(i)))
        counts.duplicates = n - len(pages)
    counts.candidates = len(pages)
    cold = bytearray(b"\x01" * len(pages)) if out.cold is not None else None
    _add(out, t, pages, cold, counts)


def _add(
    out: Census, t: Target, pages: array[int], cold: bytearray | None, counts: TargetCounts
) -> None:
    out.targets.append(t)
    out.pages.append(pages)
    out.counts.append(counts)
    if out.cold is not None:
        out.cold.append(cold if cold is not None else bytearray(len(pages)))


def _keep(out: Census, keep: list[int]) -> None:
    out.targets = [out.targets[i] for i in keep]
    out.pages = [out.pages[i] for i in keep]
    out.counts = [out.counts[i] for i in keep]
    if out.cold is not None:
        out.cold = [out.cold[i] for i in keep]


def _total(out: Census) -> None:
    cs = out.counts
    out.nr_candidates = sum(len(p) for p in out.pages)
    out.nr_zero_page = sum(c.zero_page for c in cs)
    out.nr_swapped = sum(c.swapped for c in cs)
    out.nr_not_present = sum(c.not_present for c in cs)
    out.nr_shmem = sum(c.shmem for c in cs)
    out.nr_duplicates = sum(c.duplicates for c in cs)


# ----------------------------------------------------------------------------- sample


def choose(census: Census, nr_pages: int | None, seed: int) -> list[array[int]]:
    """A uniform random sample without replacement of ``nr_pages`` candidates.

    Drawn across all candidates of all targets (every subset of that size is equally
    likely), returned per target as sorted addresses aligned with ``census.targets``.
    None, or at least the number of candidates: all of them. The same seed and census
    give the same sample. Memory: one bit per candidate (plus the sample).
    """
    total = sum(len(p) for p in census.pages)
    if nr_pages is None or nr_pages >= total:
        return [array("Q", p) for p in census.pages]
    if nr_pages < 0:
        raise WorkloadError(f"sample: {nr_pages} pages")
    rng = random.Random(seed)
    # Draw distinct indexes with a bit mask (rejecting repeats); past half of the
    # population, draw the ones left out instead, so that a draw succeeds at least half
    # the time. Either way each subset of size nr_pages is equally likely.
    complement = nr_pages > total // 2
    want = total - nr_pages if complement else nr_pages
    mask = bytearray((total + 7) // 8)
    small = not complement and want <= _SORT_SAMPLE
    drawn = array("Q")
    got = 0
    randbelow = rng.randrange
    while got < want:
        i = randbelow(total)
        byte, bit = i >> 3, 1 << (i & 7)
        if not mask[byte] & bit:
            mask[byte] |= bit
            if small:
                drawn.append(i)
            got += 1
    if small:
        # a small sample (the usual case): sort what was drawn, O(k log k), not O(total)
        out = [array("Q") for _ in census.pages]
        t, base = 0, 0
        for i in sorted(drawn):
            while i >= base + len(census.pages[t]):
                base += len(census.pages[t])
                t += 1
            out[t].append(census.pages[t][i - base])
        return out
    del drawn
    out = []
    base = 0
    for pages in census.pages:
        n = len(pages)
        sel = array("Q")
        for j in range(n):
            i = base + j
            if bool(mask[i >> 3] & (1 << (i & 7))) != complement:
                sel.append(pages[j])
        out.append(sel)
        base += n
    return out


# ------------------------------------------------------------------------------- read


def read_pages(
    target: Target, addrs: Sequence[int], *, vanished: list[int] | None = None
) -> Iterator[bytes]:
    """The pages at ``addrs`` (sorted addresses, or file offsets), one bytes each.

    Reads runs of adjacent pages in one pread (at most 1 MiB at a time). A page that is
    no longer present (pagemap is checked first, so that reading never faults memory
    back in), cannot be read (EIO), or is past the end of a file now shorter, is skipped
    and counted in ``vanished[0]``; if the process has exited, all the pages left are.
    A file's last page is zero-tailed, as the page cache holds it.
    """
    if target.kind == "file":
        yield from _read_file(target, addrs, vanished)
        return
    assert target.pid is not None
    pid = target.pid
    # every page is either yielded or vanished: count what was yielded, and once done
    # (to the end, or the process gone) the rest vanished; a consumer that stops early
    # counts nothing
    yielded = 0
    finished = False
    try:
        fds = _open_process(target, ("pagemap", "mem"))
        try:
            pagemap, mem = fds
            for run in _runs(addrs):
                raw = _pread(pid, pagemap, 8 * len(run), 8 * (run[0] // PAGE))
                entries = array("Q")
                entries.frombytes(raw[: len(raw) // 8 * 8])
                present = [
                    a for k, a in enumerate(run) if k < len(entries) and entries[k] & PRESENT
                ]
                for sub in _runs(present):
                    for _addr, page in _read_run(pid, mem, sub[0], len(sub)):
                        if page is not None:
                            yielded += 1
                            yield page
        finally:
            for fd in fds:
                os.close(fd)
        finished = True
    except _Gone:
        finished = True
    finally:
        if finished and vanished is not None:
            vanished[0] += len(addrs) - yielded


def _read_file(target: Target, addrs: Sequence[int], vanished: list[int] | None) -> Iterator[bytes]:
    assert target.path is not None
    yielded = 0
    finished = False
    try:
        try:
            fd = os.open(target.path, os.O_RDONLY)
        except OSError:
            finished = True
            return
        try:
            for run in _runs(addrs):
                try:
                    data = os.pread(fd, len(run) * PAGE, run[0])
                except OSError:
                    continue  # an I/O error: these pages vanished
                for k in range(len(run)):
                    page = data[k * PAGE : (k + 1) * PAGE]
                    if not page:
                        break  # past the end of a file now shorter
                    if len(page) < PAGE:
                        page += bytes(PAGE - len(page))
                    yielded += 1
                    yield page
        finally:
            os.close(fd)
        finished = True
    finally:
        if finished and vanished is not None:
            vanished[0] += len(addrs) - yielded
