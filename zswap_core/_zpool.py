"""The zpool driver API: allocators that pack compressed pages into memory pages.

An allocator plugin subclasses :class:`Zpool`. It takes every page from the
:class:`~zswap_core.PageAllocator` it is given, so the core knows its exact size, and
gives them all back when emptied or destroyed. Handles are ints, opaque to the core.
"""

from __future__ import annotations

import enum

from ._api import API_VERSION

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, ClassVar

    from typing_extensions import Buffer

    from ._page_alloc import PageAllocator
    from ._params import ModuleParams, Param

__all__ = ["MapMode", "Zpool"]


class MapMode(enum.IntEnum):
    """How a mapping will be used; matters only where the allocator must copy."""

    RW = 0  #: read and write: copy in on map, out on unmap
    RO = 1  #: read only: no copy out on unmap
    WO = 2  #: write only: no copy in on map


class Zpool:
    """Base class of allocator drivers.

    Must implement :meth:`malloc`, :meth:`free`, :meth:`map`, :meth:`unmap` and
    :meth:`destroy`, and keep ``self.nr_pages`` equal to the pages it holds. Error
    codes, as the kernel: ``malloc(0)`` raises ``ZpoolError(EINVAL)``, a size the
    allocator cannot hold ``ZpoolError(ENOSPC)``, no memory ``ZpoolError(ENOMEM)``.
    All methods must be thread-safe.

    :meth:`write` and :meth:`read` are conveniences built on map/unmap; an allocator
    may override them with something faster.
    """

    #: The name users write in ``zswap.zpool=``; equal to the entry point name.
    type: ClassVar[str] = ""
    api_version: ClassVar[int] = API_VERSION
    parameters: ClassVar[tuple[Param, ...]] = ()
    description: ClassVar[str] = ""
    #: True when :meth:`compact` can free pages.
    can_compact: ClassVar[bool] = False

    def __init__(self, name: str, pages: PageAllocator, params: ModuleParams | None = None) -> None:
        self.name = name
        self.pages = pages
        self.page_size = pages.page_size
        self.params = params
        self.nr_pages = 0

    # -- the contract ----------------------------------------------------------------
    def malloc(self, size: int) -> int:
        """Reserve ``size`` bytes; return a handle."""
        raise NotImplementedError

    def free(self, handle: int) -> None:
        raise NotImplementedError

    def map(self, handle: int, mode: MapMode = MapMode.RW) -> memoryview:
        """A view of the object (at least as long as it was allocated) until unmap."""
        raise NotImplementedError

    def unmap(self, handle: int) -> None:
        raise NotImplementedError

    def destroy(self) -> None:
        """Return every page to the page allocator; the pool is unusable after."""
        raise NotImplementedError

    # -- optional --------------------------------------------------------------------
    def total_size(self) -> int:
        """Bytes of memory the pool holds (whole pages, as the kernel reports)."""
        return self.nr_pages * self.page_size

    def compact(self) -> int:
        """Move objects to free pages; returns pages freed. Default: nothing to do."""
        return 0

    def stats(self) -> dict[str, Any]:
        """Allocator-specific statistics (zsmalloc: per-class table)."""
        return {}

    def write(self, handle: int, data: Buffer) -> None:
        """Copy ``data`` into the object (map WO, copy, unmap)."""
        view = self.map(handle, MapMode.WO)
        try:
            n = len(memoryview(data))
            view[:n] = data
        finally:
            self.unmap(handle)

    def read(self, handle: int, size: int) -> bytes | bytearray:
        """A copy of the object's first ``size`` bytes."""
        view = self.map(handle, MapMode.RO)
        try:
            return bytes(view[:size])
        finally:
            self.unmap(handle)

    def alloc_write(self, data: Buffer) -> int:
        """``malloc(len(data))`` then ``write``; returns the handle.

        zswap's store path calls this once per page. An allocator can override it to
        do both under one lock; errors are those of :meth:`malloc`.
        """
        handle = self.malloc(len(memoryview(data)))
        try:
            self.write(handle, data)
        except BaseException:
            self.free(handle)
            raise
        return handle
