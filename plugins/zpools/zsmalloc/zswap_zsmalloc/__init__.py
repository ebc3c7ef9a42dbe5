"""zsmalloc: the kernel's size-class allocator, as a zswap-core zpool driver.

Objects are grouped in size classes 16 bytes apart (at 4 KiB pages); each class packs
its objects into *zspages*, chains of 1..``chain_size`` pages picked for the least tail
waste, and objects may straddle two pages of a chain. Handles are indirect, so
:meth:`Zsmalloc.compact` can move objects to free whole zspages.

Two implementations behave the same, operation for operation: a C one
(``zswap_zsmalloc._zsmalloc``, used when built and zswap-core's page allocator is
native) and the Python reference, :class:`PyZsmalloc`. ``Zsmalloc(...)`` picks one;
``pool.backend`` says which, :data:`NATIVE_AVAILABLE` / :data:`NATIVE_ERROR` whether
the C one is built. ``ZSWAP_BACKEND=python`` forces the reference.
"""

from __future__ import annotations

from ._classes import (
    DEFAULT_CHAIN_SIZE,
    FULLNESS_NAMES,
    MAX_CHAIN_SIZE,
    MIN_CHAIN_SIZE,
    ZS_ALIGN,
    ZS_HANDLE_SIZE,
    ZS_MIN_ALLOC_SIZE,
    ClassTable,
    SizeClassInfo,
    class_table,
    fullness_group,
)
from ._driver import NATIVE_AVAILABLE, NATIVE_ERROR, Zsmalloc
from ._pool import PyZsmalloc, format_classes

__all__ = [
    "DEFAULT_CHAIN_SIZE",
    "FULLNESS_NAMES",
    "MAX_CHAIN_SIZE",
    "MIN_CHAIN_SIZE",
    "NATIVE_AVAILABLE",
    "NATIVE_ERROR",
    "ZS_ALIGN",
    "ZS_HANDLE_SIZE",
    "ZS_MIN_ALLOC_SIZE",
    "ClassTable",
    "PyZsmalloc",
    "SizeClassInfo",
    "Zsmalloc",
    "class_table",
    "format_classes",
    "fullness_group",
]
