"""The zpool (allocator) half of the conformance kit: :class:`ZpoolConformance`."""

from __future__ import annotations

import _thread
import contextlib
import errno
import random
import threading
import warnings
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any, ClassVar

import pytest

from .._errors import ZpoolError
from .._page_alloc import PageAllocator
from .._registry import LoadedModule
from .._zpool import MapMode, Zpool
from ._common import (
    BUNDLED_COMPRESSORS,
    BUNDLED_ZPOOLS,
    KitRegistry,
    check_declaration,
    check_installed,
    first_available,
    kit_registry,
    load_driver,
    run_threads,
    zswap_switch_check,
    zswap_threads_check,
)
from ._interleave import Interleaver, driver_code, watch_locks

__all__ = ["ZpoolConformance"]

#: Handles are packed into 37 bits of a zswap entry.
MAX_HANDLE = (1 << 37) - 1
#: Sizes that are no size: malloc() must refuse them with EINVAL.
BAD_SIZES: tuple[object, ...] = (0, -1, -4096, 1.5, 2.0, "10", None, True, False)
#: Values that are no live handle: free(), map() and unmap() refuse them with EINVAL.
BAD_HANDLES: tuple[object, ...] = (0, -1, MAX_HANDLE, 1 << 40, 10**9, "x", 1.0, None)

#: The size sweep: objects of one size side by side (their fills are byte ranges of 64
#: values each, so at most 4). Above ``sweep_every_size_to`` it tries the sizes within
#: SWEEP_SPREAD bytes of page_size/n and max_size/n (n = 1..SWEEP_DIVISORS), where slot
#: counts change, and each multiple of SWEEP_ALIGN and the size after it, where size
#: classes and alignment round up.
SWEEP_OBJECTS = 3
SWEEP_DIVISORS = 64
SWEEP_SPREAD = 16
SWEEP_ALIGN = 16

_probed: dict[tuple[type[Any], int, tuple[tuple[str, str], ...]], int] = {}


def _pattern(serial: int, size: int) -> bytes:
    """Bytes that differ between any two objects (a shared byte is found by the check)."""
    return random.Random(serial * 2654435761 + size).randbytes(size)


class _Objects:
    """The live objects of one pool and what each must contain."""

    def __init__(self, pool: Zpool, pages: PageAllocator, serial0: int = 0) -> None:
        self.pool = pool
        self.pages = pages
        self.live: dict[int, bytes] = {}
        self.held: dict[int, memoryview] = {}  # objects kept mapped (RO) across steps
        self.serial = serial0
        self.writes = 0

    def alloc(self, size: int, data: bytes | None = None) -> int:
        """malloc(size), the handle checked, and ``data`` (of ``size`` bytes; default: a
        pattern of this object's own) written."""
        handle = self.pool.malloc(size)
        assert isinstance(handle, int) and not isinstance(handle, bool), (
            f"malloc({size}) returned {handle!r}, not an int handle"
        )
        assert 0 < handle <= MAX_HANDLE, (
            f"malloc({size}) returned handle {handle}; handles must be in 1..2**37-1"
        )
        assert handle not in self.live, (
            f"malloc({size}) returned handle {handle:#x}, which is still live "
            f"({len(self.live[handle])} bytes)"
        )
        if data is None:
            self.serial += 1
            data = _pattern(self.serial, size)
        self.live[handle] = data
        self.put(handle, data)
        return handle

    def put(self, handle: int, data: bytes) -> None:
        """Write ``data`` into the object, by turns through each way of writing."""
        self.writes += 1
        way = self.writes % 3
        if way == 0:
            self.pool.write(handle, data)
            return
        view = self.pool.map(handle, MapMode.WO if way == 1 else MapMode.RW)
        try:
            check_view(view, handle, len(data))
            view[: len(data)] = data
        finally:
            self.pool.unmap(handle)

    def hold(self, handle: int) -> None:
        """Map the object and keep the mapping until :meth:`release`."""
        view = self.pool.map(handle, MapMode.RO)
        check_view(view, handle, len(self.live[handle]))
        self.held[handle] = view

    def release(self, handle: int) -> None:
        del self.held[handle]
        self.pool.unmap(handle)

    def rewrite(self, handle: int) -> None:
        if handle in self.held:
            self.release(handle)
        self.serial += 1
        data = _pattern(self.serial, len(self.live[handle]))
        self.live[handle] = data
        self.put(handle, data)

    def free(self, handle: int) -> None:
        if handle in self.held:
            self.release(handle)
        del self.live[handle]
        self.pool.free(handle)

    def free_all(self) -> None:
        for h in list(self.live):
            self.free(h)

    def verify(self, where: str) -> None:
        """Every live object still holds its own bytes (an overlap shows up here)."""
        for i, (handle, data) in enumerate(self.live.items()):
            if i % 2:
                got = self.pool.read(handle, len(data))
            else:
                view = self.pool.map(handle, MapMode.RO)
                try:
                    check_view(view, handle, len(data))
                    got = bytes(view[: len(data)])
                finally:
                    self.pool.unmap(handle)
            if got != data:
                diff = next(
                    (j for j, (a, b) in enumerate(zip(got, data, strict=False)) if a != b),
                    min(len(got), len(data)),
                )
                raise AssertionError(
                    f"{where}: object {handle:#x} ({len(data)} bytes) was corrupted from "
                    f"byte {diff} on (overlapping objects, or a write that went astray); "
                    f"{len(self.live)} objects live"
                )
        for handle, view in self.held.items():
            data = self.live[handle]
            assert view[: len(data)] == data, (
                f"{where}: the mapping of object {handle:#x} ({len(data)} bytes), held since "
                "before this step, no longer shows the object (a mapping must stay valid "
                f"until unmap, while other objects are mapped, freed or moved); "
                f"{len(self.held)} objects mapped"
            )
        self.accounting(where)

    def accounting(self, where: str) -> None:
        assert self.pool.nr_pages == self.pages.nr_pages, (
            f"{where}: pool.nr_pages is {self.pool.nr_pages} but the pool holds "
            f"{self.pages.nr_pages} pages of its PageAllocator"
        )
        assert self.pool.total_size() == self.pool.nr_pages * self.pool.page_size, (
            f"{where}: total_size() {self.pool.total_size()} != nr_pages * page_size"
        )


