"""Fault injection: every failure is either survived with nothing lost or a clear error.

Faults injected here, and the defence each one checks:

* page allocation failures at random points (``z.pages.fail_randomly``) and at every
  k-th allocation -> the store is rejected (``reject_alloc_fail``), the page goes to
  the swap file, no allocator page leaks, nothing is lost;
* I/O errors on swap-file writes and reads (``Swap.inject_io_errors``) -> ``OSError``
  (EIO) with the slot and the data unchanged; writeback write errors keep the entry;
* a compressor plugin that raises, returns nothing or returns too much ->
  ``reject_compress_fail``, the page goes to the file; one that raises
  ``KeyboardInterrupt`` -> it propagates and nothing is half-done;
* a compressor that decompresses to wrong bytes, and an allocator that writes one
  byte past each object (into its neighbour) -> with ``checksums_enabled`` a
  ``DecompressError`` and ``decompress_fail``, never wrong bytes. The same run with
  checksums off returns wrong bytes: that is the proof the defence matters.

Plugins are real entry points of fake distributions (``fake_dists``), found by a
``Registry`` of the test's own. Every test adds what it injected to ``FAULTS``; the
totals are printed at the end of the module (``-s``) and written as JSON to
``$ZSWAP_FAULT_REPORT`` when set (the figures in RELIABILITY.md).
"""

from __future__ import annotations

import collections
import errno
import json
import os
import random
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import ALL_ZPOOLS, FakeDists, mixed_pages

import zswap_core
from zswap_core import DecompressError, Registry, Zswap
from zswap_core.swap import Swap, SwapEntry

PS = 4096
ZPOOLS = [z for z in ALL_ZPOOLS if zswap_core.zpool_has_pool(z)]

#: What this module injected, by kind (printed and optionally written at the end).
FAULTS: collections.Counter[str] = collections.Counter()


@pytest.fixture(scope="module", autouse=True)
def _fault_report() -> Iterator[None]:
    yield
    print("\nfaults injected:", json.dumps(dict(sorted(FAULTS.items())), indent=1))
    out = os.environ.get("ZSWAP_FAULT_REPORT")
    if out:
        Path(out).write_text(json.dumps(dict(sorted(FAULTS.items())), indent=1) + "\n")


# -- fake plugins ------------------------------------------------------------------------------

FAULTY_COMPRESSORS = """
import zlib
from zswap_core import Compressor


class Failing(Compressor):
    name = "failcomp"

    def compress(self, src):
        raise RuntimeError("codec exploded")

    def decompress(self, src, dlen):
        raise RuntimeError("nothing was ever stored")


class Flaky(Compressor):
    '''zlib, but every third compress raises.'''

    name = "flakycomp"
    calls = 0

    def compress(self, src):
        type(self).calls += 1
        if type(self).calls % 3 == 0:
            raise MemoryError("flaky codec")
        return zlib.compress(bytes(src), 1)

    def decompress(self, src, dlen):
        return zlib.decompress(bytes(src))


class Empty(Compressor):
    name = "emptycomp"

    def compress(self, src):
        return b""

    def decompress(self, src, dlen):
        return bytes(dlen)


class Huge(Compressor):
    name = "hugecomp"

    def compress(self, src):
        return bytes(src) * 3  # more than the two-page buffer

    def decompress(self, src, dlen):
        return bytes(src[:dlen])


class Interrupting(Compressor):
    name = "intrcomp"

    def compress(self, src):
        raise KeyboardInterrupt

    def decompress(self, src, dlen):
        raise KeyboardInterrupt


class Corrupt(Compressor):
    '''Compresses correctly; decompresses to the right length with one byte wrong.'''

    name = "corruptcomp"

    def compress(self, src):
        return zlib.compress(bytes(src), 1)

    def decompress(self, src, dlen):
        out = bytearray(zlib.decompress(bytes(src)))
        out[len(out) // 2] ^= 0x5A
        return bytes(out)


class TrimZero(Compressor):
    '''The simplest honest codec: drop trailing zeros. Corrupt input gives corrupt
    output with no error, so only a checksum can notice.'''

    name = "trimzero"

    def compress(self, src):
        data = bytes(src).rstrip(b"\\0")
        return data or b"\\0"

    def decompress(self, src, dlen):
        return bytes(src).ljust(dlen, b"\\0")[:dlen]
"""

