"""zswap writeback into the swap file: pool limit, hysteresis, LRU order, I/O errors, races.

After the selftests' test_zswap_writeback_enabled (zswpwb > 0 once the zswap limit is
lowered, pages read back intact) and the kernel's 6.5 "shrink until can accept" fix.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import CodeType

import pytest

import zswap_core
import zswap_core._zswap
import zswap_core.swap
from zswap_core import Zswap
from zswap_core.swap import Swap, SwapEntry
from zswap_core.testing._interleave import ContentionLog, Walk, code_filter, watch_locks

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


def wait_for(cond: Callable[[], bool], timeout: float = 60.0) -> bool:
    """Poll ``cond`` until true; the timeout only ends a hang (it is no verdict)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.002)
    return cond()


@pytest.fixture
def worker_idle() -> Iterator[Callable[[Zswap], bool]]:
    """``worker_idle(z)``: zswap's pool-limit worker waits for work that nobody has asked
    for (it is blocked on its wake event, which is not set), so no counter can change.

    Known from the locks, not from a quiet period: the test runs inside
    ``watch_locks()``, so the Zswap's event is made of locks the kit sees.
    """
    with watch_locks(), ContentionLog() as log:

        def idle(z: Zswap) -> bool:
            if z._worker_wake.is_set():  # read first: a set() would show here
                return False
            worker = z._worker
            return worker is None or not worker.is_alive() or log.blocked(worker)

        yield idle


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


def test_writeback_when_the_limit_is_hit(
    tmp_path: Path, make_zswap: Callable[..., Zswap], worker_idle: Callable[[Zswap], bool]
) -> None:
    z = make_zswap()
    assert (z.pool_limit_pages, z.accept_threshold_pages) == (40, 36)
    with Swap(z) as s:
        s.swapon(tmp_path / "swap", 512)
        pages = [compressible(i) for i in range(300)]
        entries = [s.swap_out(p) for p in pages]
        assert wait_for(lambda: z.pages.nr_pages <= z.pool_limit_pages)
        assert wait_for(lambda: worker_idle(z)), "the pool-limit worker never went idle"
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
    tmp_path: Path, make_zswap: Callable[..., Zswap], worker_idle: Callable[[Zswap], bool]
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
        assert wait_for(lambda: worker_idle(z)), "the pool-limit worker never went idle"
        assert z.pages.nr_pages <= z.accept_threshold_pages
        assert s.vmstat["zswpwb"] > 0
        before = s.vmstat["zswpout"]
        s.swap_out(compressible(10_000))  # accepted again: not stuck rejecting (5.6 bug)
        assert s.vmstat["zswpout"] == before + 1


def test_without_a_worker_shrink_does_its_work_in_the_callers_thread(
    tmp_path: Path, make_zswap: Callable[..., Zswap]
) -> None:
    """shrink_worker=False: no thread ever starts; a full pool waits for shrink()."""
    z = make_zswap(shrink_worker=False)
    with Swap(z) as s:
        s.swapon(tmp_path / "swap", 512)
        assert z.shrink() == 0  # nothing asked yet
        pages: list[bytes] = []
        entries: list[SwapEntry] = []
        while z.stats["pool_limit_hit"] == 0:
            pages.append(compressible(len(pages)))
            entries.append(s.swap_out(pages[-1]))
        for _ in range(3):  # rejected while full: nothing shrinks by itself
            pages.append(compressible(len(pages)))
            entries.append(s.swap_out(pages[-1]))
        assert z._worker is None
        assert z.pages.nr_pages > z.accept_threshold_pages
        assert s.vmstat["zswpwb"] == 0
        written = z.shrink()
        assert written > 0 and written == s.vmstat["zswpwb"] == z.stats["written_back_pages"]
        assert z.pages.nr_pages <= z.accept_threshold_pages
        assert z.shrink() == 0  # done: asked once, worked once
        assert z._worker is None
        assert [s.swap_in(e) for e in entries] == pages


def test_shrink_worker_must_be_a_bool() -> None:
    with pytest.raises(ValueError, match="shrink_worker must be a bool"):
        Zswap(shrink_worker="no")  # type: ignore[arg-type]


def test_entry_length_is_what_the_pool_holds(make_zswap: Callable[..., Zswap]) -> None:
    import lz4.block

    z = make_zswap(max_pool_percent=100)
    z.init(0)
    page = compressible(1)
    assert z.store(0, 1, page) and z.store(0, 2, bytes(PS))
    assert z.entry_length(0, 1) == len(lz4.block.compress(page, store_size=False))
    assert z.entry_length(0, 2) == 0  # same-filled: one word in the entry
    assert z.entry_length(0, 3) is None
    z.invalidate_page(0, 1)
    assert z.entry_length(0, 1) is None


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
    tmp_path: Path, make_zswap: Callable[..., Zswap], worker_idle: Callable[[Zswap], bool]
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
        assert wait_for(lambda: worker_idle(z)), "the pool-limit worker never went idle"
        fails = z.stats["reject_reclaim_fail"]
        assert fails > 0 and fails % 16 == 0, fails  # each run stops after 16 in a row
        time.sleep(0.3)  # through a timeout of its wait: nothing woke it, it does nothing
        assert z.stats["reject_reclaim_fail"] == fails  # and then it stops
        assert z.stats["written_back_pages"] == 0
        assert [s.swap_in(e) for e in entries] == pages
        # writes work again: the next rejected store wakes it and it catches up
        s.inject_io_errors(t, writes=0)
        entries.append(s.swap_out(compressible(99_999)))
        pages.append(compressible(99_999))
        assert wait_for(lambda: worker_idle(z)), "the pool-limit worker never went idle"
        assert z.pages.nr_pages <= z.accept_threshold_pages
        assert s.vmstat["zswpwb"] > 0
        assert [s.swap_in(e) for e in entries] == pages


