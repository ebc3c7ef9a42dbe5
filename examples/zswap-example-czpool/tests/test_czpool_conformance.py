"""The zswap-core conformance kit, run against the installed czpool plugin."""

import pytest

from zswap_core import PageAllocator
from zswap_core.testing import ZpoolConformance
from zswap_core.testing._common import zswap_threads_check

pytestmark = pytest.mark.skipif(
    not hasattr(PageAllocator(), "page_acct"),
    reason="czpool needs zswap-core's native backend (ZSWAP_BACKEND=python is set?)",
)


class TestCZpool(ZpoolConformance):
    zpool_type = "czpool"
    distribution = "zswap-example-czpool"
    unusable_after_destroy = True  # its C functions answer EINVAL after destroy()

    def check_pool(self, pool, handles, where):
        # one page per object, exactly
        assert pool.nr_pages == len(handles), where

    def test_zswap_threads(self, page_size):
        """Only the free-running part: Zswap's store, load and invalidate call czpool's C
        ops table, which runs whole with the GIL held, so there is no bytecode of the
        plugin for the kit's forced interleavings to stop at (test_threads forces them
        through the pool's Python methods)."""
        reg = self.kit_registry()
        zswap_threads_check(reg, compressor="kit-deflate", zpool="czpool", page_size=page_size)