SLOPPY_ZPOOL = """
import errno
import threading
from zswap_core import MapMode, Zpool, ZpoolError


class Sloppy(Zpool):
    '''A bump allocator that places objects top-down in a page and, on unmap after a
    write, writes one byte past the object's end: the first byte of the object
    stored just before it in the same page (an off-by-one in a copy loop).'''

    type = "sloppy"

    def __init__(self, name, pages, params=None):
        super().__init__(name, pages, params)
        self._lock = threading.Lock()
        self._pages = {}  # page id -> [buffer, lowest used offset, live objects]
        self._cur = None
        self._next_page = 1
        self._next_handle = 1
        self._objs = {}  # handle -> (page id, offset, size)
        self._mode = {}

    def malloc(self, size):
        if size <= 0:
            raise ZpoolError(errno.EINVAL, "size must be positive")
        if size > self.page_size - 1:
            raise ZpoolError(errno.ENOSPC, "too big")
        with self._lock:
            cur = self._pages.get(self._cur)
            if cur is None or cur[1] < size + 1:
                buf = self.pages.alloc_page()
                self._cur = self._next_page
                self._next_page += 1
                cur = self._pages[self._cur] = [buf, self.page_size - 1, 0]
                self.nr_pages += 1
            cur[1] -= size
            cur[2] += 1
            h = self._next_handle
            self._next_handle += 1
            self._objs[h] = (self._cur, cur[1], size)
            return h

    def free(self, handle):
        with self._lock:
            pid, _off, _size = self._objs.pop(handle)
            page = self._pages[pid]
            page[2] -= 1
            if page[2] == 0:
                del self._pages[pid]
                if self._cur == pid:
                    self._cur = None
                self.pages.free_page(page[0])
                self.nr_pages -= 1

    def map(self, handle, mode=MapMode.RW):
        pid, off, size = self._objs[handle]
        self._mode[handle] = mode
        return memoryview(self._pages[pid][0])[off : off + size]

    def unmap(self, handle):
        mode = self._mode.pop(handle, MapMode.RO)
        if mode != MapMode.RO:
            pid, off, size = self._objs[handle]
            self._pages[pid][0][off + size] = 0xA5  # the bug: one byte too far

    def destroy(self):
        with self._lock:
            for page in self._pages.values():
                self.pages.free_page(page[0])
            self._pages.clear()
            self._objs.clear()
            self.nr_pages = 0


class Crashy(Zpool):
    '''An allocator with a bug: malloc raises a stray RuntimeError.'''

    type = "crashyzpool"

    def malloc(self, size):
        raise RuntimeError("allocator bug: index out of range")

    def free(self, handle):
        raise RuntimeError("nothing was allocated")

    def map(self, handle, mode=MapMode.RW):
        raise RuntimeError("nothing was allocated")

    def unmap(self, handle):
        pass

    def destroy(self):
        pass
"""


@pytest.fixture
def plugins(fake_dists: FakeDists) -> Registry:
    """A registry that sees the faulty compressors, the sloppy zpool and the real ones."""
    fake_dists.add(
        "fake-faulty-compressors",
        "1.0",
        {
            "zswap.compressors": {
                "failcomp": "fake_faulty_comp:Failing",
                "flakycomp": "fake_faulty_comp:Flaky",
                "emptycomp": "fake_faulty_comp:Empty",
                "hugecomp": "fake_faulty_comp:Huge",
                "intrcomp": "fake_faulty_comp:Interrupting",
                "corruptcomp": "fake_faulty_comp:Corrupt",
                "trimzero": "fake_faulty_comp:TrimZero",
            }
        },
        {"fake_faulty_comp": FAULTY_COMPRESSORS},
    )
    fake_dists.add(
        "fake-sloppy-zpool",
        "1.0",
        {
            "zswap.zpools": {
                "sloppy": "fake_sloppy_zpool:Sloppy",
                "crashyzpool": "fake_sloppy_zpool:Crashy",
            }
        },
        {"fake_sloppy_zpool": SLOPPY_ZPOOL},
    )
    return Registry()


