"""zstd compressor (the kernel's ``zstd`` crypto module), on python-zstandard.

zstandard's ``ZstdCompressor`` and ``ZstdDecompressor`` objects must not be used by
two threads at once, while a zswap compressor instance is shared by every thread
that stores or loads through its pool. So each instance keeps one compression and
one decompression context per thread (``threading.local``), and rebuilds a thread's
compression context when the ``level`` module parameter has changed since it was
made; ``level`` is read on every call, so a write takes effect on the next page.

With the C extension built (``_native/zstd_ops.c``, linked with the system's
libzstd), each instance also exports ``codec_ops``: the same frames compressed and
decompressed in C with a context per thread, at the level a parameter listener keeps
current, which zswap-core's native backend calls without the GIL.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, ClassVar

import zstandard

from zswap_core import Compressor, Param

from ._codec import attach, exported

if TYPE_CHECKING:
    from typing_extensions import Buffer

    from zswap_core import ModuleParams

__all__ = ["DEFAULT_LEVEL", "MAX_LEVEL", "MIN_LEVEL", "Zstd"]

#: The kernel's ZSTD_DEF_LEVEL.
DEFAULT_LEVEL = 3
MIN_LEVEL = 1
MAX_LEVEL = 22


class _Contexts(threading.local):
    """One thread's codec contexts; made lazily on the thread's first call."""

    level: int | None = None
    cctx: zstandard.ZstdCompressor | None = None
    dctx: zstandard.ZstdDecompressor | None = None


class Zstd(Compressor):
    """Zstandard frames without content size, checksum or dictionary id.

    zswap stores the original length itself, so the frame header carries none of
    the optional fields. Decompression is bounded to ``dlen`` bytes and refuses a
    frame that is incomplete, decodes to another length, or is followed by extra
    bytes.
    """

    name = "zstd"
    description = "Zstandard compression (python-zstandard), level set by zstd.level"
    parameters: ClassVar[tuple[Param, ...]] = (
        Param(
            "level",
            "int",
            DEFAULT_LEVEL,
            f"compression level {MIN_LEVEL}..{MAX_LEVEL} (default {DEFAULT_LEVEL})",
            minimum=MIN_LEVEL,
            maximum=MAX_LEVEL,
        ),
    )

    def __init__(self, params: ModuleParams | None = None) -> None:
        super().__init__(params)
        self._local = _Contexts()
        self._native = attach(self, "zstd", DEFAULT_LEVEL)

    @property
    def codec_ops(self) -> object:
        """The C ops at the current ``level``, or None: see ``Compressor``."""
        return exported(self, Zstd, self._native)

    def _level(self) -> int:
        if self.params is None:
            return DEFAULT_LEVEL
        level: int = self.params["level"]
        return level

    def _compressor(self) -> zstandard.ZstdCompressor:
        local = self._local
        level = self._level()
        cctx = local.cctx
        if cctx is None or local.level != level:
            cctx = zstandard.ZstdCompressor(
                level=level,
                write_checksum=False,
                write_content_size=False,
                write_dict_id=False,
            )
            local.cctx = cctx
            local.level = level
        return cctx

    def _decompressor(self) -> zstandard.ZstdDecompressor:
        local = self._local
        dctx = local.dctx
        if dctx is None:
            dctx = local.dctx = zstandard.ZstdDecompressor()
        return dctx

    def compress(self, src: Buffer) -> bytes:
        return self._compressor().compress(memoryview(src))

    def decompress(self, src: Buffer, dlen: int) -> bytes:
        if dlen <= 0:
            raise ValueError(f"zstd: bad decompressed length {dlen}")
        out = self._decompressor().decompress(
            memoryview(src), max_output_size=dlen, allow_extra_data=False
        )
        if len(out) != dlen:
            raise zstandard.ZstdError(f"zstd: decompressed {len(out)} bytes, expected {dlen}")
        return out

    def close(self) -> None:
        # Drops this thread's contexts at once; other threads' go with their thread
        # or with this instance.
        self._local = _Contexts()
        if self._native is not None:
            self._native.close()
