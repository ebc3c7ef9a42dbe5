"""The Python zsmalloc (the reference): zspages per size class, fullness groups, handles.

:class:`PyZsmalloc` is what ``Zsmalloc(...)`` gives where the C pool
(``zswap_zsmalloc._zsmalloc``) cannot run, and the reference the C pool is tested
against: both give the same handles, pages and statistics for the same operations.

Layout of the bookkeeping (chosen so that no Python object exists per stored object):

* a **handle table** per pool: parallel ``array`` s indexed by a table slot, holding the
  zspage and object index of each live handle, plus the last handle value given out
  from the slot. A handle is ``generation << 28 | slot`` (always below ``2**37``); the
  generation (1..511) moves on each reuse of a slot, so a stale handle is refused
  rather than silently naming a newer object. When the last handle is freed the table
  is dropped, and new slots start one generation above the highest seen;
* a **zspage** (one small object per chain of pages) holds its pages, cached
  ``memoryview`` s of them, a stack of free object indices and, per object index, the
  owning table slot (0: free) - the kernel keeps that back-pointer in the object's
  first word, we keep it beside the pages;
* per **class**, one list of zspages per fullness group with O(1) insert/remove
  (swap with the last element) and a bit mask of the non-empty groups, so malloc
  finds the fullest non-full zspage with one ``bit_length``.

Non-huge objects keep ``ZS_HANDLE_SIZE`` bytes in front of the data, as the kernel
stores the handle there; we leave the bytes unused but reserved, so the class
choice and which objects straddle pages are the kernel's.
"""

from __future__ import annotations

import errno
import threading
from array import array
from typing import TYPE_CHECKING, Any, ClassVar

from zswap_core import MapMode, ZpoolError

from ._classes import (
    FULLNESS_NAMES,
    NR_FULLNESS_GROUPS,
    ZS_HANDLE_SIZE,
    ClassTable,
    SizeClassInfo,
    class_table,
    fullness_group,
)
from ._driver import Zsmalloc, chain_size_of

if TYPE_CHECKING:
    from typing_extensions import Buffer

    from zswap_core import ModuleParams, PageAllocator

__all__ = ["PyZsmalloc", "format_classes"]

_SLOT_BITS = 28
_SLOT_MASK = (1 << _SLOT_BITS) - 1
_GEN_UNIT = 1 << _SLOT_BITS
_GEN_MAX = 511
_HANDLE_LIMIT = 1 << 37  # the core packs handles in 37 bits
_FULL = NR_FULLNESS_GROUPS - 1  # group 11, "100%"
_NOT_FULL_MASK = ((1 << _FULL) - 1) & ~1  # groups 1..10
_RO = MapMode.RO


class _SizeClass:
    """Run-time state of one real size class."""

    __slots__ = (
        "dlen",
        "fg_of",
        "free_tmpl",
        "groups",
        "hdr",
        "huge",
        "index",
        "info",
        "mask",
        "nr_zspages",
        "obj_used",
        "objs",
        "owner_tmpl",
        "ppz",
        "size",
    )

    def __init__(self, info: SizeClassInfo) -> None:
        self.info = info
        self.index = info.index
        self.size = info.size
        self.ppz = info.pages_per_zspage
        self.objs = info.objs_per_zspage
        self.huge = info.huge
        # huge zspages keep the handle outside the page; others reserve it in front
        self.hdr = 0 if info.huge else ZS_HANDLE_SIZE
        self.dlen = self.size - self.hdr  # bytes a mapping exposes
        self.groups: list[list[_Zspage]] = [[] for _ in range(NR_FULLNESS_GROUPS)]
        self.mask = 0  # bit g set <=> groups[g] non-empty
        self.nr_zspages = 0
        self.obj_used = 0
        self.fg_of = bytes(fullness_group(n, self.objs) for n in range(self.objs + 1))
        # free stack pops index 0 first, as a fresh kernel zspage hands out object 0 first
        self.free_tmpl = array("I", range(self.objs - 1, -1, -1))
        self.owner_tmpl = array("I", bytes(4 * self.objs))


