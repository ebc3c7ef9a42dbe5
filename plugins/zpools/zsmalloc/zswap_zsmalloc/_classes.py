"""The size-class table, computed the way zsmalloc lays out its classes.

Nothing here needs a pool: :func:`class_table` gives the table for any page size and
chain limit, for tests, the command line and the pool itself.

The rules (restated from the kernel's design, not its code):

* class slots run from :data:`ZS_MIN_ALLOC_SIZE` (32 B) in steps of
  ``page_size >> 8`` (16 B at 4 KiB) up to the page size, the last slot capped at it;
* a class's zspage is the chain of 1..``chain_size`` pages whose tail waste
  (``pages * page_size % size``) is smallest, the shortest chain winning ties; a
  power-of-two size wastes nothing in one page and takes one page;
* slots are visited from the largest down; a slot whose (pages, objects) pair equals
  that of the class just above it shares that class (it is *merged*); only the
  remaining *real* classes hold zspages;
* a class with one object in a one-page zspage is *huge*: the object gets the page
  to itself and its handle lives outside it;
* ``huge_class_size`` is the kernel's threshold: the size of the largest class that
  is not one-page/one-object, less ``ZS_HANDLE_SIZE - 1``; an object of that many
  bytes or more (before the handle is added) lands in a huge class.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

__all__ = [
    "DEFAULT_CHAIN_SIZE",
    "FULLNESS_NAMES",
    "MAX_CHAIN_SIZE",
    "MIN_CHAIN_SIZE",
    "NR_FULLNESS_GROUPS",
    "ZS_ALIGN",
    "ZS_HANDLE_SIZE",
    "ZS_MIN_ALLOC_SIZE",
    "ClassTable",
    "SizeClassInfo",
    "class_table",
    "fullness_group",
]

#: Object sizes are multiples of this (a free-list link never straddles pages).
ZS_ALIGN = 8
#: Bytes of handle kept in front of every non-huge object; classes are chosen for
#: ``size + ZS_HANDLE_SIZE``.
ZS_HANDLE_SIZE = 8
#: Smallest class. The kernel takes the larger of 32 and the zspage span divided by
#: the object-index range; on 64-bit machines that second term is far below 32.
ZS_MIN_ALLOC_SIZE = 32
#: ``CONFIG_ZSMALLOC_CHAIN_SIZE``: default and permitted range.
DEFAULT_CHAIN_SIZE = 8
MIN_CHAIN_SIZE = 4
MAX_CHAIN_SIZE = 16

#: Fullness groups: 0 = empty, 1..9 = "10%".."90%", 10 = "99%", 11 = full.
NR_FULLNESS_GROUPS = 12
FULLNESS_NAMES = (
    "0%",
    "10%",
    "20%",
    "30%",
    "40%",
    "50%",
    "60%",
    "70%",
    "80%",
    "90%",
    "99%",
    "100%",
)


def fullness_group(inuse: int, capacity: int) -> int:
    """The fullness group (0..11) of a zspage holding ``inuse`` of ``capacity`` objects.

    Group 0 only when empty and 11 only when full; otherwise the used percentage,
    rounded down, picks a band of ten: a zspage 0-9 % used is in "10%" (group 1),
    90-99 % in "99%" (group 10).
    """
    if inuse <= 0:
        return 0
    if inuse >= capacity:
        return NR_FULLNESS_GROUPS - 1
    return (100 * inuse // capacity) // 10 + 1


@dataclass(frozen=True)
class SizeClassInfo:
    """One real (unmerged) size class."""

    index: int  #: slot number (the debugfs ``class`` column)
    size: int  #: bytes per object, handle included
    pages_per_zspage: int
    objs_per_zspage: int
    huge: bool  #: one object in a one-page zspage
    first_index: int  #: lowest slot merged into this class (== index when none)


def _chain_size(size: int, page_size: int, max_pages: int) -> int:
    """Pages per zspage for objects of ``size``: least tail waste, shortest on ties."""
    if size & (size - 1) == 0:
        return 1
    best_pages = 1
    best_waste = page_size % size
    for pages in range(2, max_pages + 1):
        waste = (pages * page_size) % size
        if waste < best_waste:
            best_waste = waste
            best_pages = pages
    return best_pages


@dataclass(frozen=True)
class ClassTable:
    """All size classes of one (page size, chain size) configuration."""

    page_size: int
    chain_size: int
    delta: int  #: ``ZS_SIZE_CLASS_DELTA``
    nr_slots: int  #: ``ZS_SIZE_CLASSES`` (255 at 4 KiB)
    classes: tuple[SizeClassInfo, ...]  #: real classes, smallest first
    lookup: tuple[int, ...]  #: slot -> position in :attr:`classes`
    huge_class_size: int  #: user sizes >= this go to a huge class (0: none)

    def slot_for(self, size: int) -> int:
        """Slot for an allocation of ``size`` bytes *including* the handle."""
        if size <= ZS_MIN_ALLOC_SIZE:
            return 0
        slot = -(-(size - ZS_MIN_ALLOC_SIZE) // self.delta)
        return slot if slot < self.nr_slots else self.nr_slots - 1

    def class_for(self, user_size: int) -> SizeClassInfo:
        """The real class that ``malloc(user_size)`` uses (the handle is added here)."""
        if user_size <= 0 or user_size > self.page_size:
            raise ValueError(f"size {user_size} outside 1..{self.page_size}")
        return self.classes[self.lookup[self.slot_for(user_size + ZS_HANDLE_SIZE)]]

    def slot_size(self, slot: int) -> int:
        return min(ZS_MIN_ALLOC_SIZE + slot * self.delta, self.page_size)

    def zspage_bytes(self, cls: SizeClassInfo) -> int:
        return cls.pages_per_zspage * self.page_size

    def tail_waste(self, cls: SizeClassInfo) -> int:
        """Bytes at the end of each zspage of ``cls`` that hold no object."""
        return self.zspage_bytes(cls) - cls.objs_per_zspage * cls.size

    def rows(self) -> list[dict[str, int | bool]]:
        """The table as plain dicts (for printing)."""
        return [
            {
                "class": c.index,
                "size": c.size,
                "first_class": c.first_index,
                "pages_per_zspage": c.pages_per_zspage,
                "objs_per_zspage": c.objs_per_zspage,
                "waste": self.tail_waste(c),
                "huge": c.huge,
            }
            for c in self.classes
        ]


@functools.lru_cache(maxsize=64)
def class_table(page_size: int = 4096, chain_size: int = DEFAULT_CHAIN_SIZE) -> ClassTable:
    """Compute the size classes for ``page_size`` and a ``chain_size``-page zspage limit."""
    if page_size < 512 or page_size & (page_size - 1):
        raise ValueError(f"page size must be a power of two >= 512, got {page_size}")
    if not MIN_CHAIN_SIZE <= chain_size <= MAX_CHAIN_SIZE:
        raise ValueError(f"chain size must be {MIN_CHAIN_SIZE}..{MAX_CHAIN_SIZE}, got {chain_size}")
    delta = page_size >> 8
    nr_slots = -(-(page_size - ZS_MIN_ALLOC_SIZE) // delta) + 1
    # Walk from the largest slot down, merging equal neighbours into the larger class.
    built: list[list[int]] = []  # [index, size, pages, objs, first_index]
    slot_owner = [0] * nr_slots  # slot -> position in `built` (reversed order)
    huge_class_size = 0
    for slot in range(nr_slots - 1, -1, -1):
        size = min(ZS_MIN_ALLOC_SIZE + slot * delta, page_size)
        pages = _chain_size(size, page_size, chain_size)
        objs = pages * page_size // size
        if pages != 1 and objs != 1 and not huge_class_size:
            huge_class_size = size - (ZS_HANDLE_SIZE - 1)
        if built and built[-1][2] == pages and built[-1][3] == objs:
            built[-1][4] = slot
            slot_owner[slot] = len(built) - 1
            continue
        built.append([slot, size, pages, objs, slot])
        slot_owner[slot] = len(built) - 1
    count = len(built)
    classes = tuple(
        SizeClassInfo(
            index=b[0],
            size=b[1],
            pages_per_zspage=b[2],
            objs_per_zspage=b[3],
            huge=b[2] == 1 and b[3] == 1,
            first_index=b[4],
        )
        for b in reversed(built)
    )
    lookup = tuple(count - 1 - slot_owner[s] for s in range(nr_slots))
    return ClassTable(
        page_size=page_size,
        chain_size=chain_size,
        delta=delta,
        nr_slots=nr_slots,
        classes=classes,
        lookup=lookup,
        huge_class_size=huge_class_size,
    )
