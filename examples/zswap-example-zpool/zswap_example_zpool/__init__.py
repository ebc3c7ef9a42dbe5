"""simplepool: a first-fit allocator, as an example of a third-party zpool plugin.

Each page keeps a sorted list of free extents; ``malloc`` takes the first extent
that fits in the first page that has one (else a new page from the PageAllocator),
``free`` puts the extent back and merges it with its neighbours, and a page with no
objects left goes back at once. Objects never move, so ``map`` returns a view of the
page itself.

A handle is ``(page_id << 16 | offset) + 1``: positive and below ``2**37``.
"""

from __future__ import annotations

import bisect
import errno
import threading
from typing import TYPE_CHECKING, Any, ClassVar

from zswap_core import API_VERSION, MapMode, Param, ParamError, Zpool, ZpoolError

if TYPE_CHECKING:
    from zswap_core import ModuleParams, PageAllocator

__all__ = ["SimplePool"]

_OFFSET_BITS = 16  # offsets in pages of up to 64 KiB
_MAX_PAGES = 1 << (37 - _OFFSET_BITS)  # keeps handles below 2**37


def _set_align(params: ModuleParams, name: str, value: int) -> None:
    """The ``align`` parameter's set callback: only powers of two."""
    if value & (value - 1):
        raise ParamError(errno.EINVAL, f"simplepool.align must be a power of two, got {value}")
    params.commit(name, value)


class _Page:
    __slots__ = ("data", "free", "objects")

    def __init__(self, data: bytearray) -> None:
        self.data = data
        self.free: list[tuple[int, int]] = [(0, len(data))]  # (offset, length), sorted
        self.objects: dict[int, tuple[int, int]] = {}  # offset -> (size, reserved)


class SimplePool(Zpool):
    """First-fit allocator: objects packed into pages, never spanning two."""

    type = "simplepool"
    api_version: ClassVar[int] = API_VERSION
    description = "first-fit example allocator (zswap-example-zpool)"
    parameters: ClassVar[tuple[Param, ...]] = (
        Param(
            "align",
            "uint",
            8,
            "object alignment in bytes (a power of two)",
            minimum=1,
            maximum=4096,
            on_set=_set_align,
        ),
    )

    def __init__(self, name: str, pages: PageAllocator, params: ModuleParams | None = None) -> None:
        super().__init__(name, pages, params)
        self.align: int = params["align"] if params is not None else 8
        self._lock = threading.Lock()
        self._pages: dict[int, _Page] = {}
        self._free_ids: list[int] = []
        self._next_id = 0

    # -- the contract ----------------------------------------------------------------
    def malloc(self, size: int) -> int:
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise ZpoolError(errno.EINVAL, f"simplepool: invalid size {size!r}")
        if size > self.page_size:
            raise ZpoolError(errno.ENOSPC, f"simplepool: {size} bytes exceed a page")
        need = -(-size // self.align) * self.align
        with self._lock:
            for pid, page in self._pages.items():
                for i, (_off, length) in enumerate(page.free):
                    if length >= need:
                        return self._carve(pid, page, i, size, need)
            if len(self._pages) >= _MAX_PAGES:
                raise ZpoolError(errno.ENOMEM, "simplepool: out of page ids")
            page = _Page(self.pages.alloc_page())  # raises ZpoolError(ENOMEM)
            if self._free_ids:
                pid = self._free_ids.pop()
            else:
                pid, self._next_id = self._next_id, self._next_id + 1
            self._pages[pid] = page
            self.nr_pages += 1
            return self._carve(pid, page, 0, size, need)

    def _carve(self, pid: int, page: _Page, i: int, size: int, need: int) -> int:
        off, length = page.free[i]
        if length == need:
            del page.free[i]
        else:
            page.free[i] = (off + need, length - need)
        page.objects[off] = (size, need)
        return (pid << _OFFSET_BITS | off) + 1

    def _find(self, handle: int) -> tuple[int, _Page, int, int, int]:
        if isinstance(handle, bool) or not isinstance(handle, int) or handle <= 0:
            raise ZpoolError(errno.EINVAL, f"simplepool: invalid handle {handle!r}")
        pid, off = (handle - 1) >> _OFFSET_BITS, (handle - 1) & ((1 << _OFFSET_BITS) - 1)
        page = self._pages.get(pid)
        obj = page.objects.get(off) if page is not None else None
        if page is None or obj is None:
            raise ZpoolError(errno.EINVAL, f"simplepool: invalid or freed handle {handle:#x}")
        return pid, page, off, obj[0], obj[1]

    def free(self, handle: int) -> None:
        with self._lock:
            pid, page, off, _size, need = self._find(handle)
            del page.objects[off]
            if not page.objects:  # empty: the page goes back now
                del self._pages[pid]
                self._free_ids.append(pid)
                self.nr_pages -= 1
                self.pages.free_page(page.data)
                return
            i = bisect.bisect(page.free, (off, 0))
            start, end = off, off + need
            if i < len(page.free) and page.free[i][0] == end:  # merge with the next
                end += page.free.pop(i)[1]
            if i > 0 and sum(page.free[i - 1]) == start:  # and with the previous
                start = page.free[i - 1][0]
                page.free[i - 1] = (start, end - start)
            else:
                page.free.insert(i, (start, end - start))

    def map(self, handle: int, mode: MapMode = MapMode.RW) -> memoryview:
        with self._lock:
            _pid, page, off, size, _need = self._find(handle)
            return memoryview(page.data)[off : off + size]

    def unmap(self, handle: int) -> None:
        with self._lock:
            self._find(handle)  # objects never move: nothing to copy back

    def destroy(self) -> None:
        with self._lock:
            pages, self._pages = list(self._pages.values()), {}
            self._free_ids, self._next_id = [], 0
            self.nr_pages = 0
        for page in pages:
            self.pages.free_page(page.data)

    # -- optional --------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        with self._lock:
            used = sum(size for p in self._pages.values() for size, _ in p.objects.values())
            objects = sum(len(p.objects) for p in self._pages.values())
        return {"objects": objects, "bytes_used": used, "align": self.align}
