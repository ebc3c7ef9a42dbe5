"""The C pool against the Python reference, and what only the C pool has.

The differential tests drive a NativeZsmalloc and a PyZsmalloc with one seeded
sequence of operations and compare every result: handles, data (whole objects,
unwritten bytes included), errors, nr_pages, the PageAllocator's count and stats().
Then the C ops table (through the ``_ops_*`` helpers), page accounting and fault
injection through zswap-core's PageAllocator, native_memory() and the arenas.
"""

from __future__ import annotations

import errno
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from zswap_zsmalloc import (
    PyZsmalloc,
    Zsmalloc,
    class_table,
)
from zswap_zsmalloc._cpool import NativeZsmalloc

from zswap_core import MapMode, ModuleParams, PageAllocator, ZpoolError


@pytest.fixture(autouse=True)
def backend(require_native: None) -> Iterator[str]:
    """Overrides conftest.backend: these tests make both pools themselves."""
    yield "both"


def _params(chain: int | None) -> ModuleParams | None:
    if chain is None:
        return None
    params = ModuleParams("zsmalloc", Zsmalloc.parameters)
    params.set("chain_size", chain, boot=True)
    return params


def native_pool(
    page_size: int = 4096, chain: int | None = None, limit: int | None = None
) -> tuple[NativeZsmalloc, PageAllocator]:
    pa = PageAllocator(page_size, limit=limit, backend="native")
    z = Zsmalloc("native", pa, _params(chain))
    assert isinstance(z, NativeZsmalloc) and z.backend == "native"
    return z, pa


def python_pool(
    page_size: int = 4096, chain: int | None = None, limit: int | None = None
) -> tuple[PyZsmalloc, PageAllocator]:
    pa = PageAllocator(page_size, limit=limit, backend="python")
    z = PyZsmalloc("python", pa, _params(chain))
    assert z.backend == "python"
    return z, pa


def outcome(fn: Callable[[], Any]) -> tuple[str, Any]:
    """What a call did: its result, or its error's type and errno."""
    try:
        return ("ok", fn())
    except ZpoolError as exc:
        return ("ZpoolError", exc.errno)
    except (TypeError, ValueError) as exc:
        return (type(exc).__name__, None)