# -- helpers -----------------------------------------------------------------------------------


class Rig:
    """A Zswap + Swap + one swap file, with the pages swapped out so far."""

    def __init__(self, tmp: Path, *, nr_pages: int = 4096, **zkw: object) -> None:
        zkw.setdefault("compressor", "lz4")
        zkw.setdefault("zpool", "zbud")
        zkw.setdefault("ram_bytes", 1 << 30)
        self.z = Zswap(**zkw)  # type: ignore[arg-type]
        self.s = Swap(self.z)
        self.path = tmp / "swapfile"
        self.type = self.s.swapon(self.path, nr_pages)
        self.pages: dict[SwapEntry, bytes] = {}

    def out(self, page: bytes) -> SwapEntry:
        e = self.s.swap_out(page)
        self.pages[e] = page
        return e

    def used(self) -> int:
        return sum(a.used for a in self.s.swaps)

    def check_all(self) -> None:
        for e, page in self.pages.items():
            assert self.s.swap_in(e) == page, f"page at {e} came back wrong"

    def free_all(self) -> None:
        for e in self.pages:
            self.s.swap_free(e)
        self.pages.clear()

    def close(self) -> None:
        self.s.close()
        self.z.close()


@pytest.fixture
def rigs(tmp_path: Path) -> Iterator[list[Rig]]:
    made: list[Rig] = []
    yield made
    for r in made:
        r.close()


def rig(rigs: list[Rig], tmp: Path, **kw: object) -> Rig:
    sub = tmp / f"rig{len(rigs)}"
    sub.mkdir()
    r = Rig(sub, **kw)  # type: ignore[arg-type]
    rigs.append(r)
    return r


# -- 1. allocation failures --------------------------------------------------------------------


@pytest.mark.parametrize("zpool", ZPOOLS)
def test_random_allocation_failures_lose_nothing(
    zpool: str, tmp_path: Path, rigs: list[Rig]
) -> None:
    r = rig(rigs, tmp_path, zpool=zpool, ram_bytes=2048 * PS, max_pool_percent=10)
    z, s = r.z, r.s
    z.pages.fail_randomly(0.2, seed=zlib_seed(zpool))
    pages = mixed_pages(900, seed=3)
    rng = random.Random(7)
    for i, page in enumerate(pages):
        r.out(page)
        if i % 50 == 49:
            z.compact()  # compaction allocates too (z3fold, zsmalloc migrate)
            z.writeback(rng.randrange(1, 20))
        if i % 7 == 0:  # free some, so freed objects and reused slots are in the mix
            e = rng.choice(list(r.pages))
            s.swap_free(e)
            del r.pages[e]
    failures = z.pages.failures
    FAULTS["page allocation failure"] += failures
    st = z.stats
    assert failures > 0
    assert 0 < st["reject_alloc_fail"] <= failures
    v = s.vmstat
    assert v["zswpout"] + v["pswpout"] - v["zswpwb"] == len(pages)  # each page went somewhere
    r.check_all()  # nothing lost, nothing wrong (reads while still failing)
    z.pages.stop_failing()
    r.check_all()
    assert st["pool_total_size"] == sum(p.total_size for p in z.pools)
    r.free_all()
    assert r.used() == 0
    assert z.stats["stored_pages"] == 0
    assert z.pages.nr_pages == 0, "allocator pages leaked after failed allocations"


