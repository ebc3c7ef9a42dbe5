"""Shared parts of the conformance kit: driver lookup, sample pages, the Zswap check."""

from __future__ import annotations

import random
import struct
import sys
import threading
from collections.abc import Callable, Mapping
from types import CodeType
from typing import Any

import pytest

from .._api import SUPPORTED_API_VERSIONS
from .._params import ModuleParams, Param
from .._registry import (
    Kind,
    LoadedModule,
    Registry,
    crypto_has_comp,
    default_registry,
    list_plugins,
    zpool_has_pool,
)
from .._zswap import Zswap
from ._interleave import Interleaver, watch_locks

__all__ = [
    "KitRegistry",
    "first_available",
    "kit_registry",
    "load_driver",
    "run_threads",
    "sample_pages",
    "zswap_switch_check",
    "zswap_threads_check",
]

#: Bundled plugins tried, in order, as the "other" driver of the Zswap checks.
BUNDLED_COMPRESSORS = ("lz4", "deflate", "zstd", "lzo")
BUNDLED_ZPOOLS = ("zsmalloc", "zbud", "z3fold")


class KitRegistry(Registry):
    """A registry that serves given drivers directly and asks another for the rest.

    The kit runs every driver through one of these, so a driver class can be tested
    before it is installed (``zpool_class = MyPool``), and the kit's module parameters
    never touch the process-wide registry's copy.
    """

    def __init__(self, *modules: LoadedModule, fallback: Registry | None = None) -> None:
        super().__init__()
        self._direct = {(m.kind, m.name): m for m in modules}
        self._fallback = fallback if fallback is not None else default_registry()

    def request(self, kind: Kind, name: object) -> LoadedModule | None:
        if isinstance(name, str) and (kind, name) in self._direct:
            return self._direct[(kind, name)]
        return self._fallback.request(kind, name)

    def error(self, kind: Kind, name: object) -> Any:
        if isinstance(name, str) and (kind, name) in self._direct:
            return None
        return self._fallback.error(kind, name)


def load_driver(
    kind: Kind,
    name: str,
    cls: type[Any] | None,
    params: Mapping[str, object],
    registry: Registry | None = None,
) -> LoadedModule:
    """The driver under test with fresh module parameters; skips the test if unavailable."""
    if cls is None:
        if not name:
            raise TypeError(
                f"set {'zpool_type' if kind == 'zpool' else 'compressor_name'} on the "
                "conformance class (or zpool_class / compressor_class)"
            )
        reg = registry if registry is not None else default_registry()
        mod = reg.request(kind, name)
        if mod is None:
            err = reg.error(kind, name)
            pytest.skip(f"{kind} {name!r} is not available: {err or 'not installed'}")
        cls = mod.driver
        distribution, version = mod.distribution, mod.version
    else:
        distribution = version = None
    mp = ModuleParams(name, getattr(cls, "parameters", ()))
    if params:
        mp.update(params, boot=True)
    return LoadedModule(kind, name, cls, mp, distribution, version)


def kit_registry(module: LoadedModule) -> KitRegistry:
    """A registry with the plugin under test and the kit's own reference drivers."""
    from ._reference import ReferenceDeflate, ReferencePagePool

    ref_c = load_driver("compressor", "kit-deflate", ReferenceDeflate, {})
    ref_z = load_driver("zpool", "kit-pagepool", ReferencePagePool, {})
    return KitRegistry(module, ref_c, ref_z)


