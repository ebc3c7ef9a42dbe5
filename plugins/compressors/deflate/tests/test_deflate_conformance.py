"""The conformance kit (zswap_core.testing) run against this plugin."""

from __future__ import annotations

from zswap_core.testing import CompressorConformance


class TestDeflate(CompressorConformance):
    compressor_name = "deflate"
