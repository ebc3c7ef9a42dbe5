"""zbud: at most two compressed objects ("buddies") per page, after Linux's zbud.

A page is cut into 64 chunks (``chunk = page_size // 64``, 64 bytes at 4 KiB). The
first chunk is reserved for the header, leaving ``NCHUNKS`` = 63 usable chunks::

    | hdr | FIRST buddy -->        free        <-- LAST buddy |
    0     chunk                                       page_size

The FIRST buddy starts right after the header, the LAST buddy ends at the end of the
page, so whichever one is freed, the free space stays one contiguous run.

Bookkeeping lives outside the pages, in flat lists indexed by page number (the page
bytes themselves hold only object data; the header chunk stays unused, as the
kernel's header would occupy it):

* ``_first[i]`` / ``_last[i]``: chunks used by each buddy of page ``i`` (0 = free);
* ``_unbuddied[n]``: pages holding one buddy and ``n`` free chunks (a dict used as an
  insertion-ordered set, so membership changes are O(1) and the newest page is taken
  first, as the kernel's list head); ``_mask`` has bit ``n`` set while that list is
  non-empty, so "the first non-empty list at or above ``n``" is a couple of integer
  operations;
* ``_buddied``: pages holding two buddies.

A handle is ``((page_index << 1) | buddy) + 1`` with ``buddy`` 0 for FIRST and 1 for
LAST: a positive int well below ``2**37``. Freed page numbers are reused.

Objects never move, so :meth:`Zbud.map` is an identity map: it returns a writable view
of the object's chunks inside the page, with no copy in either direction.
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

__all__ = ["FIRST", "LAST", "NCHUNKS", "Layout", "Zbud"]

NCHUNKS_ORDER = 6
TOTAL_CHUNKS = 1 << NCHUNKS_ORDER  #: chunks per page, header included
ZHDR_CHUNKS = 1  #: chunks taken by the header
NCHUNKS = TOTAL_CHUNKS - ZHDR_CHUNKS  #: usable chunks per page (63)

FIRST = 0
LAST = 1
_BUDDY_NAMES = ("first", "last")

#: Handles must stay below this bound (the core packs them into 37 bits).
MAX_HANDLE = (1 << 37) - 1

# Placeholders for a free page slot: keeps the page lists free of None.
_NO_PAGE = bytearray()
_NO_VIEW = memoryview(_NO_PAGE)


class Layout(NamedTuple):
    """Where an object lives (for tests and debugging)."""

    page: int  #: page index in the pool's page table
    offset: int  #: byte offset of the object in the page
    chunks: int  #: chunks reserved for the object
    buddy: str  #: "first" or "last"


def _bad_size(size: object) -> ZpoolError:
    return ZpoolError(errno.EINVAL, f"invalid allocation size {size!r}")


def _bad_handle(handle: object) -> ZpoolError:
    return ZpoolError(errno.EINVAL, f"zbud: invalid or freed handle {handle!r}")


def _as_size(size: object) -> int:
    """An int-like size other than bool, else EINVAL."""
    if isinstance(size, bool):
        raise _bad_size(size)
    try:
        return operator.index(size)  # type: ignore[arg-type]
    except TypeError:
        raise _bad_size(size) from None


class Zbud(Zpool):
    """The zbud allocator: two buddies per page, never more pages than objects."""

    type: ClassVar[str] = "zbud"
    description: ClassVar[str] = "two objects per page (FIRST after the header, LAST at the end)"

    def __init__(self, name: str, pages: PageAllocator, params: ModuleParams | None = None) -> None:
        super().__init__(name, pages, params)
        ps = self.page_size
        cs = ps >> NCHUNKS_ORDER
        #: bytes per chunk (page_size / 64)
        self.chunk_size = cs
        self._chunk_shift = cs.bit_length() - 1
        self._chunk_mask = cs - 1
        #: largest object: the page minus the header chunk and one more chunk
        self.max_size = ps - (ZHDR_CHUNKS + 1) * cs
        self._lock = threading.Lock()
        self._pages: list[bytearray] = []
        self._views: list[memoryview] = []
        self._first: list[int] = []
        self._last: list[int] = []
        self._free_idx: list[int] = []
        self._unbuddied: list[dict[int, None]] = [{} for _ in range(NCHUNKS)]
        self._mask = 0
        self._buddied: dict[int, None] = {}
        self._objects = 0
        self._destroyed = False

    # -- the contract ----------------------------------------------------------------
    def malloc(self, size: int) -> int:
        if size.__class__ is not int:
            size = _as_size(size)
        if size <= 0:
            raise _bad_size(size)
        if size > self.max_size:
            raise ZpoolError(
                errno.ENOSPC, f"zbud: {size} bytes exceeds the maximum {self.max_size}"
            )
        chunks = (size + self._chunk_mask) >> self._chunk_shift
        with self._lock:
            if self._destroyed:
                raise ZpoolError(errno.EINVAL, "zbud: pool has been destroyed")
            m = self._mask >> chunks
            if m:
                # Smallest list at or above the needed size that has a page.
                nfree = chunks + (m & -m).bit_length() - 1
                lst = self._unbuddied[nfree]
                idx = next(reversed(lst))
                del lst[idx]
                if not lst:
                    self._mask &= ~(1 << nfree)
                if self._first[idx] == 0:
                    self._first[idx] = chunks
                    bud = FIRST
                else:
                    self._last[idx] = chunks
                    bud = LAST
                self._buddied[idx] = None
            else:
                page = self.pages.alloc_page()  # ENOMEM propagates; nothing changed yet
                if self._free_idx:
                    idx = self._free_idx.pop()
                    self._pages[idx] = page
                    self._views[idx] = memoryview(page)
                    self._first[idx] = chunks
                    self._last[idx] = 0
                else:
                    idx = len(self._pages)
                    self._pages.append(page)
                    self._views.append(memoryview(page))
                    self._first.append(chunks)
                    self._last.append(0)
                self.nr_pages += 1
                nfree = NCHUNKS - chunks
                self._unbuddied[nfree][idx] = None
                self._mask |= 1 << nfree
                bud = FIRST
            self._objects += 1
        return ((idx << 1) | bud) + 1

    def free(self, handle: int) -> None:
        with self._lock:
            if handle.__class__ is not int or handle <= 0:
                raise _bad_handle(handle)
            h = handle - 1
            idx = h >> 1
            bud = h & 1
            if idx >= len(self._pages):
                raise _bad_handle(handle)
            first = self._first[idx]
            last = self._last[idx]
            if not (last if bud else first):
                raise _bad_handle(handle)
            # Off the list the page is on now.
            if first and last:
                del self._buddied[idx]
            else:
                n = NCHUNKS - first - last
                lst = self._unbuddied[n]
                del lst[idx]
                if not lst:
                    self._mask &= ~(1 << n)
            if bud == FIRST:
                self._first[idx] = first = 0
            else:
                self._last[idx] = last = 0
            self._objects -= 1
            if first or last:
                n = NCHUNKS - first - last
                self._unbuddied[n][idx] = None
                self._mask |= 1 << n
                return
            page = self._pages[idx]
            self._pages[idx] = _NO_PAGE
            self._views[idx] = _NO_VIEW
            self._free_idx.append(idx)
            self.nr_pages -= 1
            self.pages.free_page(page)

    def map(self, handle: int, mode: MapMode = MapMode.RW) -> memoryview:
        with self._lock:
            if handle.__class__ is int and handle > 0:
                h = handle - 1
                idx = h >> 1
                if idx < len(self._pages):
                    cs = self.chunk_size
                    if h & 1:
                        chunks = self._last[idx]
                        if chunks:
                            return self._views[idx][self.page_size - chunks * cs :]
                    else:
                        chunks = self._first[idx]
                        if chunks:
                            return self._views[idx][cs : cs + chunks * cs]
            raise _bad_handle(handle)

    def unmap(self, handle: int) -> None:
        # Identity mapping: nothing to copy back; only check the handle.
        with self._lock:
            self._locate(handle)

    def write(self, handle: int, data: Buffer) -> None:
        src = memoryview(data).cast("B")
        n = len(src)
        with self._lock:
            idx, bud = self._locate(handle)
            cs = self.chunk_size
            if bud == FIRST:
                off = cs
                cap = self._first[idx] * cs
            else:
                cap = self._last[idx] * cs
                off = self.page_size - cap
            if n > cap:
                raise ZpoolError(errno.EINVAL, f"zbud: {n} bytes do not fit in {cap}")
            self._pages[idx][off : off + n] = src

    def read(self, handle: int, size: int) -> bytes:
        with self._lock:
            idx, bud = self._locate(handle)
            cs = self.chunk_size
            if bud == FIRST:
                off = cs
                cap = self._first[idx] * cs
            else:
                cap = self._last[idx] * cs
                off = self.page_size - cap
            return bytes(self._views[idx][off : off + min(size, cap)])

    def destroy(self) -> None:
        with self._lock:
            pages = [p for p in self._pages if p is not _NO_PAGE]
            self._pages = []
            self._views = []
            self._first = []
            self._last = []
            self._free_idx = []
            self._unbuddied = [{} for _ in range(NCHUNKS)]
            self._mask = 0
            self._buddied = {}
            self._objects = 0
            self._destroyed = True
            for page in pages:
                self.pages.free_page(page)
                self.nr_pages -= 1

    # -- extras ----------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        with self._lock:
            by_free = {n: len(lst) for n, lst in enumerate(self._unbuddied) if lst}
            return {
                "pages": self.nr_pages,
                "objects": self._objects,
                "buddied": len(self._buddied),
                "unbuddied": sum(by_free.values()),
                "unbuddied_by_free_chunks": by_free,
            }

    def layout(self, handle: int) -> Layout:
        """Page index, byte offset, chunk count and buddy of a live handle."""
        with self._lock:
            idx, bud = self._locate(handle)
            cs = self.chunk_size
            if bud == FIRST:
                return Layout(idx, cs, self._first[idx], _BUDDY_NAMES[FIRST])
            chunks = self._last[idx]
            return Layout(idx, self.page_size - chunks * cs, chunks, _BUDDY_NAMES[LAST])

    def check(self) -> None:
        """Verify every internal invariant; raises AssertionError on the first broken one."""
        with self._lock:
            live = 0
            objects = 0
            for idx, page in enumerate(self._pages):
                f, la = self._first[idx], self._last[idx]
                if page is _NO_PAGE:
                    assert f == 0 and la == 0, f"free slot {idx} has buddies"
                    assert idx in self._free_idx, f"free slot {idx} not reusable"
                    continue
                live += 1
                assert len(page) == self.page_size
                assert f or la, f"empty page {idx} not freed"
                assert ZHDR_CHUNKS + f + la <= TOTAL_CHUNKS, f"page {idx} overfull"
                objects += (f > 0) + (la > 0)
                if f and la:
                    assert idx in self._buddied, f"full page {idx} not on buddied"
                else:
                    n = NCHUNKS - f - la
                    assert idx in self._unbuddied[n], f"page {idx} not on unbuddied[{n}]"
            assert live == self.nr_pages, f"nr_pages {self.nr_pages} != {live}"
            assert objects == self._objects, f"objects {self._objects} != {objects}"
            listed = sum(len(lst) for lst in self._unbuddied) + len(self._buddied)
            assert listed == live, f"{listed} listed pages, {live} live"
            for n, lst in enumerate(self._unbuddied):
                assert bool(lst) == bool(self._mask >> n & 1), f"mask bit {n} wrong"
            assert self._mask >> NCHUNKS == 0

    # -- internals -------------------------------------------------------------------
    def _locate(self, handle: int) -> tuple[int, int]:
        """(page index, buddy) of a live handle, else EINVAL. Call with the lock held."""
        if handle.__class__ is int and handle > 0:
            h = handle - 1
            idx = h >> 1
            if idx < len(self._pages):
                bud = h & 1
                if (self._last if bud else self._first)[idx]:
                    return idx, bud
        raise _bad_handle(handle)
