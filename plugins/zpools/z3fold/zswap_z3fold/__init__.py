"""z3fold: up to three compressed objects per page, after Linux's z3fold.

A page is cut into 64 chunks (``chunk = page_size // 64``); the first chunk is the
header, leaving ``NCHUNKS`` = 63 usable chunks::

    | hdr | FIRST -->  | free | MIDDLE |  free  | <-- LAST |
    0     chunk                                    page_size

FIRST starts right after the header, LAST ends at the end of the page, and MIDDLE is
placed right after FIRST when it is allocated and may later be moved anywhere in
between. An object too big for a page with a header (more than ``page_size`` minus
two chunks) gets a *headless* page of its own; an object bigger than a page is
refused with ``ENOSPC``.

Handles are indirect: a handle is ``slot + 1``, ``slot`` an index into a handle
table whose entry holds the object's current location ``(page_index << 2) | buddy``.
Moving an object rewrites that one entry, so handles stay valid across moves. A
per-page reverse table (``_owner``, four entries a page) finds the slot of the
object that is moved. Freed slots and page numbers are reused.

Free space, unbuddied lists and slot choice follow the kernel:

* the free-space metric of a page is ``NCHUNKS - first - last`` without a middle
  object, and with one the larger of the free gaps before and after it (a gap only
  counts when the FIRST, respectively LAST, slot is free);
* pages with at least one free slot sit on ``_unbuddied[free_chunks]`` (a dict used as
  an ordered set; ``_mask`` has bit ``n`` set while list ``n`` is non-empty, so the
  search "first non-empty list at or above the needed size" is O(1));
* in a page taken from a list, the new object goes to FIRST if FIRST is free (unless
  a middle object leaves too little room before it, then LAST), else to LAST if
  free, else to MIDDLE.

Compaction policy (the kernel runs this from a work queue after a free; here it runs
synchronously inside :meth:`Z3fold.free`, under the pool lock):

* only the MIDDLE object moves within its page;
* if it is the only object left in the page it becomes the FIRST object;
* with only FIRST beside it, it moves next to FIRST if the gap is at least
  ``BIG_CHUNK_GAP`` (3) chunks; with only LAST beside it, it moves next to LAST under
  the same condition; with both, it stays;
* nothing in a page moves while any object of that page is mapped. Such a page is
  marked *pending*; its compaction runs when its last mapping is released
  (:meth:`Z3fold.unmap`) or at the next :meth:`Z3fold.compact`.

:meth:`Z3fold.compact` also does what the kernel's single-buddy compaction does: a
page holding a single unmapped object has that object moved into another page with
room, and the emptied page is freed. It returns the number of pages freed.
"""

from __future__ import annotations

import errno
import operator
import threading
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from zswap_core import MapMode, Zpool, ZpoolError

if TYPE_CHECKING:
    from typing_extensions import Buffer

    from zswap_core import ModuleParams, PageAllocator

__all__ = ["BIG_CHUNK_GAP", "FIRST", "HEADLESS", "LAST", "MIDDLE", "NCHUNKS", "Layout", "Z3fold"]

NCHUNKS_ORDER = 6
TOTAL_CHUNKS = 1 << NCHUNKS_ORDER  #: chunks per page, header included
ZHDR_CHUNKS = 1  #: chunks taken by the header
NCHUNKS = TOTAL_CHUNKS - ZHDR_CHUNKS  #: usable chunks in a page with a header (63)
BIG_CHUNK_GAP = 3  #: a middle object moves only to close a gap at least this big

HEADLESS = 0
FIRST = 1
MIDDLE = 2
LAST = 3
BUDDY_NAMES = ("headless", "first", "middle", "last")

# Placeholders for a free page slot: keeps the page lists free of None.
_NO_PAGE = bytearray()
_NO_VIEW = memoryview(_NO_PAGE)


class Layout(NamedTuple):
    """Where an object lives now (for tests and debugging)."""

    page: int  #: page index in the pool's page table
    offset: int  #: byte offset of the object in the page
    chunks: int  #: chunks reserved for the object (64 for a headless page)
    buddy: str  #: "headless", "first", "middle" or "last"


def _bad_size(size: object) -> ZpoolError:
    return ZpoolError(errno.EINVAL, f"invalid allocation size {size!r}")


def _bad_handle(handle: object) -> ZpoolError:
    return ZpoolError(errno.EINVAL, f"z3fold: invalid or freed handle {handle!r}")


def _as_size(size: object) -> int:
    """An int-like size other than bool, else EINVAL."""
    if isinstance(size, bool):
        raise _bad_size(size)
    try:
        return operator.index(size)  # type: ignore[arg-type]
    except TypeError:
        raise _bad_size(size) from None


