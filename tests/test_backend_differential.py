"""Differential: the native backend against the Python reference, operation for operation.

A Hypothesis state machine drives two Zswap instances, one per backend, with the same
operations and parameter writes, and requires the same answers from both: every
store's verdict, every loaded page, what writeback writes and in which order, and, after
every step, the same counters, pools (compressor, zpool, entries, bytes) and pages
held. The native instance runs the C zsmalloc where the Python one runs the Python
zsmalloc, so the allocators are compared too.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from helpers import ALL_ZPOOLS, mixed_pages
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import zswap_core
from zswap_core import Zswap
from zswap_core._backend import NATIVE_ERROR

pytestmark = pytest.mark.skipif(NATIVE_ERROR is not None, reason=str(NATIVE_ERROR))

PS = 4096
PAGES = [
    *mixed_pages(20, seed=7),
    bytes(PS),
    b"\x5a" * PS,
    (0x0102030405060708).to_bytes(8, "little") * (PS // 8),
    os.urandom(PS),  # incompressible: refused as compress_poor, or stored large
]
COMPRESSORS = [c for c in ("lz4", "zstd", "deflate", "lzo") if zswap_core.crypto_has_comp(c)]
ZPOOLS = [z for z in ALL_ZPOOLS if zswap_core.zpool_has_pool(z)]
TYPES = 3
# few offsets, so that loads and replacements hit; two of them across a chunk boundary
OFFSETS = st.integers(min_value=0, max_value=12) | st.integers(min_value=510, max_value=514)


def _outcome(fn: Any, *args: Any, **kw: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(*args, **kw)
    except Exception as exc:
        return "raised", f"{type(exc).__name__}: {exc}"


class BothBackends(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        kw = {"compressor": "lz4", "zpool": "zsmalloc", "ram_bytes": 400 * PS}
        self.native = Zswap(backend="native", **kw)  # type: ignore[arg-type]
        self.python = Zswap(backend="python", **kw)  # type: ignore[arg-type]
        assert self.native._core is not None and self.python._core is None
        self.both = (self.native, self.python)
        for z in self.both:
            for t in range(TYPES):
                z.init(t)

    def each(self, fn: Any) -> tuple[Any, Any]:
        a, b = (_outcome(fn, z) for z in self.both)
        assert a == b, f"native {a!r} != python {b!r}"
        return a

    @rule(t=st.integers(0, TYPES))  # TYPES itself: some types are never initialised
    def init(self, t: int) -> None:
        self.each(lambda z: z.init(t))

    @rule(t=st.integers(0, TYPES), off=OFFSETS, page=st.sampled_from(PAGES))
    def store(self, t: int, off: int, page: bytes) -> None:
        self.each(lambda z: z.store(t, off, page))

    @rule(t=st.integers(0, TYPES), off=OFFSETS, excl=st.sampled_from([None, True, False]))
    def load(self, t: int, off: int, excl: bool | None) -> None:
        self.each(lambda z: z.load_dirty(t, off, exclusive=excl))

    @rule(t=st.integers(0, TYPES), off=OFFSETS)
    def invalidate_page(self, t: int, off: int) -> None:
        self.each(lambda z: z.invalidate_page(t, off))

    @rule(t=st.integers(0, TYPES))
    def invalidate_area(self, t: int) -> None:
        self.each(lambda z: z.invalidate_area(t))

    @rule(n=st.integers(0, 40))
    def writeback(self, n: int) -> None:
        written: dict[int, list[tuple[int, int, bytes]]] = {id(z): [] for z in self.both}

        def run(z: Zswap) -> int:
            out = written[id(z)]
            z.set_writeback_handler(lambda t, off, page: out.append((t, off, page)))
            try:
                return z.writeback(n)
            finally:
                z.set_writeback_handler(None)  # no asynchronous worker between steps

        self.each(run)
        assert written[id(self.native)] == written[id(self.python)]

    @rule()
    def compact(self) -> None:
        self.each(lambda z: z.compact())

    @rule(name=st.sampled_from(["compressor"]), value=st.sampled_from(COMPRESSORS))
    def set_compressor(self, name: str, value: str) -> None:
        self.each(lambda z: z.params.__setitem__(name, value))

    @rule(value=st.sampled_from(ZPOOLS))
    def set_zpool(self, value: str) -> None:
        self.each(lambda z: z.params.__setitem__("zpool", value))

    @rule(
        name=st.sampled_from(
            [
                "enabled",
                "exclusive_loads",
                "same_filled_pages_enabled",
                "non_same_filled_pages_enabled",
                "checksums_enabled",
            ]
        ),
        value=st.booleans(),
    )
    def set_bool(self, name: str, value: bool) -> None:
        self.each(lambda z: z.params.__setitem__(name, value))

    @rule(
        name=st.sampled_from(["max_pool_percent", "accept_threshold_percent"]),
        value=st.integers(0, 100),
    )
    def set_percent(self, name: str, value: int) -> None:
        self.each(lambda z: z.params.__setitem__(name, value))

    @invariant()
    def same_counters(self) -> None:
        assert self.native.stats == self.python.stats

    @invariant()
    def same_pools_and_pages(self) -> None:
        def shape(z: Zswap) -> list[tuple[Any, ...]]:
            return [(p.compressor, p.zpool, p.nr_entries, p.total_size, p.current) for p in z.pools]

        assert shape(self.native) == shape(self.python)
        assert self.native.pages.nr_pages == self.python.pages.nr_pages
        assert self.native.pages.failures == self.python.pages.failures

    @precondition(lambda self: True)
    @rule()
    def same_allocator_tables(self) -> None:
        def tables(z: Zswap) -> list[Any]:
            return [(s["compressor"], s["zpool"], s["stats"]) for s in z.zpool_stats()]

        assert tables(self.native) == tables(self.python)

    def teardown(self) -> None:
        for z in self.both:
            z.close()
        assert self.native.pages.nr_pages == self.python.pages.nr_pages == 0


TestBothBackends = BothBackends.TestCase
TestBothBackends.settings = settings(
    max_examples=int(os.environ.get("ZSWAP_DIFF_EXAMPLES", "60")),
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


# -- long seeded sequences ------------------------------------------------------------------
#
# Hypothesis explores short and odd sequences; these are long ones (thousands of
# operations, the pool limit hit, writeback taking entries loaded since they were queued),
# where the LRU order and the allocators' packing have time to diverge.


def _long_sequence(seed: int, n: int) -> list[tuple[Any, ...]]:
    import random

    rng = random.Random(seed)
    ops: list[tuple[Any, ...]] = []
    for _ in range(n):
        r = rng.random()
        t, off = rng.randrange(TYPES), rng.randrange(300)
        if r < 0.45:
            ops.append(("store", t, off, rng.randrange(len(PAGES))))
        elif r < 0.75:
            ops.append(("load", t, off, rng.choice([None, None, True])))
        elif r < 0.85:
            ops.append(("invalidate_page", t, off))
        elif r < 0.88:
            ops.append(("writeback", rng.randrange(1, 10)))
        elif r < 0.94:
            ops.append(("compact",))
        elif r < 0.97:
            ops.append(("param", "compressor", rng.choice(COMPRESSORS)))
        elif r < 0.985:
            ops.append(("param", "zpool", rng.choice(ZPOOLS)))
        else:
            ops.append(("param", "max_pool_percent", rng.choice([2, 5, 10, 100])))
    return ops


def _apply(z: Zswap, op: tuple[Any, ...], written: list[tuple[int, int, bytes]]) -> Any:
    kind = op[0]
    if kind == "store":
        return z.store(op[1], op[2], PAGES[op[3]])
    if kind == "load":
        return z.load_dirty(op[1], op[2], exclusive=op[3])
    if kind == "invalidate_page":
        return z.invalidate_page(op[1], op[2])
    if kind == "writeback":
        z.set_writeback_handler(lambda t, off, page: written.append((t, off, page)))
        try:
            return z.writeback(op[1])
        finally:
            z.set_writeback_handler(None)
    if kind == "compact":
        return z.compact()
    z.params[op[1]] = op[2]
    return None


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_long_sequences_agree(seed: int) -> None:
    zs = [
        Zswap(backend=b, compressor="lz4", zpool="zsmalloc", ram_bytes=800 * PS)
        for b in ("native", "python")
    ]
    written: list[list[tuple[int, int, bytes]]] = [[], []]
    for z in zs:
        for t in range(TYPES):
            z.init(t)
    for step, op in enumerate(_long_sequence(seed, 4000)):
        results = [_outcome(_apply, z, op, w) for z, w in zip(zs, written, strict=True)]
        assert results[0] == results[1], f"step {step} {op[:3]}: native != python"
        if op[0] == "writeback":
            assert written[0] == written[1], f"step {step}: written back in another order"
        if step % 250 == 0:
            assert zs[0].stats == zs[1].stats, f"step {step}"
            assert zs[0].pages.nr_pages == zs[1].pages.nr_pages, f"step {step}"
    assert zs[0].stats == zs[1].stats
    assert sum(len(w) for w in written) > 100  # writeback really ran
    assert zs[0].stats["pool_limit_hit"] > 0
    for z in zs:
        z.close()
