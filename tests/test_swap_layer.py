"""The swap layer: slots, priorities, zswap in front of the file, errors, counters.

Ported in spirit from tools/testing/selftests/cgroup/test_zswap.c (usage, swapin
without zswap, zswapin, incompressible pages), with a swap file in tmp_path.
"""

from __future__ import annotations

import errno
import os
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import zswap_core
import zswap_core._swapfile as swapfile
import zswap_core._zswap
import zswap_core.swap
from zswap_core import Zswap
from zswap_core._swapfile import read_header
from zswap_core.swap import Swap, SwapEntry
from zswap_core.testing._common import run_threads
from zswap_core.testing._interleave import Walk, code_filter, watch_locks

PS = 4096


def compressible(i: int, seed: int = 0) -> bytes:
    """A page that lz4 compresses to ~1.1 KiB (two fit a zbud page); unique per i."""
    rng = random.Random(seed * 1_000_003 + i)
    return rng.randbytes(1000) + i.to_bytes(4, "little") + bytes(PS - 1004)


def incompressible(i: int) -> bytes:
    return random.Random(-i - 1).randbytes(PS)


@pytest.fixture
def make_zswap() -> Iterator[type[Zswap]]:
    if not zswap_core.zpool_has_pool("zbud"):
        pytest.skip("the zbud plugin is not installed")
    made: list[Zswap] = []

    def _make(**kw: object) -> Zswap:
        kw.setdefault("zpool", "zbud")
        kw.setdefault("compressor", "lz4")
        kw.setdefault("ram_bytes", 4096 * PS)
        z = Zswap(**kw)  # type: ignore[arg-type]
        made.append(z)
        return z

    yield _make  # type: ignore[misc]
    for z in made:
        z.close()


def file_slot(path: Path, entry: SwapEntry) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(entry.offset * PS)
        return fh.read(PS)


# -- without zswap ------------------------------------------------------------------------


def test_plain_swap_round_trip(tmp_path: Path) -> None:
    with Swap() as s:
        t = s.swapon(tmp_path / "swap", 64, label="plain")
        assert t == 0
        pages = [compressible(i) for i in range(40)]
        entries = [s.swap_out(p) for p in pages]
        assert len({e.offset for e in entries}) == 40
        assert all(1 <= e.offset <= 63 for e in entries)
        for e, p in zip(entries, pages, strict=True):
            assert file_slot(tmp_path / "swap", e) == p
            assert s.swap_in(e) == p
        assert s.vmstat == {"pswpin": 40, "pswpout": 40, "zswpin": 0, "zswpout": 0, "zswpwb": 0}
        assert s.swaps[0].used == 40 and s.swaps[0].size == 63
        for e in entries:
            s.swap_free(e)
        assert s.swaps[0].used == 0
    assert read_header(tmp_path / "swap").label == "plain"


def test_freed_slots_are_reused_and_full_file_is_enospc(tmp_path: Path) -> None:
    with Swap() as s:
        s.swapon(tmp_path / "swap", 10)  # 9 usable slots
        entries = [s.swap_out(bytes([i]) * PS) for i in range(9)]
        with pytest.raises(OSError) as ei:
            s.swap_out(b"x" * PS)
        assert ei.value.errno == errno.ENOSPC
        assert s.vmstat["pswpout"] == 9
        s.swap_free(entries[4])
        e = s.swap_out(b"y" * PS)
        assert e == entries[4]
        assert s.swap_in(e) == b"y" * PS


# -- zswap in front (selftests 1-3, 8) ------------------------------------------------------


def test_zswap_usage_pages_go_to_zswap(tmp_path: Path, make_zswap: type[Zswap]) -> None:
    z = make_zswap()
    with Swap(z) as s:
        s.swapon(tmp_path / "swap", 256)
        pages = [compressible(i) for i in range(100)]
        entries = [s.swap_out(p) for p in pages]
        vm = s.vmstat
        assert vm["zswpout"] == 100 and vm["pswpout"] == 0
        assert z.stats["stored_pages"] == 100
        assert file_slot(tmp_path / "swap", entries[0]) == bytes(PS)  # never written


