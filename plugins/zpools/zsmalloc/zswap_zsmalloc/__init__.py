"""zsmalloc: the kernel's size-class allocator, as a zswap-core zpool driver.

Objects are grouped in size classes 16 bytes apart (at 4 KiB pages); each class packs
its objects into *zspages*, chains of 1..``chain_size`` pages picked for the least tail
waste, and objects may straddle two pages of a chain. Handles are indirect, so
:meth:`Zsmalloc.compact` can move objects to free whole zspages.
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
from ._pool import Zsmalloc, format_classes

__all__ = [
    "DEFAULT_CHAIN_SIZE",
    "FULLNESS_NAMES",
    "MAX_CHAIN_SIZE",
    "MIN_CHAIN_SIZE",
    "ZS_ALIGN",
    "ZS_HANDLE_SIZE",
    "ZS_MIN_ALLOC_SIZE",
    "ClassTable",
    "SizeClassInfo",
    "Zsmalloc",
    "class_table",
    "format_classes",
    "fullness_group",
]
