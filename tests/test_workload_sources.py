"""Page sources and the zipf trace of ``zswap_core.workload``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from zswap_core.workload import (
    PAGE_SIZE,
    FileSource,
    ProcessSource,
    SyntheticSource,
    WorkloadError,
    ZipfTrace,
    is_same_filled,
)

# -- synthetic ------------------------------------------------------------------------------


def test_synthetic_is_deterministic_per_seed() -> None:
    a, b, c = SyntheticSource(7), SyntheticSource(7), SyntheticSource(8)
    pages_a = [a.page(i) for i in range(300)]
    assert pages_a == [b.page(i) for i in range(300)]
    assert pages_a != [c.page(i) for i in range(300)]
    assert all(len(p) == PAGE_SIZE for p in pages_a)


def test_synthetic_mix_shares() -> None:
    src = SyntheticSource(0)
    n = 20000
    kinds = Counter(src.kind(i) for i in range(n))
    assert 0.08 < kinds["zero"] / n < 0.12
    assert 0.003 < kinds["same"] / n < 0.02
    assert 0.035 < kinds["random"] / n < 0.065
    assert kinds["heap"] > kinds["text"] > 0 and kinds["binary"] > 0
    # the kind decides the content: zero and same-filled pages are same-filled
    for i in range(2000):
        page = src.page(i)
        if src.kind(i) == "zero":
            assert page == bytes(PAGE_SIZE)
        elif src.kind(i) == "same":
            assert is_same_filled(page) and page != bytes(PAGE_SIZE)
        else:
            assert not is_same_filled(page)


def test_synthetic_pages_are_distinct_and_compressible() -> None:
    import zlib

    src = SyntheticSource(1)
    by_kind: dict[str, list[bytes]] = {}
    for i in range(3000):
        by_kind.setdefault(src.kind(i), []).append(src.page(i))
    for kind in ("heap", "text", "binary", "random"):
        pages = by_kind[kind]
        assert len(set(pages)) == len(pages), kind  # stamped: no exact duplicates
        ratio = len(pages) * PAGE_SIZE / sum(len(zlib.compress(p)) for p in pages)
        if kind == "random":
            assert ratio < 1.01
        else:
            assert ratio > 1.5, (kind, ratio)
    assert b"the " in b"".join(by_kind["text"][:5])


def test_synthetic_is_fast() -> None:
    t0 = time.perf_counter()
    src = SyntheticSource(3)
    for i in range(20000):
        src.page(i)
    assert time.perf_counter() - t0 < 2.0  # thousands of pages a second, with margin


def test_synthetic_custom_mix_and_errors() -> None:
    src = SyntheticSource(0, mix={"random": 1.0})
    assert {src.kind(i) for i in range(100)} == {"random"}
    with pytest.raises(WorkloadError, match="unknown page kinds"):
        SyntheticSource(0, mix={"bogus": 1.0})
    with pytest.raises(WorkloadError):
        SyntheticSource(0, mix={"zero": 0.0})


# -- files ----------------------------------------------------------------------------------


def test_files_are_cut_into_padded_pages(tmp_path: Path) -> None:
    f = tmp_path / "a.bin"
    data = os.urandom(PAGE_SIZE * 2 + 100)
    f.write_bytes(data)
    src = FileSource([f])
    assert src.nr_base == 3
    assert src.page(0) == data[:PAGE_SIZE]
    assert src.page(2) == data[2 * PAGE_SIZE :] + bytes(PAGE_SIZE - 100)
    # a content id past the base pages is a stamped variant of a base page
    v = src.page(3)
    assert len(v) == PAGE_SIZE and v != src.page(0)
    assert sum(x != y for x, y in zip(v, src.page(0), strict=True)) <= 16


def test_files_walk_directories_and_cap(tmp_path: Path) -> None:
    for name in ("b", "a"):
        (tmp_path / name).write_bytes(name.encode() * PAGE_SIZE * 3)
    src = FileSource([tmp_path])
    assert src.nr_base == 6 and src.page(0)[:1] == b"a"
    assert FileSource([tmp_path], max_pages=4).nr_base == 4


def test_files_errors(tmp_path: Path) -> None:
    with pytest.raises(WorkloadError, match="No such file"):
        FileSource([tmp_path / "missing"])
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with pytest.raises(WorkloadError, match="no data"):
        FileSource([empty])


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read a mode-000 file")
def test_files_unreadable(tmp_path: Path) -> None:
    f = tmp_path / "secret"
    f.write_bytes(b"x" * 10)
    f.chmod(0)
    with pytest.raises(WorkloadError, match="secret: Permission denied"):
        FileSource([f])


def test_files_unreadable_simulated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    f = tmp_path / "secret"
    f.write_bytes(b"x" * 10)
    real_open = builtins.open

    def deny(path: object, *args: object, **kw: object) -> object:
        if str(path) == str(f):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kw)  # type: ignore[call-overload]

    monkeypatch.setattr(builtins, "open", deny)
    with pytest.raises(WorkloadError, match="secret: Permission denied"):
        FileSource([f])


# -- a live process -------------------------------------------------------------------------

PATTERN = b"zswap-pid-test-pattern!"
CHILD = (
    "import sys, time\n"
    f"buf = bytearray({PATTERN!r} * ((4 << 20) // {len(PATTERN)}))\n"
    "print('ready', flush=True)\n"
    "time.sleep(60)\n"
)


@pytest.fixture
def child_pid() -> object:
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc")
def test_process_pages_include_the_childs_data(child_pid: int) -> None:
    src = ProcessSource(child_pid)
    assert src.nr_base > 1000  # 4 MiB of pattern alone is 1024 pages
    hits = sum(1 for i in range(src.nr_base) if PATTERN * 8 in src.base(i))
    assert hits >= 1000
    assert "present pages" in src.describe()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc")
def test_process_max_pages(child_pid: int) -> None:
    assert ProcessSource(child_pid, max_pages=10).nr_base == 10


def test_process_nonexistent_pid() -> None:
    pid = 2**22 + 12345  # above pid_max's largest value
    with pytest.raises(WorkloadError, match=f"pid {pid}: no such process"):
        ProcessSource(pid)
    with pytest.raises(WorkloadError, match="not a valid process id"):
        ProcessSource(0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc")
def test_process_permission_denied(monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = os.open

    def deny(path: str, *args: int, **kw: int) -> int:
        if str(path).endswith("/mem"):
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, *args, **kw)

    monkeypatch.setattr(os, "open", deny)
    with pytest.raises(WorkloadError, match="permission denied") as info:
        ProcessSource(os.getpid())
    assert "\n" not in str(info.value)


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/proc/1/mem"), reason="needs root")
def test_process_as_root_reads_pid_1_or_says_why() -> None:
    try:
        src = ProcessSource(1, max_pages=4)
    except WorkloadError as exc:  # e.g. a container without CAP_SYS_PTRACE
        assert "pid 1" in str(exc)
    else:
        assert src.nr_base >= 1


# -- zipf -----------------------------------------------------------------------------------


def test_zipf_deterministic_and_skewed() -> None:
    a = list(ZipfTrace(1000, alpha=0.9, seed=5).draw(20000))
    b = list(ZipfTrace(1000, alpha=0.9, seed=5).draw(20000))
    assert a == b
    assert a != list(ZipfTrace(1000, alpha=0.9, seed=6).draw(20000))
    assert all(0 <= x < 1000 for x in a)
    t = ZipfTrace(1000, alpha=0.9, seed=5)
    counts = Counter(a)
    hottest = t.id_of_rank(0)
    assert counts.most_common(1)[0][0] == hottest
    expected = t.rank_probability(0) * len(a)
    assert abs(counts[hottest] - expected) < 5 * expected**0.5
    # uniform when alpha = 0
    flat = Counter(ZipfTrace(10, alpha=0.0, seed=1).draw(10000))
    assert max(flat.values()) < 1.2 * min(flat.values())


def test_zipf_continues_stream_and_validates() -> None:
    t = ZipfTrace(50, seed=1)
    first = list(t.draw(10))
    second = list(t.draw(10))
    assert first + second == list(ZipfTrace(50, seed=1).draw(20))
    with pytest.raises(ValueError):
        ZipfTrace(0)
    with pytest.raises(ValueError):
        ZipfTrace(10, alpha=-1)