def test_swapin_nozswap(tmp_path: Path, make_zswap: type[Zswap]) -> None:
    z = make_zswap(max_pool_percent=0)
    with Swap(z) as s:
        s.swapon(tmp_path / "swap", 256)
        pages = [compressible(i) for i in range(100)]
        entries = [s.swap_out(p) for p in pages]
        assert [s.swap_in(e) for e in entries] == pages
        vm = s.vmstat
        assert vm["zswpout"] == 0 and vm["zswpin"] == 0
        assert vm["pswpout"] == 100 and vm["pswpin"] == 100
        assert z.stats["stored_pages"] == 0


def test_zswapin_loads_served_from_zswap(tmp_path: Path, make_zswap: type[Zswap]) -> None:
    z = make_zswap()
    with Swap(z) as s:
        s.swapon(tmp_path / "swap", 256)
        pages = [compressible(i) for i in range(120)]
        entries = [s.swap_out(p) for p in pages]
        for _ in range(2):
            assert [s.swap_in(e) for e in entries] == pages
        assert s.vmstat["zswpin"] == 240 and s.vmstat["pswpin"] == 0


def test_same_filled_pages_stored_without_pool_memory(
    tmp_path: Path, make_zswap: type[Zswap]
) -> None:
    z = make_zswap()
    with Swap(z) as s:
        s.swapon(tmp_path / "swap", 64)
        entries = [s.swap_out(bytes([i]) * PS) for i in range(20)]
        assert z.stats["same_filled_pages"] == 20 and z.stats["pool_total_size"] == 0
        assert all(s.swap_in(e) == bytes([i]) * PS for i, e in enumerate(entries))
        assert s.vmstat["zswpout"] == 20 and s.vmstat["pswpout"] == 0


def test_incompressible_pages_go_to_the_file(tmp_path: Path, make_zswap: type[Zswap]) -> None:
    z = make_zswap()
    with Swap(z) as s:
        s.swapon(tmp_path / "swap", 64)
        pages = [incompressible(i) for i in range(10)]
        entries = [s.swap_out(p) for p in pages]
        assert z.stats["reject_compress_poor"] == 10
        assert s.vmstat["pswpout"] == 10 and s.vmstat["zswpout"] == 0
        for e, p in zip(entries, pages, strict=True):
            assert file_slot(tmp_path / "swap", e) == p
            assert s.swap_in(e) == p
        assert s.vmstat["pswpin"] == 10


def test_swap_free_drops_the_zswap_copy(tmp_path: Path, make_zswap: type[Zswap]) -> None:
    z = make_zswap()
    with Swap(z) as s:
        s.swapon(tmp_path / "swap", 64)
        entries = [s.swap_out(compressible(i)) for i in range(10)]
        assert z.stats["stored_pages"] == 10
        for e in entries:
            s.swap_free(e)
        assert z.stats["stored_pages"] == 0 and z.stats["pool_total_size"] == 0
        assert all(z.load(e.type, e.offset) is None for e in entries)


def test_exclusive_loads_keep_the_entry_valid(tmp_path: Path, make_zswap: type[Zswap]) -> None:
    z = make_zswap(exclusive_loads=True)
    with Swap(z) as s:
        s.swapon(tmp_path / "swap", 64)
        pages = [compressible(i) for i in range(20)]
        entries = [s.swap_out(p) for p in pages]
        for _ in range(3):
            assert [s.swap_in(e) for e in entries] == pages
        assert s.vmstat["zswpin"] == 60 and s.vmstat["pswpin"] == 0
        # when nothing can take it back, the page stays in memory for its slot
        z.params["max_pool_percent"] = 0
        s.inject_io_errors(0, writes=1)
        assert s.swap_in(entries[0]) == pages[0]
        assert z.load(0, entries[0].offset) is None
        assert s.swap_in(entries[0]) == pages[0]  # still valid
        assert s.swap_in(entries[1]) == pages[1]  # this one went to the file
        assert file_slot(tmp_path / "swap", entries[1]) == pages[1]


