"""Fuzz target of the native core: random operations mixed with corruption.

Hypothesis drives a native Zswap (lz4 + the C zsmalloc, and lz4 + a Python allocator)
through random sequences of store / load / exclusive load / invalidate /
invalidate_area / init / writeback / parameter writes, and between them corrupts what
is stored: compressed objects overwritten through the allocator (``map``/``unmap``:
random bytes, zeros, a truncated tail, one flipped bit), and forged, stale and
freed-under-zswap handles through the C zsmalloc's ops capsule.

The properties, with ``checksums_enabled=Y``: nothing crashes; a load returns the exact
page stored, or None where nothing is stored, or raises DecompressError (counted in
``decompress_fail``) and only for an entry that was corrupted; writeback never writes
wrong bytes; the counters, pool entries and pages agree after every step; once
everything is invalidated, no page, pool entry or byte of core memory is left.

The run is fixed (``derandomize=True``): CI runs the same examples every time.
``ZSWAP_FUZZ_EXAMPLES`` sets how many (default 150 per target).
"""

from __future__ import annotations

import errno
import logging
import os
import random
import struct
import threading
from dataclasses import dataclass, field
from typing import Any

import pytest
from helpers import mixed_pages
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import zswap_core
from zswap_core import DecompressError, MapMode, Zswap
from zswap_core._backend import NATIVE_ERROR

pytestmark = pytest.mark.skipif(NATIVE_ERROR is not None, reason=str(NATIVE_ERROR))

PS = 4096
TYPES = 2  # types 0 and 1; TYPES itself is never initialised
EXAMPLES = int(os.environ.get("ZSWAP_FUZZ_EXAMPLES", "150"))
HANDLE_SHIFT, LEN_SHIFT, LEN_MASK = 27, 10, (1 << 17) - 1

