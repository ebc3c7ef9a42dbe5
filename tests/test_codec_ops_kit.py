"""The conformance kit's C codec ops checks: they pass a good table and catch broken ones.

The broken tables are made here with ctypes: Python callbacks around the deflate
plugin's real table (or another plugin's), each breaking one rule of zswap_ops.h. The
kit's test methods are called directly on a kit instance whose driver is a subclass
of ``zswap_deflate.Deflate`` exporting that table.
"""

from __future__ import annotations

import ctypes
import errno
import re
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from zswap_core import Compressor
from zswap_core.testing import CompressorConformance, LevelParameterTests, ReferenceDeflate
from zswap_core.testing._codec_ops import CAPSULE, _api, _OpsTable
from zswap_core.testing._common import load_driver

pytest.importorskip("zswap_core._core", reason="the native core is not built")
pytest.importorskip("zswap_deflate._ops", reason="zswap-deflate's C ops are not built")

from zswap_deflate import Deflate

# -- a codec ops table of Python callbacks -----------------------------------------------------

_capi = ctypes.PyDLL(ctypes.pythonapi._name, handle=ctypes.pythonapi._handle)
_capi.PyCapsule_New.restype = ctypes.py_object
_capi.PyCapsule_New.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
_capi.PyCapsule_SetContext.restype = ctypes.c_int
_capi.PyCapsule_SetContext.argtypes = [ctypes.py_object, ctypes.c_void_p]
_NAME = ctypes.create_string_buffer(CAPSULE)
_FN: dict[str, Any] = dict(_OpsTable._fields_)
#: Every table made: a binding may call one after its test (freeing its contexts).
_KEEP: list[WrappedOps] = []


class WrappedOps:
    """A table whose functions call a real table's; subclasses break one of them."""

    def __init__(self, real_capsule: object) -> None:
        self.real_capsule = real_capsule
        self.real = _OpsTable.from_address(_api.PyCapsule_GetPointer(real_capsule, CAPSULE))
        self.table = _OpsTable(
            1,
            ctypes.sizeof(_OpsTable),
            _FN["bound"](self.bound),
            _FN["ctx_create"](self.ctx_create),
            _FN["ctx_free"](self.ctx_free),
            _FN["compress"](self.compress),
            _FN["decompress"](self.decompress),
        )
        self.capsule = _capi.PyCapsule_New(
            ctypes.addressof(self.table), ctypes.addressof(_NAME), None
        )
        _capi.PyCapsule_SetContext(self.capsule, _api.PyCapsule_GetContext(real_capsule))
        _KEEP.append(self)

    def bound(self, codec: int, n: int) -> int:
        return int(self.real.bound(codec, n))

    def ctx_create(self, codec: int) -> int | None:
        ctx: int | None = self.real.ctx_create(codec)
        return ctx

    def ctx_free(self, codec: int, ctx: int) -> None:
        self.real.ctx_free(codec, ctx)

    def compress(self, codec: int, ctx: int, src: int, slen: int, dst: int, dlen: Any) -> int:
        return int(self.real.compress(codec, ctx, src, slen, dst, dlen))

    def decompress(self, codec: int, ctx: int, src: int, slen: int, dst: int, dlen: int) -> int:
        return int(self.real.decompress(codec, ctx, src, slen, dst, dlen))


class LaxDecompress(WrappedOps):
    """Says 0 whatever the stream: short, overlong or garbage input "decodes"."""

    def decompress(self, codec: int, ctx: int, src: int, slen: int, dst: int, dlen: int) -> int:
        super().decompress(codec, ctx, src, slen, dst, dlen)
        return 0


class OffByOne(WrappedOps):
    """Writes one byte past a buffer that is too short for the output."""

    def compress(self, codec: int, ctx: int, src: int, slen: int, dst: int, dlen: Any) -> int:
        cap = dlen[0]
        rc = super().compress(codec, ctx, src, slen, dst, dlen)
        if rc == -errno.ENOSPC:
            ctypes.memset(dst + cap, 0, 1)
        return rc


class NoSpaceWhenShort(WrappedOps):
    """Refuses any buffer shorter than the bound, even one the output fits."""

    def compress(self, codec: int, ctx: int, src: int, slen: int, dst: int, dlen: Any) -> int:
        if dlen[0] < self.bound(codec, slen):
            return -errno.ENOSPC
        return super().compress(codec, ctx, src, slen, dst, dlen)


class SmallBound(WrappedOps):
    """A bound below what the codec writes."""

    def bound(self, codec: int, n: int) -> int:
        return n // 2


class WrappedDeflate(Deflate):
    """deflate with its C ops behind a table of callbacks (``ops``: which one)."""

    ops: ClassVar[type[WrappedOps]] = WrappedOps

    def real_ops(self) -> object:
        return super().codec_ops

    @property
    def codec_ops(self) -> object:
        real = self.real_ops()
        if real is None:
            return None
        wrapped = self.__dict__.get("_wrapped")
        if wrapped is None:
            wrapped = self._wrapped = self.ops(real)
        return wrapped.capsule


