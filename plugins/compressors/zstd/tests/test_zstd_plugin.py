"""What is particular to the zstd plugin (the kit checks the driver contract, threads
sharing one instance included: see test_zstd_conformance.py)."""

from __future__ import annotations

import pytest
import zstandard
from zswap_zstd import Zstd

from zswap_core import API_VERSION, default_registry
from zswap_core.testing import LevelParameterTests, sample_pages


class TestZstdLevel(LevelParameterTests):
    compressor_name = "zstd"
    default, minimum, maximum = 3, 1, 22
    small = 19  # 20-22 are the slow "ultra" levels


@pytest.fixture
def comp() -> Zstd:
    assert default_registry().require("compressor", "zstd").driver is Zstd
    assert Zstd.api_version == API_VERSION
    return Zstd(default_registry().require("compressor", "zstd").params)


def test_frame_has_no_optional_fields(comp: Zstd) -> None:
    data = comp.compress(sample_pages(4096)["text"])
    fp = zstandard.get_frame_parameters(data)
    assert fp.content_size == zstandard.CONTENTSIZE_UNKNOWN
    assert fp.has_checksum is False
    assert fp.dict_id == 0


def test_bad_magic_raises(comp: Zstd) -> None:
    data = bytearray(comp.compress(sample_pages(4096)["text"]))
    data[0] ^= 0xFF
    with pytest.raises(zstandard.ZstdError):
        comp.decompress(bytes(data), 4096)


def test_close_then_use_again(comp: Zstd) -> None:
    """close() drops the per-thread contexts; the next call makes new ones."""
    page = sample_pages(4096)["text"]
    data = comp.compress(page)
    comp.close()
    assert comp.decompress(data, 4096) == page
    assert comp.compress(page) == data
