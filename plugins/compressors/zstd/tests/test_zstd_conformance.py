"""The conformance kit (zswap_core.testing) run against this plugin."""

from __future__ import annotations

from zswap_core.testing import CompressorConformance


class TestZstd(CompressorConformance):
    compressor_name = "zstd"
    distribution = "zswap-zstd"
    page_sizes = (4096, 16384, 65536)
    refuses_trailing_data = True

    def compressed_size_bound(self, page_size: int) -> int:
        return page_size + 64  # one raw block and the frame header
