"""Hypothesis: Zswap against a dict model through random operations and parameter writes
(``shared_zpool`` among them), with groups: each page's group, limits, writeback
settings and a writeback handler, and every group's memory.stat checked against the
model's own count."""

from __future__ import annotations

import zlib

from helpers import ALL_ZPOOLS, mixed_pages
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

import zswap_core
from zswap_core import Zswap

PAGES = mixed_pages(24, seed=42)
COMPRESSORS = [c for c in ("lz4", "zstd", "deflate", "lzo") if zswap_core.crypto_has_comp(c)]
ZPOOLS = [z for z in ALL_ZPOOLS if zswap_core.zpool_has_pool(z)]
TYPES = 2
OFFSETS = st.integers(min_value=0, max_value=12)  # few: stores meet stored pages
PS = 4096
#: group names (None: no group); "b" is a child of "a"
GROUPS = [None, "a", "b", "c"]
PARENT = {"a": None, "b": "a", "c": None}
EVENTS = ("zswpin", "zswpout", "zswpwb")


class ZswapModel(RuleBasedStateMachine):
    backend: str | None = None  # None: ZSWAP_BACKEND, else the native one when built

    def __init__(self) -> None:
        super().__init__()
        self.z = Zswap(compressor="lz4", zpool=ZPOOLS[0], ram_bytes=1 << 30, backend=self.backend)
        self.live_types: set[int] = set()
        self.model: dict[tuple[int, int], bytes] = {}
        a = self.z.group("a")
        self.groups = {"a": a, "b": self.z.group("b", parent=a), "c": self.z.group("c")}
        a.write("memory.zswap.max", "8K")  # limits from the start: stores meet them early
        self.groups["c"].write("memory.zswap.max", "4K")
        self.group_of: dict[tuple[int, int], str | None] = {}
        self.events = {g: dict.fromkeys(EVENTS, 0) for g in self.groups}
        self.disk: dict[tuple[int, int], bytes] = {}
        self.z.set_writeback_handler(self._written)

    def _written(self, t: int, off: int, page: bytes) -> None:
        """The writeback handler: the page leaves zswap for the "disk"."""
        assert page == self.model[(t, off)]
        group = self.group_of[(t, off)]
        while group is not None:  # never a page whose group (or an ancestor) forbids it
            assert self.groups[group].zswap_writeback
            group = PARENT[group]
        self.disk[(t, off)] = page
        self._event(self.group_of[(t, off)], "zswpwb")
        # zswap frees the entry once this returns
        self.model.pop((t, off))
        self.group_of.pop((t, off))

    def _event(self, group: str | None, name: str) -> None:
        while group is not None:
            self.events[group][name] += 1
            group = PARENT[group]

    @initialize(
        offs=st.lists(OFFSETS, max_size=8),
        group=st.sampled_from(GROUPS),
        page=st.sampled_from(PAGES),
    )
    def start(self, offs: list[int], group: str | None, page: bytes) -> None:
        """Type 0 in use, with a few pages of one group already stored."""
        self.init(0)
        g = self.groups[group] if group is not None else None
        for off in offs:
            self._stored(0, off, page, group, self.z.store(0, off, page, group=g))

    def _stored(self, t: int, off: int, page: bytes, group: str | None, ok: bool) -> None:
        if ok:
            self.model[(t, off)] = page
            self.group_of[(t, off)] = group
            self._event(group, "zswpout")
        else:
            self.model.pop((t, off), None)
            self.group_of.pop((t, off), None)

    @precondition(lambda self: self.model)
    @rule(data=st.data(), page=st.sampled_from(PAGES), group=st.sampled_from(GROUPS))
    def store_again(self, data: st.DataObject, page: bytes, group: str | None) -> None:
        """A stored page stored again (a duplicate), maybe for another group."""
        t, off = data.draw(st.sampled_from(sorted(self.model)))
        g = self.groups[group] if group is not None else None
        self._stored(t, off, page, group, self.z.store(t, off, page, group=g))

    @rule(t=st.integers(0, TYPES - 1))
    def init(self, t: int) -> None:
        self.z.init(t)
        self.live_types.add(t)

    @precondition(lambda self: self.live_types)
    @rule(data=st.data(), off=OFFSETS, page=st.sampled_from(PAGES), group=st.sampled_from(GROUPS))
    def store(self, data: st.DataObject, off: int, page: bytes, group: str | None) -> None:
        t = data.draw(st.sampled_from(sorted(self.live_types)))
        g = self.groups[group] if group is not None else None
        self._stored(t, off, page, group, self.z.store(t, off, page, group=g))

    @precondition(lambda self: self.live_types)
    @rule(data=st.data(), off=OFFSETS)
    def load(self, data: st.DataObject, off: int) -> None:
        t = data.draw(st.sampled_from(sorted(self.live_types)))
        got = self.z.load(t, off)
        assert got == self.model.get((t, off))
        if got is not None:
            self._event(self.group_of[(t, off)], "zswpin")
            if self.z.params["exclusive_loads"]:
                del self.model[(t, off)]
                del self.group_of[(t, off)]

    @precondition(lambda self: self.live_types)
    @rule(data=st.data(), off=OFFSETS)
    def invalidate(self, data: st.DataObject, off: int) -> None:
        t = data.draw(st.sampled_from(sorted(self.live_types)))
        self.z.invalidate_page(t, off)
        self.model.pop((t, off), None)
        self.group_of.pop((t, off), None)

    @precondition(lambda self: self.live_types)
    @rule(data=st.data())
    def invalidate_area(self, data: st.DataObject) -> None:
        t = data.draw(st.sampled_from(sorted(self.live_types)))
        self.z.invalidate_area(t)
        self.live_types.discard(t)
        self.model = {k: v for k, v in self.model.items() if k[0] != t}
        self.group_of = {k: v for k, v in self.group_of.items() if k[0] != t}

    @rule(group=st.sampled_from(GROUPS[1:]), value=st.sampled_from(["0", "4K", "8K", "64K", "max"]))
    def set_group_max(self, group: str, value: str) -> None:
        self.groups[group].write("memory.zswap.max", value)

    @rule(group=st.sampled_from(GROUPS[1:]), value=st.booleans())
    def set_group_writeback(self, group: str, value: bool) -> None:
        self.groups[group].zswap_writeback = value

    @rule(n=st.integers(0, 8))
    def writeback(self, n: int) -> None:
        before = len(self.disk)
        written = self.z.writeback(n)
        assert written <= n
        assert len(self.disk) >= before  # (a slot written twice counts once here)

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
            self._event(self.group_of[(t, off)], "zswpin")  # a load, counted as any

    @invariant()
    def counters_match(self) -> None:
        assert self.z.stats["stored_pages"] == len(self.model)

    @invariant()
    def groups_match_model(self) -> None:
        for name, g in self.groups.items():
            mine = [
                k
                for k, owner in self.group_of.items()
                if owner == name or (owner is not None and PARENT[owner] == name)
            ]
            lengths = [self.z.entry_length(*k) for k in mine]
            assert None not in lengths
            stat = g.stat()
            assert stat["zswap"] == g.zswap_current == sum(lengths)  # type: ignore[arg-type]
            assert stat["zswapped"] == len(mine) * PS
            assert {e: stat[e] for e in EVENTS} == self.events[name]

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


class PythonZswapModel(ZswapModel):
    backend = "python"


MODEL_SETTINGS = settings(
    max_examples=60,
    stateful_step_count=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
# Both backends in every run: the default (native when built, or ZSWAP_BACKEND's) and
# the Python reference.
TestZswapModel = ZswapModel.TestCase
TestZswapModel.settings = MODEL_SETTINGS
TestPythonZswapModel = PythonZswapModel.TestCase
TestPythonZswapModel.settings = MODEL_SETTINGS
