"""The C pool behind :class:`~zswap_zsmalloc.Zsmalloc`: :class:`NativeZsmalloc`.

A thin shell over ``zswap_zsmalloc._zsmalloc.Pool``. The per-object methods (malloc,
free, map, unmap, read, write, alloc_write) are the C pool's own bound methods, set
on the instance, so a call costs no Python frame; the rest delegate. ``zpool_ops``
gives zswap-core's native path the C ops table (``zswap_ops.h``): version 2 with
``ZSWAP_ZPOOL_NOGIL``, so the core calls it without the GIL, from several threads at
once. The C pool locks per size class (the lock design is at the top of
``_native/zsmalloc.c``); ``compact()`` runs without the GIL too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from zswap_core import MapMode

from ._classes import class_table
from ._driver import Zsmalloc, chain_size_of, native_module

if TYPE_CHECKING:
    from typing_extensions import Buffer

    from zswap_core import ModuleParams, PageAllocator

    from ._zsmalloc import Pool

__all__ = ["NativeZsmalloc"]

#: The C pool's methods an instance binds directly (the per-object path).
_BOUND = ("malloc", "free", "map", "unmap", "read", "write", "alloc_write")


class NativeZsmalloc(Zsmalloc):
    """zsmalloc in C (``zswap_zsmalloc._zsmalloc``), pages charged to ``pages.page_acct``."""

    backend: ClassVar[str] = "native"

    def __init__(self, name: str, pages: PageAllocator, params: ModuleParams | None = None) -> None:
        native = native_module()
        if native is None:  # pragma: no cover - Zsmalloc() only picks this class when built
            raise RuntimeError("zswap_zsmalloc._zsmalloc is not built")
        super().__init__(name, pages, params)
        chain = chain_size_of(params)
        self._pool: Pool = native.Pool(pages, chain)
        self.table = class_table(self.page_size, chain)
        self.chain_size = chain
        self.huge_class_size = self._pool.huge_class_size
        # Bound on the instance only where no subclass overrides them: a plugin's
        # subclass must see its own alloc_write called, not bypassed.
        self._overridden = tuple(
            m for m in _BOUND if getattr(type(self), m) is not getattr(NativeZsmalloc, m)
        )
        for method in _BOUND:
            if method not in self._overridden:
                setattr(self, method, getattr(self._pool, method))

    # -- the C pool's counters -----------------------------------------------------------
    @property
    def nr_pages(self) -> int:
        return self._pool.nr_pages

    @nr_pages.setter
    def nr_pages(self, value: int) -> None:
        """Zpool.__init__ sets 0; the C pool keeps the count."""

    @property
    def pages_compacted(self) -> int:
        return self._pool.pages_compacted

    @pages_compacted.setter
    def pages_compacted(self, value: int) -> None:
        raise AttributeError("pages_compacted is kept by the C pool")

    @property
    def zpool_ops(self) -> object:
        """A PyCapsule ``"zswap.zpool_ops"``: the C ops table, with this pool as context.

        Version 2, flags ``ZSWAP_ZPOOL_NOGIL``: alloc_write, read and free may be called
        without the GIL, concurrently.

        Not offered when a subclass overrides a per-object method: zswap-core would
        call the C functions and skip the override.
        """
        if self._overridden:
            raise AttributeError(
                f"zpool_ops: {type(self).__qualname__} overrides {', '.join(self._overridden)}"
            )
        return self._pool.zpool_ops

    def native_memory(self) -> dict[str, int]:
        """Bytes of C memory the pool holds, by kind (``arena_bytes_mapped``: pages)."""
        return self._pool.native_memory()

    # -- the contract (instances use the C methods bound in __init__) -----------------------
    def malloc(self, size: int) -> int:
        return self._pool.malloc(size)

    def free(self, handle: int) -> None:
        self._pool.free(handle)

    def map(self, handle: int, mode: MapMode = MapMode.RW) -> memoryview:
        return self._pool.map(handle, mode)

    def unmap(self, handle: int) -> None:
        self._pool.unmap(handle)

    def read(self, handle: int, size: int) -> bytes:
        return self._pool.read(handle, size)

    def write(self, handle: int, data: Buffer) -> None:
        self._pool.write(handle, data)

    def alloc_write(self, data: Buffer) -> int:
        return self._pool.alloc_write(data)

    def destroy(self) -> None:
        self._pool.destroy()

    def total_size(self) -> int:
        return self._pool.total_size()

    def compact(self) -> int:
        return self._pool.compact()

    def stats(self) -> dict[str, Any]:
        return self._pool.stats()