def deflate_with(ops: type[WrappedOps]) -> type[Compressor]:
    return type(f"Deflate{ops.__name__}", (WrappedDeflate,), {"ops": ops})


class OtherFormat(WrappedDeflate):
    """deflate's Python methods with zstd's C ops: each side reads only its own."""

    def real_ops(self) -> object:
        zstd = pytest.importorskip("zswap_zstd")
        other = self.__dict__.get("_other")
        if other is None:
            other = self._other = zstd.Zstd()
        return other.codec_ops


class NotWithheld(Deflate):
    """Exports its ops even to a subclass that overrides compress()."""

    @property
    def codec_ops(self) -> object:
        assert self._native is not None
        return self._native.capsule


class NoneAtAll(Deflate):
    """Declares codec_ops, but the instance has none (as without the extension)."""

    @property
    def codec_ops(self) -> object:
        return None


class NotACapsule(Deflate):
    @property
    def codec_ops(self) -> object:
        return 42


class FixedLevel(Deflate):
    """C ops that stay at the default level whatever the module parameter says."""

    @property
    def codec_ops(self) -> object:
        fixed = self.__dict__.get("_fixed")
        if fixed is None:
            fixed = self._fixed = Deflate()  # no parameters: level 6 for ever
        return fixed.codec_ops


# -- the kit, called directly ------------------------------------------------------------------


@pytest.fixture
def kit() -> Iterator[Any]:
    made: list[CompressorConformance] = []

    def make(driver: type[Compressor]) -> CompressorConformance:
        k = CompressorConformance()
        k.module = load_driver("compressor", driver.name, driver, {})
        k._instances = []
        made.append(k)
        return k

    yield make
    for k in made:
        for c in k._instances:
            c.close()


CODEC_OPS_TESTS = (
    "test_codec_ops_round_trip",
    "test_codec_ops_bound",
    "test_codec_ops_refuse_bad_input",
    "test_codec_ops_caller_buffers",
    "test_codec_ops_threads",
)


def run(k: CompressorConformance, test: str, page_size: int = 4096) -> None:
    getattr(k, test)(page_size)


@pytest.mark.parametrize("test", CODEC_OPS_TESTS)
def test_a_good_table_passes(kit: Any, test: str) -> None:
    """deflate's real ops, called through a table of callbacks, pass every check."""
    run(kit(WrappedDeflate), test)


def test_a_good_table_is_withheld_from_overrides(kit: Any) -> None:
    kit(WrappedDeflate).test_codec_ops_withheld_from_overrides()


@pytest.mark.parametrize(
    ("driver", "test", "phrase"),
    [
        (deflate_with(LaxDecompress), "test_codec_ops_refuse_bad_input", "instead of refusing"),
        (deflate_with(OffByOne), "test_codec_ops_caller_buffers", "wrote past the end"),
        (deflate_with(NoSpaceWhenShort), "test_codec_ops_caller_buffers", "the output fits"),
        (deflate_with(SmallBound), "test_codec_ops_bound", "bound(4096) is 2048"),
        (deflate_with(SmallBound), "test_codec_ops_round_trip", "output does not fit"),
        (OtherFormat, "test_codec_ops_round_trip", "not the same stream format"),
        (NotACapsule, "test_codec_ops_round_trip", "not a usable"),
    ],
    ids=lambda v: getattr(v, "__name__", str(v))[:40],
)
def test_a_broken_table_is_caught(
    kit: Any, driver: type[Compressor], test: str, phrase: str
) -> None:
    with pytest.raises((AssertionError, ValueError), match=re.escape(phrase)):
        run(kit(driver), test)


def test_ops_given_to_an_override_are_caught(kit: Any) -> None:
    with pytest.raises(AssertionError, match="still exports codec_ops"):
        kit(NotWithheld).test_codec_ops_withheld_from_overrides()


@pytest.mark.parametrize("test", CODEC_OPS_TESTS)
def test_an_instance_without_ops_skips_saying_why(kit: Any, test: str) -> None:
    with pytest.raises(pytest.skip.Exception, match="codec_ops is None"):
        run(kit(NoneAtAll), test)


@pytest.mark.parametrize("test", CODEC_OPS_TESTS)
def test_a_driver_without_ops_passes(kit: Any, test: str) -> None:
    """A Python-only driver has nothing to check: the tests pass (a plugin's own suite
    must not report skips for ops it never claimed)."""
    run(kit(ReferenceDeflate), test)
    kit(ReferenceDeflate).test_codec_ops_withheld_from_overrides()


class DeflateLevel(LevelParameterTests):
    compressor_name = "deflate"
    default, minimum, maximum = 6, 1, 9


def level_kit(driver: type[Compressor]) -> DeflateLevel:
    k = DeflateLevel()
    k.module = load_driver("compressor", "deflate", driver, {})
    return k


def test_the_level_kit_passes_deflate() -> None:
    k = level_kit(Deflate)
    k.test_codec_ops_follow_level()
    k.test_codec_ops_threads_while_level_changes()


def test_the_level_kit_catches_ops_that_ignore_the_level() -> None:
    with pytest.raises(AssertionError, match="does the parameter reach them"):
        level_kit(FixedLevel).test_codec_ops_follow_level()
