"""The conformance kit (zswap_core.testing) run against this plugin."""

from __future__ import annotations

from collections.abc import Collection

from zswap_zbud import Zbud

from zswap_core import Zpool
from zswap_core.testing import ZpoolConformance


class TestZbud(ZpoolConformance):
    zpool_type = "zbud"
    distribution = "zswap-zbud"
    page_sizes = (4096, 16384, 65536)
    steps = 700
    unusable_after_destroy = True

    def check_pool(self, pool: Zpool, handles: Collection[int], where: str) -> None:
        """Every page holds one object (unbuddied) or two (buddied), and is listed."""
        assert isinstance(pool, Zbud)
        pool.check()
        st = pool.stats()
        assert st["objects"] == len(handles), f"{where}: {st}"
        assert st["pages"] == st["buddied"] + st["unbuddied"] == pool.nr_pages, f"{where}: {st}"
        assert 2 * st["buddied"] + st["unbuddied"] == len(handles), f"{where}: {st}"
        assert sum(st["unbuddied_by_free_chunks"].values()) == st["unbuddied"], f"{where}: {st}"
