"""The native core (``zswap_core._core``, sources in ``zswap_core/_native/``) on its own.

What the differential tests cannot see, because both backends would agree on it or
because it exists only in C: which backend a Zswap gets; the C page counter against its
Python twin; the C memory of the entry tables going back when pages go; same-filled
fill words split over an entry's two words; observers and codecs that call back into
the Zswap while the core is in the middle of a page (no C lock may be held across a
Python call); writeback pins; values from plugins that break their contract.

Races are forced: a writeback handler blocks on an event, and a waiter is known to
wait because the core called its ``_native_wait_pin`` slow path. Timeouts only end a
hang, they are never a verdict. (``zswap_ops.h`` copies: ``test_ops_header_copies.py``.)
"""

from __future__ import annotations

import errno
import logging
import random
import struct
import sys
import threading
import uuid
import warnings
import zlib
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest
from helpers import EveryHook, FakeDists, mixed_pages

import zswap_core
from zswap_core import (
    DecompressError,
    PageAllocator,
    Registry,
    Zswap,
    _backend,
    hookimpl,
    register_observer,
    unregister_observer,
)
from zswap_core._backend import NATIVE_ERROR
from zswap_core._page_alloc import _PyPageCounter

pytestmark = pytest.mark.skipif(NATIVE_ERROR is not None, reason=str(NATIVE_ERROR))

PS = 4096
RAM = 1 << 30
MAX_OFFSET = 0xFFFFFFFF
MAX_HANDLE = (1 << 37) - 1
#: Only ends a hang (a deadlock is a failure, not a wait): never a verdict.
HANG = 30.0


def compressible(i: int, seed: int = 0) -> bytes:
    """~1.1 KiB after lz4, unique per (seed, i)."""
    rng = random.Random(seed * 1_000_003 + i)
    return rng.randbytes(1000) + i.to_bytes(4, "little") + bytes(PS - 1004)