# -- bad requests change nothing ------------------------------------------------------------


def test_bad_entries_raise_and_change_nothing(tmp_path: Path) -> None:
    with Swap() as s:
        s.swapon(tmp_path / "swap", 16)
        e = s.swap_out(b"a" * PS)
        before = (s.vmstat, s.swaps)
        with pytest.raises(ValueError, match="not active"):
            s.swap_in(SwapEntry(1, e.offset))
        with pytest.raises(ValueError, match=r"0\.\.31"):
            s.swap_in(SwapEntry(32, 1))
        with pytest.raises(ValueError, match="out of range"):
            s.swap_in(SwapEntry(0, 16))
        with pytest.raises(ValueError, match="out of range"):
            s.swap_free(SwapEntry(0, 0))  # the header
        with pytest.raises(ValueError, match="not in use"):
            s.swap_in(SwapEntry(0, e.offset + 1))
        with pytest.raises(TypeError):
            s.swap_in("nonsense")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            s.swap_in((0, 1.0))  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="4096 bytes"):
            s.swap_out(b"short")
        with pytest.raises(TypeError):
            s.swap_out(12345)  # type: ignore[arg-type]
        assert (s.vmstat, s.swaps) == before
        s.swap_free(e)
        with pytest.raises(ValueError, match="double free"):
            s.swap_free(e)
        assert s.swaps[0].used == 0
        s.swapoff(0)
        with pytest.raises(ValueError, match="not active"):
            s.swap_in(e)
        with pytest.raises(ValueError, match="not active"):
            s.swap_free(e)
        with pytest.raises(ValueError, match="not active"):
            s.swapoff(0)


def test_swapoff_busy_unless_forced(tmp_path: Path, make_zswap: type[Zswap]) -> None:
    z = make_zswap()
    with Swap(z) as s:
        t = s.swapon(tmp_path / "swap", 32)
        e = s.swap_out(compressible(1))
        with pytest.raises(OSError) as ei:
            s.swapoff(t)
        assert ei.value.errno == errno.EBUSY
        assert s.swap_in(e) == compressible(1)  # still usable
        s.swapoff(t, force=True)
        assert s.swaps == []
        assert z.stats["stored_pages"] == 0
        with pytest.raises(ValueError):
            z.load(t, e.offset)  # the area is gone from zswap too
        # the type and the file can be used again
        assert s.swapon(tmp_path / "swap", 32) == t
        e2 = s.swap_out(compressible(2))
        assert s.swap_in(e2) == compressible(2)


def test_swapon_checks(tmp_path: Path, make_zswap: type[Zswap]) -> None:
    z = make_zswap()
    with Swap(z, close_zswap=False) as s:
        s.swapon(tmp_path / "a", 16)
        with pytest.raises(OSError) as ei:
            s.swapon(tmp_path / "a", 16)  # already in use
        assert ei.value.errno == errno.EBUSY
        with pytest.raises(ValueError, match="priority"):
            s.swapon(tmp_path / "b", 16, priority=40000)
        (tmp_path / "c").write_bytes(b"not swap" * 4096)
        with pytest.raises(ValueError, match="force=True"):
            s.swapon(tmp_path / "c", 16)
        assert s.swapon(tmp_path / "c", 16, force=True) == 1
        with pytest.raises(ValueError, match="another open Swap"):
            Swap(z)
    with Swap(z) as s2:  # free again once the first one is closed
        assert s2.swapon(tmp_path / "a", None) == 0  # reuse an existing file as it is
    assert z.pools == []  # this Swap owned it: closed with it


def test_a_swap_closes_the_zswap_it_owns(tmp_path: Path) -> None:
    """`with Swap(Zswap(...))` leaves no pool and no plugin reference behind."""
    from zswap_core import Registry

    reg = Registry()
    with Swap(Zswap(registry=reg, ram_bytes=1 << 30, zpool="zbud")) as s:
        s.swapon(tmp_path / "a", 16)
        s.swap_out(compressible(0))
        z = s.zswap
        assert z is not None and len(z.pools) == 1
    assert z.pools == [] and z.stats["pool_total_size"] == 0
    for kind, name in (("compressor", "lz4"), ("zpool", "zbud")):
        mod = reg.loaded(kind, name)  # type: ignore[arg-type]
        assert mod is not None and mod.use_count == 0, (kind, name)


