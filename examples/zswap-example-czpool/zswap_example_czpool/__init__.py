"""czpool: a small allocator in C that exports zswap-core's C ops table.

Each object is one page-sized block from ``malloc`` behind a handle table
(``_native/czpool.c``), and each is charged as one page to the pool's
:class:`~zswap_core.PageAllocator` through its ``page_acct`` capsule, so ``nr_pages``
is exact. On zswap-core's native backend the core calls the C functions of
``zpool_ops`` for every page it stores, loads or frees, with no Python call.

The C pool charges its pages in C, so it needs the native backend's ``page_acct``:
a ``PageAllocator`` of the Python backend (``ZSWAP_BACKEND=python``) has none, and
``CZpool`` then refuses to be made (``ZpoolError``, ``ENODEV``, saying so).
"""

from __future__ import annotations

import errno
import threading
from typing import TYPE_CHECKING, ClassVar

from zswap_core import MapMode, Zpool, ZpoolError

from ._czpool import Pool

if TYPE_CHECKING:
    from typing_extensions import Buffer

    from zswap_core import ModuleParams, PageAllocator

__all__ = ["CZpool"]


class CZpool(Zpool):
    """One page per object, kept in C; ``map`` hands out a private copy."""

    type: ClassVar[str] = "czpool"
    description: ClassVar[str] = "example allocator in C: one page per object, C ops table"

    def __init__(self, name: str, pages: PageAllocator, params: ModuleParams | None = None) -> None:
        super().__init__(name, pages, params)
        try:
            self._pool = Pool(pages)  # takes pages.page_acct
        except AttributeError as exc:
            raise ZpoolError(
                errno.ENODEV,
                f"czpool charges its pages in C and needs zswap-core's native backend ({exc}); "
                "unset ZSWAP_BACKEND=python, or build zswap_core._core",
            ) from None
        # What map() handed out, per handle (a stack: a handle may be mapped twice).
        self._lock = threading.Lock()
        self._mapped: dict[int, list[tuple[bytearray, MapMode]]] = {}

    @property
    def zpool_ops(self) -> object:
        """A PyCapsule ``"zswap.zpool_ops"``: the C table, the C pool as its context.

        A subclass that overrides ``alloc_write``, ``read`` or ``free`` must not
        export it: zswap-core would call the C functions instead of the override.
        """
        return self._pool.zpool_ops

    @property
    def nr_pages(self) -> int:
        return self._pool.nr_pages

    @nr_pages.setter
    def nr_pages(self, value: int) -> None:
        """Zpool.__init__ sets 0; the C pool keeps the count."""

    # -- the per-object path: one C call each ---------------------------------------
    def malloc(self, size: int) -> int:
        return self._pool.malloc(size)

    def alloc_write(self, data: Buffer) -> int:
        return self._pool.alloc_write(data)

    def read(self, handle: int, size: int) -> bytes:
        return self._pool.read(handle, size)

    def write(self, handle: int, data: Buffer) -> None:
        self._pool.write(handle, data)

    def free(self, handle: int) -> None:
        self._pool.free(handle)
        if self._mapped:  # a mapping left open goes with its object
            with self._lock:
                self._mapped.pop(handle, None)

    # -- map/unmap: a private copy, so a view never points into freed C memory ------
    def map(self, handle: int, mode: MapMode = MapMode.RW) -> memoryview:
        size = self._pool.size(handle)  # ZpoolError(EINVAL) if not live
        buf = bytearray(size if mode == MapMode.WO else self._pool.read(handle, size))
        with self._lock:
            self._mapped.setdefault(handle, []).append((buf, mode))
        return memoryview(buf)

    def unmap(self, handle: int) -> None:
        self._pool.size(handle)  # ZpoolError(EINVAL) if not live
        with self._lock:
            stack = self._mapped.get(handle)
            if not stack:
                raise ZpoolError(errno.EINVAL, f"czpool: handle {handle:#x} is not mapped")
            buf, mode = stack.pop()
            if not stack:
                del self._mapped[handle]
        if mode != MapMode.RO:
            self._pool.write(handle, buf)

    def destroy(self) -> None:
        """Free every object and uncharge its page; the pool refuses every call after."""
        self._pool.destroy()
        with self._lock:
            self._mapped.clear()
