"""z3fold through the real zswap core: Zswap.compact() runs z3fold's compaction.

Entry point discovery and store/load round trips are checked by the conformance kit
(test_z3fold_conformance.py).
"""

from __future__ import annotations

import os

import zswap_core


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
