"""The class users and the registry see: :class:`Zsmalloc`, and which backend it runs.

``Zsmalloc(name, pages, params)`` makes a pool of the C implementation
(:class:`~zswap_zsmalloc._cpool.NativeZsmalloc`, over ``zswap_zsmalloc._zsmalloc``)
when the extension is built and the page allocator is on zswap-core's native backend
(it exports ``page_acct``; ``ZSWAP_BACKEND`` decides only for one that chose no
backend); otherwise one of the Python
reference (:class:`~zswap_zsmalloc._pool.PyZsmalloc`). Both behave the same,
operation for operation: same handles, same pages, same statistics.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar

from zswap_core import Param, Zpool

from ._classes import DEFAULT_CHAIN_SIZE, MAX_CHAIN_SIZE, MIN_CHAIN_SIZE, ClassTable

if TYPE_CHECKING:
    from zswap_core import ModuleParams, PageAllocator

__all__ = ["NATIVE_AVAILABLE", "NATIVE_ERROR", "Zsmalloc", "native_module"]

_native: ModuleType | None
try:
    from . import _zsmalloc as _native
except ImportError as exc:  # not built: a pure-Python install
    _native = None
    #: Why the C implementation cannot be used (None: it can).
    NATIVE_ERROR: str | None = f"the C extension zswap_zsmalloc._zsmalloc is not built ({exc})"
else:
    NATIVE_ERROR = None

#: True when the C implementation is built and imports.
NATIVE_AVAILABLE = _native is not None


def native_module() -> ModuleType | None:
    """``zswap_zsmalloc._zsmalloc``, or None when it is not built."""
    return _native


def _use_native(pages: PageAllocator) -> bool:
    """The C pool goes with a native page allocator: the pool follows the backend its
    Zswap (or whoever made ``pages``) chose, whatever the environment says now."""
    if _native is None or not 512 <= pages.page_size <= _native.MAX_PAGE_SIZE:
        return False
    chosen = getattr(pages, "backend", None)
    if chosen is None:  # a page allocator that chose no backend: the environment decides
        if os.environ.get("ZSWAP_BACKEND", "").strip().lower() == "python":
            return False
    elif chosen != "native":
        return False
    return getattr(pages, "page_acct", None) is not None


class Zsmalloc(Zpool):
    """zsmalloc: size classes, multi-page zspages, fullness groups, compaction.

    Instances are of a subclass: the C pool or the Python reference (see the module
    docstring); ``backend`` says which.
    """

    type: ClassVar[str] = "zsmalloc"
    description: ClassVar[str] = (
        "size-class allocator: zspages of up to chain_size pages, objects may span pages,"
        " compaction"
    )
    can_compact: ClassVar[bool] = True
    parameters: ClassVar[tuple[Param, ...]] = (
        Param(
            "chain_size",
            "int",
            DEFAULT_CHAIN_SIZE,
            "most pages per zspage (CONFIG_ZSMALLOC_CHAIN_SIZE); read at pool creation",
            writable=False,
            minimum=MIN_CHAIN_SIZE,
            maximum=MAX_CHAIN_SIZE,
        ),
    )

    #: ``"native"`` (the C pool) or ``"python"`` (the reference).
    backend: ClassVar[str] = ""
    table: ClassTable
    chain_size: int
    #: the kernel's ``zs_huge_class_size()``
    huge_class_size: int
    pages_compacted: int

    def __new__(
        cls, name: str, pages: PageAllocator, params: ModuleParams | None = None
    ) -> Zsmalloc:
        from ._cpool import NativeZsmalloc
        from ._pool import PyZsmalloc

        if not issubclass(cls, (NativeZsmalloc, PyZsmalloc)):
            impl: type[Zsmalloc] = NativeZsmalloc if _use_native(pages) else PyZsmalloc
            # A plugin's subclass of Zsmalloc (overriding alloc_write, say) runs on the
            # chosen implementation: its own methods first, then the implementation's.
            cls = impl if cls is Zsmalloc else _on_implementation(cls, impl)
        return object.__new__(cls)

    def stats(self) -> dict[str, Any]:
        """Per-class table as ``/sys/kernel/debug/zsmalloc/<pool>/classes``, plus totals."""
        raise NotImplementedError


_combined: dict[tuple[type, type], type] = {}


def _on_implementation(cls: type[Zsmalloc], impl: type[Zsmalloc]) -> type[Zsmalloc]:
    """``cls`` (a subclass of Zsmalloc) with ``impl`` behind it, made once per pair."""
    key = (cls, impl)
    made = _combined.get(key)
    if made is None:
        made = _combined[key] = type(
            cls.__name__,
            (cls, impl),
            {"__module__": cls.__module__, "__qualname__": cls.__qualname__},
        )
    return made


def chain_size_of(params: ModuleParams | None) -> int:
    return DEFAULT_CHAIN_SIZE if params is None else int(params["chain_size"])
