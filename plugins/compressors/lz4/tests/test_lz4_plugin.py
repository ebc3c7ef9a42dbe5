"""What is particular to the lz4 and lz4hc plugins (the kit checks the driver contract:
see test_lz4_conformance.py)."""

from __future__ import annotations

import errno

import lz4.block  # type: ignore[import-untyped]
import pytest
from zswap_lz4 import LZ4, LZ4HC

from zswap_core import API_VERSION, ParamError, default_registry
from zswap_core.testing import LevelParameterTests, sample_pages


class TestLZ4HCLevel(LevelParameterTests):
    compressor_name = "lz4hc"
    default, minimum, maximum = 9, 1, 12  # LZ4HC_DEFAULT_CLEVEL, LZ4HC_CLEVEL_MAX


def test_entry_points_name_the_classes() -> None:
    for name, cls in {"lz4": LZ4, "lz4hc": LZ4HC}.items():
        assert default_registry().require("compressor", name).driver is cls
        assert cls.api_version == API_VERSION


def test_lz4_has_no_level() -> None:
    params = default_registry().require("compressor", "lz4").params
    assert len(params) == 0
    with pytest.raises(ParamError) as info:
        params["level"] = 1
    assert info.value.errno == errno.EINVAL
    assert "level" not in params


def test_output_is_a_bare_lz4_block() -> None:
    page = sample_pages(4096)["text"]
    data = LZ4(None).compress(page)
    assert data == lz4.block.compress(page, store_size=False)
    hc = LZ4HC(None).compress(page)  # no parameters: LZ4HC_DEFAULT_CLEVEL
    assert hc == lz4.block.compress(page, mode="high_compression", compression=9, store_size=False)
    assert len(hc) < len(data)
    # Either decoder reads the other's blocks: the format is the same.
    assert LZ4(None).decompress(hc, 4096) == page
    assert LZ4HC(None).decompress(data, 4096) == page


def test_short_block_is_refused() -> None:
    # lz4.block.decompress returns a block shorter than uncompressed_size without an
    # error; the plugin must refuse it.
    page = sample_pages(4096)["text"]
    data = LZ4(None).compress(page[:4000])
    with pytest.raises(lz4.block.LZ4BlockError):
        LZ4(None).decompress(data, 4096)