class _Zspage:
    """A chain of pages holding objects of one class."""

    # No cached memoryview per page: a memoryview costs ~180 bytes, more than the
    # object it would serve; bytearray slices do the copies directly.
    __slots__ = ("cls", "fg", "free", "inuse", "owner", "pages", "pos")

    def __init__(self, cls: _SizeClass, pages: list[bytearray]) -> None:
        self.cls = cls
        self.pages = pages
        self.inuse = 0
        self.free = array("I", cls.free_tmpl)  # stack of free object indices
        self.owner = array("I", cls.owner_tmpl)  # object index -> table slot + 1
        self.fg = 0  # fullness group; 0 = in no list
        self.pos = 0  # index in cls.groups[fg]


def _einval(handle: object) -> ZpoolError:
    return ZpoolError(errno.EINVAL, f"zsmalloc: invalid handle {handle!r}")


class PyZsmalloc(Zsmalloc):
    """zsmalloc in Python: size classes, multi-page zspages, fullness groups, compaction."""

    backend: ClassVar[str] = "python"

    def __init__(self, name: str, pages: PageAllocator, params: ModuleParams | None = None) -> None:
        super().__init__(name, pages, params)
        chain = chain_size_of(params)
        self.table: ClassTable = class_table(self.page_size, chain)
        self.chain_size = chain
        #: the kernel's ``zs_huge_class_size()``
        self.huge_class_size = self.table.huge_class_size
        self.pages_compacted = 0
        self._classes = [_SizeClass(info) for info in self.table.classes]
        slot_class = [self._classes[pos] for pos in self.table.lookup]
        # malloc(n) -> class, for every n in 1..page_size (index 0 unused)
        self._cls_by_size = [slot_class[0]] + [
            slot_class[self.table.slot_for(n + ZS_HANDLE_SIZE)]
            for n in range(1, self.page_size + 1)
        ]
        self._page_shift = self.page_size.bit_length() - 1
        self._page_mask = self.page_size - 1
        self._lock = threading.Lock()
        self._tls = threading.local()
        self._dead = False
        # handle table
        self._hval = array("Q")  # last handle given out from each slot
        self._hzs: list[_Zspage | None] = []  # zspage of the live object, None if free
        self._hobj = array("I")  # object index inside that zspage
        self._hmap = array("I")  # number of current mappings
        self._hfree = array("I")  # stack of free slots
        self._gen_base = 1  # generation of a slot used for the first time
        self._spans: dict[int, list[tuple[int, bytearray, int]]] = {}

    # -- allocation ------------------------------------------------------------------
    def malloc(self, size: int) -> int:
        return self._alloc(size, None)

    def alloc_write(self, data: Buffer) -> int:
        """malloc + write under one lock (the store path's one call into the pool)."""
        if data.__class__ is not bytes:
            data = bytes(data)
        return self._alloc(len(data), data)

    def _alloc(self, size: int, data: bytes | bytearray | None) -> int:
        if type(size) is not int or not 0 < size <= self.page_size:
            if type(size) is int and size > self.page_size:
                raise ZpoolError(errno.ENOSPC, f"zsmalloc: {size} bytes exceed a page")
            raise ZpoolError(errno.EINVAL, f"zsmalloc: bad allocation size {size!r}")
        cls = self._cls_by_size[size]
        self._lock.acquire()  # not `with`: half the cost on the hot path
        try:
            if self._dead:
                raise ZpoolError(errno.EINVAL, "zsmalloc: pool destroyed")
            hfree = self._hfree
            if not hfree and len(self._hzs) > _SLOT_MASK:
                raise ZpoolError(errno.ENOMEM, "zsmalloc: handle table full")
            m = cls.mask & _NOT_FULL_MASK
            # the fullest zspage that is not full, else a new one
            zs = cls.groups[m.bit_length() - 1][-1] if m else self._alloc_zspage(cls)
            obj = zs.free.pop()
            if hfree:
                hs = hfree.pop()
                handle = self._hval[hs] + _GEN_UNIT
                if handle >= _HANDLE_LIMIT:
                    handle = _GEN_UNIT | hs
                self._hval[hs] = handle
                self._hzs[hs] = zs
                self._hobj[hs] = obj
            else:
                hs = len(self._hzs)
                handle = self._gen_base << _SLOT_BITS | hs
                self._hval.append(handle)
                self._hzs.append(zs)
                self._hobj.append(obj)
                self._hmap.append(0)
            zs.owner[obj] = hs + 1
            inuse = zs.inuse = zs.inuse + 1
            cls.obj_used += 1
            g = cls.fg_of[inuse]
            old = zs.fg
            if g != old:  # _move(), inlined: this runs on most calls
                if old:
                    lst = cls.groups[old]
                    last = lst.pop()
                    if last is not zs:
                        lst[zs.pos] = last
                        last.pos = zs.pos
                    elif not lst:
                        cls.mask &= ~(1 << old)
                lst = cls.groups[g]
                zs.pos = len(lst)
                lst.append(zs)
                cls.mask |= 1 << g
                zs.fg = g
            if data is not None:
                if size > cls.dlen:  # pragma: no cover - the class was chosen for size
                    raise ZpoolError(errno.EINVAL, "zsmalloc: data larger than its class")
                self._put(zs, obj, data)
        finally:
            self._lock.release()
        return handle

    def free(self, handle: int) -> None:
        self._lock.acquire()  # not `with`: half the cost on the hot path
        try:
            try:
                hs = handle & _SLOT_MASK
                zs = self._hzs[hs]
            except (TypeError, IndexError):
                raise _einval(handle) from None
            if zs is None or self._hval[hs] != handle:
                raise _einval(handle)
            obj = self._hobj[hs]
            self._hzs[hs] = None
            self._hfree.append(hs)
            if self._hmap[hs]:  # freed while mapped: the mappings die with it
                self._hmap[hs] = 0
                self._spans.pop(hs, None)
            zs.owner[obj] = 0
            zs.free.append(obj)
            inuse = zs.inuse = zs.inuse - 1
            cls = zs.cls
            cls.obj_used -= 1
            g = cls.fg_of[inuse]
            old = zs.fg
            if g != old:  # _move(), inlined
                lst = cls.groups[old]
                last = lst.pop()
                if last is not zs:
                    lst[zs.pos] = last
                    last.pos = zs.pos
                elif not lst:
                    cls.mask &= ~(1 << old)
                zs.fg = g
                if g:
                    lst = cls.groups[g]
                    zs.pos = len(lst)
                    lst.append(zs)
                    cls.mask |= 1 << g
                else:
                    self._free_zspage(zs)
            if len(self._hfree) == len(self._hzs):
                self._drop_handles()
        finally:
            self._lock.release()

    def _drop_handles(self) -> None:
        """No handle is live: drop the table (lock held). New slots start one generation
        above the highest given out, so no old handle becomes valid again at once."""
        top = max(self._hval) >> _SLOT_BITS
        self._gen_base = 1 if top >= _GEN_MAX else top + 1
        self._hval = array("Q")
        self._hzs = []
        self._hobj = array("I")
        self._hmap = array("I")
        self._hfree = array("I")

    # -- mapping ---------------------------------------------------------------------
    def _slot(self, handle: int) -> tuple[int, _Zspage]:
        """The table slot and zspage of a live handle (lock held), else EINVAL.

        malloc/free/read, the store and load path, keep this check inlined.
        """
        try:
            hs = handle & _SLOT_MASK
            zs = self._hzs[hs]
        except (TypeError, IndexError):
            raise _einval(handle) from None
        if zs is None or self._hval[hs] != handle:
            raise _einval(handle)
        return hs, zs

    def map(self, handle: int, mode: MapMode = MapMode.RW) -> memoryview:
        with self._lock:
            hs, zs = self._slot(handle)
            cls = zs.cls
            off = self._hobj[hs] * cls.size + cls.hdr
            o = off & self._page_mask
            end = o + cls.dlen
            self._hmap[hs] += 1
            if end <= self.page_size:
                return memoryview(zs.pages[off >> self._page_shift])[o:end]
            return self._map_span(hs, zs, off, mode)

    def _map_span(self, hs: int, zs: _Zspage, off: int, mode: MapMode) -> memoryview:
        """Map an object that straddles two pages: hand out a copy (pool lock held)."""
        buf = self._get_buf()
        dlen = zs.cls.dlen
        p = off >> self._page_shift
        o = off & self._page_mask
        # copied in for WO too: a WO mapping that writes part of the object keeps the rest
        k = self.page_size - o
        buf[:k] = zs.pages[p][o:]
        buf[k:dlen] = zs.pages[p + 1][: dlen - k]
        recs = self._spans.get(hs)
        if recs is None:
            recs = self._spans[hs] = []
        recs.append((threading.get_ident(), buf, int(mode)))
        return memoryview(buf)[:dlen]

    def unmap(self, handle: int) -> None:
        with self._lock:
            hs, zs = self._slot(handle)
            count = self._hmap[hs]
            if not count:
                raise ZpoolError(errno.EINVAL, f"zsmalloc: handle {handle!r} is not mapped")
            self._hmap[hs] = count - 1
            if not self._spans:
                return
            recs = self._spans.get(hs)
            if recs is None:
                return
            me = threading.get_ident()
            at = len(recs) - 1
            for i in range(at, -1, -1):
                if recs[i][0] == me:
                    at = i
                    break
            _, buf, mode = recs.pop(at)
            if not recs:
                del self._spans[hs]
            if mode != _RO:
                cls = zs.cls
                off = self._hobj[hs] * cls.size + cls.hdr
                p = off >> self._page_shift
                o = off & self._page_mask
                k = self.page_size - o
                dlen = cls.dlen
                zs.pages[p][o:] = buf[:k]
                zs.pages[p + 1][: dlen - k] = buf[k:dlen]
            self._put_buf(buf)

    def write(self, handle: int, data: Buffer) -> None:
        """Copy ``data`` into the object (no mapping bookkeeping needed)."""
        src = memoryview(data).cast("B")
        n = len(src)
        with self._lock:
            hs, zs = self._slot(handle)
            cls = zs.cls
            if n > cls.dlen:
                raise ZpoolError(errno.EINVAL, f"zsmalloc: {n} bytes do not fit the object")
            off = self._hobj[hs] * cls.size + cls.hdr
            p = off >> self._page_shift
            o = off & self._page_mask
            if o + n <= self.page_size:
                zs.pages[p][o : o + n] = src
            else:
                k = self.page_size - o
                zs.pages[p][o:] = src[:k]
                zs.pages[p + 1][: n - k] = src[k:]

    def read(self, handle: int, size: int) -> bytes | bytearray:
        """A copy of the object's first ``size`` bytes."""
        self._lock.acquire()  # not `with`: half the cost on the hot path
        try:
            try:
                hs = handle & _SLOT_MASK
                zs = self._hzs[hs]
            except (TypeError, IndexError):
                raise _einval(handle) from None
            if zs is None or self._hval[hs] != handle:
                raise _einval(handle)
            return self._get(zs, self._hobj[hs], min(max(size, 0), zs.cls.dlen))
        finally:
            self._lock.release()

    # -- pool ------------------------------------------------------------------------
    def destroy(self) -> None:
        with self._lock:
            if self._dead:
                return
            self._dead = True
            for cls in self._classes:
                for group in cls.groups:
                    for zs in group:
                        for page in zs.pages:
                            self.pages.free_page(page)
                        zs.pages = []
                    group.clear()
                cls.mask = 0
                cls.nr_zspages = 0
                cls.obj_used = 0
            self.nr_pages = 0
            self._hval = array("Q")
            self._hzs = []
            self._hobj = array("I")
            self._hmap = array("I")
            self._hfree = array("I")
            self._spans.clear()

    def compact(self) -> int:
        """Move objects out of sparse zspages into full-ish ones; returns pages freed.

        Per class (largest first, as the kernel): destinations come from the fullest
        non-full group down, sources from the emptiest up; an emptied source zspage is
        freed at once. A mapped object is never moved, so its zspage stays.
        """
        freed = 0
        for cls in reversed(self._classes):
            with self._lock:
                if self._dead:
                    break
                freed += self._compact_class(cls)
        with self._lock:
            self.pages_compacted += freed
        return freed

    def stats(self) -> dict[str, Any]:
        rows: list[dict[str, int]] = []
        total: dict[str, int] = dict.fromkeys(
            (*FULLNESS_NAMES[1:], "obj_allocated", "obj_used", "pages_used", "freeable"), 0
        )
        with self._lock:
            for cls in self._classes:
                row: dict[str, int] = {"class": cls.index, "size": cls.size}
                for g in range(1, NR_FULLNESS_GROUPS):
                    row[FULLNESS_NAMES[g]] = len(cls.groups[g])
                allocated = cls.nr_zspages * cls.objs
                row["obj_allocated"] = allocated
                row["obj_used"] = cls.obj_used
                row["pages_used"] = cls.nr_zspages * cls.ppz
                row["pages_per_zspage"] = cls.ppz
                row["freeable"] = self._can_compact(cls)
                rows.append(row)
                for key in total:
                    total[key] += row[key]
            return {
                "classes": rows,
                "total": total,
                "pages_compacted": self.pages_compacted,
                "nr_pages": self.nr_pages,
                "huge_class_size": self.huge_class_size,
                "chain_size": self.chain_size,
                "nr_handles": len(self._hzs) - len(self._hfree),
            }

    # -- internals (pool lock held) --------------------------------------------------
    def _alloc_zspage(self, cls: _SizeClass) -> _Zspage:
        got: list[bytearray] = []
        try:
            for _ in range(cls.ppz):
                got.append(self.pages.alloc_page())
        except BaseException:
            for page in got:
                self.pages.free_page(page)
            raise
        self.nr_pages += cls.ppz
        cls.nr_zspages += 1
        return _Zspage(cls, got)

    def _free_zspage(self, zs: _Zspage) -> None:
        cls = zs.cls
        for page in zs.pages:
            self.pages.free_page(page)
        zs.pages = []
        self.nr_pages -= cls.ppz
        cls.nr_zspages -= 1

    @staticmethod
    def _move(cls: _SizeClass, zs: _Zspage, g: int) -> None:
        """Move ``zs`` from its fullness list to group ``g`` (0: no list)."""
        old = zs.fg
        if old:
            lst = cls.groups[old]
            last = lst.pop()
            if last is not zs:
                lst[zs.pos] = last
                last.pos = zs.pos
            elif not lst:
                cls.mask &= ~(1 << old)
        if g:
            lst = cls.groups[g]
            zs.pos = len(lst)
            lst.append(zs)
            cls.mask |= 1 << g
        zs.fg = g

    @staticmethod
    def _can_compact(cls: _SizeClass) -> int:
        """Pages compaction could free in ``cls`` (the kernel's ``zs_can_compact``)."""
        wasted = cls.nr_zspages * cls.objs - cls.obj_used
        return wasted // cls.objs * cls.ppz

    def _get(self, zs: _Zspage, obj: int, n: int) -> bytearray:
        cls = zs.cls
        off = obj * cls.size + cls.hdr
        p = off >> self._page_shift
        o = off & self._page_mask
        if o + n <= self.page_size:
            return zs.pages[p][o : o + n]
        k = self.page_size - o
        return zs.pages[p][o:] + zs.pages[p + 1][: n - k]

    def _put(self, zs: _Zspage, obj: int, data: bytes | bytearray) -> None:
        cls = zs.cls
        n = len(data)
        off = obj * cls.size + cls.hdr
        p = off >> self._page_shift
        o = off & self._page_mask
        if o + n <= self.page_size:
            zs.pages[p][o : o + n] = data
        else:
            k = self.page_size - o
            zs.pages[p][o:] = data[:k]
            zs.pages[p + 1][: n - k] = data[k:]

    def _take(self, cls: _SizeClass, groups: range, skip: set[int]) -> _Zspage | None:
        """Remove and return a zspage from the first non-empty group of ``groups``."""
        for g in groups:
            lst = cls.groups[g]
            for i in range(len(lst) - 1, -1, -1):
                zs = lst[i]
                if id(zs) not in skip:
                    self._move(cls, zs, 0)
                    return zs
        return None

    def _compact_class(self, cls: _SizeClass) -> int:
        freed = 0
        skip: set[int] = set()  # sources that hold only mapped objects
        dst: _Zspage | None = None
        hzs, hobj, hmap = self._hzs, self._hobj, self._hmap
        dlen = cls.dlen
        while self._can_compact(cls):
            if dst is None:
                dst = self._take(cls, range(_FULL - 1, 0, -1), set())
                if dst is None:
                    break
            src = self._take(cls, range(1, _FULL), skip)
            if src is None:
                break
            owner = src.owner
            dst_owner = dst.owner
            for obj in range(cls.objs):
                o = owner[obj]
                if not o or hmap[o - 1]:
                    continue
                new = dst.free.pop()
                self._put(dst, new, self._get(src, obj, dlen))
                dst_owner[new] = o
                dst.inuse += 1
                owner[obj] = 0
                src.free.append(obj)
                src.inuse -= 1
                hzs[o - 1] = dst
                hobj[o - 1] = new
                if dst.inuse == cls.objs:
                    break
            if src.inuse == 0:
                self._free_zspage(src)
                freed += cls.ppz
            else:
                self._move(cls, src, cls.fg_of[src.inuse])
                if dst.inuse < cls.objs:
                    skip.add(id(src))  # what is left in it is mapped
            if dst.inuse == cls.objs:
                self._move(cls, dst, _FULL)
                dst = None
        if dst is not None:
            self._move(cls, dst, cls.fg_of[dst.inuse])
        return freed

    def _get_buf(self) -> bytearray:
        bufs: list[bytearray] | None = getattr(self._tls, "bufs", None)
        if bufs:
            return bufs.pop()
        return bytearray(self.page_size)

    def _put_buf(self, buf: bytearray) -> None:
        bufs: list[bytearray] | None = getattr(self._tls, "bufs", None)
        if bufs is None:
            bufs = self._tls.bufs = []
        if len(bufs) < 4:
            bufs.append(buf)