def ops_outcome(fn: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return ("ok", fn())
    except OSError as exc:
        return ("OSError", exc.errno)


# -- the class table ---------------------------------------------------------------------


@pytest.mark.parametrize("page_size", [512, 1024, 4096, 8192, 16384, 65536, 1 << 20])
@pytest.mark.parametrize("chain", [4, 5, 8, 13, 16])
def test_class_table_matches_python(page_size: int, chain: int) -> None:
    z, _ = native_pool(page_size, chain)
    t = class_table(page_size, chain)
    want = [
        (c.index, c.size, c.pages_per_zspage, c.objs_per_zspage, c.huge, c.first_index)
        for c in t.classes
    ]
    assert z._pool.classes() == want
    assert z.huge_class_size == t.huge_class_size
    z.destroy()


# -- differential: the same operations on both -------------------------------------------


class Twin:
    """A C pool and a Python pool fed the same operations; every result compared."""

    def __init__(self, page_size: int = 4096, chain: int | None = None, limit: int | None = None):
        self.n, self.npa = native_pool(page_size, chain, limit)
        self.p, self.ppa = python_pool(page_size, chain, limit)
        self.page_size = page_size
        self.live: dict[int, int] = {}  # handle -> size
        self.dead: list[int] = []  # freed handles
        self.held: dict[int, tuple[memoryview, memoryview]] = {}
        self.ops = 0

    def both(self, what: str, op: Callable[[Zsmalloc], Any]) -> tuple[str, Any]:
        self.ops += 1
        a = outcome(lambda: op(self.n))
        b = outcome(lambda: op(self.p))
        if a[0] == "ok" and isinstance(a[1], (bytes, bytearray)):
            a = ("ok", bytes(a[1]))
            b = ("ok", bytes(b[1])) if b[0] == "ok" else b
        assert a == b, f"op {self.ops} {what}: native {a!r:.200} != python {b!r:.200}"
        return a

    def check(self, where: str) -> None:
        assert self.n.nr_pages == self.p.nr_pages == self.npa.nr_pages == self.ppa.nr_pages, where
        assert self.n.total_size() == self.p.total_size(), where
        assert self.n.stats() == self.p.stats(), where
        assert self.n.pages_compacted == self.p.pages_compacted, where

    def malloc(self, size: int) -> None:
        r = self.both(f"malloc({size})", lambda z: z.malloc(size))
        if r[0] == "ok":
            assert 0 < r[1] < 2**37
            self.live[r[1]] = size

    def alloc_write(self, data: bytes) -> None:
        r = self.both(f"alloc_write({len(data)})", lambda z: z.alloc_write(data))
        if r[0] == "ok":
            self.live[r[1]] = len(data)

    def free(self, h: int) -> None:
        self.held.pop(h, None)
        self.both(f"free({h:#x})", lambda z: z.free(h))
        if self.live.pop(h, None) is not None:
            self.dead.append(h)

    def read(self, h: int, n: int) -> None:
        self.both(f"read({h:#x}, {n})", lambda z: z.read(h, n))

    def write(self, h: int, data: bytes) -> None:
        self.both(f"write({h:#x}, {len(data)})", lambda z: z.write(h, data))

    def map_write(self, h: int, mode: MapMode, data: bytes) -> None:
        """Map, compare what the mappings show, write ``data`` through them, unmap."""

        def mapped(z: Zsmalloc) -> bytes:
            view = z.map(h, mode)
            try:
                return bytes(view)
            finally:
                z.unmap(h)

        self.both(f"map({h:#x}, {mode.name})", mapped)
        views = {z: z.map(h, mode) for z in (self.n, self.p)}
        for z, view in views.items():
            assert len(view) >= self.live[h]
            view[: len(data)] = data
            z.unmap(h)
        self.read(h, self.page_size)

    def hold(self, h: int) -> None:
        vn = self.n.map(h, MapMode.RO)
        vp = self.p.map(h, MapMode.RO)
        assert bytes(vn) == bytes(vp)
        self.held[h] = (vn, vp)

    def release(self, h: int) -> None:
        del self.held[h]
        self.both(f"unmap({h:#x})", lambda z: z.unmap(h))

    def compact(self) -> None:
        self.both("compact()", lambda z: z.compact())


def _size(rng: random.Random, page_size: int) -> int:
    pick = rng.random()
    if pick < 0.25:
        return rng.randint(1, 200)
    if pick < 0.7:
        return rng.randint(200, page_size * 3 // 4)
    if pick < 0.95:
        return rng.randint(page_size * 3 // 4, page_size)  # huge ones among them
    return rng.choice((1, 24, 25, page_size - 1, page_size))


def _bad_handle(rng: random.Random, twin: Twin) -> object:
    live = sorted(twin.live)
    choices: list[object] = [0, -1, 2**37 - 1, 2**37, 1 << 40, 10**30, "x", None, 1.0, True]
    if twin.dead:
        choices.append(rng.choice(twin.dead))  # stale
    if live:
        h = rng.choice(live)
        choices += [h ^ (1 << 28), h + 1, (h & ((1 << 28) - 1)) | (511 << 28)]  # forged
    bad = rng.choice(choices)
    if isinstance(bad, int) and bad in twin.live:
        return 0
    return bad


def run_twin(seed: int, steps: int, page_size: int = 4096, chain: int | None = None) -> Twin:
    rng = random.Random(seed)
    t = Twin(page_size, chain)
    cap = rng.choice((30, 120, 400))
    for step in range(steps):
        live = sorted(t.live)
        op = rng.random()
        if not live or (op < 0.35 and len(live) < cap):
            if rng.random() < 0.5:
                t.malloc(_size(rng, page_size))
            else:
                t.alloc_write(rng.randbytes(_size(rng, page_size)))
        elif op < 0.55:
            t.free(rng.choice(live))
        elif op < 0.62:
            h = rng.choice(live)
            t.read(h, rng.choice((t.live[h], page_size, rng.randint(-5, page_size + 5))))
        elif op < 0.70:
            h = rng.choice(live)
            n = t.live[h] if rng.random() < 0.8 else page_size + 1
            t.write(h, rng.randbytes(n))
        elif op < 0.76:
            h = rng.choice(live)
            if h not in t.held:
                mode = rng.choice((MapMode.RW, MapMode.WO))
                t.map_write(h, mode, rng.randbytes(rng.randint(0, t.live[h])))
        elif op < 0.82:
            h = rng.choice(live)
            if h in t.held:
                t.release(h)
            elif len(t.held) < 6:
                t.hold(h)
        elif op < 0.86:
            t.compact()
        elif op < 0.93:
            bad = _bad_handle(rng, t)
            for name in ("free", "map", "unmap", "read", "write"):
                if name == "read":
                    t.both(f"read({bad!r})", lambda z, bad=bad: z.read(bad, 10))  # type: ignore[arg-type]
                elif name == "write":
                    t.both(f"write({bad!r})", lambda z, bad=bad: z.write(bad, b"x"))  # type: ignore[arg-type]
                else:
                    t.both(f"{name}({bad!r})", lambda z, n=name, bad=bad: getattr(z, n)(bad))
        elif op < 0.95:
            bad_size = rng.choice((0, -1, page_size + 1, 2 * page_size, 1.5, "3", None, True))
            t.both(f"malloc({bad_size!r})", lambda z, s=bad_size: z.malloc(s))  # type: ignore[arg-type]
            t.both("alloc_write(b'')", lambda z: z.alloc_write(b""))
        elif op < 0.97:
            h = rng.choice(live)
            if h not in t.held:
                t.both(f"unmap({h:#x}) (not mapped)", lambda z, h=h: z.unmap(h))
        else:  # free about half: zspages empty out
            for h in rng.sample(live, len(live) // 2):
                t.free(h)
        t.check(f"seed {seed} step {step}")
    for h in list(t.held):
        t.release(h)
    t.compact()
    for h in sorted(t.live):
        t.read(h, page_size)
        t.free(h)
    t.check(f"seed {seed}: all freed")
    assert t.n.nr_pages == 0
    return t


@pytest.mark.parametrize("seed", range(6))
def test_differential_random(seed: int) -> None:
    t = run_twin(seed, 1200)
    t.n.destroy()
    t.p.destroy()


@pytest.mark.parametrize(("page_size", "chain"), [(16384, 4), (65536, 16), (512, 8)])
def test_differential_page_sizes(page_size: int, chain: int) -> None:
    run_twin(100 + page_size, 500, page_size, chain)


def test_differential_empty_pool_keeps_generations() -> None:
    """The last free drops the handle table; new handles still differ from old ones."""
    t = Twin()
    for _ in range(3):
        t.malloc(100)
    first = sorted(t.live)
    for h in first:
        t.free(h)
    t.check("empty")
    assert t.n.native_memory()["handle_table"] == 0
    for _ in range(3):
        t.malloc(100)
    assert not set(first) & set(t.live)
    for h in first:  # stale, through both
        t.both("free(stale)", lambda z, h=h: z.free(h))
    for h in sorted(t.live):
        t.free(h)


def test_differential_generations_wrap() -> None:
    t = Twin()
    t.malloc(10)  # keeps the slot table
    for _ in range(1100):
        t.malloc(10)
        t.free(max(t.live))
    t.check("after 1100 reuses of one slot")


# -- the ops table -----------------------------------------------------------------------


def test_ops_capsule_round_trip() -> None:
    from zswap_zsmalloc import _zsmalloc

    z, pa = native_pool()
    cap = z.zpool_ops
    rng = random.Random(9)
    objs = {}
    for _ in range(300):
        data = rng.randbytes(rng.randint(1, 4096))
        h = _zsmalloc._ops_alloc_write(cap, data)
        assert 0 < h < 2**37
        objs[h] = data
    assert pa.nr_pages == z.nr_pages > 0
    for h, data in objs.items():
        assert _zsmalloc._ops_read(cap, h, len(data)) == data
        assert z.read(h, len(data)) == data  # the Python methods see the same objects
    for h in list(objs)[::2]:
        _zsmalloc._ops_free(cap, h)
        del objs[h]
    for h, data in objs.items():
        assert _zsmalloc._ops_read(cap, h, len(data)) == data
        z.free(h)
    assert pa.nr_pages == z.nr_pages == 0


def test_ops_errors() -> None:
    from zswap_zsmalloc import _zsmalloc

    z, _ = native_pool()
    cap = z.zpool_ops
    h = _zsmalloc._ops_alloc_write(cap, b"a" * 100)
    stale = _zsmalloc._ops_alloc_write(cap, b"b" * 100)
    _zsmalloc._ops_free(cap, stale)
    bad = [stale, 0, 1, 2**37 - 1, 2**37, 2**64 - 1, h ^ (1 << 28), h + 1, h | (511 << 28)]
    for b in bad:
        assert ops_outcome(lambda b=b: _zsmalloc._ops_read(cap, b, 1)) == ("OSError", errno.EINVAL)
        assert ops_outcome(lambda b=b: _zsmalloc._ops_free(cap, b)) == ("OSError", errno.EINVAL)
    # lengths are checked against the object (100 bytes in a 112-byte class: 104 of data)
    assert _zsmalloc._ops_read(cap, h, 104)[:100] == b"a" * 100
    assert ops_outcome(lambda: _zsmalloc._ops_read(cap, h, 105)) == ("OSError", errno.EINVAL)
    assert ops_outcome(lambda: _zsmalloc._ops_read(cap, h, 1 << 20)) == ("OSError", errno.EINVAL)
    assert ops_outcome(lambda: _zsmalloc._ops_alloc_write(cap, b"")) == ("OSError", errno.EINVAL)
    big = b"x" * 4097
    assert ops_outcome(lambda: _zsmalloc._ops_alloc_write(cap, big)) == ("OSError", errno.ENOSPC)
    with pytest.raises(ZpoolError) as info:
        _zsmalloc._ops_free(cap, stale)
    assert info.value.errno == errno.EINVAL
    # a destroyed pool answers every call with EINVAL
    z.destroy()
    assert ops_outcome(lambda: _zsmalloc._ops_read(cap, h, 1)) == ("OSError", errno.EINVAL)
    assert ops_outcome(lambda: _zsmalloc._ops_free(cap, h)) == ("OSError", errno.EINVAL)
    assert ops_outcome(lambda: _zsmalloc._ops_alloc_write(cap, b"x")) == ("OSError", errno.EINVAL)
    with pytest.raises(ValueError):  # not a zpool_ops capsule
        _zsmalloc._ops_free(PageAllocator(4096, backend="native").page_acct, h)


def test_ops_capsule_keeps_pool_alive() -> None:
    from zswap_zsmalloc import _zsmalloc

    z, pa = native_pool()
    cap = z.zpool_ops
    h = _zsmalloc._ops_alloc_write(cap, b"kept")
    del z  # only the capsule holds the C pool now
    assert _zsmalloc._ops_read(cap, h, 4) == b"kept"
    assert pa.nr_pages > 0
    del cap  # the last reference: the pool goes, and its pages back
    assert pa.nr_pages == 0


def test_ops_fuzz_against_python() -> None:
    """alloc_write/read/free through the capsule, the same on the Python pool."""
    from zswap_zsmalloc import _zsmalloc

    z, _ = native_pool()
    p, _ = python_pool()
    cap = z.zpool_ops
    rng = random.Random(4)
    live: dict[int, bytes] = {}
    gone: list[int] = []
    for _ in range(3000):
        r = rng.random()
        if not live or r < 0.45:
            data = rng.randbytes(rng.randint(0, 4100))
            a = ops_outcome(lambda d=data: _zsmalloc._ops_alloc_write(cap, d))
            b = ops_outcome(lambda d=data: p.alloc_write(d))
            assert a == b
            if a[0] == "ok":
                live[a[1]] = data
        elif r < 0.8:
            h = rng.choice(sorted(live))
            a = ops_outcome(lambda h=h: _zsmalloc._ops_free(cap, h))
            assert a == ops_outcome(lambda h=h: p.free(h))
            gone.append(live.pop(h) and h)
        elif r < 0.95:
            h = rng.choice(sorted(live))
            n = len(live[h])
            assert _zsmalloc._ops_read(cap, h, n) == live[h] == p.read(h, n)
        else:
            h = rng.choice(gone) if gone else 12345
            a = ops_outcome(lambda h=h: _zsmalloc._ops_free(cap, h))
            assert a == ("OSError", errno.EINVAL)
    assert z.stats() == p.stats()


# -- pages: accounting and fault injection through the PageAllocator ---------------------


def test_fault_injection_matches_python() -> None:
    """fail_randomly, fail_next, a Python hook and a limit: the same refusals (ENOMEM)
    on both, the same pages held, nothing kept by a refused malloc."""
    t = Twin(limit=300)
    rng = random.Random(17)
    for pa in (t.npa, t.ppa):
        pa.fail_randomly(0.3, seed=5)
    refused = 0
    for step in range(1500):
        if step == 500:
            for pa in (t.npa, t.ppa):
                pa.fail_next(4)
        if step == 800:
            for pa in (t.npa, t.ppa):
                calls = [0]

                def third(calls: list[int] = calls) -> bool:
                    calls[0] += 1
                    return calls[0] % 3 == 0

                pa.fail = third
        before = t.n.nr_pages
        if not t.live or rng.random() < 0.6:
            size = rng.randint(1, 4096)
            r = t.both(f"malloc({size})", lambda z, s=size: z.malloc(s))
            if r[0] == "ok":
                t.live[r[1]] = size
            else:
                assert r == ("ZpoolError", errno.ENOMEM)
                assert t.n.nr_pages == before
                refused += 1
        else:
            t.free(rng.choice(sorted(t.live)))
        t.check(f"step {step}")
        assert t.npa.nr_pages <= 300
    assert refused > 50
    assert t.npa.failures == t.ppa.failures
    for pa in (t.npa, t.ppa):
        pa.stop_failing()
    for h in sorted(t.live):
        t.free(h)
    assert t.npa.nr_pages == t.ppa.nr_pages == 0


def test_refused_malloc_into_an_empty_pool_keeps_no_handle_table() -> None:
    """A malloc into an empty pool grows the handle table before charge(); refused,
    it drops the table again (the flake of test_stress_with_a_python_fault_hook: a
    stress thread's last malloc refused into the emptied pool kept 512 bytes). The
    generations go on as the reference's: no old handle becomes valid again."""
    from zswap_zsmalloc import _zsmalloc

    t = Twin()
    base = t.n.native_memory()

    def refuse_next() -> None:
        for pa in (t.npa, t.ppa):
            pa.fail_next(1)

    refuse_next()
    t.malloc(3000)  # refused before any table existed
    assert not t.live and t.n.native_memory() == base
    for _ in range(3):
        t.malloc(100)
    first = sorted(t.live)
    for h in first:
        t.free(h)  # the last free drops the table
    assert t.n.native_memory() == base
    for size in (100, 4096):  # a class with pages before, a huge one
        refuse_next()
        t.malloc(size)
        assert not t.live
        assert t.n.native_memory() == base, size
    t.check("refused into the emptied pool")
    cap = t.n.zpool_ops
    t.npa.limit = 0  # refused without the GIL, through the ops table
    with pytest.raises(OSError) as info:
        _zsmalloc._ops_alloc_write(cap, b"z" * 500)
    assert info.value.errno == errno.ENOMEM
    assert t.n.native_memory() == base
    t.npa.limit = None
    for _ in range(3):
        t.malloc(100)
    assert not set(first) & set(t.live)  # same handles on both, new generation
    for h in first:  # stale, through both
        t.both("free(stale)", lambda z, h=h: z.free(h))
    for h in sorted(t.live):
        t.free(h)
    t.check("end")
    assert t.n.native_memory() == base


def test_fail_hook_may_use_the_pool() -> None:
    """charge() runs with no pool lock held: a fault hook can call into the pool."""
    z, pa = native_pool()
    keep = z.malloc(4000)
    seen: list[bytes] = []

    def hook() -> bool:
        if not seen:
            seen.append(b"")
            h = z.alloc_write(b"inner")  # re-enters the pool from inside charge()
            seen.append(z.read(h, 5))
            z.free(keep)
            return True  # and then refuses the page
        return False

    pa.fail = hook
    with pytest.raises(ZpoolError) as info:
        z.malloc(4000)  # huge: needs a new zspage
    assert info.value.errno == errno.ENOMEM
    assert seen == [b"", b"inner"]
    assert pa.nr_pages == z.nr_pages == z.stats()["total"]["pages_used"] == 1
    h = z.malloc(4000)
    pa.stop_failing()
    assert pa.nr_pages == z.nr_pages == z.stats()["total"]["pages_used"] == 2
    z.free(h)
    assert z.stats()["nr_handles"] == 1
    z.destroy()
    assert pa.nr_pages == 0


def test_destroy_and_dealloc_return_pages() -> None:
    z, pa = native_pool()
    for n in range(1, 4097, 13):
        z.malloc(n)
    assert pa.nr_pages == z.nr_pages > 0
    z.destroy()
    assert pa.nr_pages == z.nr_pages == 0
    assert z.native_memory()["arena_bytes_mapped"] == 0
    z2, pa2 = native_pool()
    z2.malloc(100)
    assert pa2.nr_pages > 0
    del z2  # never destroyed: the C pool gives the pages back when collected
    assert pa2.nr_pages == 0


# -- native memory and arenas ------------------------------------------------------------


def test_native_memory_returns_to_baseline() -> None:
    z, _ = native_pool()
    base = z.native_memory()
    assert base["handle_table"] == base["zspage_descriptors"] == 0
    assert base["arena_bytes_mapped"] == base["arenas"] == 0
    rng = random.Random(2)
    hs = [z.malloc(rng.randint(600, 3000)) for _ in range(2000)]
    views = [z.map(h, MapMode.RO) for h in hs[:3]]
    m = z.native_memory()
    for key in ("handle_table", "zspage_descriptors", "arena_bytes_mapped", "mapping_records"):
        assert m[key] > 0, key
    per_object = (m["handle_table"] + m["zspage_descriptors"]) / len(hs)
    assert per_object <= 16, m
    for h in hs[:3]:
        z.unmap(h)
    del views
    for h in hs:
        z.free(h)
    assert z.native_memory() == base


def test_metadata_per_object_at_20000() -> None:
    """The benchmark's mix: handle + zspage metadata about 16 B per object or less."""
    z, _ = native_pool()
    rng = random.Random(0)
    hs = [z.malloc(rng.randint(600, 3000)) for _ in range(20000)]
    m = z.native_memory()
    assert (m["handle_table"] + m["zspage_descriptors"]) / len(hs) <= 16, m
    assert m["arena_bytes_mapped"] >= z.nr_pages * z.page_size
    for h in hs:
        z.free(h)


def test_emptied_arena_is_unmapped() -> None:
    z, pa = native_pool()
    mem = z.native_memory
    hs = [z.malloc(4096) for _ in range(1500)]  # huge: a page each; 1,024 pages per arena
    assert mem()["arenas"] == 2
    arena = mem()["arena_bytes_mapped"] // 2
    for h in hs[1024:]:  # everything in the second arena
        z.free(h)
    assert mem()["arenas"] == 1 and mem()["arena_bytes_mapped"] == arena
    z.free(hs[0])
    hs[0] = z.malloc(4096)  # takes the page just freed in the first arena
    assert mem()["arenas"] == 1
    for h in hs[:1024]:
        z.free(h)
    assert mem()["arenas"] == 0 and mem()["arena_bytes_mapped"] == 0
    assert pa.nr_pages == 0


# -- mappings ------------------------------------------------------------------------------


def test_mapping_is_a_private_copy() -> None:
    z, _ = native_pool()
    h = z.malloc(1000)
    z.write(h, b"a" * 1000)
    ro = z.map(h, MapMode.RO)
    ro[:3] = b"xyz"  # RO: not copied back
    rw = z.map(h, MapMode.RW)
    rw[:3] = b"RW!"
    assert z.read(h, 3) == b"aaa"  # a copy until unmap
    z.unmap(h)  # the newest mapping of this thread: rw
    assert z.read(h, 3) == b"RW!"
    z.unmap(h)  # ro
    assert z.read(h, 3) == b"RW!"
    with pytest.raises(ZpoolError) as info:
        z.unmap(h)
    assert info.value.errno == errno.EINVAL
    wo = z.map(h, MapMode.WO)  # WO shows the object too: a partial write keeps the rest
    wo[:2] = b"wo"
    z.unmap(h)
    assert z.read(h, 4) == b"wo!a"
    v = z.map(h)
    z.free(h)  # the mapping dies with the object; the view stays readable
    assert bytes(v[:4]) == b"wo!a"
    with pytest.raises(ZpoolError):
        z.unmap(h)
    z.destroy()
    assert bytes(v[:2]) == b"wo"  # no view points into an unmapped arena


def test_write_length_checked() -> None:
    z, _ = native_pool()
    h = z.malloc(100)  # 112-byte class: 104 bytes of data
    z.write(h, b"x" * 104)
    with pytest.raises(ZpoolError) as info:
        z.write(h, b"x" * 105)
    assert info.value.errno == errno.EINVAL
    assert z.read(h, 10**9) == b"x" * 104  # read clamps, as the reference
    assert z.read(h, -3) == b""
    huge = z.malloc(4000)
    z.write(huge, b"h" * 4096)  # a huge object has the whole page
    with pytest.raises(ZpoolError):
        z.write(huge, b"h" * 4097)
    with pytest.raises(TypeError):
        z.write(h, 12)  # type: ignore[arg-type]
