"""lzo and lzo-rle compressors (the kernel's ``lzo`` and ``lzo-rle`` crypto modules).

Both use python-lzo (liblzo2) without its 5-byte length header, since zswap keeps
the length itself, and decompress with liblzo2's bounds-checked LZO1X decoder.

About ``lzo-rle``: the kernel's lzo-rle is LZO1X-1 extended with a run-length
encoding of zero runs and a leading bitstream-version marker. liblzo2, and hence
python-lzo, has no such encoder or decoder, and writing one in Python would cost
far more than it saves. So this ``lzo-rle`` is a separate compressor *name* that
produces plain LZO1X-1 streams, byte for byte what ``lzo`` produces: it compresses
zero runs no better than ``lzo`` does. Its streams round-trip here, and being
plain LZO1X they are also accepted by the kernel's decoder (as version-0 input);
but it cannot read streams made by the kernel's lzo-rle encoder. It exists so that
``zswap.compressor=lzo-rle`` (the kernel's default since 5.1) works unchanged.

With the C extension built (``_native/lzo_ops.c``, linked with the system's liblzo2),
each instance also exports ``codec_ops``: the same LZO1X streams (LZO1X-1, or
LZO1X-999 above level 1) compressed and decompressed in C, at the level a parameter
listener keeps current, which zswap-core's native backend calls without the GIL.
``lzo-rle`` exports the same ops as ``lzo``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import lzo

from zswap_core import Compressor, Param

from ._codec import attach, exported

if TYPE_CHECKING:
    from typing_extensions import Buffer

    from zswap_core import ModuleParams

__all__ = ["DEFAULT_LEVEL", "LZO", "LZORLE"]

#: LZO1X-1, the kernel's (and liblzo2's fast) compressor.
DEFAULT_LEVEL = 1


def _as_bytes(src: Buffer) -> bytes:
    # python-lzo parses its input with "s#": read-only buffers only, and it would also
    # take a str. bytes() accepts any buffer and refuses str.
    return src if type(src) is bytes else bytes(src)


class LZO(Compressor):
    """LZO1X; ``level`` 1 (default) is LZO1X-1 as in the kernel, 2..9 LZO1X-999.

    python-lzo has only the two encoders: any level above 1 selects LZO1X-999 (slower
    to compress, smaller output, decoded by the same LZO1X decoder).
    """

    name = "lzo"
    description = "LZO1X-1 (python-lzo / liblzo2)"
    parameters: ClassVar[tuple[Param, ...]] = (
        Param(
            "level",
            "int",
            DEFAULT_LEVEL,
            "1: LZO1X-1 (default, as the kernel); 2..9: LZO1X-999",
            minimum=1,
            maximum=9,
        ),
    )

    def __init__(self, params: ModuleParams | None = None) -> None:
        super().__init__(params)
        self._native = attach(self, "lzo", DEFAULT_LEVEL)

    @property
    def codec_ops(self) -> object:
        """The C ops at the current ``level``, or None: see ``Compressor``."""
        return exported(self, LZO, self._native)

    def close(self) -> None:
        if self._native is not None:
            self._native.close()

    def _level(self) -> int:
        if self.params is None:
            return DEFAULT_LEVEL
        level: int = self.params["level"]
        return level

    def compress(self, src: Buffer) -> bytes:
        out: bytes = lzo.compress(_as_bytes(src), self._level(), False)
        return out

    def decompress(self, src: Buffer, dlen: int) -> bytes:
        if dlen <= 0:
            raise ValueError(f"{self.name}: bad decompressed length {dlen}")
        # lzo1x_decompress_safe refuses input overruns, output overruns (a stream
        # longer than dlen) and input left over after the end marker.
        out: bytes = lzo.decompress(_as_bytes(src), False, dlen)
        if len(out) != dlen:
            raise lzo.error(f"{self.name}: decompressed {len(out)} bytes, expected {dlen}")
        return out


class LZORLE(LZO):
    """The ``lzo-rle`` name, encoded as plain LZO1X-1 (see the module docstring).

    python-lzo lacks the kernel's run-length extension, so the output is the same as
    :class:`LZO`'s; ``level`` behaves as there.
    """

    name = "lzo-rle"
    description = "alias of lzo: plain LZO1X-1 streams, without the kernel's RLE (python-lzo)"
    alias_of = "lzo"