def check_declaration(kind: Kind, name: str, cls: type[Any], base: type[Any]) -> None:
    """The driver class as the core's loader checks it, plus its parameter table."""
    assert isinstance(cls, type) and issubclass(cls, base), (
        f"{cls!r} is not a subclass of zswap_core.{base.__name__}"
    )
    declared = cls.type if kind == "zpool" else cls.name
    assert declared == name, f"the class declares {declared!r}, the entry point is {name!r}"
    assert cls.api_version in SUPPORTED_API_VERSIONS, (
        f"api_version {cls.api_version!r} is not supported by this core "
        f"({sorted(SUPPORTED_API_VERSIONS)})"
    )
    assert isinstance(cls.description, str)
    params = cls.parameters
    assert isinstance(params, tuple), "parameters must be a tuple of zswap_core.Param"
    seen: set[str] = set()
    for p in params:
        assert isinstance(p, Param), f"{p!r} is not a zswap_core.Param"
        assert p.name not in seen, f"parameter {p.name!r} is declared twice"
        seen.add(p.name)
        assert p.parse(p.default) == p.default, f"default of {p.name!r} does not parse"
        assert p.parse(p.format(p.default)) == p.default, (
            f"default of {p.name!r} does not survive its sysfs string form"
        )
    ModuleParams(name, params)  # valid module and parameter names


def check_installed(module: LoadedModule, distribution: str | None) -> None:
    """An installed plugin as lsmod shows it: found, loaded, described, listed once, and
    from ``distribution`` if that is given."""
    kind, name = module.kind, module.name
    has = crypto_has_comp if kind == "compressor" else zpool_has_pool
    assert has(name), f"{has.__name__}({name!r}) is False"
    assert default_registry().require(kind, name).driver is module.driver
    assert module.driver.description.strip(), "an installed plugin needs a description"
    rows = [r for r in list_plugins() if (r.kind, r.name) == (kind, name)]
    assert len(rows) == 1, f"list_plugins() shows {len(rows)} rows for {name!r}"
    assert rows[0].state == "loaded", rows[0]
    assert rows[0].distribution == module.distribution, rows[0]
    if distribution is not None:
        assert module.distribution == distribution, (
            f"{name!r} comes from {module.distribution!r}, not {distribution!r}"
        )


def first_available(
    kind: Kind, names: tuple[str, ...], exclude: str, fallback: str, registry: Registry
) -> str:
    for n in names:
        if n != exclude and registry.request(kind, n) is not None:
            return n
    return fallback


# -- pages -------------------------------------------------------------------------------


_KINDS = (
    "zero",
    "same-filled",
    "text",
    "heap",
    "sparse",
    "short-cycle",
    "half-random",
    "random",
    "ff",
)


