"""The conformance kit (zswap_core.testing) run against this plugin."""

from __future__ import annotations

from zswap_core.testing import CompressorConformance


class TestLZ4(CompressorConformance):
    compressor_name = "lz4"
    distribution = "zswap-lz4"
    page_sizes = (4096, 16384, 65536)
    refuses_trailing_data = True

    def compressed_size_bound(self, page_size: int) -> int:
        return page_size + page_size // 255 + 16  # LZ4_COMPRESSBOUND


class TestLZ4HC(TestLZ4):
    compressor_name = "lz4hc"
