"""What is particular to the deflate plugin: the kernel's settings (the kit checks the
driver contract: see test_deflate_conformance.py)."""

from __future__ import annotations

import random
import zlib

import pytest
from zswap_deflate import Deflate

from zswap_core import API_VERSION, default_registry
from zswap_core.testing import LevelParameterTests, sample_pages


class TestDeflateLevel(LevelParameterTests):
    compressor_name = "deflate"
    default, minimum, maximum = 6, 1, 9


@pytest.fixture
def comp() -> Deflate:
    assert default_registry().require("compressor", "deflate").driver is Deflate
    assert Deflate.api_version == API_VERSION
    return Deflate(default_registry().require("compressor", "deflate").params)


@pytest.mark.parametrize("ps", [4096, 16384, 65536])
def test_output_is_the_kernels_raw_deflate(comp: Deflate, ps: int) -> None:
    """Raw deflate at level 6, wbits -11 (a 2 KiB window), memLevel 9: as the kernel."""
    for kind, page in sample_pages(ps).items():
        ref = zlib.compressobj(6, zlib.DEFLATED, -11, 9, zlib.Z_DEFAULT_STRATEGY)
        assert comp.compress(page) == ref.compress(page) + ref.flush(), kind


def test_window_is_two_kib(comp: Deflate) -> None:
    rng = random.Random(5)
    block = rng.randbytes(3000)
    page = (block + block)[:4096]  # the repeat is 3000 bytes back: beyond a 2 KiB window
    data = comp.compress(page)
    assert len(data) > 3900  # so it is not found
    assert comp.decompress(data, 4096) == page
    # With a 32 KiB window the same page would shrink: the setting matters.
    wide = zlib.compressobj(6, zlib.DEFLATED, -15, 9)
    assert len(wide.compress(page) + wide.flush()) < 3500


def test_reserved_block_type_raises(comp: Deflate) -> None:
    data = bytearray(comp.compress(sample_pages(4096)["text"]))
    data[0] |= 0x06  # BTYPE 11 is reserved
    with pytest.raises(zlib.error):
        comp.decompress(bytes(data), 4096)


def test_zlib_wrapped_stream_is_refused(comp: Deflate) -> None:
    with pytest.raises(zlib.error):
        comp.decompress(zlib.compress(sample_pages(4096)["text"]), 4096)