class Z3fold(Zpool):
    """The z3fold allocator: three objects per page, indirect handles, compaction."""

    type: ClassVar[str] = "z3fold"
    description: ClassVar[str] = "three objects per page (FIRST, MIDDLE, LAST), compacting"
    can_compact: ClassVar[bool] = True

    def __init__(self, name: str, pages: PageAllocator, params: ModuleParams | None = None) -> None:
        super().__init__(name, pages, params)
        ps = self.page_size
        cs = ps >> NCHUNKS_ORDER
        #: bytes per chunk (page_size / 64)
        self.chunk_size = cs
        self._chunk_shift = cs.bit_length() - 1
        self._chunk_mask = cs - 1
        #: largest object that shares a page (bigger ones get a headless page)
        self.max_buddy_size = ps - (ZHDR_CHUNKS + 1) * cs
        #: largest object at all
        self.max_size = ps
        self._lock = threading.Lock()
        # per page
        self._pages: list[bytearray] = []
        self._views: list[memoryview] = []
        self._first: list[int] = []
        self._middle: list[int] = []
        self._last: list[int] = []
        self._start: list[int] = []  # first chunk of the middle object
        self._headless: list[bool] = []
        self._mapped: list[int] = []
        self._listed: list[int] = []  # index of the unbuddied list holding it, or -1
        self._owner: list[int] = []  # 4 per page: handle slot of each buddy, or -1
        self._free_idx: list[int] = []
        self._pending: set[int] = set()
        self._unbuddied: list[dict[int, None]] = [{} for _ in range(NCHUNKS)]
        self._mask = 0
        # handle table
        self._slots: list[int] = []
        self._free_slots: list[int] = []
        # counters
        self._objects = 0
        self._headless_pages = 0
        self._moves = 0
        self._destroyed = False

    # -- the contract ----------------------------------------------------------------
    def malloc(self, size: int) -> int:
        if size.__class__ is not int:
            size = _as_size(size)
        if size <= 0:
            raise _bad_size(size)
        if size > self.page_size:
            raise ZpoolError(
                errno.ENOSPC, f"z3fold: {size} bytes exceeds the maximum {self.page_size}"
            )
        with self._lock:
            if self._destroyed:
                raise ZpoolError(errno.EINVAL, "z3fold: pool has been destroyed")
            if size > self.max_buddy_size:
                idx = self._new_page()  # ENOMEM propagates; nothing changed yet
                self._headless[idx] = True
                self._headless_pages += 1
                bud = HEADLESS
            else:
                chunks = (size + self._chunk_mask) >> self._chunk_shift
                m = self._mask >> chunks
                if m:
                    n = chunks + (m & -m).bit_length() - 1
                    lst = self._unbuddied[n]
                    idx = next(reversed(lst))
                    del lst[idx]
                    if not lst:
                        self._mask &= ~(1 << n)
                    self._listed[idx] = -1
                    bud = self._choose(idx, chunks)
                else:
                    idx = self._new_page()
                    bud = FIRST
                if bud == FIRST:
                    self._first[idx] = chunks
                elif bud == LAST:
                    self._last[idx] = chunks
                else:
                    self._middle[idx] = chunks
                    self._start[idx] = self._first[idx] + ZHDR_CHUNKS
                self._relist(idx)
            if self._free_slots:
                slot = self._free_slots.pop()
                self._slots[slot] = (idx << 2) | bud
            else:
                slot = len(self._slots)
                self._slots.append((idx << 2) | bud)
            self._owner[(idx << 2) | bud] = slot
            self._objects += 1
        return slot + 1

    def free(self, handle: int) -> None:
        with self._lock:
            slots = self._slots
            if handle.__class__ is not int or not 0 < handle <= len(slots):
                raise _bad_handle(handle)
            slot = handle - 1
            loc = slots[slot]
            if loc < 0:
                raise _bad_handle(handle)
            slots[slot] = -1
            self._free_slots.append(slot)
            self._owner[loc] = -1
            self._objects -= 1
            idx = loc >> 2
            bud = loc & 3
            if bud == HEADLESS:
                self._headless_pages -= 1
                self._release_page(idx)
                return
            if bud == FIRST:
                self._first[idx] = 0
            elif bud == LAST:
                self._last[idx] = 0
            else:
                self._middle[idx] = 0
                self._start[idx] = 0
            n = self._listed[idx]
            if n >= 0:
                lst = self._unbuddied[n]
                del lst[idx]
                if not lst:
                    self._mask &= ~(1 << n)
                self._listed[idx] = -1
            middle = self._middle[idx]
            if not (middle or self._first[idx] or self._last[idx]):
                self._release_page(idx)
                return
            if middle:
                if self._mapped[idx]:
                    self._pending.add(idx)
                else:
                    self._compact_page(idx)
            self._relist(idx)

    def map(self, handle: int, mode: MapMode = MapMode.RW) -> memoryview:
        with self._lock:
            slots = self._slots
            if handle.__class__ is not int or not 0 < handle <= len(slots):
                raise _bad_handle(handle)
            loc = slots[handle - 1]
            if loc < 0:
                raise _bad_handle(handle)
            idx = loc >> 2
            self._mapped[idx] += 1
            bud = loc & 3
            cs = self.chunk_size
            if bud == FIRST:
                return self._views[idx][cs : cs + self._first[idx] * cs]
            if bud == LAST:
                return self._views[idx][self.page_size - self._last[idx] * cs :]
            if bud == MIDDLE:
                off = self._start[idx] * cs
                return self._views[idx][off : off + self._middle[idx] * cs]
            return self._views[idx][:]

    def unmap(self, handle: int) -> None:
        with self._lock:
            slots = self._slots
            if handle.__class__ is not int or not 0 < handle <= len(slots):
                raise _bad_handle(handle)
            loc = slots[handle - 1]
            if loc < 0:
                raise _bad_handle(handle)
            idx = loc >> 2
            count = self._mapped[idx]
            if count <= 0:
                raise ZpoolError(errno.EINVAL, f"z3fold: handle {handle} is not mapped")
            self._mapped[idx] = count - 1
            if count == 1 and self._pending and idx in self._pending:
                self._unlist(idx)
                self._compact_page(idx)
                self._relist(idx)

    def write(self, handle: int, data: Buffer) -> None:
        src = memoryview(data).cast("B")
        n = len(src)
        with self._lock:
            loc = self._slots[self._slot(handle)]
            idx = loc >> 2
            off, cap = self._region(idx, loc & 3)
            if n > cap:
                raise ZpoolError(errno.EINVAL, f"z3fold: {n} bytes do not fit in {cap}")
            self._pages[idx][off : off + n] = src

    def read(self, handle: int, size: int) -> bytes:
        with self._lock:
            loc = self._slots[self._slot(handle)]
            idx = loc >> 2
            off, cap = self._region(idx, loc & 3)
            return bytes(self._views[idx][off : off + min(size, cap)])

    def destroy(self) -> None:
        with self._lock:
            pages = [p for p in self._pages if p is not _NO_PAGE]
            self._reset_state()
            self._destroyed = True
            for page in pages:
                self.pages.free_page(page)
                self.nr_pages -= 1

    def compact(self) -> int:
        """Run pending compactions, then empty single-object pages into others.

        Returns the number of pages freed. Pages with a mapped object are left alone.
        """
        with self._lock:
            for idx in sorted(self._pending):
                if not self._mapped[idx]:
                    self._unlist(idx)
                    self._compact_page(idx)
                    self._relist(idx)
            # Pages with the most free space first: they hold the least data to move.
            candidates = [
                idx
                for n in range(NCHUNKS - 1, 0, -1)
                for idx in reversed(self._unbuddied[n])
                if not self._mapped[idx]
                and (self._first[idx] > 0) + (self._middle[idx] > 0) + (self._last[idx] > 0) == 1
            ]
            freed = 0
            for idx in candidates:
                if self._mapped[idx] or self._listed[idx] < 0:
                    continue
                f, m, la = self._first[idx], self._middle[idx], self._last[idx]
                if (f > 0) + (m > 0) + (la > 0) != 1:
                    continue  # has received objects since the list was made
                bud = FIRST if f else (MIDDLE if m else LAST)
                chunks = f or m or la
                self._unlist(idx)
                bits = self._mask >> chunks
                if not bits:
                    self._relist(idx)
                    continue
                n = chunks + (bits & -bits).bit_length() - 1
                lst = self._unbuddied[n]
                dst = next(reversed(lst))
                del lst[dst]
                if not lst:
                    self._mask &= ~(1 << n)
                self._listed[dst] = -1
                dbud = self._choose(dst, chunks)
                if dbud == FIRST:
                    self._first[dst] = chunks
                elif dbud == LAST:
                    self._last[dst] = chunks
                else:
                    self._middle[dst] = chunks
                    self._start[dst] = self._first[dst] + ZHDR_CHUNKS
                soff, nbytes = self._region(idx, bud)
                doff, _ = self._region(dst, dbud)
                self._pages[dst][doff : doff + nbytes] = self._views[idx][soff : soff + nbytes]
                slot = self._owner[(idx << 2) | bud]
                self._owner[(idx << 2) | bud] = -1
                self._owner[(dst << 2) | dbud] = slot
                self._slots[slot] = (dst << 2) | dbud
                self._moves += 1
                self._relist(dst)
                self._release_page(idx)
                freed += 1
            return freed

    # -- extras ----------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        with self._lock:
            by_free = {n: len(lst) for n, lst in enumerate(self._unbuddied) if lst}
            unbuddied = sum(by_free.values())
            return {
                "pages": self.nr_pages,
                "objects": self._objects,
                "headless": self._headless_pages,
                "buddied": self.nr_pages - self._headless_pages - unbuddied,
                "unbuddied": unbuddied,
                "unbuddied_by_free_chunks": by_free,
                "pending_compaction": len(self._pending),
                "moves": self._moves,
            }

    def layout(self, handle: int) -> Layout:
        """Page index, byte offset, chunk count and buddy of a live handle, right now."""
        with self._lock:
            loc = self._slots[self._slot(handle)]
            idx = loc >> 2
            bud = loc & 3
            off, n = self._region(idx, bud)
            return Layout(idx, off, n >> self._chunk_shift, BUDDY_NAMES[bud])

    def pending(self) -> frozenset[int]:
        """Pages whose compaction waits for their mappings to be released."""
        with self._lock:
            return frozenset(self._pending)

    def check(self) -> None:
        """Verify every internal invariant; raises AssertionError on the first broken one."""
        with self._lock:
            live = objects = headless = 0
            for idx, page in enumerate(self._pages):
                f, m, la = self._first[idx], self._middle[idx], self._last[idx]
                own = self._owner[idx * 4 : idx * 4 + 4]
                if page is _NO_PAGE:
                    assert f == m == la == 0 and not self._headless[idx], f"free slot {idx}"
                    assert own == [-1] * 4, f"free slot {idx} owns handles"
                    assert idx in self._free_idx and idx not in self._pending
                    continue
                live += 1
                assert len(page) == self.page_size
                if self._headless[idx]:
                    headless += 1
                    objects += 1
                    assert f == m == la == 0 and self._listed[idx] == -1
                    assert own[HEADLESS] >= 0 and own[1:] == [-1] * 3
                    continue
                assert f or m or la, f"empty page {idx} not freed"
                assert own[HEADLESS] == -1
                for bud, chunks in ((FIRST, f), (MIDDLE, m), (LAST, la)):
                    assert (chunks > 0) == (own[bud] >= 0), f"page {idx} buddy {bud} owner"
                    if chunks:
                        assert self._slots[own[bud]] == (idx << 2) | bud
                objects += (f > 0) + (m > 0) + (la > 0)
                end_first = ZHDR_CHUNKS + f
                start_last = TOTAL_CHUNKS - la
                if m:
                    s = self._start[idx]
                    assert end_first <= s and s + m <= start_last, f"page {idx} overlaps"
                else:
                    assert end_first <= start_last, f"page {idx} overfull"
                if f and m and la:
                    assert self._listed[idx] == -1, f"full page {idx} listed"
                else:
                    n = self._num_free(idx)
                    assert self._listed[idx] == n and idx in self._unbuddied[n], (
                        f"page {idx} not on unbuddied[{n}]"
                    )
                if idx in self._pending:
                    assert self._mapped[idx] > 0, f"pending page {idx} not mapped"
            assert live == self.nr_pages, f"nr_pages {self.nr_pages} != {live}"
            assert objects == self._objects, f"objects {self._objects} != {objects}"
            assert headless == self._headless_pages
            live_slots = sum(1 for loc in self._slots if loc >= 0)
            assert live_slots == objects, f"{live_slots} handles for {objects} objects"
            assert len(self._free_slots) == len(self._slots) - live_slots
            for n, lst in enumerate(self._unbuddied):
                assert bool(lst) == bool(self._mask >> n & 1), f"mask bit {n} wrong"
                for idx in lst:
                    assert self._listed[idx] == n
            assert self._mask >> NCHUNKS == 0

    # -- internals (call with the lock held) -----------------------------------------
    def _reset_state(self) -> None:
        self._pages = []
        self._views = []
        self._first = []
        self._middle = []
        self._last = []
        self._start = []
        self._headless = []
        self._mapped = []
        self._listed = []
        self._owner = []
        self._free_idx = []
        self._pending = set()
        self._unbuddied = [{} for _ in range(NCHUNKS)]
        self._mask = 0
        self._slots = []
        self._free_slots = []
        self._objects = 0
        self._headless_pages = 0

    def _slot(self, handle: int) -> int:
        """Handle table index of a live handle, else EINVAL."""
        if handle.__class__ is int and 0 < handle <= len(self._slots):
            slot = handle - 1
            if self._slots[slot] >= 0:
                return slot
        raise _bad_handle(handle)

    def _region(self, idx: int, bud: int) -> tuple[int, int]:
        """(byte offset, byte length) of a buddy."""
        cs = self.chunk_size
        if bud == FIRST:
            return cs, self._first[idx] * cs
        if bud == LAST:
            n = self._last[idx] * cs
            return self.page_size - n, n
        if bud == MIDDLE:
            return self._start[idx] * cs, self._middle[idx] * cs
        return 0, self.page_size

    def _new_page(self) -> int:
        page = self.pages.alloc_page()
        if self._free_idx:
            idx = self._free_idx.pop()
            self._pages[idx] = page
            self._views[idx] = memoryview(page)
        else:
            idx = len(self._pages)
            self._pages.append(page)
            self._views.append(memoryview(page))
            self._first.append(0)
            self._middle.append(0)
            self._last.append(0)
            self._start.append(0)
            self._headless.append(False)
            self._mapped.append(0)
            self._listed.append(-1)
            self._owner += (-1, -1, -1, -1)
        self.nr_pages += 1
        return idx

    def _release_page(self, idx: int) -> None:
        """Give back an empty page (already off the lists)."""
        page = self._pages[idx]
        self._pages[idx] = _NO_PAGE
        self._views[idx] = _NO_VIEW
        self._first[idx] = self._middle[idx] = self._last[idx] = self._start[idx] = 0
        self._headless[idx] = False
        self._mapped[idx] = 0
        self._pending.discard(idx)
        self._free_idx.append(idx)
        self.nr_pages -= 1
        self.pages.free_page(page)

    def _num_free(self, idx: int) -> int:
        m = self._middle[idx]
        if m:
            s = self._start[idx]
            before = 0 if self._first[idx] else s - ZHDR_CHUNKS
            after = 0 if self._last[idx] else TOTAL_CHUNKS - (s + m)
            return before if before > after else after
        return NCHUNKS - self._first[idx] - self._last[idx]

    def _choose(self, idx: int, chunks: int) -> int:
        """The slot a new object of ``chunks`` goes to in a page with room for it."""
        if self._first[idx] == 0:
            if self._middle[idx] and chunks >= self._start[idx]:
                return LAST  # does not fit before the middle object
            return FIRST
        if self._last[idx] == 0:
            return LAST
        return MIDDLE

    def _unlist(self, idx: int) -> None:
        n = self._listed[idx]
        if n >= 0:
            lst = self._unbuddied[n]
            del lst[idx]
            if not lst:
                self._mask &= ~(1 << n)
            self._listed[idx] = -1

    def _relist(self, idx: int) -> None:
        """Put a page (now off every list) on the unbuddied list its free space says."""
        if not (self._first[idx] and self._middle[idx] and self._last[idx]):
            n = self._num_free(idx)
            self._unbuddied[n][idx] = None
            self._mask |= 1 << n
            self._listed[idx] = n

    def _compact_page(self, idx: int) -> None:
        """Move the middle object of an unmapped page if that gains room."""
        self._pending.discard(idx)
        m = self._middle[idx]
        if not m:
            return
        f = self._first[idx]
        la = self._last[idx]
        s = self._start[idx]
        if not f and not la:
            new = ZHDR_CHUNKS  # the lone middle object becomes FIRST
        elif f and not la and s - (f + ZHDR_CHUNKS) >= BIG_CHUNK_GAP:
            new = f + ZHDR_CHUNKS
        elif la and not f and TOTAL_CHUNKS - (la + s + m) >= BIG_CHUNK_GAP:
            new = TOTAL_CHUNKS - la - m
        else:
            return
        if new != s:
            cs = self.chunk_size
            page = self._pages[idx]
            page[new * cs : (new + m) * cs] = page[s * cs : (s + m) * cs]
            self._moves += 1
        if not f and not la:
            slot = self._owner[(idx << 2) | MIDDLE]
            self._owner[(idx << 2) | MIDDLE] = -1
            self._owner[(idx << 2) | FIRST] = slot
            self._slots[slot] = (idx << 2) | FIRST
            self._first[idx] = m
            self._middle[idx] = 0
            self._start[idx] = 0
        else:
            self._start[idx] = new
