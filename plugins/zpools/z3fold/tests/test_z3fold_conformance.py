"""The conformance kit (zswap_core.testing) run against this plugin."""

from __future__ import annotations

from zswap_core.testing import ZpoolConformance


class TestZ3fold(ZpoolConformance):
    zpool_type = "z3fold"
