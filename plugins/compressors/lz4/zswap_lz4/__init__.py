"""lz4 and lz4hc compressors (the kernel's ``lz4`` and ``lz4hc`` crypto modules).

The Python methods use python-lz4. With the C extension built (``_native/lz4_ops.c``,
linked with the system's liblz4), each instance also exports ``codec_ops``: the
same block format compressed and decompressed in C, which zswap-core's native
backend calls without the GIL.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

import lz4.block  # type: ignore[import-untyped]  # lz4 ships no type hints

from zswap_core import Compressor, Param

from ._codec import attach, exported

if TYPE_CHECKING:
    from typing_extensions import Buffer

    from zswap_core import ModuleParams

__all__ = ["LZ4", "LZ4HC"]


_compress = lz4.block.compress
_decompress_block = lz4.block.decompress
_compress_page: Callable[[Buffer], bytes] = functools.partial(_compress, store_size=False)


def _decompress(src: Buffer, dlen: int) -> bytes:
    # uncompressed_size is only the buffer's size: a block that decodes to fewer
    # bytes comes back short without an error, so the length is checked here.
    out: bytes = _decompress_block(src, uncompressed_size=dlen)
    if len(out) != dlen or dlen <= 0:
        raise lz4.block.LZ4BlockError(f"lz4: decompressed {len(out)} bytes, expected {dlen}")
    return out


class LZ4(Compressor):
    """LZ4 block format, default acceleration, as the kernel's ``lz4``."""

    name = "lz4"
    description = "LZ4 fast compression (lz4.block)"

    # The hot path: the codec's own function, with no Python frame between it and the
    # core (a partial is called without one). store_size=False: zswap keeps the
    # length itself, as the kernel does.
    compress = staticmethod(_compress_page)  # type: ignore[assignment]  # a C callable
    decompress = staticmethod(_decompress)

    def __init__(self, params: ModuleParams | None = None) -> None:
        super().__init__(params)
        self._native = attach(self, "lz4", 0)

    @property
    def codec_ops(self) -> object:
        """The C ops (``zswap.codec_ops`` capsule), or None: see ``Compressor``."""
        return exported(self, LZ4, self._native)

    def close(self) -> None:
        if self._native is not None:
            self._native.close()


class LZ4HC(Compressor):
    """LZ4 high-compression mode; ``level`` as the kernel's LZ4HC_DEFAULT_CLEVEL (9)."""

    name = "lz4hc"
    description = "LZ4 high compression (lz4.block, mode=high_compression)"
    parameters: ClassVar[tuple[Param, ...]] = (
        Param("level", "int", 9, "compression level 1..12", minimum=1, maximum=12),
    )

    def __init__(self, params: ModuleParams | None = None) -> None:
        super().__init__(params)
        self._native = attach(self, "lz4hc", 9)

    @property
    def codec_ops(self) -> object:
        """The C ops at the current ``level``, or None: see ``Compressor``."""
        return exported(self, LZ4HC, self._native)

    def close(self) -> None:
        if self._native is not None:
            self._native.close()

    def compress(self, src: Buffer) -> bytes:
        level = self.params["level"] if self.params is not None else 9
        out: bytes = lz4.block.compress(
            src, mode="high_compression", compression=level, store_size=False
        )
        return out

    def decompress(self, src: Buffer, dlen: int) -> bytes:
        return _decompress(src, dlen)