def test_close_swaps_everything_off(tmp_path: Path, make_zswap: type[Zswap]) -> None:
    z = make_zswap()
    s = Swap(z)
    s.swapon(tmp_path / "a", 16)
    s.swapon(tmp_path / "b", 16)
    s.swap_out(compressible(0))
    s.close()
    s.close()
    assert s.swaps == []
    assert z.stats["stored_pages"] == 0
    with pytest.raises(ValueError, match="closed"):
        s.swapon(tmp_path / "c", 16)
    with pytest.raises(ValueError, match="closed"):
        s.swap_out(compressible(0))


# -- priorities -----------------------------------------------------------------------------


def test_higher_priority_first_then_lower(tmp_path: Path) -> None:
    with Swap() as s:
        lo = s.swapon(tmp_path / "lo", 20, priority=1)
        hi = s.swapon(tmp_path / "hi", 10, priority=5)
        entries = [s.swap_out(bytes([i]) * PS) for i in range(15)]
        assert [e.type for e in entries] == [hi] * 9 + [lo] * 6
        s.swap_free(entries[0])
        assert s.swap_out(b"z" * PS).type == hi  # a free slot in the higher one again


def test_equal_priorities_round_robin(tmp_path: Path) -> None:
    with Swap() as s:
        a = s.swapon(tmp_path / "a", 20, priority=3)
        b = s.swapon(tmp_path / "b", 20, priority=3)
        c = s.swapon(tmp_path / "c", 40, priority=-1)
        types = [s.swap_out(bytes([i]) * PS).type for i in range(40)]
        assert types[:6] == [a, b, a, b, a, b]
        assert types.count(a) == 19 and types.count(b) == 19 and types[38:] == [c, c]


# -- I/O errors -----------------------------------------------------------------------------


def test_write_error_in_swap_out_leaves_slot_free(tmp_path: Path, make_zswap: type[Zswap]) -> None:
    z = make_zswap(max_pool_percent=0)  # zswap refuses: every page goes to the file
    with Swap(z) as s:
        t = s.swapon(tmp_path / "swap", 16)
        s.inject_io_errors(t, writes=2)
        for _ in range(2):
            with pytest.raises(OSError) as ei:
                s.swap_out(compressible(7))
            assert ei.value.errno == errno.EIO
        assert s.swaps[0].used == 0 and s.vmstat["pswpout"] == 0
        e = s.swap_out(compressible(7))
        assert s.swap_in(e) == compressible(7)


def test_read_error_in_swap_in_keeps_entry(tmp_path: Path) -> None:
    with Swap() as s:
        t = s.swapon(tmp_path / "swap", 16)
        e = s.swap_out(compressible(3))
        s.inject_io_errors(t, reads=1)
        with pytest.raises(OSError) as ei:
            s.swap_in(e)
        assert ei.value.errno == errno.EIO
        assert s.vmstat["pswpin"] == 0
        assert s.swap_in(e) == compressible(3)
        assert s.vmstat["pswpin"] == 1


# -- threads --------------------------------------------------------------------------------