def swap_code() -> Callable[[CodeType], bool]:
    """zswap's and the swap layer's own code: where the forced interleavings stop."""
    return code_filter([zswap_core._zswap.__file__, zswap_core.swap.__file__])


def incompressible(i: int) -> bytes:
    """A page zswap refuses (it does not shrink): it goes to the swap file."""
    return random.Random(-1 - i).randbytes(PS)


@pytest.fixture
def watched() -> Iterator[None]:
    """The test runs inside ``watch_locks()``: every lock made meanwhile, the kit sees."""
    with watch_locks():
        yield


def swap_walk(make_zswap: Callable[..., Zswap], path: Path, slots: int) -> tuple[Walk, Swap, Zswap]:
    """Call inside ``watch_locks()``: zswap's and the swap layer's locks, the kit sees."""
    z = make_zswap(max_pool_percent=100)
    s = Swap(z)
    s.swapon(path, slots)
    return Walk(swap_code()), s, z


def writeback_one(z: Zswap) -> None:
    z.writeback(1)  # none left (a free got there first) is fine too


def test_loads_race_writeback(
    tmp_path: Path, make_zswap: Callable[..., Zswap], watched: None
) -> None:
    """A load of the page being written back, at every line of the writeback; and a
    writeback of the page being loaded, at every line of the load. Each load returns
    the page (from zswap before the writeback, from the file after it)."""
    w, s, z = swap_walk(make_zswap, tmp_path / "a", 300)

    def load_during_writeback(j: int) -> None:
        page = compressible(j, seed=7)
        with w.quiet():
            z.writeback(10**6)  # the page below is the only one in zswap: the oldest
            e = s.swap_out(page)
            assert z.stats["stored_pages"] == 1

        def load() -> None:
            assert s.swap_in(e) == page, f"a load at line {j} of the writeback went wrong"

        w.at(j, load)
        assert z.writeback(1) == 1
        w.done()
        assert s.swap_in(e) == page

    w.run(load_during_writeback, 280)
    with s:
        assert s.vmstat["zswpwb"] == 280 and s.vmstat["zswpin"] > 0 and s.vmstat["pswpin"] > 0

    w, s, z = swap_walk(make_zswap, tmp_path / "b", 100)

    def writeback_during_load(j: int) -> None:
        page = compressible(j, seed=8)
        with w.quiet():
            z.writeback(10**6)
            e = s.swap_out(page)
            assert z.stats["stored_pages"] == 1
        w.at(j, lambda: writeback_one(z))
        got = s.swap_in(e)
        w.done()
        assert got == page, f"a writeback at line {j} of the load went wrong"
        assert s.swap_in(e) == page

    w.run(writeback_during_load, 90)
    with s:
        assert s.vmstat["zswpwb"] > 0 and s.vmstat["zswpin"] > 0 and s.vmstat["pswpin"] > 0


def test_swap_free_races_writeback(
    tmp_path: Path, make_zswap: Callable[..., Zswap], watched: None
) -> None:
    """A freed and reused slot is never overwritten by a stale writeback.

    The page being written back is freed, and its slot given to a page that goes to
    the file, at every line of the writeback; and the writeback runs at every line of
    the free and of the store that reuses the slot. The new page must read back."""
    w, s, z = swap_walk(make_zswap, tmp_path / "a", 300)
    reused: list[bool] = []

    def free_during_writeback(j: int) -> None:
        with w.quiet():
            z.writeback(10**6)
            e = s.swap_out(compressible(j, seed=9))
            assert z.stats["stored_pages"] == 1
        new: list[SwapEntry] = []

        def free_and_reuse() -> None:
            s.swap_free(e)
            new.append(s.swap_out(incompressible(j)))  # to the file, in e's slot
            reused.append(new[0] == e)

        w.at(j, free_and_reuse)
        z.writeback(1)
        w.done()
        if new:
            assert s.swap_in(new[0]) == incompressible(j), (
                f"a page stored in a freed slot at line {j} of the writeback was overwritten"
            )
            s.swap_free(new[0])
        else:
            s.swap_free(e)

    w.run(free_during_writeback, 280)
    assert all(reused), f"{reused.count(False)} pages did not reuse the freed slot"
    with s:
        assert s.vmstat["zswpwb"] > 0 and s.swaps[0].used == 0 and z.stats["stored_pages"] == 0

    w, s, z = swap_walk(make_zswap, tmp_path / "b", 300)

    def writeback_during_free(j: int) -> None:
        with w.quiet():
            z.writeback(10**6)
            e = s.swap_out(compressible(j, seed=10))
            assert z.stats["stored_pages"] == 1
        w.at(j, lambda: writeback_one(z))
        s.swap_free(e)
        new = s.swap_out(incompressible(j))
        w.done()
        assert new == e, "the freed slot was not reused"
        assert s.swap_in(new) == incompressible(j), (
            f"a writeback at line {j} of a free and a store overwrote the new page"
        )
        s.swap_free(new)

    w.run(writeback_during_free, 220)
    with s:
        assert s.vmstat["zswpwb"] > 0 and s.swaps[0].used == 0 and z.stats["stored_pages"] == 0