def zlib_seed(text: str) -> int:
    import zlib

    return zlib.crc32(text.encode())


@pytest.mark.parametrize("zpool", ZPOOLS)
def test_every_kth_allocation_failing_leaks_nothing(zpool: str) -> None:
    """Fail exactly the k-th page allocation for each k: zsmalloc's multi-page zspages
    and z3fold's headless pages fail half-built; nothing may leak or be half-stored."""
    pages = mixed_pages(48, seed=11)
    for k in range(24):
        z = Zswap(compressor="lz4", zpool=zpool, ram_bytes=1 << 30)
        z.init(0)
        count = [0]

        def fail_kth(k: int = k, count: list[int] = count) -> bool:
            count[0] += 1
            return count[0] == k + 1

        z.pages.fail = fail_kth
        stored = {i: p for i, p in enumerate(pages) if z.store(0, i, p)}
        FAULTS["page allocation failure"] += z.pages.failures
        assert z.pages.failures <= 1
        if z.pages.failures:
            assert z.stats["reject_alloc_fail"] == 1
        for i in range(len(pages)):
            assert z.load(0, i) == stored.get(i), f"k={k} offset {i}"
        assert z.stats["pool_total_size"] == sum(p.total_size for p in z.pools)
        z.invalidate_area(0)
        assert z.pages.nr_pages == 0, f"k={k}: pages leaked"
        z.close()


# -- 2. I/O errors -----------------------------------------------------------------------------


def test_random_io_errors_are_clear_and_change_nothing(tmp_path: Path, rigs: list[Rig]) -> None:
    """Write errors in swap_out, read errors in swap_in, write errors in writeback, at
    random, on a zswap whose limit sends pages to the file. Every failure is an
    OSError(EIO) after which the slot table, the counters and every page are as they
    were; every page is intact at the end."""
    r = rig(rigs, tmp_path, ram_bytes=100_000 * PS, max_pool_percent=100)
    z, s = r.z, r.s
    rng = random.Random(42)
    pages = mixed_pages(600, seed=5)
    failed_out = failed_in = 0
    for step in range(1500):
        if step % 40 == 0:
            s.inject_io_errors(r.type, writes=rng.randrange(0, 4), reads=rng.randrange(0, 4))
        op = rng.random()
        if op < 0.45 or not r.pages:
            page = pages[step % len(pages)]
            before = (r.used(), s.vmstat, dict(r.pages))
            try:
                r.out(page)
            except OSError as exc:
                assert exc.errno == errno.EIO and "injected" in str(exc)
                failed_out += 1
                assert (r.used(), s.vmstat, dict(r.pages)) == before
        elif op < 0.85:
            e = rng.choice(list(r.pages))
            before = (r.used(), s.vmstat)
            try:
                got = s.swap_in(e)
            except OSError as exc:
                assert exc.errno == errno.EIO
                failed_in += 1
                assert (r.used(), s.vmstat) == before
                continue
            assert got == r.pages[e]
        elif op < 0.95:
            e = rng.choice(list(r.pages))
            s.swap_free(e)
            del r.pages[e]
        else:
            stored = z.stats["stored_pages"]
            fails = z.stats["reject_reclaim_fail"]
            n = z.writeback(rng.randrange(1, 8))
            st = z.stats
            assert st["stored_pages"] == stored - n  # a failed writeback keeps its entry
            FAULTS["writeback write error"] += st["reject_reclaim_fail"] - fails
    FAULTS["swap write error (swap_out)"] += failed_out
    FAULTS["swap read error (swap_in)"] += failed_in
    assert failed_out > 0 and failed_in > 0
    s.inject_io_errors(r.type)
    r.check_all()
    r.free_all()
    assert r.used() == 0 and z.pages.nr_pages == 0