def test_threads_swap_out_in_free(tmp_path: Path, make_zswap: type[Zswap]) -> None:
    z = make_zswap(ram_bytes=600 * PS, max_pool_percent=10)  # limit: writeback too
    errors: list[str] = []
    with Swap(z) as s:
        s.swapon(tmp_path / "a", 400, priority=1)
        s.swapon(tmp_path / "b", 400, priority=1)

        def worker(tid: int) -> None:
            rng = random.Random(tid)
            held: list[tuple[SwapEntry, bytes]] = []
            for n in range(250):
                page = compressible(n, seed=tid) if n % 5 else incompressible(n + 1000 * tid)
                held.append((s.swap_out(page), page))
                if rng.random() < 0.3:
                    e, p = held.pop(rng.randrange(len(held)))
                    if s.swap_in(e) != p:
                        errors.append(f"wrong page at {e}")
                    s.swap_free(e)
            for e, p in held:
                if s.swap_in(e) != p:
                    errors.append(f"wrong page at {e}")
                s.swap_free(e)

        run_threads(4, worker)  # started together, switch interval lowered
        assert errors == []
        assert [a.used for a in s.swaps] == [0, 0]
        assert z.stats["stored_pages"] == 0
        vm = s.vmstat
        assert vm["zswpout"] + vm["pswpout"] - vm["zswpwb"] == 1000


@pytest.mark.parametrize("files", [1, 2], ids=["one-file", "two-files"])
def test_swap_ops_at_every_line_of_each_other(
    tmp_path: Path, make_zswap: type[Zswap], files: int
) -> None:
    """swap_out, swap_in and swap_free of other pages at every line of a swap_out, a
    swap_in and a swap_free (forced: the operation waits at that line of zswap's or the
    swap layer's code while another thread acts). One file (a freed slot is the next
    one given) or two of equal priority; pages for zswap and pages for the file. No slot
    is given twice, and every page reads back, also one stored in a slot as it was
    being freed."""
    with watch_locks():  # every lock made meanwhile, the kit sees
        z = make_zswap(max_pool_percent=100)
        s = Swap(z)
        for name in "ab"[:files]:
            s.swapon(tmp_path / name, 400, priority=1)
        w = Walk(
            code_filter([zswap_core._zswap.__file__, zswap_core.swap.__file__, swapfile.__file__])
        )
        held: dict[SwapEntry, bytes] = {}
        new: list[SwapEntry] = []

        def out(page: bytes) -> Callable[[], None]:
            def act() -> None:
                e = s.swap_out(page)
                assert e not in held, f"slot {e} given twice"
                held[e] = page
                new.append(e)

            return act

        def check_new(j: int, what: str) -> None:
            with w.quiet():
                while new:
                    e = new.pop()
                    if e in held:
                        assert s.swap_in(e) == held[e], (
                            f"a page stored at line {j} of a {what} reads back wrong"
                        )

        def step(j: int) -> None:
            page = compressible(j, seed=5) if j % 2 else incompressible(j)
            other = incompressible(j + 10_000) if j % 2 else compressible(j, seed=6)
            w.at(j, out(other))
            e = s.swap_out(page)
            w.done()
            assert e not in held, f"slot {e} given twice (line {j} of a swap_out)"
            held[e] = page
            check_new(j, "swap_out")
            old = next(iter(held))

            def free_old() -> None:
                del held[old]
                s.swap_free(old)
                out(compressible(j, seed=7))()

            w.at(j, free_old if old != e else out(compressible(j, seed=8)))
            got = s.swap_in(e)
            w.done()
            assert got == page, f"a swap_in went wrong at line {j}"
            check_new(j, "swap_in")
            del held[e]  # not ours from here on: its slot may be given again
            w.at(j, out(compressible(j, seed=9)))
            s.swap_free(e)
            w.done()
            check_new(j, "swap_free")
            if j % 16 == 15:
                with w.quiet():
                    for entry, want in held.items():
                        assert s.swap_in(entry) == want, f"{entry} went wrong at line {j}"

        w.run(step, 160)
        for entry, want in held.items():
            assert s.swap_in(entry) == want
            s.swap_free(entry)
        assert [a.used for a in s.swaps] == [0] * files
        assert z.stats["stored_pages"] == 0
        s.close()


def test_swap_file_is_a_real_swap_area(tmp_path: Path) -> None:
    with Swap() as s:
        s.swapon(tmp_path / "swap", 32, label="layer")
        h = read_header(tmp_path / "swap")
        assert (h.label, h.last_page) == ("layer", 31)
        assert s.swaps[0].uuid == str(h.uuid)
        assert s.swaps[0].path == os.path.abspath(tmp_path / "swap")
