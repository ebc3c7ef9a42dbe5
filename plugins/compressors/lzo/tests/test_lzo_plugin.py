"""What is particular to the lzo and lzo-rle plugins (the kit checks the driver
contract: see test_lzo_conformance.py)."""

from __future__ import annotations

from typing import Any

import pytest

from zswap_core import API_VERSION, Compressor, default_registry
from zswap_core.testing import LevelParameterTests, sample_pages

# python-lzo builds against liblzo2; without it (or its shared library) skip all.
lzo = pytest.importorskip("lzo", exc_type=ImportError)

from zswap_lzo import LZO, LZORLE  # noqa: E402


class TestLZOLevel(LevelParameterTests):
    compressor_name = "lzo"
    default, minimum, maximum = 1, 1, 9  # LZO1X-1 .. LZO1X-999


class TestLZORLELevel(TestLZOLevel):
    compressor_name = "lzo-rle"


def _params(name: str) -> Any:
    return default_registry().require("compressor", name).params


def test_entry_points_name_the_classes() -> None:
    for name, cls in {"lzo": LZO, "lzo-rle": LZORLE}.items():
        assert default_registry().require("compressor", name).driver is cls
        assert cls.api_version == API_VERSION


def test_lzo_rle_is_plain_lzo1x_1() -> None:
    # Documented: python-lzo has no RLE extension, so lzo-rle writes LZO1X-1 streams.
    lzo_c: Compressor = LZO(_params("lzo"))
    rle_c: Compressor = LZORLE(_params("lzo-rle"))
    for ps in (4096, 16384, 65536):
        for kind, page in sample_pages(ps).items():
            a = lzo_c.compress(page)
            assert rle_c.compress(page) == a, kind
            assert a == lzo.compress(page, 1, False), kind
            assert rle_c.decompress(a, ps) == page


def test_level_selects_lzo1x_999() -> None:
    page = sample_pages(16384)["heap"]
    c = LZO(None)  # no parameters: the default, LZO1X-1
    assert c.compress(page) == lzo.compress(page, 1, False)
    params = _params("lzo")
    saved = params["level"]
    try:
        params["level"] = 9
        assert LZO(params).compress(page) == lzo.compress(page, 9, False)
    finally:
        params["level"] = saved


def test_str_input_is_refused() -> None:
    # python-lzo itself would take a str; the plugin must not.
    text: Any = "x" * 4096
    with pytest.raises(TypeError):
        LZO(_params("lzo")).compress(text)


def test_lzo_rle_is_declared_an_alias_and_writes_lzo_streams() -> None:
    """What lsmod, modinfo and compare print ("the same streams, byte for byte") holds."""
    assert LZORLE.alias_of == "lzo" and LZO.alias_of == ""
    assert "alias of lzo" in LZORLE.description
    rle, plain = LZORLE(_params("lzo-rle")), LZO(_params("lzo"))
    for page in sample_pages(4096).values():  # (every page size: test_lzo_rle_is_plain_lzo1x_1)
        assert rle.compress(page) == plain.compress(page)
