"""Hypothesis: Zswap against a dict model through random operations and parameter writes
(``shared_zpool`` among them)."""

from __future__ import annotations

import zlib

from helpers import ALL_ZPOOLS, mixed_pages
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import zswap_core
from zswap_core import Zswap

PAGES = mixed_pages(24, seed=42)
COMPRESSORS = [c for c in ("lz4", "zstd", "deflate", "lzo") if zswap_core.crypto_has_comp(c)]
ZPOOLS = [z for z in ALL_ZPOOLS if zswap_core.zpool_has_pool(z)]
TYPES = 2
OFFSETS = st.integers(min_value=0, max_value=40)


class ZswapModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.z = Zswap(compressor="lz4", zpool=ZPOOLS[0], ram_bytes=1 << 30)
        self.live_types: set[int] = set()
        self.model: dict[tuple[int, int], bytes] = {}

    @rule(t=st.integers(0, TYPES - 1))
    def init(self, t: int) -> None:
        self.z.init(t)
        self.live_types.add(t)

    @precondition(lambda self: self.live_types)
    @rule(data=st.data(), off=OFFSETS, page=st.sampled_from(PAGES))
    def store(self, data: st.DataObject, off: int, page: bytes) -> None:
        t = data.draw(st.sampled_from(sorted(self.live_types)))
        if self.z.store(t, off, page):
            self.model[(t, off)] = page
        else:
            self.model.pop((t, off), None)

    @precondition(lambda self: self.live_types)
    @rule(data=st.data(), off=OFFSETS)
    def load(self, data: st.DataObject, off: int) -> None:
        t = data.draw(st.sampled_from(sorted(self.live_types)))
        got = self.z.load(t, off)
        assert got == self.model.get((t, off))
        if got is not None and self.z.params["exclusive_loads"]:
            del self.model[(t, off)]

    @precondition(lambda self: self.live_types)
    @rule(data=st.data(), off=OFFSETS)
    def invalidate(self, data: st.DataObject, off: int) -> None:
        t = data.draw(st.sampled_from(sorted(self.live_types)))
        self.z.invalidate_page(t, off)
        self.model.pop((t, off), None)

    @precondition(lambda self: self.live_types)
    @rule(data=st.data())
    def invalidate_area(self, data: st.DataObject) -> None:
        t = data.draw(st.sampled_from(sorted(self.live_types)))
        self.z.invalidate_area(t)
        self.live_types.discard(t)
        self.model = {k: v for k, v in self.model.items() if k[0] != t}

    @rule(c=st.sampled_from(COMPRESSORS))
    def set_compressor(self, c: str) -> None:
        self.z.params["compressor"] = c

    @rule(p=st.sampled_from(ZPOOLS))
    def set_zpool(self, p: str) -> None:
        self.z.params["zpool"] = p

    @rule(v=st.booleans())
    def set_shared_zpool(self, v: bool) -> None:
        self.z.params["shared_zpool"] = v

    @rule(v=st.booleans())
    def set_enabled(self, v: bool) -> None:
        self.z.params["enabled"] = v

    @rule(v=st.booleans())
    def set_exclusive(self, v: bool) -> None:
        self.z.params["exclusive_loads"] = v

    @invariant()
    def loads_match_model(self) -> None:
        if self.z.params["exclusive_loads"]:
            return  # a load would consume the entry; the load rule checks this mode
        for (t, off), page in self.model.items():
            got = self.z.load(t, off)
            assert got is not None and zlib.crc32(got) == zlib.crc32(page)

    @invariant()
    def counters_match(self) -> None:
        assert self.z.stats["stored_pages"] == len(self.model)

    @invariant()
    def only_the_current_pool_may_be_empty(self) -> None:
        pools = self.z.pools
        assert pools and pools[0].current
        assert all(p.nr_entries > 0 for p in pools[1:])

    @invariant()
    def zpools_are_shared_consistently(self) -> None:
        pools = self.z.pools
        zpool_of: dict[str, str] = {}
        for p in pools:
            assert zpool_of.setdefault(p.shared, p.zpool) == p.zpool  # one allocator a zpool
        # one compressor slot per (zpool, compressor); each zpool's size counted once
        assert len({(p.shared, p.compressor) for p in pools}) == len(pools)
        assert sum(p.total_size for p in pools) == self.z.stats["pool_total_size"]

    def teardown(self) -> None:
        self.z.close()
        assert self.z.pages.nr_pages == 0


TestZswapModel = ZswapModel.TestCase
TestZswapModel.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
