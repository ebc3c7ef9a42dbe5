"""Small, obviously correct drivers the kit uses as the "other" driver of a Zswap check.

They are never installed as plugins; the kit serves them through its own registry, so
a plugin can be checked in an environment where no bundled plugin is installed.
"""

from __future__ import annotations

import errno
import threading
import zlib
from typing import TYPE_CHECKING

from .._compressor import Compressor
from .._errors import ZpoolError
from .._zpool import MapMode, Zpool

if TYPE_CHECKING:
    from typing_extensions import Buffer

    from .._page_alloc import PageAllocator
    from .._params import ModuleParams

__all__ = ["ReferenceDeflate", "ReferencePagePool"]


class ReferenceDeflate(Compressor):
    """zlib at level 1 (its adler32 catches corrupt input)."""

    name = "kit-deflate"
    description = "reference compressor of the conformance kit (zlib level 1)"

    def compress(self, src: Buffer) -> bytes:
        return zlib.compress(src, 1)

    def decompress(self, src: Buffer, dlen: int) -> bytes:
        d = zlib.decompressobj()
        out = d.decompress(src, dlen)
        if not d.eof or d.unconsumed_tail or d.unused_data or len(out) != dlen:
            raise zlib.error(f"kit-deflate: input does not decode to exactly {dlen} bytes")
        return out


class ReferencePagePool(Zpool):
    """One object per page: wasteful, and correct by construction."""

    type = "kit-pagepool"
    description = "reference allocator of the conformance kit (one object per page)"

    def __init__(self, name: str, pages: PageAllocator, params: ModuleParams | None = None) -> None:
        super().__init__(name, pages, params)
        self._lock = threading.Lock()
        self._slots: list[tuple[bytearray, int] | None] = []
        self._free: list[int] = []

    def malloc(self, size: int) -> int:
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise ZpoolError(errno.EINVAL, f"invalid size {size!r}")
        if size > self.page_size:
            raise ZpoolError(errno.ENOSPC, f"{size} bytes do not fit in a page")
        page = self.pages.alloc_page()
        with self._lock:
            if self._free:
                i = self._free.pop()
                self._slots[i] = (page, size)
            else:
                i = len(self._slots)
                self._slots.append((page, size))
            self.nr_pages += 1
        return i + 1

    def _slot(self, handle: int) -> tuple[bytearray, int]:
        i = handle - 1 if isinstance(handle, int) else -1
        slot = self._slots[i] if 0 <= i < len(self._slots) else None
        if slot is None:
            raise ZpoolError(errno.EINVAL, f"invalid or freed handle {handle!r}")
        return slot

    def free(self, handle: int) -> None:
        with self._lock:
            page, _size = self._slot(handle)
            self._slots[handle - 1] = None
            self._free.append(handle - 1)
            self.nr_pages -= 1
        self.pages.free_page(page)

    def map(self, handle: int, mode: MapMode = MapMode.RW) -> memoryview:
        with self._lock:
            page, size = self._slot(handle)
        return memoryview(page)[:size]

    def unmap(self, handle: int) -> None:
        with self._lock:
            self._slot(handle)

    def destroy(self) -> None:
        with self._lock:
            pages = [s[0] for s in self._slots if s is not None]
            self._slots = []
            self._free = []
            self.nr_pages = 0
        for page in pages:
            self.pages.free_page(page)