def check_view(view: memoryview, handle: int, size: int) -> None:
    assert isinstance(view, memoryview), f"map({handle:#x}) returned {type(view).__name__}"
    assert view.ndim == 1 and view.itemsize == 1, (
        f"map({handle:#x}) returned a view of format {view.format!r}; it must be bytes"
    )
    assert view.nbytes >= size, (
        f"map({handle:#x}) returned {view.nbytes} bytes for a {size}-byte object"
    )


def _expect_errno(exc: ZpoolError, want: int, what: str) -> None:
    assert exc.errno == want, (
        f"{what} raised ZpoolError({errno.errorcode.get(exc.errno or 0, exc.errno)}), "
        f"expected {errno.errorcode[want]}"
    )


class ZpoolConformance:
    """The zpool driver contract, as pytest tests. Subclass it in your test suite::

        from zswap_core.testing import ZpoolConformance

        class TestMyPool(ZpoolConformance):
            zpool_type = "mypool"

    The driver is looked up like ``zswap_core.zpool_has_pool`` does (the tests skip,
    saying why, when it is not installed); set ``zpool_class`` to test a class directly.
    Every test runs at each of ``page_sizes``. Override a test method to adapt or skip
    it, as with any pytest class.
    """

    #: The allocator's name (its entry point in ``zswap.zpools``).
    zpool_type: ClassVar[str] = ""
    #: Test this class directly instead of the installed entry point.
    zpool_class: ClassVar[type[Zpool] | None] = None
    #: Module parameters for the test (``{"chain_size": 8}``), as a modprobe option.
    params: ClassVar[Mapping[str, object]] = {}
    page_sizes: ClassVar[tuple[int, ...]] = (4096, 16384)
    #: The largest object size; None: found by probing (the largest size <= page_size
    #: that malloc accepts). Set it for an allocator that takes objects over a page.
    max_size: ClassVar[int | None] = None
    #: Steps of the random malloc/write/free test, and threads of the threaded test.
    steps: ClassVar[int] = 300
    threads: ClassVar[int] = 4
    #: The most probes per step of the forced interleavings (each probe runs between
    #: two bytecodes of the step; the rest of a longer step runs through).
    interleave_budget: ClassVar[int] = 200
    seed: ClassVar[int] = 0
    #: The size sweep tries every object size up to this one; above it, the sizes within
    #: 16 bytes of page_size/n and of the largest object/n (n = 1..64), and each multiple
    #: of 16 and the size after it.
    sweep_every_size_to: ClassVar[int] = 4096
    #: The compressor and the other allocator of the Zswap tests (None: the first
    #: bundled compressor installed; the kit's one-object-per-page reference pool).
    partner_compressor: ClassVar[str | None] = None
    partner_zpool: ClassVar[str | None] = None
    #: The distribution the installed plugin must come from (None: not checked).
    distribution: ClassVar[str | None] = None
    #: Set when the pool refuses use after destroy(): malloc, free and map must raise
    #: ZpoolError. (Otherwise destroy() need only give every page back, and be harmless
    #: when called again.)
    unusable_after_destroy: ClassVar[bool] = False

    module: LoadedModule

    # -- machinery --------------------------------------------------------------------
    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "page_size" in metafunc.fixturenames:
            metafunc.parametrize("page_size", self.page_sizes, ids=lambda p: f"page{p}")

    @pytest.fixture(autouse=True)
    def _zswap_kit_driver(self) -> Iterator[None]:
        cls = self.zpool_class
        name = self.zpool_type or (cls.type if cls is not None else "")
        self.module = load_driver("zpool", name, cls, self.params)
        self._pools: list[Zpool] = []
        yield
        for pool in self._pools:
            # already destroyed by the test, or the failure shows elsewhere
            with contextlib.suppress(Exception):
                pool.destroy()

    @property
    def driver(self) -> type[Zpool]:
        cls: type[Zpool] = self.module.driver
        return cls

    def new_pool(self, page_size: int, *, limit: int | None = None) -> tuple[Zpool, _Objects]:
        """A fresh pool on its own PageAllocator, destroyed after the test."""
        pages = PageAllocator(page_size, limit=limit)
        pool = self.driver(f"kit{len(self._pools)}", pages, self.module.params)
        self._pools.append(pool)
        assert pool.page_size == page_size
        assert pool.nr_pages == 0 and pages.nr_pages == 0, "a new pool must hold no pages"
        return pool, _Objects(pool, pages, serial0=len(self._pools) << 32)

    def max_size_for(self, page_size: int) -> int:
        """The largest object size at ``page_size``: ``max_size``, or probed."""
        if self.max_size is not None:
            return self.max_size
        key = (self.driver, page_size, tuple(sorted((k, str(v)) for k, v in self.params.items())))
        if key not in _probed:
            _probed[key] = self._probe(page_size)
        return _probed[key]

    def _probe(self, page_size: int) -> int:
        pages = PageAllocator(page_size)
        pool = self.driver("kit-probe", pages, self.module.params)
        try:

            def fits(size: int) -> bool:
                try:
                    handle = pool.malloc(size)
                except ZpoolError as exc:
                    _expect_errno(exc, errno.ENOSPC, f"malloc({size}) (probing the largest size)")
                    return False
                pool.free(handle)
                return True

            if fits(page_size):
                return page_size
            lo, hi = 1, page_size  # fits(lo) is checked below, not fits(hi)
            assert fits(1), "malloc(1) failed"
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if fits(mid):
                    lo = mid
                else:
                    hi = mid
            return lo
        finally:
            pool.destroy()

    def check_pool(self, pool: Zpool, handles: Collection[int], where: str) -> None:
        """Called with the live handles after every step of the random operations test
        and after the ENOMEM, page limit, compaction and threaded tests: override it to
        check the allocator's own invariants. Objects may be mapped."""

    def expect_refused(self, objs: _Objects, size: int, want: int, what: str) -> ZpoolError | None:
        """``malloc(size)``: None if it succeeds; if it raises, the error (with errno
        ``want``), after checking that the refused malloc kept no page."""
        pool_pages, taken = objs.pool.nr_pages, objs.pages.nr_pages
        try:
            objs.alloc(size)
        except ZpoolError as exc:
            _expect_errno(exc, want, what)
            assert (objs.pool.nr_pages, objs.pages.nr_pages) == (pool_pages, taken), (
                f"a refused malloc kept pages ({what}): the pool went from {pool_pages} "
                f"to {objs.pool.nr_pages} pages, the PageAllocator from {taken} to "
                f"{objs.pages.nr_pages}"
            )
            return exc
        return None

    def random_size(self, rng: random.Random, page_size: int) -> int:
        top = self.max_size_for(page_size)
        pick = rng.random()
        if pick < 0.3:
            return rng.randint(1, min(96, top))
        if pick < 0.65:
            return rng.randint(1, max(1, top // 2))
        if pick < 0.95:
            return rng.randint(max(1, top // 2), top)
        return rng.choice((1, top))

    # -- the driver class ----------------------------------------------------------------
    def test_declaration(self) -> None:
        """The class as the loader checks it; an installed plugin also as lsmod shows it."""
        check_declaration("zpool", self.module.name, self.driver, Zpool)
        assert isinstance(self.driver.can_compact, bool)
        if self.zpool_class is not None:
            return  # tested before it is installed: there is no registry entry
        check_installed(self.module, self.distribution)

    # -- sizes and errors ----------------------------------------------------------------
    def test_size_limits(self, page_size: int) -> None:
        pool, objs = self.new_pool(page_size)
        for bad in BAD_SIZES:
            with pytest.raises(ZpoolError) as info:
                pool.malloc(bad)  # type: ignore[arg-type]
            _expect_errno(info.value, errno.EINVAL, f"malloc({bad!r})")
        top = self.max_size_for(page_size)
        assert top >= page_size // 2, (
            f"the largest object is {top} bytes: zswap needs at least half a page"
        )
        too_big = {top + 1, 2 * page_size + 1}
        if self.max_size is None:
            too_big |= {page_size + 1}
        for size in sorted(too_big):
            with pytest.raises(ZpoolError) as info:
                pool.malloc(size)
            _expect_errno(info.value, errno.ENOSPC, f"malloc({size}) (max {top})")
        objs.accounting("after refused mallocs")
        assert pool.nr_pages == 0, "refused mallocs left pages behind"
        for size in (1, top, top - 1, 2, top // 2):
            objs.alloc(size)
        objs.verify("objects of the extreme sizes")
        objs.free_all()
        objs.accounting("after freeing everything")

    def test_double_free_and_bad_handles(self, page_size: int) -> None:
        """A freed handle is refused by free, map and unmap, as are values that were never
        handles; a double free beside a live neighbour harms nothing (see
        :meth:`double_free_beside_neighbours`)."""
        self.double_free_beside_neighbours(page_size)
        pool, objs = self.new_pool(page_size)
        keep = [objs.alloc(s) for s in (10, 200, 1000)]
        victim = objs.alloc(300)
        objs.free(victim)
        with pytest.raises(ZpoolError) as info:
            pool.free(victim)
        _expect_errno(info.value, errno.EINVAL, "free() of a freed handle")
        bad_handles: tuple[Any, ...] = (victim, *BAD_HANDLES)
        for op in (pool.free, pool.map, pool.unmap):
            for bad in bad_handles:
                with pytest.raises(ZpoolError) as info:
                    op(bad)
                _expect_errno(info.value, errno.EINVAL, f"{op.__name__}({bad!r})")
        objs.verify("after a double free was refused")
        assert len(keep) == len(objs.live)
        objs.free_all()
        assert pool.nr_pages == 0, "pages not returned after freeing everything"

    def double_free_beside_neighbours(self, page_size: int) -> None:
        """Three objects of one size (one size class, so they share a page), the middle one
        freed twice: the second free must raise EINVAL, and its neighbours stay intact.

        An object alone on its page is a weak test: its page went back with the first
        free, so a driver that checks only "is this page in use?" refuses the second free
        too, for the wrong reason. Beside a live neighbour such a driver takes it, counts
        the page down once more and frees or reuses it under the neighbour.
        """
        top = self.max_size_for(page_size)
        for size in sorted({16, 300, page_size // 4} & set(range(1, top // 2 + 1))):
            pool, objs = self.new_pool(page_size)
            left, victim, right = (objs.alloc(size) for _ in range(3))
            objs.free(victim)
            where = f"size {size}, page size {page_size}"
            try:
                pool.free(victim)
            except ZpoolError as exc:
                _expect_errno(exc, errno.EINVAL, f"a second free() of {victim:#x} ({where})")
                accepted = ""
            else:
                accepted = (
                    f"a second free() of {victim:#x} ({where}) was accepted while objects of "
                    "its size were live beside it; it must raise ZpoolError(EINVAL)"
                )
            try:
                objs.verify(f"after a double free ({where})")
            except Exception as exc:  # a dropped page shows as any error: say what led to it
                raise AssertionError(
                    f"{accepted or 'a refused double free'}; and then its neighbours "
                    f"{left:#x} and {right:#x} were lost: {type(exc).__name__}: {exc}"
                ) from exc
            assert not accepted, accepted
            # a slot put on the free list twice is handed out twice: these would overlap
            for _ in range(3):
                objs.alloc(size)
            objs.verify(f"allocating after a refused double free ({where})")
            self.check_pool(pool, objs.live.keys(), f"after a refused double free ({where})")
            objs.free_all()
            assert pool.nr_pages == 0, (
                f"{where}: {pool.nr_pages} pages kept after a refused double free and "
                "freeing everything"
            )

    # -- every size beside its neighbours ------------------------------------------------
    def sweep_sizes(self, page_size: int) -> list[int]:
        """The sizes of :meth:`test_size_sweep`: every size up to ``sweep_every_size_to``,
        and above it the sizes where slot layouts change: around page_size/n and around
        the largest object/n."""
        top = self.max_size_for(page_size)
        sizes = set(range(1, min(top, self.sweep_every_size_to) + 1))
        for edge in range(SWEEP_ALIGN, top + 2, SWEEP_ALIGN):
            sizes.update(s for s in (edge, edge + 1) if s <= top)  # a class's last, next's first
        for n in range(1, SWEEP_DIVISORS + 1):
            for whole in (page_size, top):
                mid = whole // n
                sizes.update(range(max(1, mid - SWEEP_SPREAD), min(top, mid + SWEEP_SPREAD) + 1))
        return sorted(sizes)

    def test_size_sweep(self, page_size: int) -> None:
        """For each size of :meth:`sweep_sizes`, ``SWEEP_OBJECTS`` objects of that size side
        by side; after each one is written, and after one of them is freed, every live one
        is read back.

        An allocator that gets its layout wrong for a few sizes only (a size-class table
        off by one, a rounding that loses a byte at a boundary) places two objects so
        that they share bytes. A random test draws a few hundred sizes and rarely hits
        one of those; this test tries them all. Each object is filled from a byte range
        of its own (no byte value of one occurs in another, and none is 0), so a single
        byte of overlap, or a neighbour zeroed, shows every time.
        """
        pool, objs = self.new_pool(page_size)
        top = self.max_size_for(page_size)
        rng = random.Random(self.seed * 7919 + page_size)
        fills = [
            rng.randbytes(top).translate(bytes(64 * i + 1 + b % 63 for b in range(256)))
            for i in range(SWEEP_OBJECTS)
        ]

        def check(size: int, handles: list[int], what: str) -> None:
            for i, h in enumerate(handles):
                if h == 0:
                    continue  # freed
                got = pool.read(h, size)
                want = fills[i][:size]
                if got != want:
                    at = next(j for j, (a, b) in enumerate(zip(got, want, strict=False)) if a != b)
                    other = next(
                        (k for k in range(SWEEP_OBJECTS) if 64 * k < got[at] <= 64 * k + 63),
                        None,
                    )
                    whose = (
                        f"holds a byte of object {other}, at byte {at}"
                        if other is not None and other != i
                        else f"was corrupted from byte {at} on"
                    )
                    raise AssertionError(
                        f"size {size} (page size {page_size}), after {what}: object {i} "
                        f"({h:#x}) of the {len(handles)} side by side {whose} (two objects "
                        "overlap, or a write went astray)"
                    )

        for size in self.sweep_sizes(page_size):
            handles: list[int] = []
            for i in range(SWEEP_OBJECTS):
                h = objs.alloc(size, fills[i][:size])
                handles.append(h)
                check(size, handles, f"writing object {i}")
            middle = handles[1]
            objs.free(middle)
            handles[1] = 0
            check(size, handles, "freeing object 1")
            for h in handles:
                if h:
                    objs.free(h)
            if pool.nr_pages:
                objs.accounting(f"size {size}")
        objs.accounting("after the sweep")
        self.check_pool(pool, (), "after the size sweep")
        assert pool.nr_pages == 0, f"{pool.nr_pages} pages kept after the size sweep"

    # -- random operations ---------------------------------------------------------------
    def test_random_operations(self, page_size: int) -> None:
        """malloc/write/rewrite/free (and compact) in a seeded random order.

        After every step every live object is read back: two objects sharing a byte,
        or a write landing outside its object, fails here.
        """
        rng = random.Random(self.seed * 1009 + page_size)
        pool, objs = self.new_pool(page_size)
        cap = 48 + rng.randrange(48)
        for step in range(self.steps):
            op = rng.random()
            where = f"step {step} (seed {self.seed}, page size {page_size})"
            if not objs.live or (op < 0.5 and len(objs.live) < cap):
                size = self.random_size(rng, page_size)
                try:
                    objs.alloc(size)
                except ZpoolError as exc:
                    raise AssertionError(
                        f"{where}: malloc({size}) failed although the largest size is "
                        f"{self.max_size_for(page_size)}: {exc}"
                    ) from exc
            elif op < 0.8:
                objs.free(rng.choice(list(objs.live)))
            elif op < 0.85:  # map an object and keep it mapped, or unmap a held one
                h = rng.choice(list(objs.live))
                if h in objs.held:
                    objs.release(h)
                elif len(objs.held) < 8:
                    objs.hold(h)
            elif op < 0.95:
                objs.rewrite(rng.choice(list(objs.live)))
            elif op < 0.98 and self.driver.can_compact:
                freed = pool.compact()
                assert isinstance(freed, int) and freed >= 0
            else:  # free about half: pages empty out and must go back
                for h in rng.sample(list(objs.live), len(objs.live) // 2):
                    objs.free(h)
            objs.verify(where)
            self.check_pool(pool, objs.live.keys(), where)
        if self.driver.can_compact:  # what was held mapped may move now
            for h in list(objs.held):
                objs.release(h)
            pool.compact()
            objs.verify("compact() after the last mapping went")
        objs.free_all()
        assert pool.nr_pages == 0, f"{pool.nr_pages} pages kept after freeing every object"
        pool.destroy()
        assert objs.pages.nr_pages == 0, "pages kept after destroy()"

    def test_many_handles_unique(self, page_size: int) -> None:
        pool, objs = self.new_pool(page_size)
        rng = random.Random(self.seed + 7)
        for _ in range(400):
            objs.alloc(rng.randint(1, 200))
        assert pool.nr_pages > 0
        objs.verify("400 small objects")
        for h in list(objs.live)[::2]:
            objs.free(h)
        for _ in range(200):
            objs.alloc(rng.randint(1, 200))
        objs.verify("after reusing freed space")

    def test_map_modes(self, page_size: int) -> None:
        pool, objs = self.new_pool(page_size)
        h = objs.alloc(100)
        view = pool.map(h, MapMode.RW)
        try:
            view[:4] = b"ABCD"
        finally:
            pool.unmap(h)
        objs.live[h] = b"ABCD" + objs.live[h][4:]
        objs.verify("after a write through a RW mapping")
        assert pool.read(h, 4) == b"ABCD"

    # -- pages ---------------------------------------------------------------------------
    def test_destroy_returns_every_page(self, page_size: int) -> None:
        """destroy() gives back every page, also with an object still mapped, and a
        second destroy() is harmless (with ``unusable_after_destroy``: the pool then
        refuses malloc, free and map)."""
        pool, objs = self.new_pool(page_size)
        rng = random.Random(self.seed + 3)
        for _ in range(60):
            objs.alloc(self.random_size(rng, page_size))
        assert objs.pages.nr_pages > 0
        objs.accounting("60 objects")
        some = next(iter(objs.live))
        pool.map(some, MapMode.RO)  # never unmapped: destroy() must not wait for it
        pool.destroy()
        assert objs.pages.nr_pages == 0, (
            f"destroy() kept {objs.pages.nr_pages} pages of the PageAllocator"
        )
        assert pool.nr_pages == 0, f"nr_pages is {pool.nr_pages} after destroy()"
        pool.destroy()
        assert objs.pages.nr_pages == 0 and pool.nr_pages == 0, "a second destroy() took pages"
        if not self.unusable_after_destroy:
            return
        calls = (("malloc", pool.malloc, 10), ("free", pool.free, some), ("map", pool.map, some))
        for what, op, arg in calls:
            try:
                op(arg)
            except ZpoolError:
                continue
            raise AssertionError(f"{what}() after destroy() did not raise ZpoolError")
        assert objs.pages.nr_pages == 0, "the destroyed pool took pages"

    def test_enomem_leaves_pool_consistent(self, page_size: int) -> None:
        """The k-th page allocation fails: malloc raises ENOMEM and nothing is lost."""
        top = self.max_size_for(page_size)
        for size in sorted({top, page_size // 3, 48}):
            for k in (1, 2, 3, 5):
                pool, objs = self.new_pool(page_size)
                for s in (size, 20):
                    objs.alloc(s)
                calls = [0]

                def fail(k: int = k, calls: list[int] = calls) -> bool:
                    calls[0] += 1
                    return calls[0] == k

                objs.pages.fail = fail
                where = f"size {size}, page allocation {k} refused"
                refused: ZpoolError | None = None
                for _ in range(k * (page_size // size + 2) * 32):
                    refused = self.expect_refused(objs, size, errno.ENOMEM, f"malloc ({where})")
                    if refused is not None:
                        break
                assert refused is not None, f"{where}: malloc never reported the failure"
                objs.verify(f"after ENOMEM ({where})")
                self.check_pool(pool, objs.live.keys(), f"after ENOMEM ({where})")
                objs.pages.stop_failing()
                objs.alloc(size)
                objs.verify(f"allocating again after ENOMEM ({where})")
                objs.free_all()
                assert pool.nr_pages == 0, f"{where}: pages kept after freeing everything"
                pool.destroy()
                assert objs.pages.nr_pages == 0

    def test_page_limit(self, page_size: int) -> None:
        pool, objs = self.new_pool(page_size, limit=4)
        rng = random.Random(self.seed + 11)
        full = 0
        for _ in range(2000):
            size = self.random_size(rng, page_size)
            what = "malloc at the PageAllocator's limit"
            if self.expect_refused(objs, size, errno.ENOMEM, what) is not None:
                full += 1
                if full > 20:
                    break
        assert full, "a pool on 4 pages never ran out of memory"
        assert objs.pages.nr_pages <= 4
        objs.verify("at the page limit")
        self.check_pool(pool, objs.live.keys(), "at the page limit")
        objs.free_all()
        assert pool.nr_pages == 0

    # -- threads -------------------------------------------------------------------------
    def test_threads(self, page_size: int) -> None:
        """Two threads share one pool, in two parts.

        Forced interleavings (the verdict does not depend on the scheduler): one thread
        mallocs, writes, maps and holds, reads, rewrites, frees and compacts its own
        objects, and stops before every bytecode of the driver; at each stop a second
        thread mallocs, writes, reads back, frees and compacts in the same pool until it
        is done (or has to wait for the driver's lock). A malloc, free or compact that
        skips the lock anywhere fails here on every run.

        Then ``threads`` free-running threads (the interpreter's switch interval lowered)
        with one more thread that only calls compact(): real parallelism, such as C code
        that drops the GIL, which no forced schedule reaches.
        """
        with watch_locks():  # every lock made meanwhile (the driver's too), the kit sees
            self.threads_interleaved(page_size)
        self.threads_free_running(page_size)

    def threads_interleaved(self, page_size: int) -> None:
        """Every step of one thread with the other thread's operations forced in between
        every two of its bytecodes (see :class:`~zswap_core.testing._interleave.Interleaver`).

        Each step runs three times, with the probes in one mode each: ``malloc`` (the other
        thread allocates objects of the step's size, so they share its pages and size
        class), ``free`` (it frees its newest ones) and ``access`` (it reads, rewrites and
        compacts). A count that one thread reads and writes back without the lock loses
        the other's updates, a table rebuilt without the lock looks empty, a page freed
        too early is reused: every such fault shows here, the same way on every run.
        """
        top = self.max_size_for(page_size)  # probes a pool of its own: before the threads
        small = sorted({s for s in (16, 48, 200, top // 4) if 0 < s <= top})
        pool, shared = self.new_pool(page_size)
        mine = _Objects(pool, shared.pages, serial0=1 << 40)  # the stepping thread's
        theirs = _Objects(pool, shared.pages, serial0=2 << 40)  # the probing thread's
        owner: dict[int, str] = {}
        owner_lock = _thread.allocate_lock()
        mode: list[Any] = ["access", small[0]]

        def claim(h: int, who: str) -> None:
            with owner_lock:
                other = owner.get(h)
                owner[h] = who
            assert other is None, f"handle {h:#x} was given to the {other} and the {who}"

        def drop(h: int) -> None:
            with owner_lock:
                del owner[h]

        def check(objs: _Objects, handles: list[int], who: str) -> None:
            for h in handles:
                data = objs.live[h]
                got = pool.read(h, len(data))
                assert got == data, (
                    f"{who}: object {h:#x} ({len(data)} bytes) was corrupted (an operation "
                    "of the other thread went astray inside the pool)"
                )
            for h, view in objs.held.items():
                data = objs.live[h]
                assert view[: len(data)] == data, (
                    f"{who}: the mapping of object {h:#x}, held since before this step, no "
                    "longer shows the object (the other thread's operation moved or reused it)"
                )

        def probe(n: int) -> None:
            what, size = mode
            if what == "malloc" or (what == "free" and not theirs.live):
                claim(theirs.alloc(size), "probing thread")
            elif what == "free":
                h = next(reversed(theirs.live))
                drop(h)
                theirs.free(h)
            elif n % 3 == 0:
                live = list(theirs.live)
                check(theirs, sorted({live[0], *live[-2:]}) if live else [], "probing thread")
            elif n % 3 == 1 and theirs.live:
                theirs.rewrite(next(reversed(theirs.live)))
            else:
                freed = pool.compact()
                assert isinstance(freed, int) and freed >= 0, f"compact() returned {freed!r}"

        def newest() -> int:
            return next(reversed(mine.live))

        def oldest() -> int:
            return next(iter(mine.live))

        def size_of(pick: Callable[[], int]) -> Callable[[], int]:
            return lambda: len(mine.live[pick()])

        def alloc(size: int) -> None:
            claim(mine.alloc(size), "stepping thread")

        def alloc_write(size: int) -> None:
            mine.serial += 1
            data = _pattern(mine.serial, size)
            h = pool.alloc_write(data)
            assert isinstance(h, int) and 0 < h <= MAX_HANDLE, f"alloc_write() gave {h!r}"
            assert h not in mine.live, f"alloc_write() returned the live handle {h:#x}"
            claim(h, "stepping thread")
            mine.live[h] = data

        def free(pick: Callable[[], int]) -> None:
            h = pick()
            drop(h)
            mine.free(h)

        def unheld() -> int:
            return next(h for h in mine.live if h not in mine.held)

        def hold() -> None:
            mine.hold(unheld())

        def held() -> int:
            return next(iter(mine.held))

        def compact() -> None:
            freed = pool.compact()
            assert isinstance(freed, int) and freed >= 0, f"compact() returned {freed!r}"

        def step(what: str, size: Callable[[], int], op: Callable[[], None]) -> Callable[[], None]:
            def run() -> None:
                mode[:] = [what, size()]  # the probing thread is idle or waits for a lock
                op()

            return run

        def const(size: int) -> Callable[[], int]:
            return lambda: size

        def do(op: Callable[[int], None], size: int) -> Callable[[], None]:
            return lambda: op(size)

        def free_rest() -> None:
            for _ in list(mine.live):
                free(oldest)

        a, b = small[0], small[1 % len(small)]
        ops: list[tuple[str, Callable[[], int], Callable[[], None]]] = [
            (f"malloc({a})", const(a), do(alloc, a)),
            ("free the newest", size_of(newest), lambda: free(newest)),
            (f"malloc({a})", const(a), do(alloc, a)),
            (f"alloc_write({b})", const(b), do(alloc_write, b)),
            (f"malloc({top})", const(top), do(alloc, top)),
            ("map an object and hold it", size_of(unheld), hold),
            ("rewrite the newest", size_of(newest), lambda: mine.rewrite(newest())),
            ("read back", size_of(oldest), lambda: check(mine, list(mine.live), "stepper")),
            ("compact", const(a), compact),
            ("unmap the held object", size_of(held), lambda: mine.release(held())),
            (f"malloc({b})", const(b), do(alloc, b)),
            ("free the newest", size_of(newest), lambda: free(newest)),
            ("free the oldest", size_of(oldest), lambda: free(oldest)),
        ]
        steps = [
            (f"{name}, probes: {what}", step(what, size, op))
            for name, size, op in ops
            for what in ("malloc", "free", "access")
        ]
        steps.append(("free the rest", free_rest))
        il = Interleaver(
            driver_code(self.driver, exclude=(Zpool,)), probe, budget=self.interleave_budget
        )
        il.run(steps)
        mine.verify("after the forced interleavings")
        theirs.verify("after the forced interleavings (the probing thread's objects)")
        for h in list(theirs.live):
            drop(h)
            theirs.free(h)
        shared.accounting("after the forced interleavings")
        self.check_pool(pool, (), "after the forced interleavings")
        assert pool.nr_pages == 0, (
            f"{pool.nr_pages} pages kept after all threads freed every object (forced "
            "interleavings)"
        )
        assert il.probes > 0, "the kit never stopped inside the driver: is its code traced?"
        for note in il.notes:
            warnings.warn(f"{self.module.name}: {note}", stacklevel=1)

    def threads_free_running(self, page_size: int) -> None:
        pool, shared = self.new_pool(page_size)
        owner: dict[int, int] = {}
        lock = threading.Lock()

        def work(t: int) -> None:
            rng = random.Random(self.seed * 97 + t)
            objs = _Objects(pool, shared.pages, serial0=(t + 1) << 40)
            for step in range(self.steps // 6):
                if not objs.live or (rng.random() < 0.55 and len(objs.live) < 24):
                    h = objs.alloc(self.random_size(rng, page_size))
                    with lock:
                        other = owner.get(h)
                        owner[h] = t
                    assert other is None, f"handle {h:#x} given to threads {other} and {t}"
                else:
                    h = rng.choice(list(objs.live))
                    with lock:
                        del owner[h]
                    objs.free(h)
                for handle, data in objs.live.items():
                    got = pool.read(handle, len(data))
                    assert got == data, f"thread {t} step {step}: object {handle:#x} corrupted"
            for h in list(objs.live):
                with lock:
                    del owner[h]
                objs.free(h)

        def compactor() -> None:
            freed = pool.compact()
            assert isinstance(freed, int) and freed >= 0, f"compact() returned {freed!r}"

        run_threads(self.threads, work, background=compactor if self.driver.can_compact else None)
        shared.accounting("after the threads freed everything")
        self.check_pool(pool, (), "after the threads freed everything")
        assert pool.nr_pages == 0, f"{pool.nr_pages} pages kept after all threads freed"

    # -- compaction ----------------------------------------------------------------------
    def test_compaction(self, page_size: int) -> None:
        pool, objs = self.new_pool(page_size)
        rng = random.Random(self.seed + 5)
        for _ in range(5000):
            objs.alloc(rng.randint(16, max(16, page_size // 8)))
            if pool.nr_pages >= 12:
                break
        for h in list(objs.live):
            if rng.random() < 0.7:
                objs.free(h)
        before = pool.nr_pages
        freed = pool.compact()
        assert isinstance(freed, int) and not isinstance(freed, bool) and freed >= 0
        if not self.driver.can_compact:
            assert freed == 0, "compact() freed pages but can_compact is False"
        after = pool.nr_pages
        assert after <= before, f"compact() grew the pool from {before} to {after} pages"
        assert freed == before - after, (
            f"compact() returned {freed} but the pool went from {before} to {after} pages"
        )
        objs.verify("after compact(): objects must be readable through their handles")
        self.check_pool(pool, objs.live.keys(), "after compact()")
        for _ in range(20):
            objs.alloc(rng.randint(1, 300))
        objs.verify("allocating after compact()")
        objs.free_all()
        assert pool.nr_pages == 0

    # -- inside Zswap --------------------------------------------------------------------
    def kit_registry(self) -> KitRegistry:
        return kit_registry(self.module)

    def test_zswap_switch(self, page_size: int) -> None:
        """Zswap (checksums on) switches its zpool to this one and back; no page is lost."""
        reg = self.kit_registry()
        comp = self.partner_compressor or first_available(
            "compressor", BUNDLED_COMPRESSORS, "", "kit-deflate", reg
        )
        other = self.partner_zpool or first_available(
            "zpool", ("kit-pagepool", *BUNDLED_ZPOOLS), self.module.name, "", reg
        )
        if not other:
            pytest.skip("no other zpool to switch from (set partner_zpool)")
        zswap_switch_check(
            reg,
            param="zpool",
            plugin=self.module.name,
            partner_compressor=comp,
            partner_zpool=other,
            page_size=page_size,
            seed=self.seed,
        )

    def test_zswap_threads(self, page_size: int) -> None:
        reg = self.kit_registry()
        comp = self.partner_compressor or first_available(
            "compressor", BUNDLED_COMPRESSORS, "", "kit-deflate", reg
        )
        zswap_threads_check(
            reg,
            compressor=comp,
            zpool=self.module.name,
            page_size=page_size,
            plugin_code=driver_code(self.driver, exclude=(Zpool,)),
            seed=self.seed,
        )
