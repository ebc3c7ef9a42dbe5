"""The conformance kit (zswap_core.testing) run against this plugin."""

from __future__ import annotations

from collections.abc import Collection

from zswap_zsmalloc import Zsmalloc

from zswap_core import Zpool
from zswap_core.testing import ZpoolConformance


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
