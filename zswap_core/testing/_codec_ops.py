"""The kit's access to a compressor's C codec ops (``codec_ops``, see ``zswap_ops.h``).

Two ways in: :func:`codec_ops_of` binds the table with ``zswap_core._core.CodecOps``,
as the native core calls it (contexts reused, the GIL released around each call);
:class:`RawCodecOps` calls the table's functions directly through :mod:`ctypes`, to
hand them buffers the core never would (too short, with guard bytes around them).
"""

from __future__ import annotations

import ctypes
import errno
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .._compressor import Compressor

__all__ = ["RawCodecOps", "codec_ops_of", "declares_codec_ops"]

#: The capsule's name (ZSWAP_CODEC_OPS_CAPSULE).
CAPSULE = b"zswap.codec_ops"


def declares_codec_ops(driver: type[Compressor]) -> bool:
    """Whether the class has a ``codec_ops`` of its own (the base class's is None)."""
    return getattr(driver, "codec_ops", None) is not None


def codec_ops_of(comp: Compressor, what: str) -> Any:
    """``zswap_core._core.CodecOps`` over ``comp.codec_ops``, or None when the class
    declares no ops (a Python-only driver: nothing to check).

    Skips the test when the instance's ``codec_ops`` is None (its C extension is not
    built, or the ops are withheld) or when zswap-core's native backend is not built;
    fails when it is something the core cannot call.
    """
    if not declares_codec_ops(type(comp)):
        return None
    capsule = comp.codec_ops
    if capsule is None:
        pytest.skip(
            f"{what}: codec_ops is None (its C extension is not built, or the ops are "
            "withheld): the C codec ops checks need it"
        )
    try:
        from .._core import CodecOps
    except ImportError as exc:
        pytest.skip(f"zswap_core._core is not built ({exc}): the C codec ops cannot be called")
    try:
        return CodecOps(capsule)
    except TypeError:
        raise AssertionError(
            f"{what}: codec_ops is {type(capsule).__name__!s}, not a usable "
            f'"zswap.codec_ops" capsule (a version >= 1 table with every function set)'
        ) from None


# -- the table through ctypes ------------------------------------------------------------

_p = ctypes.c_void_p
_size = ctypes.c_size_t


class _OpsTable(ctypes.Structure):
    """``struct zswap_codec_ops``, version 1."""

    _fields_ = [
        ("version", ctypes.c_uint32),
        ("size", ctypes.c_uint32),
        ("bound", ctypes.CFUNCTYPE(_size, _p, _size)),
        ("ctx_create", ctypes.CFUNCTYPE(_p, _p)),
        ("ctx_free", ctypes.CFUNCTYPE(None, _p, _p)),
        ("compress", ctypes.CFUNCTYPE(ctypes.c_int, _p, _p, _p, _size, _p, ctypes.POINTER(_size))),
        ("decompress", ctypes.CFUNCTYPE(ctypes.c_int, _p, _p, _p, _size, _p, _size)),
    ]


# A handle of our own on the C API, so that setting argtypes changes nobody else's.
_api = ctypes.PyDLL(ctypes.pythonapi._name, handle=ctypes.pythonapi._handle)
_api.PyCapsule_GetPointer.restype = ctypes.c_void_p
_api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
_api.PyCapsule_GetContext.restype = ctypes.c_void_p
_api.PyCapsule_GetContext.argtypes = [ctypes.py_object]

#: Bytes written around every output buffer, which no call may change.
GUARD = 64
_FILL = 0xA5


class RawCodecOps:
    """The functions of a codec ops capsule, called directly on caller buffers.

    Each call gets ``GUARD`` bytes of a known pattern before and after the buffer it
    may write, and fails the test if any of them changed. One context, made here.
    """

    def __init__(self, capsule: object) -> None:
        self.capsule = capsule  # keeps the table and the codec alive
        table = _api.PyCapsule_GetPointer(capsule, CAPSULE)
        self.codec = _api.PyCapsule_GetContext(capsule)
        self.ops = _OpsTable.from_address(table)
        self.ctx = self.ops.ctx_create(self.codec)
        assert self.ctx, "ctx_create() returned NULL"

    def close(self) -> None:
        if self.ctx:
            self.ops.ctx_free(self.codec, self.ctx)
            self.ctx = None

    def bound(self, n: int) -> int:
        return int(self.ops.bound(self.codec, n))

    @staticmethod
    def _guarded(n: int) -> ctypes.Array[ctypes.c_char]:
        return ctypes.create_string_buffer(bytes([_FILL]) * (n + 2 * GUARD), n + 2 * GUARD)

    @staticmethod
    def _check_guards(buf: ctypes.Array[ctypes.c_char], n: int, what: str) -> None:
        raw = buf.raw
        pattern = bytes([_FILL]) * GUARD
        assert raw[:GUARD] == pattern, f"{what} wrote before the start of its output buffer"
        assert raw[GUARD + n :] == pattern, (
            f"{what} wrote past the end of its {n}-byte output buffer"
        )

    def compress(self, src: bytes, capacity: int, what: str) -> tuple[int, bytes]:
        """``(rc, output)``: the output's bytes when rc is 0, else b""."""
        buf = self._guarded(capacity)
        dlen = _size(capacity)
        rc = self.ops.compress(
            self.codec, self.ctx, src, len(src), ctypes.addressof(buf) + GUARD, ctypes.byref(dlen)
        )
        self._check_guards(buf, capacity, what)
        if rc != 0:
            return rc, b""
        assert dlen.value <= capacity, (
            f"{what}: compress() claimed {dlen.value} bytes of output in a {capacity}-byte buffer"
        )
        return 0, buf.raw[GUARD : GUARD + dlen.value]

    def decompress(self, src: bytes, dlen: int, what: str) -> tuple[int, bytes]:
        """``(rc, output)``: the ``dlen`` bytes when rc is 0, else b""."""
        buf = self._guarded(dlen)
        rc = self.ops.decompress(
            self.codec, self.ctx, src, len(src), ctypes.addressof(buf) + GUARD, dlen
        )
        self._check_guards(buf, dlen, what)
        return rc, buf.raw[GUARD : GUARD + dlen] if rc == 0 else b""


#: The errors a codec function may return besides 0.
COMPRESS_ERRORS = {-errno.ENOSPC: "ENOSPC", -errno.EINVAL: "EINVAL", -errno.ENOMEM: "ENOMEM"}
DECOMPRESS_ERRORS = {-errno.EINVAL: "EINVAL", -errno.ENOMEM: "ENOMEM"}
