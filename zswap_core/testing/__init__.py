"""The conformance kit for compressor and zpool plugins (``pytest`` test classes).

A plugin's test suite subclasses a kit class and names its driver; every test of the
driver contract then runs against it::

    # tests/test_<name>_conformance.py of the plugin (a name of its own: see CONTRIBUTING.md)
    from zswap_core.testing import CompressorConformance, ZpoolConformance

    class TestMyPool(ZpoolConformance):
        zpool_type = "mypool"

    class TestMyCodec(CompressorConformance):
        compressor_name = "mycodec"

A compressor with a ``level`` module parameter can also subclass
:class:`LevelParameterTests`.

A compressor that exports C codec ops (``codec_ops``, see ``zswap_ops.h``) has them
checked too, through ``zswap_core._core.CodecOps`` and directly: both directions
between the C functions and the Python methods, bad input, the bound, short output
buffers, threads, the level, and withholding from Python overrides. A driver that
declares no ``codec_ops`` passes those tests (there is nothing to check); one whose
instance returns None (its extension is not built) skips them, saying so.

For detailed assertion messages from the kit's own code, add to your ``conftest.py``
(before anything imports the kit)::

    import pytest
    pytest.register_assert_rewrite("zswap_core.testing")

``import zswap_core`` never imports this package; it needs pytest
(``pip install "zswap-core[test]"``).
"""

from __future__ import annotations

try:
    import pytest  # noqa: F401  # the kit is made of pytest classes and fixtures
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError('zswap_core.testing needs pytest: pip install "zswap-core[test]"') from exc

from ._common import KitRegistry, page_mix, sample_pages
from ._compressor_kit import CompressorConformance
from ._level_kit import LevelParameterTests
from ._reference import ReferenceDeflate, ReferencePagePool
from ._zpool_kit import ZpoolConformance

__all__ = [
    "CompressorConformance",
    "KitRegistry",
    "LevelParameterTests",
    "ReferenceDeflate",
    "ReferencePagePool",
    "ZpoolConformance",
    "page_mix",
    "sample_pages",
]