def test_writeback_write_errors_keep_the_entry(tmp_path: Path, rigs: list[Rig]) -> None:
    r = rig(rigs, tmp_path)
    z, s = r.z, r.s
    entries = [r.out(p) for p in mixed_pages(60, seed=9) if p.count(0) < PS]
    stored = z.stats["stored_pages"]
    assert stored > 20
    s.inject_io_errors(r.type, writes=1000)
    assert z.writeback(10) == 0  # 16 failures in a row stop it
    st = z.stats
    FAULTS["writeback write error"] += st["reject_reclaim_fail"]
    assert st["reject_reclaim_fail"] >= 10
    assert st["stored_pages"] == stored and st["written_back_pages"] == 0
    assert s.vmstat["zswpwb"] == 0
    s.inject_io_errors(r.type)
    r.check_all()  # every page still comes from zswap, intact
    assert z.writeback(10) == 10
    r.check_all()  # and the written-back ones from the file
    assert len(entries) == len(r.pages)


# -- 3. compressors that fail ------------------------------------------------------------------


@pytest.mark.parametrize("comp", ["failcomp", "flakycomp", "emptycomp", "hugecomp"])
def test_failing_compressor_sends_pages_to_the_file(
    comp: str, plugins: Registry, tmp_path: Path, rigs: list[Rig]
) -> None:
    r = rig(rigs, tmp_path, compressor=comp, registry=plugins)
    z, s = r.z, r.s
    assert z.params["compressor"] == comp  # really in use, not fallen back to lz4
    pages = [p for p in mixed_pages(120, seed=2) if len(set(p[::8])) > 1]  # not same-filled
    for p in pages:
        r.out(p)
    st, v = z.stats, s.vmstat
    FAULTS[f"compressor failure ({comp})"] += st["reject_compress_fail"]
    assert st["reject_compress_fail"] > 0
    assert st["reject_compress_fail"] + st["stored_pages"] + st["reject_compress_poor"] == len(
        pages
    )
    assert v["pswpout"] == st["reject_compress_fail"] + st["reject_compress_poor"]
    r.check_all()
    r.free_all()
    assert z.pages.nr_pages == 0


BUG_BASEEXC_REF_LEAK = (
    "BUG: Zswap.store takes a pool reference before compress, and only `except Exception` "
    "puts it back: a KeyboardInterrupt (any BaseException) from the codec leaks it, so the "
    "pool counts a phantom entry and is never destroyed"
)
BUG_MALLOC_REF_LEAK = (
    "BUG: Zswap.store catches only ZpoolError from zpool.malloc: any other exception from "
    "a broken allocator escapes store() and leaks the pool reference (the pool never dies)"
)


def test_compressor_raising_keyboard_interrupt_propagates(
    plugins: Registry, tmp_path: Path, rigs: list[Rig]
) -> None:
    r = rig(rigs, tmp_path, compressor="intrcomp", registry=plugins)
    s = r.s
    keep = r.out(bytes(PS))
    page = random.Random(1).randbytes(1000) + bytes(PS - 1000)
    before = (r.used(), s.vmstat)
    with pytest.raises(KeyboardInterrupt):
        s.swap_out(page)
    FAULTS["compressor KeyboardInterrupt"] += 1
    assert (r.used(), s.vmstat) == before  # the slot was released, nothing written
    assert s.swap_in(keep) == bytes(PS)


def test_compressor_raising_keyboard_interrupt_leaves_nothing_half_done(
    plugins: Registry, tmp_path: Path, rigs: list[Rig]
) -> None:
    r = rig(rigs, tmp_path, compressor="intrcomp", registry=plugins)
    z, s = r.z, r.s
    keep = r.out(bytes(PS))  # same-filled: never reaches the compressor
    page = random.Random(1).randbytes(1000) + bytes(PS - 1000)
    before = (r.used(), s.vmstat, z.stats, z.pools)
    with pytest.raises(KeyboardInterrupt):
        s.swap_out(page)
    assert (r.used(), s.vmstat, z.stats, z.pools) == before
    assert z.pools[0].nr_entries == 0  # the pool reference taken for the store was put
    z.params["compressor"] = "lz4"  # the interrupted pool is empty: it is destroyed
    assert [p.compressor for p in z.pools] == ["lz4"]
    assert s.swap_in(keep) == bytes(PS)


