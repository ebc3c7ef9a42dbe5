"""The conformance kit (zswap_core.testing) run against this plugin."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection

from zswap_z3fold import Z3fold

from zswap_core import Zpool
from zswap_core.testing import ZpoolConformance


class TestZ3fold(ZpoolConformance):
    zpool_type = "z3fold"
    distribution = "zswap-z3fold"
    page_sizes = (4096, 16384, 65536)
    steps = 700
    unusable_after_destroy = True

    def check_pool(self, pool: Zpool, handles: Collection[int], where: str) -> None:
        """No empty page is kept, no page holds more than three objects, and a
        headless page holds only its one object."""
        assert isinstance(pool, Z3fold)
        pool.check()
        layouts = [pool.layout(h) for h in handles]
        per_page = Counter(la.page for la in layouts)
        assert len(per_page) == pool.nr_pages, f"{where}: {pool.nr_pages} pages, {per_page}"
        assert max(per_page.values(), default=0) <= 3, f"{where}: {per_page.most_common(1)}"
        for la in layouts:
            assert la.buddy != "headless" or per_page[la.page] == 1, f"{where}: {la}"