def format_classes(stats: dict[str, Any]) -> str:
    """Render ``Zsmalloc.stats()`` as the debugfs ``classes`` file."""
    cols = [*FULLNESS_NAMES[1:], "obj_allocated", "obj_used", "pages_used"]
    head = f"{'class':>5} {'size':>5} " + " ".join(f"{c:>9}" for c in FULLNESS_NAMES[1:])
    head += f" {'obj_allocated':>13} {'obj_used':>13} {'pages_used':>15}"
    head += f" {'pages_per_zspage':>16} {'freeable':>8}"
    lines = [head]
    for row in stats["classes"]:
        cells = [f"{row['class']:5d} {row['size']:5d}"]
        cells += [f"{row[c]:>9d}" for c in FULLNESS_NAMES[1:]]
        cells += [f"{row['obj_allocated']:13d} {row['obj_used']:13d} {row['pages_used']:15d}"]
        cells += [f"{row['pages_per_zspage']:16d} {row['freeable']:8d}"]
        lines.append(" ".join(cells))
    total = stats["total"]
    cells = [f"{'Total':>5} {'':>5}"]
    cells += [f"{total[c]:>9d}" for c in cols[:-3]]
    cells += [f"{total['obj_allocated']:13d} {total['obj_used']:13d} {total['pages_used']:15d}"]
    cells += [f"{'':>16} {total['freeable']:8d}"]
    lines.append(" ".join(cells))
    return "\n".join(lines) + "\n"
