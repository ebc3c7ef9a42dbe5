"""deflate compressor (the kernel's ``deflate`` crypto module), on the stdlib's zlib.

The kernel compresses pages as raw deflate (no zlib header or trailer) with a
2 KiB window (11 window bits), the largest ``memLevel`` (9), the default strategy
and the default level (6). This plugin uses the same settings, so its streams are
what the kernel's module produces and accepts. ``level`` is a module parameter
(1..9, read on every call).

zlib's compress and decompress objects are made per call, so one instance is safe
to share between threads.

With the C extension built (``_native/deflate_ops.c``, linked with the system's
zlib), each instance also exports ``codec_ops``: the same raw deflate streams
compressed and decompressed in C with one deflate and one inflate stream per thread,
at the level a parameter listener keeps current, which zswap-core's native backend
calls without the GIL.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING, ClassVar

from zswap_core import Compressor, Param

from ._codec import attach, exported

if TYPE_CHECKING:
    from typing_extensions import Buffer

    from zswap_core import ModuleParams

__all__ = ["DEFAULT_LEVEL", "MEM_LEVEL", "WINDOW_BITS", "Deflate"]

#: The kernel's default: zlib's Z_DEFAULT_COMPRESSION, which is level 6.
DEFAULT_LEVEL = 6
#: Raw deflate (negative) with a 2**11 byte window.
WINDOW_BITS = -11
#: zlib's MAX_MEM_LEVEL.
MEM_LEVEL = 9


class Deflate(Compressor):
    """Raw deflate, window 2 KiB, memLevel 9, default strategy."""

    name = "deflate"
    description = "raw deflate (stdlib zlib, 2 KiB window, memLevel 9), level set by deflate.level"
    parameters: ClassVar[tuple[Param, ...]] = (
        Param(
            "level",
            "int",
            DEFAULT_LEVEL,
            f"compression level 1..9 (default {DEFAULT_LEVEL})",
            minimum=1,
            maximum=9,
        ),
    )

    def __init__(self, params: ModuleParams | None = None) -> None:
        super().__init__(params)
        self._native = attach(self, "deflate", DEFAULT_LEVEL)

    @property
    def codec_ops(self) -> object:
        """The C ops at the current ``level``, or None: see ``Compressor``."""
        return exported(self, Deflate, self._native)

    def close(self) -> None:
        if self._native is not None:
            self._native.close()

    def _level(self) -> int:
        if self.params is None:
            return DEFAULT_LEVEL
        level: int = self.params["level"]
        return level

    def compress(self, src: Buffer) -> bytes:
        cobj = zlib.compressobj(
            self._level(), zlib.DEFLATED, WINDOW_BITS, MEM_LEVEL, zlib.Z_DEFAULT_STRATEGY
        )
        return cobj.compress(src) + cobj.flush(zlib.Z_FINISH)

    def decompress(self, src: Buffer, dlen: int) -> bytes:
        if dlen <= 0:
            raise ValueError(f"deflate: bad decompressed length {dlen}")
        dobj = zlib.decompressobj(WINDOW_BITS)
        # max_length bounds the output: a stream that decodes to more than dlen bytes
        # stops early and is caught below instead of growing without limit.
        out = dobj.decompress(src, dlen)
        if not dobj.eof:
            raise zlib.error(f"deflate: stream is truncated or decodes to more than {dlen} bytes")
        if dobj.unused_data:
            raise zlib.error(f"deflate: {len(dobj.unused_data)} bytes after the end of stream")
        if len(out) != dlen:
            raise zlib.error(f"deflate: decompressed {len(out)} bytes, expected {dlen}")
        return out