PAGES = [
    *mixed_pages(12, seed=11),
    bytes(PS),
    struct.pack("<Q", 0x89ABCDEF01234567) * (PS // 8),
    random.Random(3).randbytes(PS),  # incompressible: refused as compress_poor (or not)
    *(random.Random(k).randbytes(900) + bytes(PS - 900) for k in range(4)),
]

OFFSETS = st.integers(0, 4) | st.integers(511, 512) | st.just(0xFFFFFFFF)
TYPE = st.integers(0, TYPES)


def param_flips(zpools: tuple[str, ...]) -> list[tuple[str, Any]]:
    flips: list[tuple[str, Any]] = [
        ("exclusive_loads", True),
        ("exclusive_loads", False),
        ("same_filled_pages_enabled", False),
        ("same_filled_pages_enabled", True),
        ("non_same_filled_pages_enabled", False),
        ("non_same_filled_pages_enabled", True),
        ("enabled", False),
        ("enabled", True),
        ("max_pool_percent", 0),
        ("max_pool_percent", 20),
        ("compressor", "lz4"),
    ]
    if zswap_core.crypto_has_comp("zstd"):
        flips.append(("compressor", "zstd"))
    flips += [("zpool", zp) for zp in zpools]
    return flips


def operations(zpools: tuple[str, ...]) -> st.SearchStrategy[list[tuple[Any, ...]]]:
    seed = st.integers(0, 2**32 - 1)
    excl = st.sampled_from([None, True, False])
    kinds = st.sampled_from(["random", "zero", "truncate", "flip", "prefix"])
    forges = st.sampled_from(["random", "random64", "stale", "alloc", "free-foreign", "free-live"])
    page = st.integers(0, len(PAGES) - 1)
    # (weight, strategy): mostly stores, and loads of what is stored
    weighted = [
        (10, st.tuples(st.just("store"), TYPE, OFFSETS, page)),
        (6, st.tuples(st.just("load_stored"), seed, excl)),
        (3, st.tuples(st.just("corrupt"), seed, kinds)),
        (3, st.tuples(st.just("forge"), forges, seed)),
        (2, st.tuples(st.just("load"), TYPE, OFFSETS, excl)),
        (2, st.tuples(st.just("invalidate"), TYPE, OFFSETS)),
        (2, st.tuples(st.just("writeback"), st.integers(0, 4), st.booleans())),
        (2, st.tuples(st.just("param"), st.sampled_from(param_flips(zpools)))),
        (1, st.tuples(st.just("invalidate_area"), TYPE)),
        (1, st.tuples(st.just("init"), TYPE)),
    ]
    table = [s for w, s in weighted for _ in range(w)]
    op = st.integers(0, len(table) - 1).flatmap(lambda k: table[k])
    return st.lists(op, min_size=30, max_size=150)


@dataclass
class Entry:
    page: bytes
    same: bool
    corrupt: bool = False
    #: its object was freed behind zswap's back: the handle is stale
    dangling: bool = False


@dataclass
class Model:
    inited: set[int] = field(default_factory=lambda: {0, 1})
    entries: dict[tuple[int, int], Entry] = field(default_factory=dict)
    load_failures: int = 0
    #: every handle zswap ever held, per pool (by name: pool ids are reused)
    seen: dict[str, set[int]] = field(default_factory=dict)
    #: objects allocated through a capsule behind zswap's back: pool -> handle -> data
    foreign: dict[str, dict[int, bytes]] = field(default_factory=dict)


class Fuzz:
    def __init__(self, zpool: str) -> None:
        self.z = Zswap(
            backend="native",
            compressor="lz4",
            zpool=zpool,
            ram_bytes=1 << 30,
            checksums_enabled=True,
        )
        assert self.z._core is not None
        for t in range(TYPES):
            self.z.init(t)
        self.m = Model()
        self.bad_writes: list[tuple[int, int]] = []
        self.written: list[tuple[int, int]] = []
        self.fail_writes = False
        self.owner = threading.get_ident()

    # -- helpers ----------------------------------------------------------------------
    def handler(self, type: int, offset: int, page: bytes) -> None:
        # Only the writebacks this fuzz asks for (op_writeback, on its own thread).
        if self.fail_writes or threading.get_ident() != self.owner:
            raise OSError(errno.EIO, "injected write error")
        e = self.m.entries.get((type, offset))
        if e is None or page != e.page:
            self.bad_writes.append((type, offset))
        self.written.append((type, offset))

    def entry_of(self, t: int, off: int) -> tuple[Any, int, int] | None:
        """(pool, handle, length) of a compressed entry, else None."""
        packed = self.z._entry(t, off)
        if not packed & 1 or packed & 2:
            return None
        pool = self.z._by_id[(packed >> 2) & 0xFF]
        assert pool is not None and not pool.dead
        return pool, packed >> HANDLE_SHIFT, (packed >> LEN_SHIFT) & LEN_MASK

    def live_handles(self, pool: Any) -> set[int]:
        out = set(self.m.foreign.get(pool.name, {}))
        for (t, off), e in self.m.entries.items():
            got = self.entry_of(t, off)
            if got is not None and got[0] is pool and not e.dangling:
                out.add(got[1])
        return out

    def c_pools(self) -> list[Any]:
        """Live pools whose allocator exports the C ops table."""
        z = self.z
        out = []
        for p in z._pools:
            if not p.dead and z._core.pool_backend(p.id) == "native":
                out.append(p)
        return out

    # -- operations -------------------------------------------------------------------
    def run(self, op: tuple[Any, ...]) -> None:
        getattr(self, "op_" + op[0])(*op[1:])
        self.check()

    def op_store(self, t: int, off: int, k: int) -> None:
        if t not in self.m.inited:
            with pytest.raises(ValueError, match="not initialised"):
                self.z.store(t, off, PAGES[k])
            return
        if self.z.store(t, off, PAGES[k]):
            same = bool(self.z._entry(t, off) & 2)
            self.m.entries[(t, off)] = Entry(PAGES[k], same)
            got = self.entry_of(t, off)
            if got is not None:
                self.m.seen.setdefault(got[0].name, set()).add(got[1])
        else:
            self.m.entries.pop((t, off), None)

    def op_load(self, t: int, off: int, excl: bool | None) -> None:
        if t not in self.m.inited:
            with pytest.raises(ValueError, match="not initialised"):
                self.z.load(t, off, exclusive=excl)
            return
        e = self.m.entries.get((t, off))
        if excl is None:
            excl = bool(self.z.params["exclusive_loads"])
        try:
            got = self.z.load(t, off, exclusive=excl)
        except DecompressError:
            assert e is not None and e.corrupt, f"DecompressError at an intact {t}:{off}"
            self.m.load_failures += 1
            return
        if e is None:
            assert got is None, f"a page at {t}:{off}, where nothing is stored"
            return
        assert got == e.page, f"wrong bytes from {t}:{off} (corrupted: {e.corrupt})"
        if excl:
            del self.m.entries[(t, off)]

    def op_load_stored(self, pick: int, excl: bool | None) -> None:
        """A load of something stored (corrupted ones too)."""
        if self.m.entries:
            keys = sorted(self.m.entries)
            self.op_load(*keys[pick % len(keys)], excl)

    def op_invalidate(self, t: int, off: int) -> None:
        if t not in self.m.inited:
            with pytest.raises(ValueError, match="not initialised"):
                self.z.invalidate_page(t, off)
            return
        self.z.invalidate_page(t, off)
        self.m.entries.pop((t, off), None)

    def op_invalidate_area(self, t: int) -> None:
        if t not in self.m.inited:
            with pytest.raises(ValueError, match="not initialised"):
                self.z.invalidate_area(t)
            return
        self.z.invalidate_area(t)
        self.m.inited.discard(t)
        for key in [k for k in self.m.entries if k[0] == t]:
            del self.m.entries[key]

    def op_init(self, t: int) -> None:
        self.z.init(t)
        self.m.inited.add(t)

    def op_writeback(self, n: int, fail: bool) -> None:
        self.fail_writes = fail
        self.written.clear()
        # The handler is there only for this call: with none, a store at the pool
        # limit does not start the pool-limit worker, whose writebacks (and pool
        # references) would race the model at times the scheduler picks.
        self.z.set_writeback_handler(self.handler)
        try:
            got = self.z.writeback(n)
        finally:
            self.z.set_writeback_handler(None)
        assert not self.bad_writes, f"writeback wrote wrong bytes: {self.bad_writes}"
        assert got == len(self.written) <= n
        assert not fail or got == 0
        for key in self.written:
            assert not self.m.entries[key].same
            del self.m.entries[key]

    def op_param(self, flip: tuple[str, Any]) -> None:
        self.z.params[flip[0]] = flip[1]

    def op_corrupt(self, seed: int, kind: str) -> None:
        keys = sorted(
            k for k, e in self.m.entries.items() if self.entry_of(*k) is not None and not e.dangling
        )
        if not keys:
            return
        t, off = keys[seed % len(keys)]
        where = self.entry_of(t, off)
        assert where is not None
        pool, handle, length = where
        zpool = pool.zpool
        rng = random.Random(seed)
        view = zpool.map(handle, MapMode.RW)
        try:
            n = min(len(view), length)
            cut = rng.randrange(n)
            if kind == "random":
                view[:n] = rng.randbytes(n)
            elif kind == "zero":
                view[:n] = bytes(n)
            elif kind == "truncate":  # the stream ends early: a zeroed tail
                view[cut:n] = bytes(n - cut)
            elif kind == "flip":
                view[cut] ^= 1 << rng.randrange(8)
            else:
                view[: cut + 1] = rng.randbytes(cut + 1)
        finally:
            view.release()
            zpool.unmap(handle)
        self.m.entries[(t, off)].corrupt = True

    def op_forge(self, kind: str, seed: int) -> None:
        from zswap_zsmalloc import _zsmalloc

        pools = self.c_pools()
        if not pools:
            return
        rng = random.Random(seed)
        pool = rng.choice(pools)
        cap = pool.zpool.zpool_ops
        live = self.live_handles(pool)
        foreign = self.m.foreign.setdefault(pool.name, {})

        def einval(fn: Any, *args: Any) -> None:
            with pytest.raises(OSError) as info:
                fn(cap, *args)
            assert info.value.errno == errno.EINVAL

        if kind in ("random", "random64", "stale"):
            if kind == "stale":
                old = sorted(self.m.seen.get(pool.name, set()) - live)
                if not old:
                    return
                h = rng.choice(old)
            else:
                h = seed % (1 << 37) if kind == "random" else rng.getrandbits(64)
            if h in live:
                return
            einval(_zsmalloc._ops_read, h, 1)
            einval(_zsmalloc._ops_free, h)
        elif kind == "alloc":
            data = rng.randbytes(rng.randint(1, 3000))
            h = _zsmalloc._ops_alloc_write(cap, data)
            assert 0 < h <= (1 << 37) - 1 and h not in live
            foreign[h] = data
        elif kind == "free-foreign":
            if foreign:
                h = rng.choice(sorted(foreign))
                assert _zsmalloc._ops_read(cap, h, len(foreign[h])) == foreign[h]
                _zsmalloc._ops_free(cap, h)
                del foreign[h]
                einval(_zsmalloc._ops_read, h, 1)
        else:  # free a live entry's object behind zswap's back: a dangling handle
            keys = sorted(
                k
                for k, e in self.m.entries.items()
                if (w := self.entry_of(*k)) is not None and w[0] is pool and not e.dangling
            )
            if keys:
                key = rng.choice(keys)
                w = self.entry_of(*key)
                assert w is not None
                _zsmalloc._ops_free(cap, w[1])
                self.m.entries[key].corrupt = self.m.entries[key].dangling = True
                einval(_zsmalloc._ops_read, w[1], 1)

    # -- invariants ---------------------------------------------------------------------
    def check(self) -> None:
        z = self.z
        st = z.stats
        entries = self.m.entries
        same = sum(e.same for e in entries.values())
        assert st["stored_pages"] == len(entries)
        assert st["same_filled_pages"] == same
        assert st["decompress_fail"] >= self.m.load_failures
        pools = z.pools
        assert sum(p.nr_entries for p in pools) == len(entries) - same
        assert sum(p.total_size for p in pools) == st["pool_total_size"]
        assert st["pool_total_size"] == z.pages.nr_pages * PS
        assert sorted(z._core.types()) == sorted(self.m.inited)
        for p in pools[1:]:
            assert p.nr_entries > 0, "an old pool outlived its last entry"

    def finish(self) -> None:
        from zswap_zsmalloc import _zsmalloc

        z = self.z
        z.params["enabled"] = True
        for (t, off), e in sorted(self.m.entries.items()):
            try:
                got = z.load(t, off, exclusive=False)
            except DecompressError:
                assert e.corrupt
            else:
                assert got == e.page
        for pool in self.c_pools():
            for h, data in self.m.foreign.get(pool.name, {}).items():
                assert _zsmalloc._ops_read(pool.zpool.zpool_ops, h, len(data)) == data
                _zsmalloc._ops_free(pool.zpool.zpool_ops, h)
        self.m.foreign.clear()
        for t in sorted(self.m.inited):
            z.invalidate_area(t)
        self.m.inited.clear()
        self.m.entries.clear()
        self.check()
        st = z.stats
        assert st["stored_pages"] == 0 and st["pool_total_size"] == 0
        assert z.pages.nr_pages == 0
        assert all(v == 0 for k, v in z.native_memory().items() if k.startswith("core."))
        pools = z.pools
        assert len(pools) == 1 and pools[0].current and pools[0].nr_entries == 0
        z.close()
        assert z.pages.nr_pages == 0


FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _fuzz(zpool: str, ops: list[tuple[Any, ...]]) -> None:
    f = Fuzz(zpool)
    try:
        for op in ops:
            f.run(op)
        f.finish()
    finally:
        f.z.close()


@pytest.fixture(autouse=True)
def _quiet_zswap_log() -> Any:
    """Frees of dangling handles are logged as warnings: expected here, and many."""
    log = logging.getLogger("zswap_core")
    level = log.level
    log.setLevel(logging.ERROR)
    yield
    log.setLevel(level)


@FUZZ_SETTINGS
@given(ops=operations(("zsmalloc", "zbud")))
def test_fuzz_native_core_with_c_zsmalloc(ops: list[tuple[Any, ...]]) -> None:
    _fuzz("zsmalloc", ops)


@FUZZ_SETTINGS
@given(ops=operations(("zbud", "z3fold")))
def test_fuzz_native_core_with_a_python_allocator(ops: list[tuple[Any, ...]]) -> None:
    if not zswap_core.zpool_has_pool("zbud"):
        pytest.skip("the zbud plugin is not installed")
    _fuzz("zbud", ops)