def filled(word: int) -> bytes:
    return struct.pack("<Q", word) * (PS // 8)


def make(backend: str = "native", **kw: Any) -> Zswap:
    kw.setdefault("compressor", "lz4")
    kw.setdefault("zpool", "zsmalloc")
    kw.setdefault("ram_bytes", RAM)
    z = Zswap(backend=backend, **kw)
    assert (z._core is not None) == (backend == "native")
    z.init(0)
    return z


def guarded(fn: Callable[[], Any]) -> Any:
    """``fn()`` on another thread: a deadlock fails the test instead of hanging it."""
    out: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(HANG)
    assert not t.is_alive(), f"{fn} did not finish: a deadlock"
    if errors:
        raise errors[0]
    return out[0]


class Wrapped:
    """A codec around a pool's own (``pool.compressor = Wrapped(...)``): ``before(kind)``
    runs inside every call, ``on_compress`` / ``on_decompress`` replace the results."""

    def __init__(
        self,
        inner: Any,
        before: Callable[[str], None] | None = None,
        on_compress: Callable[[bytes], Any] | None = None,
        on_decompress: Callable[[bytes], Any] | None = None,
    ) -> None:
        self.inner = inner
        self.before = before
        self.on_compress = on_compress
        self.on_decompress = on_decompress

    def compress(self, src: Any) -> Any:
        if self.before is not None:
            self.before("compress")
        out = self.inner.compress(src)
        return self.on_compress(out) if self.on_compress is not None else out

    def decompress(self, src: Any, dlen: int) -> Any:
        if self.before is not None:
            self.before("decompress")
        out = self.inner.decompress(src, dlen)
        return self.on_decompress(out) if self.on_decompress is not None else out

    def close(self) -> None:
        self.inner.close()


# -- 1. backend selection ----------------------------------------------------------------


def test_default_and_auto_are_native(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZSWAP_BACKEND", raising=False)
    core = _backend.native_module()
    assert core is not None
    for kw in ({}, {"backend": "auto"}, {"backend": "native"}):
        with Zswap(ram_bytes=RAM, **kw) as z:  # type: ignore[arg-type]
            assert z.backend == "native" and z._core is not None
            assert isinstance(z.pages._acct, core.PageCounter)
            z.init(0)
            assert z.store(0, 1, compressible(1))
            assert z._current is not None and z._current.zpool.backend == "native"
    monkeypatch.setenv("ZSWAP_BACKEND", " Auto ")  # the variable is stripped, any case
    with Zswap(ram_bytes=RAM) as z:
        assert z._core is not None


def test_python_backend_by_argument_and_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZSWAP_BACKEND", raising=False)
    with Zswap(ram_bytes=RAM, backend="python") as z:
        assert z.backend == "python" and z._core is None
        assert type(z.pages._acct) is _PyPageCounter
        assert z.native_memory() == {}
        assert z.store.__func__ is Zswap.store  # type: ignore[attr-defined]
    monkeypatch.setenv("ZSWAP_BACKEND", "PYTHON")
    with Zswap(ram_bytes=RAM) as z:
        assert z._core is None
        assert z._current is not None and z._current.zpool.backend == "python"
    with Zswap(ram_bytes=RAM, backend="native") as z:  # the argument wins
        assert z._core is not None


@pytest.mark.parametrize(
    "source,value",
    [
        *[("argument", v) for v in ("c", "Native", "", " native", "pyhton", "native,python")],
        *[("environment", v) for v in ("c", "pyhton", "native,python", "0")],
    ],
)
def test_an_invalid_backend_is_a_valueerror_and_changes_nothing(
    monkeypatch: pytest.MonkeyPatch, source: str, value: str
) -> None:
    reg = Registry()
    warned = _backend._warned
    kw: dict[str, Any] = {"registry": reg, "ram_bytes": RAM}
    if source == "argument":
        monkeypatch.delenv("ZSWAP_BACKEND", raising=False)
        kw["backend"] = value
        prefix = "backend="
    else:
        monkeypatch.setenv("ZSWAP_BACKEND", value)
        prefix = "ZSWAP_BACKEND="
    with pytest.raises(ValueError, match="auto, native, python") as info:
        Zswap(**kw)
    assert prefix in str(info.value)
    with pytest.raises(ValueError, match="auto, native, python"):
        PageAllocator(PS, **({"backend": value} if source == "argument" else {}))
    # nothing loaded, no pool made, no warning state touched
    assert reg.loaded("compressor", "lz4") is None and reg.loaded("zpool", "zsmalloc") is None
    assert _backend._warned == warned


def test_native_unavailable_raises_and_auto_falls_back_with_one_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_backend, "_core", None)
    monkeypatch.setattr(_backend, "NATIVE_ERROR", "simulated: not built")
    monkeypatch.setattr(_backend, "_warned", False)
    monkeypatch.delenv("ZSWAP_BACKEND", raising=False)
    with pytest.raises(ValueError, match="simulated: not built"):
        Zswap(ram_bytes=RAM, backend="native")
    monkeypatch.setenv("ZSWAP_BACKEND", "native")
    with pytest.raises(ValueError, match="ZSWAP_BACKEND='native': simulated"):
        Zswap(ram_bytes=RAM)
    assert _backend._warned is False  # an error is not the fallback's warning
    monkeypatch.delenv("ZSWAP_BACKEND")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        made = [Zswap(ram_bytes=RAM), Zswap(ram_bytes=RAM, backend="auto"), Zswap(ram_bytes=RAM)]
        PageAllocator(PS)
    said = [w for w in caught if "using the Python backend" in str(w.message)]
    assert len(said) == 1 and said[0].category is RuntimeWarning
    assert "simulated: not built" in str(said[0].message)
    for z in made:
        assert z.backend == "python" and z._core is None
        z.init(0)
        assert z.store(0, 3, compressible(3)) and z.load(0, 3) == compressible(3)
        z.close()


# -- 2. the page counter: C against its Python twin ----------------------------------------


def _outcome(fn: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", fn()
    except Exception as exc:
        return "raised", f"{type(exc).__name__}: {exc}"


def _counter_state(c: Any) -> tuple[Any, ...]:
    return (c.nr_pages, c.peak, c.failures, c.limit, c.fail_next)


@pytest.mark.parametrize("seed", range(6))
def test_page_counter_matches_its_python_twin(seed: int) -> None:
    core = _backend.native_module()
    assert core is not None
    rng = random.Random(seed)
    counters = [core.PageCounter(PS, None), _PyPageCounter(PS, None)]

    def hook_of(hseed: int, p: float) -> Callable[[], bool]:
        r = random.Random(hseed)
        return lambda: r.random() < p

    for step in range(600):
        r = rng.random()
        if r < 0.4:
            n = rng.randint(0, 6)
            ops = [lambda c, n=n: c.charge(n) for _ in counters]
        elif r < 0.65:
            n = rng.randint(0, counters[0].nr_pages + 2)  # sometimes more than held
            ops = [lambda c, n=n: c.uncharge(n) for _ in counters]
        elif r < 0.75:
            lim = rng.choice([None, 0, max(0, counters[0].nr_pages - 1), counters[0].nr_pages + 3])
            ops = [lambda c, lim=lim: setattr(c, "limit", lim) for _ in counters]
        elif r < 0.85:
            k = rng.randint(0, 3)
            ops = [lambda c, k=k: setattr(c, "fail_next", k) for _ in counters]
        else:
            hseed, p = rng.getrandbits(32), rng.choice([0.0, 0.3, 1.0])
            hooks = [None if p == 0.0 else hook_of(hseed, p) for _ in counters]
            ops = [lambda c, h=h: setattr(c, "fail", h) for h in hooks]
        before = [_counter_state(c) for c in counters]
        a, b = (_outcome(lambda c=c, op=op: op(c)) for c, op in zip(counters, ops, strict=True))
        assert a == b, f"step {step}: C {a} != Python {b}"
        if a[0] == "raised":
            assert a[1].startswith("RuntimeError: page allocator: more pages freed")
            assert [_counter_state(c) for c in counters] == before  # changed nothing
        assert _counter_state(counters[0]) == _counter_state(counters[1]), f"step {step}"
        assert counters[0].nr_pages <= counters[0].peak
    assert counters[0].failures > 0 and counters[0].peak > 0


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_raising_fail_hook_refuses_the_page_alike() -> None:
    core = _backend.native_module()
    assert core is not None
    results = []
    for c in (core.PageCounter(PS, None), _PyPageCounter(PS, None)):
        calls = [0]

        def hook(calls: list[int] = calls) -> bool:
            calls[0] += 1
            if calls[0] == 2:
                raise RuntimeError("fault hook exploded")
            return False

        c.fail = hook
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = _outcome(lambda c=c: c.charge(3))
        results.append((out, _counter_state(c)))
    assert results[0] == (("ok", False), (0, 1, 1, None, 0))  # the C counter: refused
    assert results[1] == results[0]


def test_a_negative_charge_is_refused_alike() -> None:
    core = _backend.native_module()
    assert core is not None
    outs = [
        _outcome(lambda c=c: c.charge(-1)) for c in (core.PageCounter(PS), _PyPageCounter(PS, None))
    ]
    assert outs[0][0] == "raised" and outs[0] == outs[1]


def test_uncharge_beyond_what_is_held_raises_and_changes_nothing() -> None:
    core = _backend.native_module()
    assert core is not None
    for c in (core.PageCounter(PS, None), _PyPageCounter(PS, None)):
        assert c.charge(3)
        for n in (4, 100, -1):
            with pytest.raises(RuntimeError, match="more pages freed than allocated"):
                c.uncharge(n)
            assert (c.nr_pages, c.peak, c.failures) == (3, 3, 0)
        c.uncharge(3)
        assert c.nr_pages == 0
        with pytest.raises(RuntimeError):
            c.uncharge(1)


def test_crc32_is_zlibs() -> None:
    core = _backend.native_module()
    assert core is not None
    rng = random.Random(5)
    blob = rng.randbytes(8192)
    for n in [*range(71), 4095, 4096, 4097, 8192]:
        data = blob[:n]
        assert core.crc32(data) == zlib.crc32(data), n
        assert core.crc32(bytearray(data)) == zlib.crc32(data)
    for start in range(8):  # unaligned starts, through a memoryview
        view = memoryview(blob)[start : start + 4096]
        assert core.crc32(view) == zlib.crc32(view)
    for _ in range(200):
        data = rng.randbytes(rng.randint(0, 5000))
        assert core.crc32(data) == zlib.crc32(data)
    assert core.crc32(b"123456789") == 0xCBF43926  # the CRC-32 check value
    with pytest.raises(TypeError):
        core.crc32("not bytes")  # type: ignore[arg-type]


# -- 3. metadata is C memory, and it goes back -------------------------------------------------


def core_mem(z: Zswap) -> dict[str, int]:
    return {k: v for k, v in z.native_memory().items() if k.startswith("core.")}


def zpool_mem(z: Zswap) -> dict[str, int]:
    return {k: v for k, v in z.native_memory().items() if k.startswith("zpool.")}


LAYOUTS = {
    "sparse": [k * 1_000_003 for k in range(150)],
    "dense": list(range(700)),
}


def _store_all(z: Zswap, offsets: list[int]) -> dict[int, bytes]:
    pages = {off: compressible(off) for off in offsets}
    for off, page in pages.items():
        assert z.store(0, off, page)
    return pages


def _drop_all(z: Zswap, how: str, pages: dict[int, bytes]) -> None:
    if how == "invalidate_page":
        for off in pages:
            z.invalidate_page(0, off)
    elif how == "exclusive_load":
        for off, page in pages.items():
            assert z.load(0, off, exclusive=True) == page
    elif how == "writeback":
        written: dict[int, bytes] = {}
        z.set_writeback_handler(lambda t, off, page: written.__setitem__(off, page))
        assert z.writeback(10**6) == len(pages)
        assert written == pages
    else:
        z.invalidate_area(0)
        z.init(0)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize(
    "how", ["invalidate_page", "exclusive_load", "writeback", "invalidate_area"]
)
def test_metadata_is_c_memory_that_goes_back(layout: str, how: str) -> None:
    """Everything the entries took goes back (core and C zsmalloc); the table of
    directories is checked on its own below (it outlives the last page)."""
    with make(checksums_enabled=True) as z:
        base_core, base_zpool = core_mem(z), zpool_mem(z)
        assert base_core["core.trees"] > 0
        assert all(v == 0 for k, v in base_core.items() if k != "core.trees")
        pages = _store_all(z, LAYOUTS[layout])
        held = core_mem(z)
        for kind in ("core.entries", "core.directories", "core.checksums", "core.lru"):
            assert held[kind] > base_core[kind], kind
        assert zpool_mem(z)["zpool.handle_table"] > base_zpool["zpool.handle_table"]
        assert z.stats["stored_pages"] == len(pages)
        _drop_all(z, how, pages)
        st = z.stats
        assert st["stored_pages"] == 0 and st["pool_total_size"] == 0
        assert z.pages.nr_pages == 0
        after = core_mem(z)
        if how != "invalidate_area":
            after.pop("core.directories")
            base_core = {k: v for k, v in base_core.items() if k != "core.directories"}
        assert after == base_core
        assert zpool_mem(z) == base_zpool


@pytest.mark.parametrize("how", ["invalidate_page", "exclusive_load", "writeback"])
def test_the_directory_table_goes_back_with_the_last_page(how: str) -> None:
    with make() as z:
        base = core_mem(z)
        pages = _store_all(z, [5, 300_000_000, MAX_OFFSET])
        _drop_all(z, how, pages)
        assert z.stats["stored_pages"] == 0
        assert core_mem(z) == base


def test_metadata_per_stored_page_at_20000_pages() -> None:
    """The issue's target: at most 40 B of C metadata per stored page, core and C
    zsmalloc together, at 20,000 pages of the mix through lz4 + zsmalloc."""
    pages = mixed_pages(20_000)
    with make(ram_bytes=1 << 36) as z:
        for off, page in enumerate(pages):
            z.store(0, off, page)
        stored = z.stats["stored_pages"]
        assert stored >= 16_000  # the incompressible sixth is refused
        mem = z.native_memory()
        assert mem["core.entries"] > 0 and mem["zpool.handle_table"] > 0
        per_page = sum(mem.values()) / stored
        assert per_page <= 40, (per_page, mem)
        for off, page in enumerate(pages[:300]):
            assert z.load(0, off) in (page, None)


@pytest.mark.parametrize(
    "offset",
    [
        1_000_000,
        10_000_000,
        MAX_OFFSET,
    ],
)
def test_a_lonely_page_at_a_far_offset_is_cheap(offset: int) -> None:
    with make() as z:
        base = sum(core_mem(z).values())
        assert z.store(0, offset, compressible(1))
        cost = sum(core_mem(z).values()) - base
        assert 0 < cost < 16 * 1024, cost
        assert z.load(0, offset) == compressible(1)


# -- 4. same-filled pages ----------------------------------------------------------------------

FILL_WORDS = [
    0,
    2**64 - 1,
    0x0102030405060708,
    0x89ABCDEF01234567,  # high and low halves differ
    0xFFFFFFFF00000000,  # low half zero
    0x00000000FFFFFFFF,  # high half zero
    0x0000000100000000,
    0x5A5A5A5A5A5A5A5A,
]


@pytest.mark.parametrize("exclusive", [False, True])
@pytest.mark.parametrize("checksums", [False, True])
def test_every_fill_word_round_trips(exclusive: bool, checksums: bool) -> None:
    zs = [make(b, checksums_enabled=checksums) for b in ("native", "python")]
    try:
        got: dict[str, list[bytes]] = {}
        for z in zs:
            for k, word in enumerate(FILL_WORDS):
                assert z.store(0, 10 + k, filled(word))
                assert z.store(0, 1000 + k, filled(word))
                e = z._entry(0, 10 + k)
                assert e & 3 == 3, hex(e)  # present, same-filled
            st = z.stats
            assert st["same_filled_pages"] == st["stored_pages"] == 2 * len(FILL_WORDS)
            assert st["pool_total_size"] == 0  # no pool memory at all
            got[z.backend] = []
            for k, word in enumerate(FILL_WORDS):
                page = z.load(0, 10 + k, exclusive=exclusive)
                assert page == filled(word), hex(word)
                assert page.__class__ is bytes
                got[z.backend].append(page)
                assert z.load(0, 1000 + k) == filled(word)  # its twin is untouched
            left = len(FILL_WORDS) if exclusive else 2 * len(FILL_WORDS)
            assert z.stats["same_filled_pages"] == z.stats["stored_pages"] == left
            for k in range(len(FILL_WORDS)):
                assert (z.load(0, 10 + k) is None) == exclusive
            # a same-filled entry replaced by a compressed one, and back
            assert z.store(0, 1000, compressible(7))
            assert z.stats["same_filled_pages"] == left - 1
            assert z.store(0, 1000, filled(FILL_WORDS[3]))
            assert z.load(0, 1000) == filled(FILL_WORDS[3])
            assert z.stats["duplicate_entry"] == 2
        assert got["native"] == got["python"]
    finally:
        for z in zs:
            z.close()


def test_near_same_filled_pages_are_compressed() -> None:
    """A page that differs from a fill in its last (or any one) byte is not same-filled."""
    with make() as z:
        base = filled(0x0102030405060708)
        for k, pos in enumerate([0, 7, 8, 2047, PS - 8, PS - 1]):
            page = bytearray(base)
            page[pos] ^= 0x40
            assert z.store(0, k, bytes(page))
            assert not z._entry(0, k) & 2
            assert z.load(0, k) == page
        assert z.stats["same_filled_pages"] == 0


# -- 5. hooks run outside every C lock -------------------------------------------------------


class Reentrant(EveryHook):
    """Calls back into the Zswap from its store, load and invalidate hooks."""

    def __init__(self, z: Zswap) -> None:
        self.z = z
        self.checks: list[tuple[str, bool]] = []
        self.calls = 0

    def hit(self, hook: str) -> None:
        pass

    def check(self, what: str, ok: bool) -> None:
        self.checks.append((what, ok))

    @hookimpl
    def zswap_store(self, zswap: Any, type: int, offset: int, stored: bool) -> None:
        if zswap is not self.z or offset != 1:
            return
        self.calls += 1
        z = self.z
        self.check("stored", stored)
        self.check("the page just stored", z.load(0, 1) == compressible(1))
        self.check("store another", z.store(0, 101, compressible(101)))
        self.check("load another", z.load(0, 50) == compressible(50))
        z.invalidate_page(0, 51)
        self.check("stats", z.stats["stored_pages"] == 4)  # 50, 52, 1, 101

    @hookimpl
    def zswap_load(self, zswap: Any, type: int, offset: int, found: bool) -> None:
        if zswap is not self.z or offset not in (2, 3):
            return
        self.calls += 1
        z = self.z
        self.check("found", found)
        self.check("store another", z.store(0, 100 + offset, compressible(100 + offset)))
        self.check("load another", z.load(0, 50) == compressible(50))
        # replace the entry just loaded (at 3, exclusively: it is gone already)
        self.check("replace", z.store(0, offset, compressible(200 + offset)))
        self.check("stats", z.stats["stored_pages"] >= 4)

    @hookimpl
    def zswap_invalidate(self, zswap: Any, type: int, offset: int) -> None:
        if zswap is not self.z or offset != 4:
            return
        self.calls += 1
        self.check("gone before the hook", self.z.load(0, 4) is None)
        self.check("store it again", self.z.store(0, 4, compressible(204)))


@pytest.mark.parametrize("backend", ["native", "python"])
@pytest.mark.parametrize("zpool", ["zsmalloc", "zbud"])
def test_hooks_can_call_back_into_the_same_zswap(backend: str, zpool: str) -> None:
    with make(backend, zpool=zpool) as z:
        obs = Reentrant(z)
        register_observer(obs, name=f"reentrant-{uuid.uuid4()}")
        try:

            def body() -> None:
                for off in (50, 51, 52):
                    assert z.store(0, off, compressible(off))
                assert z.store(0, 1, compressible(1))
                assert z.load(0, 101) == compressible(101)
                assert z.load(0, 51) is None
                assert z.store(0, 2, compressible(2)) and z.store(0, 3, compressible(3))
                assert z.load(0, 2) == compressible(2)  # the page before the hook replaced it
                assert z.load(0, 2) == compressible(202)
                assert z.load(0, 3, exclusive=True) == compressible(3)
                assert z.load(0, 3) == compressible(203)  # the hook's store survived
                assert z.store(0, 4, compressible(4))
                z.invalidate_page(0, 4)
                assert z.load(0, 4) == compressible(204)

            guarded(body)
        finally:
            unregister_observer(obs)
        failed = [what for what, ok in obs.checks if not ok]
        assert not failed and obs.calls >= 6, (failed, obs.calls)
        assert z.stats["stored_pages"] == len({50, 52, 1, 101, 102, 103, 2, 3, 4})


# -- 6. parameters switched inside the Python calls of the core -------------------------------

SWITCHES = {
    "pool": [
        ("compressor", "zstd"),
        ("zpool", "zbud"),
        ("same_filled_pages_enabled", False),
        ("compressor", "lz4"),
        ("zpool", "zsmalloc"),
        ("same_filled_pages_enabled", True),
    ],
    "gate": [
        ("enabled", False),
        ("enabled", True),
        ("max_pool_percent", 0),
        ("max_pool_percent", 20),
    ],
}


def _page_of(rng: random.Random, k: int) -> bytes:
    kind = rng.randrange(4)
    if kind == 0:
        return filled(rng.choice(FILL_WORDS))
    if kind == 1:
        return rng.randbytes(PS)  # incompressible
    return compressible(k, seed=rng.randrange(1000))


@pytest.mark.parametrize("backend", ["native", "python"])
@pytest.mark.parametrize("exclusive", [False, True])
@pytest.mark.parametrize("zpool", ["zsmalloc", "zbud"])
@pytest.mark.parametrize("switches", sorted(SWITCHES))
def test_parameters_switched_inside_codec_calls(
    backend: str, exclusive: bool, zpool: str, switches: str
) -> None:
    if not zswap_core.crypto_has_comp("zstd"):
        pytest.skip("zstd plugin not installed")
    rng = random.Random(f"{exclusive}{zpool}{switches}")
    with make(backend, zpool=zpool, exclusive_loads=exclusive) as z:
        cycle = SWITCHES[switches]
        state = {"step": 0, "switches": 0, "where": set()}

        def switch(kind: str) -> None:
            if rng.random() < 0.5:
                return
            name, value = cycle[state["step"] % len(cycle)]
            state["step"] += 1
            z.params[name] = value
            state["switches"] += 1
            state["where"].add(kind)
            wrap_current()

        def wrap_current() -> None:
            pool = z._current
            if pool is not None and not isinstance(pool.compressor, Wrapped):
                pool.compressor = Wrapped(pool.compressor, before=switch)

        wrap_current()
        model: dict[int, bytes] = {}
        for k in range(400):
            if switches == "gate" and k % 8 == 7:  # a refusing Zswap calls no codec
                z.params["enabled"] = True
                z.params["max_pool_percent"] = 20
            off = rng.randrange(24)
            r = rng.random()
            if r < 0.5:
                page = _page_of(rng, k)
                if z.store(0, off, page):
                    model[off] = page
                else:
                    model.pop(off, None)
            elif r < 0.85:
                got = z.load(0, off)
                assert got == model.get(off), f"op {k}: offset {off}"
                if exclusive:
                    model.pop(off, None)
            else:
                z.invalidate_page(0, off)
                model.pop(off, None)
            assert z.stats["stored_pages"] == len(model)
        assert state["switches"] > 20 and state["where"] == {"compress", "decompress"}
        for off in range(24):
            assert z.load(0, off, exclusive=False) == model.get(off)
            z.invalidate_page(0, off)
        assert z.stats["stored_pages"] == 0 and z.stats["pool_total_size"] == 0
        assert z.pages.nr_pages == 0
        pools = z.pools
        assert len(pools) == 1 and pools[0].current, pools
        assert pools[0].nr_entries == 0


# -- 7. writeback pins (forced) ------------------------------------------------------------

OFF = 5
OLD = compressible(5, seed=1)
NEW = compressible(5, seed=2)


class BlockedWriteback:
    """``z.writeback(1)`` on a thread, its handler blocked until :meth:`release`.

    Whoever waits for the pin is seen: the core calls the Zswap's
    ``_native_wait_pin`` slow path (looked up on the instance) before it waits.
    """

    def __init__(self, z: Zswap, *, fail: BaseException | None = None) -> None:
        self.z = z
        self.fail = fail
        self.entered = threading.Event()
        self.released = threading.Event()
        self.written: list[tuple[int, int, bytes]] = []
        self.waiters: set[int] = set()
        self.waiting = threading.Event()
        self.result: list[int] = []
        orig = z._native_wait_pin

        def wait_pin() -> None:
            self.waiters.add(threading.get_ident())
            self.waiting.set()
            orig()

        z._native_wait_pin = wait_pin  # type: ignore[method-assign]
        z.set_writeback_handler(self.handler)
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        self.result.append(self.z.writeback(1))

    def handler(self, type: int, offset: int, page: bytes) -> None:
        self.entered.set()
        assert self.released.wait(HANG), "hang guard"
        if self.fail is not None:
            raise self.fail
        self.written.append((type, offset, page))

    def start(self) -> None:
        self.thread.start()
        assert self.entered.wait(HANG)

    def release(self) -> None:
        self.released.set()
        self.thread.join(HANG)
        assert not self.thread.is_alive()


class Op:
    """An operation on another thread: ``done`` says whether it has returned."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.done = threading.Event()
        self.out: list[Any] = []
        self.error: list[BaseException] = []
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        try:
            self.out.append(self.fn())
        except BaseException as exc:
            self.error.append(exc)
        finally:
            self.done.set()

    def start(self) -> Op:
        self.thread.start()
        return self

    def join(self) -> Any:
        self.thread.join(HANG)
        assert not self.thread.is_alive(), "a deadlock"
        if self.error:
            raise self.error[0]
        return self.out[0]


@pytest.fixture
def pinned() -> Iterator[tuple[Zswap, BlockedWriteback]]:
    """A native Zswap whose only compressed entry (OFF: OLD) is being written back."""
    z = make(checksums_enabled=True)
    assert z.store(0, OFF, OLD) and z.store(0, OFF + 1, filled(7))
    wb = BlockedWriteback(z)
    wb.start()
    try:
        yield z, wb
    finally:
        wb.released.set()
        wb.thread.join(HANG)
        z.close()


def test_a_plain_load_of_a_pinned_entry_returns_at_once(
    pinned: tuple[Zswap, BlockedWriteback],
) -> None:
    z, wb = pinned
    for _ in range(3):
        assert guarded(lambda: z.load(0, OFF)) == OLD
    assert guarded(lambda: z.load(0, OFF + 1, exclusive=True)) == filled(7)  # not pinned
    assert guarded(lambda: z.store(0, OFF + 2, NEW))  # another offset: no wait
    assert not wb.waiting.is_set()
    wb.release()
    assert wb.result == [1] and wb.written == [(0, OFF, OLD)]
    assert z.load(0, OFF) is None and z.load(0, OFF + 2) == NEW
    assert z.stats["written_back_pages"] == 1


@pytest.mark.parametrize("what", ["invalidate_page", "store", "exclusive_load", "invalidate_area"])
def test_writers_wait_for_a_pinned_entry(pinned: tuple[Zswap, BlockedWriteback], what: str) -> None:
    z, wb = pinned
    fn: Callable[[], Any] = {
        "invalidate_page": lambda: z.invalidate_page(0, OFF),
        "store": lambda: z.store(0, OFF, NEW),
        "exclusive_load": lambda: z.load(0, OFF, exclusive=True),
        "invalidate_area": lambda: z.invalidate_area(0),
    }[what]
    op = Op(fn).start()
    assert wb.waiting.wait(HANG) or op.done.is_set()
    assert not op.done.is_set(), f"{what} completed while the entry was pinned"
    assert op.thread.ident in wb.waiters
    assert guarded(lambda: z.load(0, OFF)) == OLD  # a plain load still reads it
    wb.release()
    out = op.join()
    assert wb.result == [1] and wb.written == [(0, OFF, OLD)]
    st = z.stats
    assert st["written_back_pages"] == 1 and st["reject_reclaim_fail"] == 0
    if what == "invalidate_page":
        assert z.load(0, OFF) is None and st["stored_pages"] == 1
    elif what == "store":
        assert out is True
        assert z.load(0, OFF) == NEW  # never the old page
        assert st["stored_pages"] == 2 and st["duplicate_entry"] == 0
    elif what == "exclusive_load":
        assert out is None  # written back first: the page is on the device
        assert z.load(0, OFF) is None and st["stored_pages"] == 1
    else:
        assert 0 not in z._core.types() and st["stored_pages"] == 0
        with pytest.raises(ValueError, match="not initialised"):
            z.load(0, OFF)
    assert (z.pages.nr_pages > 0) == (what == "store")


@pytest.mark.parametrize("concurrent", [False, True])
def test_the_pin_goes_when_the_handler_raises(concurrent: bool) -> None:
    with make(checksums_enabled=True) as z:
        assert z.store(0, OFF, OLD)
        packed = z._entry(0, OFF)
        wb = BlockedWriteback(z, fail=OSError(errno.EIO, "injected write error"))
        wb.start()
        op = Op(lambda: z.store(0, OFF, NEW)).start() if concurrent else None
        if op is not None:
            assert wb.waiting.wait(HANG) or op.done.is_set()
            assert not op.done.is_set()
        wb.release()
        # writeback(1) tries again until 16 failures in a row, then gives up
        assert wb.result == [0] and wb.written == []
        st = z.stats
        assert st["reject_reclaim_fail"] == 16 and st["written_back_pages"] == 0
        if op is not None:
            assert op.join() is True
            assert z.load(0, OFF) == NEW and z.stats["duplicate_entry"] == 1
        else:
            assert z._entry(0, OFF) == packed  # the entry stays, as it was
            assert guarded(lambda: z.load(0, OFF, exclusive=True)) == OLD  # no pin left
            assert guarded(lambda: z.store(0, OFF, NEW))
        guarded(lambda: z.invalidate_page(0, OFF))
        guarded(lambda: z.invalidate_area(0))
        assert z.stats["stored_pages"] == 0 and z.pages.nr_pages == 0


def test_the_pin_goes_when_the_handler_raises_a_base_exception() -> None:
    with make() as z:
        assert z.store(0, OFF, OLD)

        def handler(type: int, offset: int, page: bytes) -> None:
            raise KeyboardInterrupt

        z.set_writeback_handler(handler)
        with pytest.raises(KeyboardInterrupt):
            z.writeback(1)
        assert z.load(0, OFF) == OLD
        guarded(lambda: z.store(0, OFF, NEW))
        assert z.load(0, OFF, exclusive=True) == NEW
        guarded(lambda: z.invalidate_area(0))
        assert z.pages.nr_pages == 0


# -- 8. handles and bounds: values from plugins are checked --------------------------------

BAD_HANDLE_PLUGIN = """
from zswap_zbud import Zbud

#: {"handle": mode}: what alloc_write returns instead of its handle
MODE = {}


class BadZbud(Zbud):
    type = "badzbud"

    def alloc_write(self, data):
        handle = super().alloc_write(data)
        mode = MODE.get("handle")
        if mode is None:
            return handle
        return {
            "str": str(handle), "float": float(handle), "none": None, "bool": True,
            "negative": -handle, "zero": 0, "over": (1 << 37), "huge": 1 << 64,
            "int-subclass": type("H", (int,), {})(handle),
        }[mode]
"""


@pytest.fixture
def badzbud(fake_dists: FakeDists) -> Iterator[tuple[Registry, ModuleType]]:
    if not zswap_core.zpool_has_pool("zbud"):
        pytest.skip("the zbud plugin is not installed")
    fake_dists.add(
        "fake-bad-handles",
        "1.0",
        {"zswap.zpools": {"badzbud": "fake_bad_handles:BadZbud"}},
        {"fake_bad_handles": BAD_HANDLE_PLUGIN},
    )
    reg = Registry()
    assert reg.request("zpool", "badzbud") is not None
    yield reg, sys.modules["fake_bad_handles"]


@pytest.mark.parametrize(
    "mode", ["str", "float", "none", "bool", "negative", "zero", "over", "huge", "int-subclass"]
)
def test_a_python_allocator_returning_a_bad_handle_is_refused(
    badzbud: tuple[Registry, ModuleType], mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    reg, mod = badzbud
    results = {}
    for backend in ("native", "python"):
        z = make(backend, registry=reg, zpool="badzbud")
        assert z._current is not None
        if z._core is not None:  # a Python allocator: no C ops table
            assert z._core.pool_backend(z._current.id) == "python"
        assert z.store(0, 1, compressible(1))  # a good one first; then one at the same offset
        mod.MODE["handle"] = mode
        with caplog.at_level(logging.WARNING, logger="zswap"):
            assert z.store(0, 1, compressible(2)) is False
            assert z.store(0, 2, compressible(3)) is False
        mod.MODE.clear()
        assert "returned handle" in caplog.text
        caplog.clear()
        assert z._entry(0, 1) == 0 and z._entry(0, 2) == 0
        assert z.load(0, 1) is None and z.load(0, 2) is None  # the old page went too
        st = z.stats
        assert st["reject_alloc_fail"] == 2 and st["stored_pages"] == 0
        assert z.pools[0].nr_entries == 0
        assert z.store(0, 3, compressible(4)) and z.load(0, 3) == compressible(4)
        results[backend] = {k: v for k, v in st.items() if k != "pool_total_size"}
        z.close()
        assert z.pages.nr_pages == 0  # destroy() gave back what the bad handles kept
    assert results["native"] == results["python"]


def test_c_allocator_handles_are_in_range() -> None:
    """Entries from the C ops path carry the allocator's handle unchanged, in 1..2**37-1."""
    with make() as z:
        assert z._current is not None
        assert z._core.pool_backend(z._current.id) == "native"
        for k in range(50):
            assert z.store(0, k, compressible(k))
            handle = z._entry(0, k) >> 27
            assert 0 < handle <= MAX_HANDLE


STORE_OUTPUTS: dict[str, Callable[[bytes], Any]] = {
    "bytearray": bytearray,
    "memoryview": memoryview,
    "empty": lambda out: b"",
    "two pages and one byte": lambda out: b"x" * (2 * PS + 1),
    "str": lambda out: "compressed",
    "none": lambda out: None,
    "bytes subclass": lambda out: type("B", (bytes,), {})(out),
}


@pytest.mark.parametrize("zpool", ["zsmalloc", "zbud"])
@pytest.mark.parametrize("mode", sorted(STORE_OUTPUTS))
def test_a_bad_compressor_output_is_compress_fail_on_both(zpool: str, mode: str) -> None:
    results = {}
    for backend in ("native", "python"):
        with make(backend, zpool=zpool) as z:
            assert z.store(0, 1, compressible(1))
            pool = z._current
            assert pool is not None
            pool.compressor = Wrapped(pool.compressor, on_compress=STORE_OUTPUTS[mode])
            assert z.store(0, 1, compressible(2)) is False
            assert z.store(0, 2, compressible(3)) is False
            assert z.store(0, 3, filled(9))  # same-filled: no codec
            assert z.load(0, 1) is None and z.load(0, 2) is None
            st = z.stats
            assert st["reject_compress_fail"] == 2 and st["stored_pages"] == 1
            assert st["pool_total_size"] == 0  # nothing allocated for the refused pages
            results[backend] = st
    assert results["native"] == results["python"]


def test_two_pages_of_compressor_output_are_compress_poor_on_both() -> None:
    results = {}
    for backend in ("native", "python"):
        with make(backend) as z:
            pool = z._current
            assert pool is not None
            pool.compressor = Wrapped(pool.compressor, on_compress=lambda out: b"y" * (2 * PS))
            assert z.store(0, 1, compressible(1)) is False
            results[backend] = z.stats
            assert results[backend]["reject_compress_poor"] == 1
    assert results["native"] == results["python"]


LOAD_OUTPUTS: dict[str, Callable[[bytes], Any]] = {
    "short": lambda out: out[:-1],
    "long": lambda out: out + b"\0",
    "empty": lambda out: b"",
    "bytearray": bytearray,
    "memoryview": memoryview,
    "none": lambda out: None,
    "bytes subclass": lambda out: type("B", (bytes,), {})(out),
}


@pytest.mark.parametrize("exclusive", [False, True])
@pytest.mark.parametrize("zpool", ["zsmalloc", "zbud"])
@pytest.mark.parametrize("mode", sorted(LOAD_OUTPUTS))
def test_a_bad_decompressor_output_is_decompress_fail_on_both(
    zpool: str, mode: str, exclusive: bool
) -> None:
    results = {}
    for backend in ("native", "python"):
        with make(backend, zpool=zpool) as z:
            assert z.store(0, 1, compressible(1))
            pool = z._current
            assert pool is not None
            inner = pool.compressor
            pool.compressor = Wrapped(inner, on_decompress=LOAD_OUTPUTS[mode])
            for _ in range(2):
                with pytest.raises(DecompressError, match="decompressor returned"):
                    z.load(0, 1, exclusive=exclusive)
            st = z.stats
            assert st["decompress_fail"] == 2 and st["stored_pages"] == 1  # kept
            pool.compressor = inner
            assert z.load(0, 1, exclusive=exclusive) == compressible(1)
            results[backend] = z.stats
    assert results["native"] == results["python"]


def test_a_decompressor_that_raises_is_decompress_fail_on_both() -> None:
    results = {}
    for backend in ("native", "python"):
        with make(backend) as z:
            assert z.store(0, 1, compressible(1))
            pool = z._current
            assert pool is not None

            def boom(out: bytes) -> bytes:
                raise ValueError("corrupt stream")

            pool.compressor = Wrapped(pool.compressor, on_decompress=boom)
            with pytest.raises(DecompressError, match="corrupt stream") as info:
                z.load(0, 1, exclusive=True)
            assert isinstance(info.value.__cause__, ValueError)
            results[backend] = z.stats
            assert results[backend]["decompress_fail"] == 1
    assert results["native"] == results["python"]


# -- a pool destroyed while one of its entries is being loaded ------------------------------


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_pool_destroyed_during_a_load_is_not_called_through_a_freed_slot(
    when: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The load of an old pool's last entry calls the allocator's read(), Python code;
    there the entry goes (invalidated), and with it the pool, whose slot in the core is
    cleared. The load must not call the codec through that slot afterwards (it did:
    a segfault in CI's stress run); it finds the entry gone and reports a miss."""
    import zswap_zbud

    real_read = zswap_zbud.Zbud.read
    armed: list[Callable[[], None]] = []

    def read(self: Any, handle: int, size: int) -> Any:
        if armed and when == "before":
            armed.pop()()
        out = real_read(self, handle, size)
        if armed and when == "after":
            armed.pop()()
        return out

    monkeypatch.setattr(zswap_zbud.Zbud, "read", read)
    z = Zswap(backend="native", compressor="lz4", zpool="zbud", ram_bytes=1 << 30)
    z.init(0)
    page = mixed_pages(3, seed=5)[2]
    assert z.store(0, 1, page)
    z.params["zpool"] = "zsmalloc"  # the zbud pool is old now: its last entry is offset 1
    assert [p.zpool for p in z.pools] == ["zsmalloc", "zbud"]
    armed.append(lambda: z.invalidate_page(0, 1))
    assert z.load(0, 1) is None  # gone meanwhile: a miss, as if the invalidation came first
    assert not armed  # the invalidation did run inside read()
    assert [p.zpool for p in z.pools] == ["zsmalloc"]  # and the zbud pool went with it
    assert z.store(0, 1, page) and z.load(0, 1) == page
    z.close()
