"""z3fold through the real zswap core (entry point discovery and a store/load round trip)."""

from __future__ import annotations

import os

import pytest
from zswap_z3fold import Z3fold

import zswap_core


def test_entry_point_registered() -> None:
    assert zswap_core.zpool_has_pool("z3fold")
    mod = zswap_core.default_registry().require("zpool", "z3fold")
    assert mod.driver is Z3fold


@pytest.mark.parametrize("page_size", [4096, 16384, 65536])
def test_store_load_round_trip(page_size: int) -> None:
    z = zswap_core.Zswap(compressor="lz4", zpool="z3fold", ram_bytes=1 << 30, page_size=page_size)
    try:
        z.init(0)
        pages = {}
        for off in range(1, 40):
            half = os.urandom(page_size // (2 + off % 5))
            page = (half + bytes(page_size))[:page_size]
            pages[off] = page
            assert z.store(0, off, page)
        for off, page in pages.items():
            assert z.load(0, off) == page
        zp = z.pools[0]
        assert zp.zpool == "z3fold"
        assert z.pages.nr_pages > 0
        for off in list(pages)[::2]:
            z.invalidate_page(0, off)
        for off, page in list(pages.items())[1::2]:
            assert z.load(0, off) == page
    finally:
        z.close()
    assert z.pages.nr_pages == 0


def test_zswap_compact_runs_allocator_compaction() -> None:
    z = zswap_core.Zswap(compressor="lz4", zpool="z3fold", ram_bytes=1 << 30)
    try:
        z.init(0)
        pages = {}
        for off in range(60):
            page = (os.urandom(700) + bytes(4096))[:4096]  # ~12 chunks compressed
            pages[off] = page
            assert z.store(0, off, page)
        for off in range(60):
            if off % 3:
                z.invalidate_page(0, off)
        before = z.pages.nr_pages
        freed = z.compact()
        assert freed > 0
        assert z.pages.nr_pages == before - freed
        for off in range(0, 60, 3):
            assert z.load(0, off) == pages[off]
    finally:
        z.close()
    assert z.pages.nr_pages == 0
