"""The conformance kit (zswap_core.testing) run against this plugin."""

from __future__ import annotations

from zswap_core.testing import CompressorConformance


class TestLZ4(CompressorConformance):
    compressor_name = "lz4"


class TestLZ4HC(CompressorConformance):
    compressor_name = "lz4hc"