def test_allocator_raising_a_stray_exception_is_a_rejected_store(
    plugins: Registry, tmp_path: Path, rigs: list[Rig]
) -> None:
    """A zpool whose malloc raises RuntimeError (not ZpoolError): the store should be
    refused (reject_alloc_fail) and the page go to the file, as for any allocation
    failure; the pool must still die once it is not current."""
    r = rig(rigs, tmp_path, zpool="crashyzpool", registry=plugins)
    z, s = r.z, r.s
    assert z.params["zpool"] == "crashyzpool"
    page = random.Random(2).randbytes(1000) + bytes(PS - 1000)
    FAULTS["allocator stray exception"] += 1
    e = r.out(page)  # currently raises RuntimeError out of swap_out
    assert z.stats["reject_alloc_fail"] == 1
    assert s.vmstat["pswpout"] == 1
    assert s.swap_in(e) == page
    z.params["zpool"] = "zbud"
    assert [p.zpool for p in z.pools] == ["zbud"]


# -- 4. corrupt data: checksums are the defence ------------------------------------------------


def corrupt_run(plugins: Registry, tmp: Path, rigs: list[Rig], **kw: object) -> tuple[int, int]:
    """Swap pages out and in through a corrupting plugin; (wrong bytes, DecompressErrors)."""
    r = rig(rigs, tmp, registry=plugins, **kw)
    rng = random.Random(3)
    entries = []
    for i in range(40):
        body = rng.randbytes(rng.randrange(300, 1500)).replace(b"\xa5", b"\x5a")
        entries.append(r.out((bytes([i + 1]) + body + bytes(PS))[:PS]))
    wrong = errors = 0
    for e in entries:
        try:
            got = r.s.swap_in(e)
        except DecompressError as exc:
            assert "unreadable" in str(exc)
            errors += 1
            continue
        wrong += got != r.pages[e]
    assert r.z.stats["decompress_fail"] == errors
    return wrong, errors


def test_checksums_catch_a_codec_that_decompresses_wrong(
    plugins: Registry, tmp_path: Path, rigs: list[Rig]
) -> None:
    wrong, errors = corrupt_run(
        plugins, tmp_path, rigs, compressor="corruptcomp", checksums_enabled=True
    )
    FAULTS["corrupt decompress output"] += errors
    assert wrong == 0, "a wrong page was returned with checksums on"
    assert errors == 40


def test_without_checksums_a_corrupting_codec_returns_wrong_pages(
    plugins: Registry, tmp_path: Path, rigs: list[Rig]
) -> None:
    """The control: the same codec with checksums off returns wrong bytes silently."""
    wrong, errors = corrupt_run(
        plugins, tmp_path, rigs, compressor="corruptcomp", checksums_enabled=False
    )
    FAULTS["corrupt decompress output, control without checksums"] += wrong
    assert (wrong, errors) == (40, 0)


def test_checksums_catch_an_allocator_that_overwrites_its_neighbour(
    plugins: Registry, tmp_path: Path, rigs: list[Rig]
) -> None:
    wrong, errors = corrupt_run(
        plugins, tmp_path, rigs, compressor="trimzero", zpool="sloppy", checksums_enabled=True
    )
    FAULTS["neighbour overwritten by allocator"] += errors
    assert wrong == 0
    assert errors >= 20  # every object but the first in each page was hit


def test_without_checksums_the_overwriting_allocator_returns_wrong_pages(
    plugins: Registry, tmp_path: Path, rigs: list[Rig]
) -> None:
    wrong, errors = corrupt_run(
        plugins, tmp_path, rigs, compressor="trimzero", zpool="sloppy", checksums_enabled=False
    )
    FAULTS["neighbour overwritten by allocator, control without checksums"] += wrong
    assert errors == 0 and wrong >= 20