def make_page(kind: str, page_size: int, rng: random.Random) -> bytes:
    """One page of a named kind (see :func:`sample_pages`)."""
    if kind == "zero":
        return bytes(page_size)
    if kind == "same-filled":
        return struct.pack("<Q", 0x0123456789ABCDEF) * (page_size // 8)
    if kind == "ff":
        return b"\xff" * page_size
    if kind == "short-cycle":
        return (bytes(range(7)) * page_size)[:page_size]
    if kind == "random":
        return rng.randbytes(page_size)
    if kind == "half-random":
        return rng.randbytes(page_size // 2) + bytes(page_size // 2)
    if kind == "sparse":
        sparse = bytearray(page_size)
        for _ in range(8):
            sparse[rng.randrange(page_size)] = rng.randrange(1, 256)
        return bytes(sparse)
    words = [rng.randbytes(rng.randint(1, 5)).hex().encode() for _ in range(64)]
    if kind == "text":
        text = b" ".join(rng.choices(words, k=page_size // 6))
        return text[:page_size].ljust(page_size, b" ")
    if kind == "heap":
        rec = struct.Struct("<QIh6s")
        fields = [
            rec.pack(
                0x7F0000000000 + rng.randrange(1 << 20) * 16,
                rng.randrange(100),
                rng.randrange(-5, 5),
                rng.choice(words)[:6],
            )
            for _ in range(page_size // rec.size + 1)
        ]
        return b"".join(fields)[:page_size]
    raise ValueError(f"unknown page kind {kind!r}")


def sample_pages(page_size: int, seed: int = 0) -> dict[str, bytes]:
    """Named pages of the kinds zswap sees: zero, same-filled, text, heap, random, mixed."""
    rng = random.Random(seed)
    return {kind: make_page(kind, page_size, rng) for kind in _KINDS}


def page_mix(n: int, page_size: int, seed: int) -> list[bytes]:
    """``n`` distinct pages cycling through the kinds that are not same-filled (and zero)."""
    rng = random.Random(seed)
    kinds = ["text", "heap", "sparse", "half-random", "random", "zero"]
    out = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        if kind == "zero":
            out.append(bytes(page_size))
            continue
        page = bytearray(make_page(kind, page_size, rng))
        tag = struct.pack("<QQ", seed, i)  # unique even where the kind repeats
        pos = rng.randrange(0, page_size - len(tag))
        page[pos : pos + len(tag)] = tag
        out.append(bytes(page))
    return out


def run_threads(
    n: int,
    target: Callable[[int], None],
    timeout: float = 120.0,
    *,
    background: Callable[[], None] | None = None,
    switch_interval: float = 1e-5,
) -> None:
    """Run ``target(i)`` on ``n`` threads released together by a barrier, and
    ``background()`` every half millisecond on one more thread until they have all
    finished; re-raise the first failure.

    The interpreter's thread switch interval is lowered to ``switch_interval`` meanwhile
    (and restored), so the threads interleave at short intervals. This checks real
    parallelism and can only add failures: the races a test is meant to catch are
    forced by :class:`~zswap_core.testing._interleave.Interleaver`, not left to this.
    """
    errors: list[BaseException] = []
    barrier = threading.Barrier(n + (background is not None))
    done = threading.Event()

    def body(i: int) -> None:
        try:
            barrier.wait()
            target(i)
        except BaseException as exc:  # reported below, with the thread number
            exc.add_note(f"(in kit thread {i})")
            errors.append(exc)
            barrier.abort()

    def loop() -> None:
        assert background is not None
        try:
            barrier.wait()
            while not done.wait(0.0005):  # often, but not hogging a lock the others need
                background()
        except threading.BrokenBarrierError:
            pass
        except BaseException as exc:
            exc.add_note("(in the kit's background thread)")
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,), name=f"kit-{i}") for i in range(n)]
    if background is not None:
        extra = threading.Thread(target=loop, name="kit-background")
    saved = sys.getswitchinterval()
    sys.setswitchinterval(switch_interval)
    try:
        if background is not None:
            extra.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout)
            assert not t.is_alive(), f"thread {t.name} did not finish within {timeout}s (deadlock?)"
    finally:
        done.set()
        if background is not None:
            extra.join(timeout)
        sys.setswitchinterval(saved)
    if background is not None:
        assert not extra.is_alive(), f"the background thread did not finish within {timeout}s"
    if errors:
        raise errors[0]


# -- zswap -------------------------------------------------------------------------------


def _new_zswap(
    registry: Registry, page_size: int, compressor: str, zpool: str, backend: str | None = None
) -> Zswap:
    z = Zswap(
        registry=registry,
        page_size=page_size,
        ram_bytes=1 << 36,  # a pool limit that never gets in the way
        compressor=compressor,
        zpool=zpool,
        checksums_enabled=True,
        backend=backend,
    )
    pools = z.pools
    assert pools and (pools[0].compressor, pools[0].zpool) == (compressor, zpool), (
        f"Zswap did not start with {compressor}/{zpool}: {pools}"
    )
    return z


def zswap_switch_check(
    registry: Registry,
    *,
    param: str,
    plugin: str,
    partner_compressor: str,
    partner_zpool: str,
    page_size: int,
    seed: int = 0,
    n: int = 36,
) -> None:
    """Store under a partner pool, switch ``param`` to the plugin, store, switch back.

    Every page must load byte-exact at every point (checksums on), written-back pages
    must be exact too, and when its last entry goes the plugin's pool must be destroyed
    and every page handed back.
    """
    z = _new_zswap(registry, page_size, partner_compressor, partner_zpool)
    try:
        z.init(0)
        expect: dict[int, bytes] = {}

        def store(offsets: range, salt: int) -> None:
            pages = page_mix(len(offsets), page_size, seed * 1000 + salt)
            for off, page in zip(offsets, pages, strict=True):
                ok = z.store(0, off, page)
                if ok:
                    expect[off] = page
                else:
                    expect.pop(off, None)
            stored = sum(1 for off in offsets if off in expect)
            assert stored >= len(offsets) // 2, (
                f"only {stored} of {len(offsets)} pages were stored with "
                f"{z.params['compressor']}/{z.params['zpool']}; stats {z.stats}"
            )

        def verify(when: str) -> None:
            for off in range(4 * n):
                got = z.load(0, off)
                want = expect.get(off)
                assert got == want, (
                    f"{when}: offset {off} loaded "
                    f"{'nothing' if got is None else f'{len(got)} wrong bytes'}"
                    f"{'' if want is not None else ' (it was never stored)'}"
                )

        store(range(n), 1)
        verify(f"under {partner_compressor}/{partner_zpool}")
        z.params[param] = plugin
        head = z.pools[0]
        assert getattr(head, "compressor" if param == "compressor" else "zpool") == plugin
        store(range(n, 3 * n), 2)
        store(range(n // 2, n), 3)  # duplicates: replace entries of the old pool
        verify(f"after switching {param} to {plugin}")
        z.params[param] = partner_compressor if param == "compressor" else partner_zpool
        store(range(3 * n, 4 * n), 4)
        verify(f"after switching {param} back")
        assert len(z.pools) == 2, f"expected the plugin's pool to live on: {z.pools}"

        written: dict[int, bytes] = {}
        z.set_writeback_handler(lambda _t, off, page: written.__setitem__(off, page))
        count = z.writeback(n // 3)
        assert count == len(written)
        for off, page in written.items():
            assert page == expect.get(off), f"offset {off} was written back wrong"
            del expect[off]
        verify("after writeback")
        assert z.stats["decompress_fail"] == 0, z.stats

        # drop every entry stored while the plugin was current: its pool must go
        for off in range(n // 2, 3 * n):
            z.invalidate_page(0, off)
            expect.pop(off, None)
        names = [(p.compressor, p.zpool) for p in z.pools]
        assert len(names) == 1, f"the plugin's pool outlived its last entry: {z.pools}"
        verify("after the plugin's pool was destroyed")
        z.invalidate_area(0)
        assert z.stats["decompress_fail"] == 0, z.stats
    finally:
        z.close()
    assert z.pages.nr_pages == 0, f"{z.pages.nr_pages} pages not returned after close()"


def zswap_threads_check(
    registry: Registry,
    *,
    compressor: str,
    zpool: str,
    page_size: int,
    plugin_code: Callable[[CodeType], bool] | None = None,
    threads: int = 3,
    rounds: int = 40,
    seed: int = 0,
    interleave_backend: str | None = None,
) -> None:
    """Threads store, load and invalidate their own offsets through one Zswap.

    First with forced interleavings (when ``plugin_code`` says which code is the
    plugin's): one thread's stores, loads and invalidations stop before every bytecode
    of the plugin, and at each stop another thread stores, loads or invalidates pages of
    another swap type in the same pool. Then ``threads`` free-running threads.

    ``interleave_backend``: the Zswap backend of the forced part (None: the default).
    A compressor with C codec ops passes ``"python"``: the native backend calls its C
    functions, and no Python code of the plugin would run to stop in.
    """
    if plugin_code is not None:
        with watch_locks():  # every lock made meanwhile (the core's, the plugins'), the kit sees
            _zswap_interleaved(
                registry, compressor, zpool, page_size, plugin_code, seed, interleave_backend
            )
    z = _new_zswap(registry, page_size, compressor, zpool)
    try:
        z.init(1)

        def work(t: int) -> None:
            rng = random.Random(seed * 31 + t)
            pages = page_mix(12, page_size, seed * 100 + t)
            mine: dict[int, bytes] = {}
            for r in range(rounds):
                off = t * 1_000_000 + rng.randrange(24)
                page = rng.choice(pages)
                if z.store(1, off, page):
                    mine[off] = page
                else:
                    mine.pop(off, None)
                if r % 5 == 4 and mine:
                    gone = rng.choice(sorted(mine))
                    z.invalidate_page(1, gone)
                    del mine[gone]
                for o, p in mine.items():
                    got = z.load(1, o)
                    assert got == p, f"thread {t}: offset {o} loaded wrong data"

        run_threads(threads, work)
        assert z.stats["decompress_fail"] == 0, z.stats
    finally:
        z.close()
    assert z.pages.nr_pages == 0, f"{z.pages.nr_pages} pages not returned after close()"


def _zswap_interleaved(
    registry: Registry,
    compressor: str,
    zpool: str,
    page_size: int,
    plugin_code: Callable[[CodeType], bool],
    seed: int,
    backend: str | None = None,
) -> None:
    z = _new_zswap(registry, page_size, compressor, zpool, backend)
    try:
        z.init(1)
        z.init(2)
        pages = page_mix(16, page_size, seed * 100 + 7)
        theirs: dict[int, bytes] = {}

        def probe(n: int) -> None:
            off = n % 7
            op = n % 3
            if op == 0:
                page = pages[n % len(pages)]
                if z.store(2, off, page):
                    theirs[off] = page
                else:
                    theirs.pop(off, None)
            elif op == 1:
                got = z.load(2, off)
                assert got == theirs.get(off), (
                    f"probing thread: offset {off} of type 2 loaded "
                    f"{'nothing' if got is None else 'wrong data'}"
                )
            else:
                z.invalidate_page(2, off)
                theirs.pop(off, None)

        mine: dict[int, bytes] = {}

        def store(off: int, page: bytes) -> Callable[[], None]:
            def step() -> None:
                if z.store(1, off, page):
                    mine[off] = page
                else:
                    mine.pop(off, None)

            return step

        def load(off: int) -> Callable[[], None]:
            def step() -> None:
                got = z.load(1, off)
                assert got == mine.get(off), (
                    f"stepping thread: offset {off} of type 1 loaded "
                    f"{'nothing' if got is None else 'wrong data'} while another thread "
                    "used the same pool"
                )

            return step

        def invalidate(off: int) -> Callable[[], None]:
            def step() -> None:
                z.invalidate_page(1, off)
                mine.pop(off, None)

            return step

        steps: list[tuple[str, Callable[[], None]]] = []
        for i in range(4):
            steps += [
                (f"store(1, {i})", store(i, pages[(i * 5) % len(pages)])),
                (f"store(1, {i + 1}) again", store(i + 1, pages[(i * 5 + 3) % len(pages)])),
                (f"load(1, {i})", load(i)),
                (f"invalidate_page(1, {i + 1})", invalidate(i + 1)),
                (f"load(1, {i + 1})", load(i + 1)),
            ]
        il = Interleaver(plugin_code, probe, budget=100)
        il.run(steps)
        assert il.probes > 0, "the kit never stopped inside the plugin: is its code traced?"
        for off, page in mine.items():
            assert z.load(1, off) == page, f"offset {off} of type 1 lost after the threads"
        for off, page in theirs.items():
            assert z.load(2, off) == page, f"offset {off} of type 2 lost after the threads"
        assert z.stats["decompress_fail"] == 0, z.stats
    finally:
        z.close()
    assert z.pages.nr_pages == 0, f"{z.pages.nr_pages} pages not returned after close()"
