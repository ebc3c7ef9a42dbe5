"""zswap writeback into the swap file: pool limit, hysteresis, LRU order, I/O errors, races.

After the selftests' test_zswap_writeback_enabled (zswpwb > 0 once the zswap limit is
lowered, pages read back intact) and the kernel's 6.5 "shrink until can accept" fix.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import zswap_core
from zswap_core import Zswap
from zswap_core.swap import Swap, SwapEntry

PS = 4096
#: ram of 400 pages at max_pool_percent=10: a 40-page pool, accepting again at 36.
RAM = 400 * PS


def compressible(i: int, seed: int = 0) -> bytes:
    """~1.1 KiB after lz4, so two share a zbud page; unique per (seed, i)."""
    rng = random.Random(seed * 1_000_003 + i)
    return rng.randbytes(1000) + i.to_bytes(4, "little") + bytes(PS - 1004)


def file_slot(path: Path, entry: SwapEntry) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(entry.offset * PS)
        return fh.read(PS)


def wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.005)
    return cond()


def settle(read: Callable[[], int], quiet: float = 0.25, timeout: float = 5.0) -> int:
    """The value once it has not changed for ``quiet`` seconds."""
    end = time.monotonic() + timeout
    last = read()
    since = time.monotonic()
    while time.monotonic() < end:
        time.sleep(0.02)
        now = read()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return last


@pytest.fixture
def make_zswap() -> Iterator[Callable[..., Zswap]]:
    if not zswap_core.zpool_has_pool("zbud"):
        pytest.skip("the zbud plugin is not installed")
    made: list[Zswap] = []

    def _make(**kw: object) -> Zswap:
        kw.setdefault("zpool", "zbud")
        kw.setdefault("compressor", "lz4")
        kw.setdefault("ram_bytes", RAM)
        kw.setdefault("max_pool_percent", 10)
        z = Zswap(**kw)  # type: ignore[arg-type]
        made.append(z)
        return z

    yield _make
    for z in made:
        z.close()


def test_writeback_when_the_limit_is_hit(tmp_path: Path, make_zswap: Callable[..., Zswap]) -> None:
    z = make_zswap()
    assert (z.pool_limit_pages, z.accept_threshold_pages) == (40, 36)
    with Swap(z) as s:
        s.swapon(tmp_path / "swap", 512)
        pages = [compressible(i) for i in range(300)]
        entries = [s.swap_out(p) for p in pages]
        assert wait_for(lambda: z.pages.nr_pages <= z.pool_limit_pages)
        settle(lambda: z.stats["written_back_pages"], quiet=0.15)  # worker idle
        vm, st = s.vmstat, z.stats
        assert st["pool_limit_hit"] > 0
        assert vm["zswpwb"] > 0 and vm["zswpwb"] == st["written_back_pages"]
        assert vm["zswpout"] > vm["zswpwb"]
        # every page is either in zswap or (written back or rejected) in its slot
        in_zswap = [z.load(e.type, e.offset) is not None for e in entries]
        assert sum(in_zswap) == st["stored_pages"]
        for e, p, held in zip(entries, pages, in_zswap, strict=True):
            if not held:
                assert file_slot(tmp_path / "swap", e) == p
        pswpin = s.vmstat["pswpin"]
        assert [s.swap_in(e) for e in entries] == pages
        assert s.vmstat["pswpin"] - pswpin == in_zswap.count(False) > 0


def test_hysteresis_rejects_until_under_accept_threshold(
    make_zswap: Callable[..., Zswap],
) -> None:
    """No writeback handler: only invalidation shrinks the pool. A same-filled probe
    page (it needs no pool memory) shows whether stores are accepted."""
    z = make_zswap()
    z.init(0)
    off = 1
    while z.store(0, off, compressible(off)):
        off += 1
    assert z.stats["pool_limit_hit"] == 1
    assert z.pages.nr_pages >= z.pool_limit_pages
    probe = 100_000
    stored = list(range(1, off))
    seen_between = False
    for o in stored:
        z.invalidate_page(0, o)
        cur = z.pages.nr_pages
        accepted = z.store(0, probe, b"\x01" * PS)
        if cur > z.accept_threshold_pages:
            assert not accepted, f"accepted at {cur} pages, above the threshold"
            if cur < z.pool_limit_pages:
                seen_between = True
        else:
            assert accepted, f"rejected at {cur} pages, at or below the threshold"
            break
    assert seen_between
    z.invalidate_page(0, probe)


def test_worker_brings_pool_under_accept_threshold(
    tmp_path: Path, make_zswap: Callable[..., Zswap]
) -> None:
    z = make_zswap()
    with Swap(z) as s:
        s.swapon(tmp_path / "swap", 512)
        entries: list[SwapEntry] = []
        i = 0
        while z.stats["pool_limit_hit"] == 0:
            entries.append(s.swap_out(compressible(i)))
            i += 1
        # one rejected store while full wakes the worker
        entries.append(s.swap_out(compressible(i)))
        assert wait_for(lambda: z.pages.nr_pages <= z.accept_threshold_pages)
        assert s.vmstat["zswpwb"] > 0
        before = s.vmstat["zswpout"]
        s.swap_out(compressible(10_000))  # accepted again: not stuck rejecting (5.6 bug)
        assert s.vmstat["zswpout"] == before + 1


def test_writeback_n_writes_exactly_the_oldest_n(
    tmp_path: Path, make_zswap: Callable[..., Zswap]
) -> None:
    z = make_zswap(max_pool_percent=100)
    with Swap(z) as s:
        s.swapon(tmp_path / "swap", 64)
        pages = [compressible(i) for i in range(20)]
        entries = [s.swap_out(p) for p in pages]
        assert z.writeback(5) == 5
        assert s.vmstat["zswpwb"] == 5 == z.stats["written_back_pages"]
        assert z.stats["stored_pages"] == 15
        for e, p in zip(entries[:5], pages[:5], strict=True):
            assert file_slot(tmp_path / "swap", e) == p
        gone = [e for e in entries if z.load(e.type, e.offset) is None]
        assert gone == entries[:5]
        assert z.writeback(0) == 0


def test_lru_order_touched_pages_are_written_back_last(
    tmp_path: Path, make_zswap: Callable[..., Zswap]
) -> None:
    z = make_zswap(max_pool_percent=100)
    with Swap(z) as s:
        s.swapon(tmp_path / "swap", 64)
        pages = [compressible(i) for i in range(20)]
        entries = [s.swap_out(p) for p in pages]
        for k in (0, 2, 4, 5):
            assert s.swap_in(entries[k]) == pages[k]  # touch: now the youngest
        assert z.writeback(5) == 5
        expected = [entries[k] for k in (1, 3, 6, 7, 8)]
        # a load touches: check in the current LRU order (oldest first) to keep it
        lru = [*range(9, 20), 0, 2, 4, 5, 1, 3, 6, 7, 8]
        for k in lru:
            e = entries[k]
            assert (e in expected) == (z.load(e.type, e.offset) is None), e
        for k in (1, 3, 6, 7, 8):
            assert file_slot(tmp_path / "swap", entries[k]) == pages[k]
        # the touched ones go after every untouched one
        assert z.writeback(11) == 11
        remaining = {e for e in entries if z.load(e.type, e.offset) is not None}
        assert remaining == {entries[k] for k in (0, 2, 4, 5)}
        assert [s.swap_in(e) for e in entries] == pages


def test_same_filled_pages_are_not_written_back(
    tmp_path: Path, make_zswap: Callable[..., Zswap]
) -> None:
    z = make_zswap(max_pool_percent=100)
    with Swap(z) as s:
        s.swapon(tmp_path / "swap", 64)
        entries = [s.swap_out(bytes([i]) * PS) for i in range(10)]
        assert z.writeback(10) == 0
        assert all(s.swap_in(e) == bytes([i]) * PS for i, e in enumerate(entries))


def test_writeback_without_a_swap_layer_does_nothing(make_zswap: Callable[..., Zswap]) -> None:
    z = make_zswap(max_pool_percent=100)
    z.init(0)
    assert z.store(0, 1, compressible(1))
    assert z.writeback(5) == 0
    assert z.load(0, 1) == compressible(1)


def test_write_errors_during_writeback(tmp_path: Path, make_zswap: Callable[..., Zswap]) -> None:
    z = make_zswap(max_pool_percent=100)
    with Swap(z) as s:
        t = s.swapon(tmp_path / "swap", 64)
        pages = [compressible(i) for i in range(20)]
        entries = [s.swap_out(p) for p in pages]
        s.inject_io_errors(t, writes=3)
        assert z.writeback(1) == 1  # three failures (rotated), then a success
        st = z.stats
        assert st["reject_reclaim_fail"] == 3 and st["written_back_pages"] == 1
        assert s.vmstat["zswpwb"] == 1
        # the failed entries stay in zswap and still load correctly
        gone = [k for k, e in enumerate(entries) if z.load(e.type, e.offset) is None]
        assert gone == [3]
        assert [s.swap_in(e) for e in entries] == pages


def test_writeback_gives_up_after_16_consecutive_failures(
    tmp_path: Path, make_zswap: Callable[..., Zswap]
) -> None:
    z = make_zswap(max_pool_percent=100)
    with Swap(z) as s:
        t = s.swapon(tmp_path / "swap", 64)
        pages = [compressible(i) for i in range(5)]  # fewer entries than the cap
        entries = [s.swap_out(p) for p in pages]
        s.inject_io_errors(t, writes=1000)
        assert z.writeback(3) == 0
        assert z.stats["reject_reclaim_fail"] == 16
        assert s.vmstat["zswpwb"] == 0
        assert [s.swap_in(e) for e in entries] == pages
        s.inject_io_errors(t, writes=0)
        assert z.writeback(3) == 3


def test_worker_gives_up_on_failing_writes_and_recovers(
    tmp_path: Path, make_zswap: Callable[..., Zswap]
) -> None:
    z = make_zswap()
    with Swap(z) as s:
        t = s.swapon(tmp_path / "swap", 512)
        s.inject_io_errors(t, writes=10**9)
        entries: list[SwapEntry] = []
        pages: list[bytes] = []
        i = 0
        while True:
            # the store that finds the pool full is rejected, wakes the worker, and
            # the page goes to the file, whose write fails too
            try:
                entries.append(s.swap_out(compressible(i)))
            except OSError:
                break
            pages.append(compressible(i))
            i += 1
        assert z.stats["pool_limit_hit"] == 1
        fails = settle(lambda: z.stats["reject_reclaim_fail"])
        assert fails > 0 and fails % 16 == 0, fails  # each run stops after 16 in a row
        time.sleep(0.3)
        assert z.stats["reject_reclaim_fail"] == fails  # and then it stops
        assert z.stats["written_back_pages"] == 0
        assert [s.swap_in(e) for e in entries] == pages
        # writes work again: the next rejected store wakes it and it catches up
        s.inject_io_errors(t, writes=0)
        entries.append(s.swap_out(compressible(99_999)))
        pages.append(compressible(99_999))
        assert wait_for(lambda: z.pages.nr_pages <= z.accept_threshold_pages)
        assert s.vmstat["zswpwb"] > 0
        assert [s.swap_in(e) for e in entries] == pages


def test_loads_race_writeback(tmp_path: Path, make_zswap: Callable[..., Zswap]) -> None:
    z = make_zswap(max_pool_percent=100)
    wrong: list[SwapEntry] = []
    with Swap(z) as s:
        s.swapon(tmp_path / "swap", 512)
        pages = [compressible(i, seed=7) for i in range(400)]
        entries = [s.swap_out(p) for p in pages]
        stop = threading.Event()

        def reader(seed: int) -> None:
            rng = random.Random(seed)
            while not stop.is_set():
                k = rng.randrange(len(entries))
                if s.swap_in(entries[k]) != pages[k]:
                    wrong.append(entries[k])

        def writer() -> None:
            try:
                while z.stats["stored_pages"] and not stop.is_set():
                    z.writeback(3)
            finally:
                stop.set()

        threads = [threading.Thread(target=reader, args=(n,)) for n in range(3)]
        threads.append(threading.Thread(target=writer))
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=20)
        stop.set()
        assert not any(th.is_alive() for th in threads)
        assert wrong == []
        assert z.stats["stored_pages"] == 0
        assert s.vmstat["zswpwb"] == 400 and s.vmstat["zswpin"] > 0 and s.vmstat["pswpin"] > 0
        assert [s.swap_in(e) for e in entries] == pages


def test_swap_free_races_writeback(tmp_path: Path, make_zswap: Callable[..., Zswap]) -> None:
    """A freed and reused slot is never overwritten by a stale writeback."""
    z = make_zswap(max_pool_percent=100)
    wrong: list[str] = []
    with Swap(z) as s:
        s.swapon(tmp_path / "swap", 300)
        stop = threading.Event()

        def churn(tid: int) -> None:
            rng = random.Random(tid)
            held: list[tuple[SwapEntry, bytes]] = []
            for n in range(400):
                p = compressible(n, seed=100 + tid)
                held.append((s.swap_out(p), p))
                if len(held) > 40 or rng.random() < 0.3:
                    e, q = held.pop(rng.randrange(len(held)))
                    if s.swap_in(e) != q:
                        wrong.append(str(e))
                    s.swap_free(e)
            for e, q in held:
                if s.swap_in(e) != q:
                    wrong.append(str(e))
                s.swap_free(e)

        def writer() -> None:
            while not stop.is_set():
                z.writeback(2)

        w = threading.Thread(target=writer)
        w.start()
        threads = [threading.Thread(target=churn, args=(n,)) for n in range(3)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=20)
        stop.set()
        w.join(timeout=5)
        assert wrong == []
        assert s.vmstat["zswpwb"] > 0
        assert s.swaps[0].used == 0 and z.stats["stored_pages"] == 0