def test_checksums_also_guard_writeback(plugins: Registry, tmp_path: Path, rigs: list[Rig]) -> None:
    """Corrupt data must not be written back into the file as if it were the page."""
    r = rig(rigs, tmp_path, compressor="corruptcomp", checksums_enabled=True)
    z, s = r.z, r.s
    e = r.out(random.Random(4).randbytes(1000) + bytes(PS - 1000))
    assert z.writeback(1) == 0
    st = z.stats
    FAULTS["corrupt decompress output (writeback attempts)"] += st["decompress_fail"]
    assert st["decompress_fail"] >= 1 and st["reject_reclaim_fail"] >= 1
    assert st["written_back_pages"] == 0 and s.vmstat["zswpwb"] == 0
    with pytest.raises(DecompressError):
        s.swap_in(e)  # still an error, never the corrupt bytes from the file


def test_checksums_survive_being_switched_while_pages_are_stored(
    plugins: Registry, tmp_path: Path, rigs: list[Rig]
) -> None:
    """Pages stored with checksums on keep their check after it is switched off, and
    pages stored with it off are not falsely failed when it is switched on."""
    r = rig(rigs, tmp_path, compressor="corruptcomp", checksums_enabled=True)
    z, s = r.z, r.s
    body = random.Random(8).randbytes(900)
    guarded = r.out(body + bytes(PS - 900))
    z.params["checksums_enabled"] = False
    unguarded = r.out(b"x" + body + bytes(PS - 901))
    z.params["checksums_enabled"] = True
    with pytest.raises(DecompressError):
        s.swap_in(guarded)
    assert s.swap_in(unguarded) != r.pages[unguarded]  # stored unguarded: wrong, as documented
    z.params["compressor"] = "lz4"
    ok = r.out(body[::-1] + bytes(PS - 900))
    assert s.swap_in(ok) == r.pages[ok]


# -- 5. the cost of checksums ------------------------------------------------------------------


def test_cost_of_checksums() -> None:
    """store+load per page with checksums off and on, interleaved, best of 5 rounds
    (CPU time of this thread; the native store and load release the GIL but stay on it).

    Only a generous bound is asserted (the machine is noisy); the ratio is printed
    for RELIABILITY.md.
    """
    pages = [p for p in mixed_pages(1200, seed=21) if len(set(p[::8])) > 1]
    zs = {
        on: Zswap(compressor="lz4", zpool="zsmalloc", ram_bytes=1 << 32, checksums_enabled=on)
        for on in (False, True)
    }
    for z in zs.values():
        z.init(0)
    best: dict[bool, list[float]] = {False: [], True: []}
    for _round in range(5):
        for on in (False, True):
            z = zs[on]
            # the thread's CPU time: other processes on a busy machine do not inflate it
            t0 = time.thread_time()
            for i, p in enumerate(pages):
                z.store(0, i, p)
            for i in range(len(pages)):
                z.load(0, i)
            best[on].append((time.thread_time() - t0) / len(pages) * 1e6)
            z.invalidate_area(0)
            z.init(0)
    off, on = min(best[False]), min(best[True])
    ratio = on / off
    print(
        f"\nchecksums: store+load {off:.2f} us/page off, {on:.2f} us/page on, "
        f"ratio {ratio:.3f} (medians {statistics.median(best[False]):.2f} / "
        f"{statistics.median(best[True]):.2f})"
    )
    out = os.environ.get("ZSWAP_CHECKSUM_REPORT")
    if out:
        Path(out).write_text(json.dumps({"off_us": off, "on_us": on, "ratio": ratio}) + "\n")
    for z in zs.values():
        z.close()
    if os.environ.get("ZSWAP_CHECKER"):  # dev.py test --sanitize / --valgrind
        return  # instrumented C: its speed says nothing about the checksum's cost
    assert ratio < 2.0
