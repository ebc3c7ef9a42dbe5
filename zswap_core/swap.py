"""The swap layer: swap files with slots, with zswap in front of them.

It plays the part of the kernel's swap code (``mm/swapfile.c`` and ``mm/page_io.c``)
for a :class:`~zswap_core.Zswap`: ``swapon`` makes or opens a real Linux swap file
(the format ``mkswap`` writes, see :mod:`zswap_core._swapfile`) and gives it a swap
*type*; ``swap_out`` takes a page, gives it a slot and offers it to zswap first,
writing the file only if zswap refuses; ``swap_in`` reads it back from zswap or from
the file; ``swap_free`` releases the slot. Zswap writes back its oldest pages into
their own slots through the handler installed at the first ``swapon``.

>>> from zswap_core import Zswap
>>> from zswap_core.swap import Swap
>>> with Zswap(zpool="zbud") as z, Swap(z) as s:           # doctest: +SKIP
...     s.swapon("/tmp/swapfile", 1024)
...     e = s.swap_out(page)
...     assert s.swap_in(e) == page
...     s.swap_free(e)

Choices, following the kernel where it applies:

* Slot allocation: the highest-priority file with a free slot; files of equal
  priority take turns page by page (round-robin). Within a file, a freed slot is
  reused first, else the next never-used one (O(1)). Slot 0 is the header and bad
  pages are never used.
* ``swapoff`` cannot read pages back into anyone's memory, so it refuses (``EBUSY``)
  while slots are in use; ``force=True`` drops them (and zswap's copies). As in the
  kernel, the type stays taken until swapoff has finished (operations in flight done,
  zswap's area invalidated, file closed): a ``swapon`` meanwhile gets another type,
  or ``EPERM`` if all 32 are taken, so the old area's end never touches the new file.
* Counters as ``/proc/vmstat`` in :attr:`Swap.vmstat`: ``pswpout``/``pswpin`` count
  pages written to / read from the files (a zswap writeback is a ``pswpout`` too, as
  it is a swap write in the kernel), ``zswpout``/``zswpin`` pages stored in / loaded
  from zswap, ``zswpwb`` pages zswap wrote back into these files.
* With ``exclusive_loads=Y`` zswap drops an entry when it is loaded; the page is then
  stored again (zswap, else the file) so the entry stays valid, as the kernel keeps
  the dirty page. Should both refuse, the page is kept in memory for that slot.
  Whether a load dropped the entry is what zswap reports for that very load
  (:meth:`~zswap_core.Zswap.load_dirty`): the swap layer reads no parameter on its
  hot path, so a flip of ``exclusive_loads`` meanwhile cannot make it guess wrong.
* With zswap's ``checksums_enabled=Y``, a page written to the file (refused by zswap,
  or written back by it) gets a crc32 too, kept in memory per slot (8 bytes a slot,
  in chunks of 4096 slots made at the first such write into them). Reading a slot
  whose bytes no longer match, as when someone truncated, re-extended or overwrote
  the file, raises ``OSError(EIO)`` naming the slot and the file instead of
  returning zeros or another page. Whether a page gets one is decided when it is
  written (zswap's cached setting is read, not its parameter table).
* ``swapon`` refuses files on kernel-interface filesystems (/proc, /sys...), naming
  the path, before writing anything.
* Errors change nothing: a failed write in ``swap_out`` leaves the slot free and
  raises ``OSError``; a failed read in ``swap_in`` raises ``OSError`` and the entry
  stays valid; a bad entry raises ``ValueError``.
* A Swap owns the Zswap it is given: closing the Swap closes the Zswap too (pages
  zswap holds are part of the swap contents); ``Swap(z, close_zswap=False)`` leaves it
  open for another Swap.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import weakref
import zlib
from array import array
from typing import TYPE_CHECKING, NamedTuple

from . import _swapfile
from ._errors import WritebackDisabledError
from ._swapfile import SwapFile, SwapHeader, SwapHeaderError

if TYPE_CHECKING:
    from ._memcg import Group
    from ._zswap import Zswap

#: What a page may be given as.
PageLike = bytes | bytearray | memoryview

__all__ = [
    "MAX_SWAPFILES",
    "Swap",
    "SwapArea",
    "SwapEntry",
    "SwapFile",
    "SwapHeader",
    "SwapHeaderError",
]

#: As the kernel (and zswap): at most 32 swap types at once.
MAX_SWAPFILES = 32
#: Priorities as swapon(8) accepts them.
MIN_PRIORITY = -32768
MAX_PRIORITY = 32767

VMSTAT_NAMES = ("pswpin", "pswpout", "zswpin", "zswpout", "zswpwb")

_FREE = 0
_USED = 1
_BAD = 2
_FREEING = 3  # being freed: zswap's copy is being dropped
_STRIPES = 64  # swap_in serialises per slot through one of these locks
# A slot's checksum in _SwapInfo.crcs: crc32 of the page with this bit set; 0 = the
# page was written without one (checksums off), so a crc32 of 0 is still a checksum.
_CRC_VALID = 1 << 32
# Checksums live in chunks of this many slots, made when a page is first written into
# one with checksums on: a large file costs only for the part of it that is used.
_CRC_SHIFT = 12
_CRC_MASK = (1 << _CRC_SHIFT) - 1
_CRC_CHUNK = bytes(8 << _CRC_SHIFT)

# Which Zswap is driven by which Swap (one each: the types and the writeback handler
# belong to one swap layer). id(zswap) -> the Swap; the Swap keeps the Zswap alive.
_claims: dict[int, weakref.ref[Swap]] = {}
_claims_lock = threading.Lock()


class SwapEntry(NamedTuple):
    """Where a swapped-out page lives: swap type (which file) and slot offset."""

    type: int
    offset: int


class SwapArea(NamedTuple):
    """One active swap file, as a line of ``/proc/swaps`` (sizes in pages)."""

    type: int
    path: str
    size: int
    used: int
    priority: int
    label: str
    uuid: str


class _SwapInfo:
    """One swap file in use (the kernel's ``swap_info_struct``)."""

    __slots__ = (
        "cond",
        "crcs",
        "cursor",
        "dead",
        "fail_reads",
        "fail_writes",
        "fault_lock",
        "file",
        "free",
        "groups",
        "inflight",
        "last_page",
        "lock",
        "map",
        "nr_usable",
        "nr_used",
        "pinned",
        "prio",
        "stripes",
        "type",
    )

    def __init__(self, type: int, prio: int, file: SwapFile) -> None:
        self.type = type
        self.prio = prio
        self.file = file
        self.last_page = file.last_page
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.map = bytearray(self.last_page + 1)
        self.map[0] = _BAD  # the header
        for b in file.header.badpages:
            self.map[b] = _BAD
        self.nr_usable = self.last_page - len(set(file.header.badpages))
        self.nr_used = 0
        self.cursor = 1  # every slot at or above it has never been used
        self.free = array("I")  # freed slots, reused first
        self.inflight = 0
        self.dead = False
        self.fault_lock = threading.Lock()
        self.fail_writes = 0
        self.fail_reads = 0
        self.pinned: dict[int, bytes] = {}
        self.groups: dict[int, Group] = {}  # slot -> the group its page belongs to
        self.stripes = [threading.Lock() for _ in range(_STRIPES)]
        # Per-slot checksums of the pages in the file (8 bytes a slot, in chunks made
        # at the first page written into them with checksums on; none while off).
        self.crcs: dict[int, array[int]] = {}

    def crc_chunk(self, ci: int) -> array[int]:
        with self.lock:  # two writers of one new chunk must not make two
            chunk = self.crcs.get(ci)
            if chunk is None:
                chunk = self.crcs[ci] = array("Q", _CRC_CHUNK)
            return chunk

    # caller holds self.lock
    def alloc(self) -> int:
        if self.nr_used >= self.nr_usable:
            return 0
        if self.free:
            off = self.free.pop()
        else:
            m = self.map
            off = self.cursor
            while m[off] != _FREE:  # only bad pages are skipped here
                off += 1
            self.cursor = off + 1
        self.map[off] = _USED
        self.nr_used += 1
        return off

    # caller holds self.lock
    def release(self, off: int) -> None:
        self.map[off] = _FREE
        self.groups.pop(off, None)
        self.nr_used -= 1
        self.free.append(off)

    def enter(self) -> None:
        """Count one operation in flight; refused once swapoff has begun."""
        with self.lock:
            if self.dead:
                raise ValueError(f"swap type {self.type} is being swapped off")
            self.inflight += 1

    def exit(self) -> None:
        with self.lock:
            self.inflight -= 1
            if self.dead and self.inflight == 0:
                self.cond.notify_all()

    def take_fault(self, write: bool) -> bool:
        with self.fault_lock:
            if write and self.fail_writes > 0:
                self.fail_writes -= 1
                return True
            if not write and self.fail_reads > 0:
                self.fail_reads -= 1
                return True
            return False


class Swap:
    """The swap layer over up to 32 swap files, with ``zswap`` (if given) in front.

    ``zswap`` None: no compressed cache; every page goes to a file. A :class:`Zswap`
    can be driven by one open :class:`Swap` at a time. ``page_size`` defaults to the
    zswap's (4096 without one). Thread-safe. A context manager; :meth:`close` swaps
    every file off (dropping what is still swapped out).

    Who owns what: the Swap owns the Zswap it is given, so ``with Swap(Zswap(...)) as
    swap:`` leaves nothing behind: :meth:`close` closes the Zswap too (its pools go,
    and with them the plugins' "Used by" counts). ``close_zswap=False`` leaves it open,
    for a Zswap that outlives the Swap (a new Swap can then drive it).
    """

    _closed: bool

    def __init__(
        self,
        zswap: Zswap | None = None,
        *,
        page_size: int | None = None,
        close_zswap: bool = True,
    ) -> None:
        if zswap is not None:
            if page_size is not None and page_size != zswap.page_size:
                raise ValueError(
                    f"page_size {page_size} differs from the zswap's {zswap.page_size}"
                )
            page_size = zswap.page_size
        elif page_size is None:
            page_size = 4096
        _swapfile._check_page_size(page_size)
        if zswap is not None:
            with _claims_lock:
                ref = _claims.get(id(zswap))
                owner = ref() if ref is not None else None
                if owner is not None and not owner._closed:
                    raise ValueError("this Zswap is already driven by another open Swap")
                _claims[id(zswap)] = weakref.ref(self)
        self.zswap = zswap
        self.page_size: int = page_size
        self._lock = threading.Lock()  # the type table and the priority list
        self._infos: list[_SwapInfo | None] = [None] * MAX_SWAPFILES  # dead: swapoff runs
        self._types_cond = threading.Condition(self._lock)  # a swapoff finished
        self._avail: list[_SwapInfo] = []  # highest priority first
        self._stats_lock = threading.Lock()
        self._vmstat = dict.fromkeys(VMSTAT_NAMES, 0)
        self._handler_installed = False
        self._close_zswap = bool(close_zswap)
        self._closed = False

    # -- counters ----------------------------------------------------------------------
    def _count(self, name: str, n: int = 1) -> None:
        with self._stats_lock:
            self._vmstat[name] += n

    @property
    def vmstat(self) -> dict[str, int]:
        """A snapshot of the counters: pswpin, pswpout, zswpin, zswpout, zswpwb."""
        with self._stats_lock:
            return dict(self._vmstat)

    @property
    def swaps(self) -> list[SwapArea]:
        """The active swap files, as ``/proc/swaps`` (sizes in usable pages)."""
        with self._lock:
            infos = [si for si in self._infos if si is not None and not si.dead]
        return [
            SwapArea(
                si.type,
                si.file.path,
                si.nr_usable,
                si.nr_used,
                si.prio,
                si.file.header.label,
                str(si.file.header.uuid),
            )
            for si in infos
        ]

    # -- swapon / swapoff --------------------------------------------------------------
    def swapon(
        self,
        path: str | os.PathLike[str],
        nr_pages: int | None,
        priority: int = 0,
        *,
        label: str | bytes | None = None,
        force: bool = False,
    ) -> int:
        """Start using the swap file at ``path``; returns its swap type (0..31).

        ``nr_pages`` is the size in pages, the header page included (as mkswap); the
        file is created (mode 0600) or an existing swap file of that size is reused.
        None: use an existing swap file at its size. A file that is not a valid swap
        area is refused unless ``force=True`` (which reformats it). Symlinks and files
        owned by another user are refused. Higher ``priority`` files are used first.
        """
        if self._closed:
            raise ValueError("this Swap is closed")
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise TypeError(f"priority must be an int, got {type(priority).__name__}")
        if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
            raise ValueError(f"priority must be in {MIN_PRIORITY}..{MAX_PRIORITY}")
        with self._lock:
            self._check_free_type()
        if nr_pages is None:
            if label is not None:
                raise ValueError("a label can only be given when the file may be created")
            file = _swapfile.open_swapfile(path, self.page_size)
        else:
            file = _swapfile.create(path, nr_pages, self.page_size, label=label, force=force)
        try:
            with self._lock:
                if self._closed:
                    raise ValueError("this Swap is closed")
                t = self._check_free_type()
                si = _SwapInfo(t, priority, file)
                if self.zswap is not None:
                    self.zswap.init(t)
                    if not self._handler_installed:
                        self.zswap.set_writeback_handler(self._writeback)
                        self._handler_installed = True
                self._infos[t] = si
                self._make_available(si)
        except BaseException:
            file.close()
            raise
        return t

    def _make_available(self, si: _SwapInfo) -> None:
        """Put a file in the priority list; caller holds self._lock."""
        # after the files of equal priority: they take turns
        pos = next((i for i, o in enumerate(self._avail) if o.prio < si.prio), None)
        self._avail.insert(len(self._avail) if pos is None else pos, si)

    def _check_free_type(self) -> int:
        """The lowest free type; caller holds self._lock. EPERM when none is free."""
        t = next((i for i, o in enumerate(self._infos) if o is None), None)
        if t is None:
            dying = sum(1 for o in self._infos if o is not None and o.dead)
            why = f" ({dying} being swapped off)" if dying else ""
            raise OSError(errno.EPERM, f"already {MAX_SWAPFILES} swap files in use{why}")
        return t

    def swapoff(self, type: int, *, force: bool = False) -> None:
        """Stop using swap type ``type`` and close its file.

        Refused with ``OSError(EBUSY)`` while slots are in use (nothing can take their
        pages back); ``force=True`` drops them, zswap's copies included. The type
        number stays taken until this returns, so a ``swapon`` meanwhile gets another.
        """
        self._check_type(type)
        with self._lock:
            si = self._infos[type]
            if si is None:
                raise ValueError(f"swap type {type} is not active")
            with si.lock:
                if si.dead:
                    raise ValueError(f"swap type {type} is being swapped off")
                if si.nr_used and not force:
                    raise OSError(
                        errno.EBUSY,
                        f"swap type {type} ({si.file.path}) still has {si.nr_used} "
                        "pages swapped out; free them or pass force=True",
                    )
                si.dead = True
            # The info stays in the table, dead, as a tombstone: swapon must not hand
            # this type out again before zswap has dropped the old area, or the late
            # invalidate_area would wipe the new file's pages, and a swap_in of the
            # old file still in flight would read the new file's page.
            self._avail.remove(si)
        try:
            with si.lock:
                while si.inflight:
                    si.cond.wait()
        except BaseException:
            # Interrupted (KeyboardInterrupt) while operations were still in flight:
            # nothing is dropped yet, so the file goes back into use, as the kernel's
            # swapoff does when its try_to_unuse is interrupted. Freeing the type
            # instead would let a swapon hand it out under those operations.
            with self._lock, si.lock:
                si.dead = False
                self._make_available(si)
            raise
        try:
            if self.zswap is not None:
                # (ValueError: the Zswap was closed first, nothing left to drop)
                with contextlib.suppress(ValueError):
                    self.zswap.invalidate_area(type)
            si.pinned.clear()
            si.file.close()
        finally:
            # Nothing is in flight and zswap has forgotten the area (it does that first):
            # whatever went wrong above, the type can be reused safely.
            with self._lock:
                self._infos[type] = None
                self._types_cond.notify_all()

    def close(self) -> None:
        """Swap every file off (dropping what is still swapped out); idempotent.

        Also waits for swapoffs that other threads have begun.
        """
        with self._lock:
            if self._closed and all(si is None for si in self._infos):
                return  # (a close that was interrupted may be called again)
            self._closed = True
            types = [si.type for si in self._infos if si is not None and not si.dead]
        first: BaseException | None = None
        for t in types:
            try:
                self.swapoff(t, force=True)
            except ValueError:
                pass  # swapped off meanwhile by another thread
            except BaseException as exc:  # the other files are still swapped off
                first = first or exc
        with self._lock:
            while any(si is not None and si.dead for si in self._infos):
                self._types_cond.wait()  # swapoffs of other threads
        if self.zswap is not None:
            if self._handler_installed:
                self.zswap.set_writeback_handler(None)
                self._handler_installed = False
            with _claims_lock:
                ref = _claims.get(id(self.zswap))
                if ref is not None and ref() is self:
                    del _claims[id(self.zswap)]
            if self._close_zswap:
                try:
                    self.zswap.close()
                except BaseException as exc:
                    first = first or exc
        if first is not None:
            raise first

    def __enter__(self) -> Swap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Swap files={len(self.swaps)} zswap={self.zswap!r}>"

    # -- fault injection -----------------------------------------------------------------
    def inject_io_errors(self, type: int, *, writes: int = 0, reads: int = 0) -> None:
        """Make the next ``writes`` writes and ``reads`` reads of a file fail with EIO.

        Counts replace what was left. Writeback writes count as writes.
        """
        si = self._active(type)
        if si.dead:
            raise ValueError(f"swap type {type} is being swapped off")
        for n in (writes, reads):
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise ValueError(f"counts must be non-negative ints, got {n!r}")
        with si.fault_lock:
            si.fail_writes = writes
            si.fail_reads = reads

    # -- page I/O --------------------------------------------------------------------------
    def _write(self, si: _SwapInfo, off: int, page: bytes) -> None:
        if si.take_fault(write=True):
            raise OSError(errno.EIO, f"write of slot {off} to {si.file.path} failed (injected)")
        zswap = self.zswap
        # Checksum or not is decided per page, here, from zswap's cached flag: a plain
        # attribute read, never the parameter table and its lock on this path.
        crc = (zlib.crc32(page) | _CRC_VALID) if zswap is not None and zswap.checksums else 0
        si.file.write_page(off, page)
        ci = off >> _CRC_SHIFT
        chunk = si.crcs.get(ci)
        if crc:
            (chunk if chunk is not None else si.crc_chunk(ci))[off & _CRC_MASK] = crc
        elif chunk is not None:
            chunk[off & _CRC_MASK] = 0  # this page has none: forget the slot's last one

    def _read(self, si: _SwapInfo, off: int) -> bytes:
        if si.take_fault(write=False):
            raise OSError(errno.EIO, f"read of slot {off} from {si.file.path} failed (injected)")
        data = si.file.read_page(off)
        chunk = si.crcs.get(off >> _CRC_SHIFT)
        if chunk is not None:
            crc = chunk[off & _CRC_MASK]
            if crc and (zlib.crc32(data) | _CRC_VALID) != crc:
                # Someone else truncated, re-extended or overwrote the file: say so
                # rather than hand out zeros or another page.
                raise OSError(
                    errno.EIO,
                    f"slot {off} of swap file {si.file.path} fails its checksum: the "
                    "file was changed behind the swap layer's back",
                )
        return data

    def _writeback(self, type: int, offset: int, page: bytes) -> None:
        """zswap's writeback handler: put a decompressed page into its own slot.

        Runs under zswap's tree lock, so it takes only the file's short locks.
        """
        si = self._infos[type] if 0 <= type < MAX_SWAPFILES else None
        if si is None:
            raise OSError(errno.ENODEV, f"swap type {type} is not active")
        try:
            si.enter()
        except ValueError:
            raise OSError(errno.ENODEV, f"swap type {type} is being swapped off") from None
        try:
            # (a slot being freed is still reserved: writing it is harmless)
            if not 1 <= offset <= si.last_page or si.map[offset] not in (_USED, _FREEING):
                raise OSError(errno.ESTALE, f"slot {type}:{offset} is not in use")
            self._write(si, offset, page)
        finally:
            si.exit()
        with self._stats_lock:
            self._vmstat["zswpwb"] += 1
            self._vmstat["pswpout"] += 1

    # -- the swap interface ------------------------------------------------------------------
    @staticmethod
    def _check_type(type: object) -> int:
        if isinstance(type, bool) or not isinstance(type, int):
            raise TypeError(f"swap type must be an int, got {type!r}")
        if not 0 <= type < MAX_SWAPFILES:
            raise ValueError(f"swap type must be in 0..{MAX_SWAPFILES - 1}, got {type}")
        return type

    def _active(self, type: object) -> _SwapInfo:
        t = self._check_type(type)
        si = self._infos[t]
        if si is None:
            raise ValueError(f"swap type {t} is not active (never swapped on, or swapped off)")
        # (a dead one is refused by si.enter(): being swapped off)
        return si

    def _entry(self, entry: object) -> tuple[_SwapInfo, int]:
        """The file and slot of an entry; ValueError/TypeError for anything invalid."""
        t: object
        offset: object
        try:
            t, offset = entry  # type: ignore[misc]
        except (TypeError, ValueError):
            raise TypeError(f"not a swap entry: {entry!r}") from None
        si = self._active(t)
        if isinstance(offset, bool) or not isinstance(offset, int):
            raise TypeError(f"offset must be an int, got {offset!r}")
        if not 1 <= offset <= si.last_page:
            raise ValueError(f"offset {offset} is out of range 1..{si.last_page} of type {t}")
        return si, offset

    def _as_page(self, page: object) -> bytes:
        if page.__class__ is not bytes:
            try:
                page = memoryview(page).tobytes()  # type: ignore[arg-type]
            except TypeError:
                raise TypeError(
                    f"page must be a bytes-like object, got {type(page).__name__}"
                ) from None
        assert isinstance(page, bytes)
        if len(page) != self.page_size:
            raise ValueError(f"page must be {self.page_size} bytes, got {len(page)}")
        return page

    def _alloc(self) -> tuple[_SwapInfo, int]:
        """A free slot (its file entered): highest priority first, equal ones in turn."""
        with self._lock:
            if self._closed:
                raise ValueError("this Swap is closed")
            avail = self._avail
            for idx, si in enumerate(avail):
                with si.lock:
                    off = si.alloc()
                    if off:
                        si.inflight += 1
                if not off:
                    continue
                end = idx
                while end + 1 < len(avail) and avail[end + 1].prio == si.prio:
                    end += 1
                if end != idx:  # requeue behind its equals (the kernel's plist_requeue)
                    del avail[idx]
                    avail.insert(end, si)
                return si, off
        raise OSError(errno.ENOSPC, "no free swap slot (no swap file, or all are full)")

    def _release(self, si: _SwapInfo, off: int) -> None:
        with si.lock:
            si.release(off)

    def swap_out(self, page: PageLike, *, group: Group | None = None) -> SwapEntry:
        """Give ``page`` a slot and store it: zswap if it accepts, else the file.

        ``group`` (a :class:`~zswap_core.Group` of this swap's Zswap) is the memory
        cgroup the page belongs to: zswap charges it. When zswap refuses the page and
        the group's ``memory.zswap.writeback`` is 0 (its own or an ancestor's), the
        page is not written to the file either: :class:`WritebackDisabledError`
        says it stays in memory (the kernel keeps the folio active).

        Raises ``OSError`` (``ENOSPC`` no free slot, ``EIO``...) with nothing changed.
        """
        data = self._as_page(page)
        si, off = self._alloc()
        try:
            zswap = self.zswap
            try:
                # (no keyword when there is no group: the common call stays the cheapest)
                stored = zswap is not None and (
                    zswap.store(si.type, off, data)
                    if group is None
                    else zswap.store(si.type, off, data, group=group)
                )
            except BaseException:
                if zswap is not None:
                    with contextlib.suppress(Exception):  # best effort: drop a partial entry
                        zswap.invalidate_page(si.type, off)
                raise
            if stored:
                self._count("zswpout")
            else:
                if group is not None and not self._may_write(group):
                    raise WritebackDisabledError(
                        errno.EAGAIN,
                        f"zswap refused the page and group {group.path!r} has "
                        "memory.zswap.writeback=0: it stays in memory",
                    )
                self._write(si, off, data)
                self._count("pswpout")
            if group is not None:
                with si.lock:
                    si.groups[off] = group
        except BaseException:
            self._release(si, off)
            raise
        finally:
            si.exit()
        return SwapEntry(si.type, off)

    def _may_write(self, group: Group | None) -> bool:
        """May a page of ``group`` that zswap refused go to the swap file? Not when
        the group's writeback is disabled, unless zswap itself is (the kernel's
        ``mem_cgroup_zswap_writeback_enabled``)."""
        zswap = self.zswap
        if group is None or zswap is None or not zswap._enabled:
            return True
        return zswap._memcg.writeback_enabled(zswap._group_id(group))

    def swap_in(self, entry: SwapEntry | tuple[int, int]) -> bytes:
        """The page swapped out to ``entry``: from zswap, else from the file.

        The entry stays valid (free it with :meth:`swap_free`). A read error raises
        ``OSError`` and changes nothing.
        """
        si, off = self._entry(entry)
        si.enter()
        try:
            if si.map[off] != _USED:
                raise ValueError(f"swap entry {si.type}:{off} is not in use (freed?)")
            zswap = self.zswap
            with si.stripes[off % _STRIPES]:
                if zswap is not None:
                    # zswap says whether *this* load dropped its entry: a parameter read
                    # here could disagree with what zswap decided (another thread may
                    # flip exclusive_loads in between), and the page would be lost.
                    data, dirty = zswap.load_dirty(si.type, off)
                    if data is not None:
                        self._count("zswpin")
                        if dirty:
                            self._keep(si, off, data)
                        return data
                pinned = si.pinned.get(off)
                if pinned is not None:
                    return pinned
                data = self._read(si, off)
                self._count("pswpin")
                if zswap is not None:
                    zswap.disk_swapin(si.type)  # the shrinker protects one more entry
                return data
        finally:
            si.exit()

    def reclaim(self, nr_pages: int) -> int:
        """Memory pressure: reclaim wants ``nr_pages`` pages back from the shrinkers.

        With ``zswap.shrinker_enabled=Y`` zswap's shrinker writes up to that many of
        its cold entries back to their slots (see :class:`zswap_core.Shrinker`);
        returns how many it wrote. 0 without zswap or with the shrinker disabled.
        """
        if isinstance(nr_pages, bool) or not isinstance(nr_pages, int) or nr_pages < 0:
            raise ValueError(f"nr_pages must be a non-negative int, got {nr_pages!r}")
        zswap = self.zswap
        if zswap is None or self._closed:
            return 0
        return zswap.shrinker.reclaim(nr_pages)

    def _keep(self, si: _SwapInfo, off: int, data: bytes) -> None:
        """After an exclusive load: store the page again so the entry stays valid.

        ``data`` is the only copy left. It is pinned first, so that nothing raised
        below (not even a KeyboardInterrupt) can lose it, and unpinned once zswap or
        the file holds it again.
        """
        zswap = self.zswap
        assert zswap is not None
        si.pinned[off] = data
        group = si.groups.get(off)
        try:
            stored = (
                zswap.store(si.type, off, data)
                if group is None
                else zswap.store(si.type, off, data, group=group)
            )
        except Exception:  # a refusal, whatever the reason: the file is next
            stored = False
        if stored:
            self._count("zswpout")
        elif not self._may_write(group):
            return  # its group's writeback is disabled: it stays in memory for its slot
        else:
            try:
                self._write(si, off, data)
            except OSError:
                return  # neither would take it: it stays in memory for its slot
            self._count("pswpout")
        si.pinned.pop(off, None)

    def swap_free(self, entry: SwapEntry | tuple[int, int]) -> None:
        """Release ``entry``'s slot and zswap's copy. Freeing twice is a ValueError."""
        si, off = self._entry(entry)
        si.enter()
        try:
            with si.lock:
                if si.map[off] != _USED:
                    raise ValueError(f"swap entry {si.type}:{off} is not in use (double free?)")
                si.map[off] = _FREEING
            try:
                if self.zswap is not None:
                    self.zswap.invalidate_page(si.type, off)
                si.pinned.pop(off, None)
            finally:
                self._release(si, off)
        finally:
            si.exit()
