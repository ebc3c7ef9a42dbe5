"""The conformance kit (zswap_core.testing) run against this plugin, on both backends
(conftest.backend)."""

from __future__ import annotations

from collections.abc import Collection

from zswap_zsmalloc import Zsmalloc

from zswap_core import Zpool
from zswap_core.testing import ZpoolConformance
from zswap_core.testing._common import BUNDLED_COMPRESSORS, first_available, zswap_threads_check


class TestZsmalloc(ZpoolConformance):
    zpool_type = "zsmalloc"
    distribution = "zswap-zsmalloc"
    page_sizes = (4096, 16384, 65536)
    steps = 700
    unusable_after_destroy = True

    def check_pool(self, pool: Zpool, handles: Collection[int], where: str) -> None:
        """The per-class statistics add up to the pool's pages and live handles."""
        assert isinstance(pool, Zsmalloc)
        s = pool.stats()
        used = sum(r["pages_used"] for r in s["classes"])
        assert used == pool.nr_pages == s["total"]["pages_used"], f"{where}: {s['total']}"
        objects = sum(r["obj_used"] for r in s["classes"])
        assert objects == s["nr_handles"] == len(handles), f"{where}: {objects} objects"

    def test_zswap_threads(self, page_size: int, backend: str) -> None:
        """On the C pool, only the free-running part: Zswap's store, load and invalidate
        call its C methods (alloc_write, read, free), which run whole with the GIL held,
        so there is no bytecode of the plugin for the forced interleavings to stop at.
        (test_threads forces them through the pool's own Python methods.)"""
        if backend != "native":
            super().test_zswap_threads(page_size)
            return
        reg = self.kit_registry()
        comp = self.partner_compressor or first_available(
            "compressor", BUNDLED_COMPRESSORS, "", "kit-deflate", reg
        )
        zswap_threads_check(
            reg, compressor=comp, zpool=self.module.name, page_size=page_size, seed=self.seed
        )
