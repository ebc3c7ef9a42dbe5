"""The zswap-core conformance kit, run against the installed simplepool plugin."""

from zswap_core.testing import ZpoolConformance


class TestSimplePool(ZpoolConformance):
    zpool_type = "simplepool"


class TestSimplePoolAlign64(ZpoolConformance):
    """The same contract with a module parameter set (as ``options simplepool align=64``)."""

    zpool_type = "simplepool"
    params = {"align": 64}
    page_sizes = (4096,)
