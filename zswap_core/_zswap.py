"""zswap: a compressed cache in front of a swap device, after mm/zswap.c.

Reads top to bottom as the kernel file does:

1. parameters  - the built-in ``zswap`` module's values and their set callbacks
2. pools       - compressor + zpool pairs; a list whose head is current
3. entries     - per-swap-type trees of packed 64-bit entries (no per-page objects)
4. store/load  - the frontswap interface: init, store, load, invalidate
5. writeback   - the LRU of entries, the pool limit worker, explicit writeback
6. init        - creation with fallbacks, stats, teardown

Per stored page the metadata is two 8-byte array slots: the packed entry and its
LRU stamp (for a same-filled page the stamp slot holds the fill word), plus a third
when checksums are on. See ``_Tree`` for the layout.
"""

from __future__ import annotations

import errno
import itertools
import os
import struct
import threading
import time
import warnings
import weakref
import zlib
from array import array
from collections.abc import Callable, Iterator, Mapping

from . import _backend, _hooks
from ._errors import CompressError, DecompressError, ParamError, ZpoolError, ZswapError
from ._log import log
from ._memcg import (
    MAX_GROUPS,
    ZSWPIN,
    ZSWPWB,
    Group,
    MemcgOps,
    MemcgTable,
    NativeMemcg,
    check_name,
)
from ._page_alloc import PageAllocator
from ._params import ModuleParams, Param, parse_cmdline
from ._records import Record
from ._registry import LoadedModule, Registry, default_registry

TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Any, ClassVar

    from typing_extensions import Buffer

    from ._compressor import Compressor
    from ._registry import Kind
    from ._zpool import Zpool

__all__ = ["MAX_SWAPFILES", "SHRINK_STOP", "PoolInfo", "Shrinker", "WritebackHandler", "Zswap"]

#: As the kernel: at most 32 swap types (swap files) at once.
MAX_SWAPFILES = 32
#: Offsets are 32-bit here (a 16 TiB swap file of 4 KiB pages).
MAX_OFFSET = (1 << 32) - 1

DEFAULT_COMPRESSOR = "lz4"
DEFAULT_ZPOOL = "zsmalloc"

#: Called to write a decompressed page to its slot on the swap device; raises OSError.
WritebackHandler = Callable[[int, int, bytes], None]

# ---------------------------------------------------------------------------------------
# 1. parameters
# ---------------------------------------------------------------------------------------

_PARAMS: tuple[Param, ...] = (
    Param("enabled", "bool", True, "accept new pages (stored pages always load)"),
    Param("compressor", "charp", DEFAULT_COMPRESSOR, "compressor of the current pool"),
    Param("zpool", "charp", DEFAULT_ZPOOL, "allocator of the current pool"),
    Param("max_pool_percent", "uint", 20, "pool limit, percent of RAM", maximum=100),
    Param(
        "accept_threshold_percent",
        "uint",
        90,
        "after the limit is hit, accept again below this percent of it",
        maximum=100,
    ),
    Param("same_filled_pages_enabled", "bool", True, "store same-filled pages as one word"),
    Param("non_same_filled_pages_enabled", "bool", True, "store pages that need compression"),
    Param("exclusive_loads", "bool", False, "drop an entry once it has been loaded"),
    Param("checksums_enabled", "bool", False, "crc32 every page; a mismatch is decompress_fail"),
    Param(
        "shrinker_enabled",
        "bool",
        False,
        "write cold entries back under memory pressure, before the pool limit (6.8+)",
    ),
    Param(
        "shared_zpool",
        "bool",
        False,
        "a compressor change keeps the current zpool; entries record their compressor"
        " (Seth Jennings's 2015 review; in no kernel)",
    ),
)

#: Names of the debugfs counters, the observable contract (``z.stats``).
STAT_NAMES = (
    "pool_limit_hit",
    "reject_reclaim_fail",
    "reject_alloc_fail",
    "reject_kmemcache_fail",
    "reject_compress_fail",
    "reject_compress_poor",
    "decompress_fail",
    "written_back_pages",
    "duplicate_entry",
    "pool_total_size",
    "stored_pages",
    "same_filled_pages",
    "pages_compacted",
    "shrinker_written_back_pages",
)

# ---------------------------------------------------------------------------------------
# 2. pools
# ---------------------------------------------------------------------------------------

_pool_ids = itertools.count()  # "zswap%x" names, unique in the process as the kernel's
_share_lock = threading.Lock()


class _ZpoolShare:
    """A zpool instance and how many pools store into it.

    With ``shared_zpool=N`` each pool has its own (``users`` stays 1). With Y a
    compressor change makes a new pool (a new pool id: the id in every entry names its
    compressor, so an entry needs no new bits) that shares the current pool's zpool; the
    zpool is destroyed with the last pool that uses it. ``name`` is the zpool's own, the
    name of the pool that created it.
    """

    __slots__ = ("name", "users", "zpool")

    def __init__(self, name: str, zpool: Zpool) -> None:
        self.name = name
        self.zpool = zpool
        self.users = 1


class _Pool:
    """One compressor + one zpool instance. ``refs`` = entries + 1 while current.

    The zpool instance may be shared with other pools (``share``, ``shared_zpool=Y``):
    a pool is then one compressor slot of that zpool.
    """

    __slots__ = (
        "_compressor",
        "comp_mod",
        "compressor_name",
        "core",
        "dead",
        "id",
        "lock",
        "name",
        "refs",
        "share",
        "zpool",
        "zpool_mod",
        "zpool_type",
    )

    def __init__(
        self,
        pid: int,
        comp_mod: LoadedModule,
        zpool_mod: LoadedModule,
        pages: PageAllocator,
        share: _ZpoolShare | None = None,
    ) -> None:
        self.id = pid
        self.name = f"zswap{next(_pool_ids):x}"
        self.comp_mod = comp_mod
        self.zpool_mod = zpool_mod
        self.compressor_name = comp_mod.name
        self.zpool_type = zpool_mod.name
        self.core: Any = None  # the native core, which then keeps the references
        self._compressor: Compressor = comp_mod.driver(comp_mod.params)
        if share is not None:
            with _share_lock:  # its last pool may be going (close()): then a zpool of our own
                if share.users > 0:
                    share.users += 1
                else:
                    share = None
        if share is None:
            try:
                share = _ZpoolShare(self.name, zpool_mod.driver(self.name, pages, zpool_mod.params))
            except BaseException:
                self._compressor.close()
                raise
        self.share = share
        self.zpool: Zpool = share.zpool
        self.refs = 1  # the "current" reference (Python backend; else in core)
        self.dead = False
        self.lock = threading.Lock()

    @property
    def compressor(self) -> Compressor:
        return self._compressor

    @compressor.setter
    def compressor(self, codec: Compressor) -> None:
        # The native core keeps the codec's two methods: it must hear of a new codec
        # (tests swap one in to gate or corrupt a pool's pages).
        if self.core is not None:
            self.core.pool_set_codec(self.id, codec)
        self._compressor = codec

    def release(self) -> None:
        """Destroy the allocator and close the codec; never raises.

        Both are called whatever the other does: a plugin's failing cleanup is its own
        problem, and must neither stop the other's nor reach the caller (a parameter
        write that took effect, a load that delivered its page, a finalizer). A shared
        zpool is destroyed only by the last pool that uses it.
        """
        with _share_lock:
            self.share.users -= 1
            last = self.share.users == 0
        cleanups: list[tuple[str, Callable[[], object]]] = []
        if last:
            cleanups.append((f"zpool {self.zpool_type!r} destroy()", self.zpool.destroy))
        cleanups.append((f"compressor {self.compressor_name!r} close()", self.compressor.close))
        for what, cleanup in cleanups:
            try:
                cleanup()
            except Exception as exc:
                log.warning(
                    "zswap: %s of %s failed: %s: %s", what, self.name, type(exc).__name__, exc
                )

    def tryget(self) -> bool:
        if self.core is not None:
            return bool(self.core.pool_tryget(self.id))
        with self.lock:
            if self.refs <= 0:
                return False
            self.refs += 1
            return True

    def put(self) -> bool:
        """Drop a reference; True when it was the last one."""
        if self.core is not None:
            return bool(self.core.pool_put(self.id))
        with self.lock:
            self.refs -= 1
            return self.refs == 0

    def nr_refs(self) -> int:
        """Entries, plus one while the pool is current."""
        return int(self.core.pool_refs(self.id)) if self.core is not None else self.refs


class PoolInfo(Record):
    """A snapshot of one pool for ``z.pools``: one compressor and one zpool instance.

    ``shared`` names the zpool instance (the pool that created it): a pool's own name,
    or, with ``shared_zpool=Y``, an older pool's whose zpool it shares. Pools with one
    ``shared`` value are the compressors in use in one zpool. ``total_size`` is the
    zpool's; pools sharing it report it once, on the first of them listed, so the sum
    over ``z.pools`` stays ``pool_total_size``.
    """

    __slots__ = ("compressor", "current", "name", "nr_entries", "shared", "total_size", "zpool")
    _fields = ("name", "compressor", "zpool", "nr_entries", "total_size", "current", "shared")
    _defaults: ClassVar[dict[str, Any]] = {"shared": ""}
    _frozen = True
    name: str
    compressor: str
    zpool: str
    nr_entries: int
    total_size: int
    current: bool
    shared: str


# ---------------------------------------------------------------------------------------
# 3. entries
# ---------------------------------------------------------------------------------------
#
# A packed entry is one unsigned 64-bit word:
#   bit 0       present
#   bit 1       same-filled (the fill word is in the stamp slot; no pool memory)
#   bits 2-9    pool id (1..255)
#   bits 10-26  compressed length
#   bits 27-63  zpool handle (allocators hand out handles below 2**37)

_PRESENT = 1
_SAME = 2
_POOL_SHIFT = 2
_LEN_SHIFT = 10
_HANDLE_SHIFT = 27
_LEN_MASK = (1 << 17) - 1
MAX_HANDLE = (1 << 37) - 1
# 512 slots a chunk: 8 KiB of arrays for a page stored at a lonely offset, and a
# chunk is freed with its last entry, so metadata follows what is stored.
_CHUNK_SHIFT = 9
_CHUNK = 1 << _CHUNK_SHIFT  # slots per chunk; chunks are allocated on first use
_CHUNK_MASK = _CHUNK - 1
_CRC_VALID = 1 << 32

# An entry chunk has one slot more than it has entries: the count of present entries,
# so that the last one to go frees the chunk without a scan or another dict.
_COUNT = _CHUNK
_ZERO_CHUNK = array("Q", bytes(8 * (_CHUNK + 1)))
_ZERO_STAMPS = array("Q", bytes(8 * _CHUNK))
_ZERO_GIDS = array("H", bytes(2 * _CHUNK))


class _Lru:
    """One pool's entries of one tree in LRU order: (offset, stamp) records, oldest first.

    A store appends a record. A load only gives the entry a new stamp; when writeback
    meets a record whose entry has been loaded since, it moves it to the young end
    instead of writing it back: the kernel's second-chance LRU (6.8+, its
    ``referenced`` bit), without a list operation on the load path. Records of entries
    that are gone are dropped when met. All of this happens under the tree lock.
    """

    __slots__ = ("head", "offsets", "stamps")

    def __init__(self) -> None:
        self.offsets: array[int] = array("Q")
        self.stamps: array[int] = array("Q")
        self.head = 0


class _Tree:
    """Entries of one swap type: chunked arrays indexed by offset, with one lock.

    Like the kernel's per-type tree (and its later split into 64 MiB pieces), but a
    chunk is an ``array('Q')`` so a stored page costs array slots, not objects.
    """

    __slots__ = (
        "chunks",
        "crcs",
        "dead",
        "lock",
        "lru",
        "memcg",
        "memcgs",
        "nr_protected",
        "nr_same",
        "nr_stored",
        "stamps",
        "type",
    )

    def __init__(self, type: int = 0, memcg: MemcgTable | None = None) -> None:
        self.type = type
        # LRU key (pool id | group id << 8) -> those entries of this tree, oldest first:
        # a group's limit writes back its own entries, and a group whose writeback is
        # disabled is skipped without a scan.
        self.lru: dict[int, _Lru] = {}
        self.memcg = memcg if memcg is not None else MemcgTable()
        # Protects everything below and the entries' contents: the trees are the only
        # place an entry lives, so whoever takes one out of here owns it.
        self.lock = threading.Lock()
        self.chunks: dict[int, array[int]] = {}
        self.stamps: dict[int, array[int]] = {}
        self.crcs: dict[int, array[int]] = {}
        # Chunk index -> the group id of each slot ('H'), made when the first entry of a
        # group lands in the chunk: entries without a group cost nothing more.
        self.memcgs: dict[int, array[int]] = {}
        self.nr_stored = 0
        self.nr_same = 0
        # The shrinker's protected size (the kernel's per-lruvec nr_zswap_protected):
        # entries of this tree's LRU the shrinker leaves alone. See Shrinker.
        self.nr_protected = 0
        # Set by invalidate_area under the lock: a store that picked this tree before
        # the area went must not land in it (nothing would ever free its page).
        self.dead = False

    def slot(self, ci: int) -> tuple[array[int], array[int]]:
        chunk = self.chunks.get(ci)
        if chunk is None:
            chunk = self.chunks[ci] = array("Q", _ZERO_CHUNK)
            self.stamps[ci] = array("Q", _ZERO_STAMPS)
        return chunk, self.stamps[ci]

    def set_crc(self, ci: int, i: int, crc: int) -> None:
        crcs = self.crcs.get(ci)
        if crcs is None:
            crcs = self.crcs[ci] = array("Q", _ZERO_STAMPS)
        crcs[i] = crc

    def gid(self, ci: int, i: int) -> int:
        """The group id of slot (ci, i), 0 for none; lock held."""
        m = self.memcgs.get(ci) if self.memcgs else None
        return m[i] if m is not None else 0

    def set_gid(self, ci: int, i: int, gid: int) -> None:
        m = self.memcgs.get(ci)
        if m is None:
            if not gid:
                return
            m = self.memcgs[ci] = array("H", _ZERO_GIDS)
        m[i] = gid

    def uncharge(self, ci: int, i: int, packed: int) -> None:
        """The entry in slot (ci, i) leaves: its group is charged no more; lock held."""
        m = self.memcgs.get(ci) if self.memcgs else None
        if m is not None and m[i]:
            self.memcg.uncharge(m[i], (packed >> _LEN_SHIFT) & _LEN_MASK, bool(packed & _SAME))
            m[i] = 0

    def clear(self, ci: int, i: int, packed: int) -> None:
        """Take the present entry ``packed`` out of slot (ci, i); lock held.

        The chunk goes with its last entry; the LRU records with the tree's last entry
        (they are only hints, and an empty tree has nothing to write back).
        """
        chunk = self.chunks[ci]
        chunk[i] = 0
        if self.memcgs:
            self.uncharge(ci, i, packed)
        n = chunk[_COUNT] - 1
        if n:
            chunk[_COUNT] = n
            self.stamps[ci][i] = 0
        else:
            del self.chunks[ci]
            del self.stamps[ci]
            self.crcs.pop(ci, None)
            self.memcgs.pop(ci, None)
        self.nr_stored -= 1
        if packed & _SAME:
            self.nr_same -= 1
        if not self.nr_stored:
            self.lru.clear()

    def lru_push(self, key: int, offset: int, stamp: int) -> None:
        """Record that (offset, stamp) of LRU ``key`` is now the youngest; lock held."""
        lru = self.lru.get(key)
        if lru is None:
            lru = self.lru[key] = _Lru()
        lru.offsets.append(offset)
        lru.stamps.append(stamp)
        if len(lru.offsets) - lru.head > 4 * self.nr_stored + 4096:
            self.lru_trim(key, lru)

    def lru_requeue(self, offset: int, pid: int) -> None:
        """Queue the entry at ``offset``, if it is still a pool-``pid`` entry, at the
        young end of its LRU with the stamp it has now; lock held."""
        ci = offset >> _CHUNK_SHIFT
        chunk = self.chunks.get(ci)
        if chunk is None:
            return
        i = offset & _CHUNK_MASK
        e = chunk[i]
        if e and not e & _SAME and ((e >> _POOL_SHIFT) & 0xFF) == pid:
            self.lru_push(pid | self.gid(ci, i) << 8, offset, self.stamps[ci][i])

    def lru_trim(self, key: int, lru: _Lru) -> None:
        """Drop records of entries that are gone and repeats (lock held)."""
        offs: array[int] = array("Q")
        stamps: array[int] = array("Q")
        seen: set[int] = set()
        for k in range(lru.head, len(lru.offsets)):
            off = lru.offsets[k]
            cur = self.pooled_stamp(off, key)
            if cur is not None and off not in seen:
                seen.add(off)
                offs.append(off)
                stamps.append(cur)
        lru.offsets, lru.stamps, lru.head = offs, stamps, 0

    def pooled_stamp(self, offset: int, key: int) -> int | None:
        """The stamp of the entry at ``offset`` if it belongs to LRU ``key`` (its pool
        and its group), else None."""
        ci = offset >> _CHUNK_SHIFT
        chunk = self.chunks.get(ci)
        if chunk is None:
            return None
        i = offset & _CHUNK_MASK
        e = chunk[i]
        if not e or e & _SAME or ((e >> _POOL_SHIFT) & 0xFF) != key & 0xFF:
            return None
        if (key >> 8) != (self.gid(ci, i) if self.memcgs else 0):
            return None
        return self.stamps[ci][i]

    def lru_peek(self, key: int) -> tuple[int, int] | None:
        """(stamp, offset) of the oldest entry of LRU ``key`` not loaded since it was
        queued; entries loaded since get their second chance. Lock held."""
        lru = self.lru.get(key)
        if lru is None:
            return None
        offs = lru.offsets
        stamps = lru.stamps
        head = lru.head
        while head < len(offs):
            off = offs[head]
            cur = self.pooled_stamp(off, key)
            if cur is not None:
                if cur == stamps[head]:
                    lru.head = head
                    return cur, off
                offs.append(off)  # loaded since queued: to the young end
                stamps.append(cur)
            head += 1
        del self.lru[key]  # all consumed: start afresh rather than keep dead records
        return None

    def entries(self) -> Iterator[tuple[int, int, int]]:
        """(offset, packed entry, stamp) of every present entry; caller holds the lock."""
        for ci, chunk in self.chunks.items():
            stamps = self.stamps[ci]
            base = ci << _CHUNK_SHIFT
            for i in range(_CHUNK):
                e = chunk[i]
                if e:
                    yield base + i, e, stamps[i]


class _Stats:
    """Counters outside the trees; exact (updated under a lock)."""

    __slots__ = (
        "decompress_fail",
        "duplicate_entry",
        "lock",
        "pages_compacted",
        "pool_limit_hit",
        "reject_alloc_fail",
        "reject_compress_fail",
        "reject_compress_poor",
        "reject_kmemcache_fail",
        "reject_reclaim_fail",
        "shrinker_written_back_pages",
        "written_back_pages",
    )

    def __init__(self) -> None:
        self.lock = threading.Lock()
        for name in self.__slots__:
            if name != "lock":
                setattr(self, name, 0)

    def inc(self, name: str, n: int = 1) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + n)


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


class Zswap:
    """One instance of the built-in ``zswap`` module, with its own parameters and pools.

    Boot parameters are keyword arguments (typed or in sysfs string form), or come
    from :meth:`from_cmdline`. ``ram_bytes`` (what ``max_pool_percent`` applies to;
    default: this machine's memory) and ``page_size`` are fixed at creation.

    >>> z = Zswap(compressor="lz4", zpool="zbud")          # doctest: +SKIP
    >>> z.init(0); z.store(0, 7, page); z.load(0, 7) == page
    """

    def __init__(
        self,
        *,
        ram_bytes: int | None = None,
        page_size: int = 4096,
        registry: Registry | None = None,
        backend: str | None = None,
        shrink_worker: bool = True,
        **boot_params: object,
    ) -> None:
        if not isinstance(shrink_worker, bool):
            raise ValueError(f"shrink_worker must be a bool, got {shrink_worker!r}")
        if not isinstance(page_size, int) or page_size not in (4096, 8192, 16384, 32768, 65536):
            raise ValueError(f"page_size must be 4096..65536 and a power of two, got {page_size}")
        if ram_bytes is None:
            ram_bytes = _physical_memory()
        if isinstance(ram_bytes, bool) or not isinstance(ram_bytes, int) or ram_bytes <= 0:
            raise ValueError(f"ram_bytes must be a positive int, got {ram_bytes!r}")
        self.page_size = page_size
        self.ram_bytes = ram_bytes
        self.totalram_pages = ram_bytes // page_size
        self.registry = registry if registry is not None else default_registry()
        #: ``"native"`` (the C extension runs the per-page paths) or ``"python"``.
        self.backend = _backend.choose(backend)
        self.pages = PageAllocator(page_size, backend=self.backend)
        self._zero_page = bytes(page_size)
        self._words = page_size // 8

        self._pools_lock = threading.Lock()
        self._pools: list[_Pool] = []  # head = current
        self._by_id: list[_Pool | None] = [None] * 256
        self._current: _Pool | None = None
        self._trees: list[_Tree | None] = [None] * MAX_SWAPFILES
        self._stats = _Stats()
        # LRU stamps, even; next() is atomic under the GIL. A store's stamp has bit 0
        # set: the entry's ``referenced`` bit, cleared once by the shrinker (Shrinker).
        self._clock = itertools.count(2, 2)
        self._full = False
        self._writeback_handler: WritebackHandler | None = None
        self._worker: threading.Thread | None = None
        self._worker_wake = threading.Event()
        # shrink_worker=False: no thread; a full pool is remembered and shrink() does the
        # worker's work where the caller chooses, so the order of events is its own.
        self._worker_enabled = shrink_worker
        self._shrink_wanted = False
        self._closed = False
        self._core: Any = None
        # Native backend: held while writeback has an entry pinned (see
        # _writeback_native); whoever must wait for a pin waits on it.
        self._wb_lock = threading.Lock()
        # Groups (memory.zswap.*). The Python backend's trees charge _memcg_table; the
        # native core keeps its own table, and _memcg asks whichever is in use.
        self._memcg_table = MemcgTable()
        self._memcg: MemcgOps = self._memcg_table
        self._groups_lock = threading.Lock()
        self._groups: dict[str, Group] = {}  # path -> group, in creation order
        self._group_limits: list[tuple[int, bool]] = [(-1, True)]  # gid -> (max, writeback)
        self._group_order: list[int] = [0]  # the hierarchy walked from the root
        self._group_next = 0  # whose turn it is in writeback (see _pop_oldest)
        if self.backend == "native":
            self._bind_native()
            self._memcg = NativeMemcg(self._core)
        #: The 6.8+ proactive shrinker (``shrinker_enabled``); see :class:`Shrinker`.
        self.shrinker = Shrinker(self)

        # Every write goes through _set_param (a closed instance refuses them all); the
        # parameters that need more than a commit have their own callback.
        self._set_callbacks: dict[str, Any] = {
            "enabled": self._set_enabled,
            "compressor": self._set_pool_param,
            "zpool": self._set_pool_param,
        }
        decls = [p.replace(on_set=self._set_param) for p in _PARAMS]
        self.params = ModuleParams("zswap", decls, builtin=True)
        self.params.add_listener(self._param_changed)
        self.params.prepare = self._prepare_param
        # Who owns what: the caller owns a Zswap and should close() it (or use it as a
        # context manager; a Swap it is given closes it too, unless told not to). One
        # that is dropped without close() still gives its plugins back when collected.
        self._finalizer = weakref.finalize(self, _release_pools, self._pools)
        self._init(boot_params)

    def _bind_native(self) -> None:
        """Hand the per-page paths to the C core (``_native/zswap.c``).

        Its methods become this instance's own attributes, so a call goes straight
        into C with no Python frame between; the methods below stay the reference
        implementation, and what the core cannot do alone it asks of the
        ``_native_*`` methods (slow paths, always with no C lock held).
        """
        core = _backend.native_module()
        assert core is not None
        self._core = core.Core(self, self.page_size, self.pages._acct, ZpoolError)
        self.__dict__.update(
            store=self._core.store,
            load=self._core.load,
            load_dirty=self._core.load_dirty,
            invalidate_page=self._core.invalidate_page,
        )

    @classmethod
    def from_cmdline(cls, cmdline: str, **kwargs: Any) -> Zswap:
        """Create from a boot string: ``"zswap.enabled=Y zswap.compressor=zstd zstd.level=5"``.

        ``zswap.*`` values configure this instance; values for other modules are kept
        by the registry (applied at once to loaded plugins, at load to the others).
        Whatever the order of the words, they are in force before any plugin named on
        the string is loaded or instantiated. All or nothing: if the call raises, no
        option of the string is left in the registry or on a plugin.
        """
        parsed = parse_cmdline(cmdline)
        ours: dict[str, Any] = dict(parsed.pop("zswap", {}))
        reg = kwargs.get("registry") or default_registry()
        # Validate our own values before changing anything...
        probe = ModuleParams("zswap", _PARAMS, builtin=True)
        for name, value in ours.items():
            probe.declaration(name).parse(value)
        # ...then hand the plugins' options over (checked first, all or nothing) before
        # the constructor loads a plugin or makes the first pool, so an allocator or
        # compressor that reads a parameter only when an instance is made sees it.
        undo = reg.apply_boot_options(parsed)
        try:
            return cls(**ours, **kwargs)
        except BaseException:
            undo()  # a failed construction leaves the options as they were
            raise

    # -- parameter callbacks (run under the built-in parameter lock) -----------------------
    def _set_param(self, params: ModuleParams, name: str, value: Any) -> None:
        if self._closed:
            raise ParamError(errno.ENODEV, f"can't set zswap.{name}: this Zswap has been closed")
        callback = self._set_callbacks.get(name)
        if callback is None:
            params.commit(name, value)
        else:
            callback(params, name, value)

    def _prepare_param(self, name: str, value: Any) -> None:
        """Before the parameter lock: load the plugin a compressor/zpool write names.

        Loading may wait up to the registry's deadline; done here, no other parameter
        read or write (of any instance: the built-in lock is shared) waits with it.
        Under the lock, the set callback then finds it loaded, or its recorded error.
        """
        if name in ("compressor", "zpool") and value and not self._closed:
            self.registry.request(name, value)  # type: ignore[arg-type]

    def _set_enabled(self, params: ModuleParams, name: str, value: bool) -> None:
        if value and self._current is None:
            raise ParamError(errno.ENODEV, "can't enable, no pool configured")
        params.commit(name, value)

    def _set_pool_param(self, params: ModuleParams, name: str, value: str) -> None:
        kind: Kind = "compressor" if name == "compressor" else "zpool"
        if value == params[name] and self._current is not None:
            return  # unchanged: a no-op, as the kernel
        mod = self.registry.request(kind, value)  # may load the plugin (modprobe)
        if mod is None:
            err = self.registry.error(kind, value)
            why = f": {err}" if err is not None else ""
            raise ParamError(errno.ENOENT, f"{kind} {value!r} not available{why}")
        comp = value if kind == "compressor" else params["compressor"]
        zp = value if kind == "zpool" else params["zpool"]
        # shared_zpool=Y: a new compressor goes into the current pool's zpool.
        share = None
        if kind == "compressor" and params["shared_zpool"]:
            with self._pools_lock:
                if self._current is not None and not self._current.dead:
                    share = self._current.share
                    zp = self._current.zpool_type
        pool = self._pool_find_get(comp, zp, share)
        if pool is None:
            other_kind = "zpool" if kind == "compressor" else "compressor"
            other = self.registry.request(other_kind, zp if kind == "compressor" else comp)  # type: ignore[arg-type]
            if other is None:
                if self._current is None:
                    # No pool yet: keep the value so the other one can be fixed next
                    # (the kernel's "zswap_has_pool == false" case).
                    params.commit(name, value)
                    return
                raise ParamError(errno.EINVAL, f"can't create a pool for {comp}/{zp}")
            try:
                pool = self._pool_create(comp, zp, share)
            except Exception as exc:
                raise ParamError(
                    errno.EINVAL, f"can't create a pool for {comp}/{zp}: {exc}"
                ) from exc
        self._pool_make_current(pool)
        params.commit(name, value)

    def _param_changed(self, module: str, name: str, old: Any, new: Any) -> None:
        self._refresh_cached_params()
        if name in ("max_pool_percent", "accept_threshold_percent"):
            self._full = False  # re-evaluated by the next store
            if self._core is not None:
                self._core.reset_full()
        if _hooks.STATE.active:
            _hooks.call("zswap_param_changed", module=module, name=name, old=old, new=new)

    def _refresh_cached_params(self) -> None:
        # The hot path reads plain attributes, not the locked parameter table.
        v = self.params._values
        self._enabled = bool(v["enabled"])
        self._same_enabled = bool(v["same_filled_pages_enabled"])
        self._non_same_enabled = bool(v["non_same_filled_pages_enabled"])
        self._exclusive = bool(v["exclusive_loads"])
        self._checksums = bool(v["checksums_enabled"])
        self._shrinker_enabled = bool(v["shrinker_enabled"])
        self._max_pages = self.totalram_pages * int(v["max_pool_percent"]) // 100
        self._accept_pages = self._max_pages * int(v["accept_threshold_percent"]) // 100
        if self._core is not None:
            self._core.set_params(
                self._enabled,
                self._same_enabled,
                self._non_same_enabled,
                self._exclusive,
                self._checksums,
                self._max_pages,
                self._accept_pages,
            )

    # ---------------------------------------------------------------------------------
    # 2b. groups (memory.zswap.max / current / writeback, memory.stat)
    # ---------------------------------------------------------------------------------
    def group(self, name: str, parent: Group | str | None = None) -> Group:
        """Make a group: a memory cgroup as zswap sees it, under ``parent`` (a group of
        this instance or its path; None: the root). It starts as the kernel's do:
        ``memory.zswap.max`` "max" and ``memory.zswap.writeback`` 1. A name already
        used under the same parent is a ParamError (EEXIST).
        """
        check_name(name)
        with self._groups_lock:
            if isinstance(parent, str):
                found = self._groups.get(parent)
                if found is None:
                    raise ParamError(errno.ENOENT, f"no group {parent!r}")
                parent = found
            elif parent is not None:
                self._group_id(parent)
            path = name if parent is None else f"{parent.path}/{name}"
            if path in self._groups:
                raise ParamError(errno.EEXIST, f"group {path!r} exists")
            gid = len(self._group_limits)
            if gid > MAX_GROUPS:
                raise ParamError(errno.ENOSPC, f"too many groups (at most {MAX_GROUPS})")
            self._memcg.add(gid, 0 if parent is None else parent._gid)
            group = Group(self, gid, name, parent)
            self._groups[path] = group
            self._group_limits.append((-1, True))
            self._group_order = _preorder(self._groups.values())
        return group

    @property
    def groups(self) -> dict[str, Group]:
        """Every group by its path (``"parent/child"``), in creation order."""
        with self._groups_lock:
            return dict(self._groups)

    def _group_id(self, group: object) -> int:
        if group.__class__ is not Group:
            raise TypeError(f"group must be a Group (from Zswap.group), got {type(group).__name__}")
        if group._zswap() is not self:
            raise ValueError(f"{group!r} belongs to another Zswap")
        return group._gid

    def _group_set(
        self, gid: int, *, max_bytes: int | None = None, writeback: bool | None = None
    ) -> None:
        with self._groups_lock:
            old_max, old_wb = self._group_limits[gid]
            new = (
                old_max if max_bytes is None else max_bytes,
                old_wb if writeback is None else writeback,
            )
            self._memcg.set(gid, *new)
            self._group_limits[gid] = new

    def _memcg_reclaim(self, gid: int) -> bool:
        """A store of group ``gid`` found it (or an ancestor) at its limit: write back
        the group's own oldest entries until it may store again (the kernel's
        ``shrink_memcg``; never another group's). True when it may."""
        memcg = self._memcg
        if self._writeback_handler is None or not memcg.writeback_enabled(gid):
            return False
        failures = 0
        while not memcg.may_zswap(gid):
            if self._closed:
                return False
            victim = self._pop_oldest_of(gid)
            if victim is None:
                return False
            result = self._writeback_entry(*victim)
            if result:
                failures = 0
            elif result is not None:
                failures += 1
                if failures >= 16:
                    return False
        return True

    def _no_writeback_entries(self) -> int:
        """Entries (using pool memory) of groups whose writeback is disabled."""
        if len(self._group_order) == 1:
            return 0
        memcg = self._memcg
        return sum(
            memcg.stat(gid)[5]
            for gid in self._group_order
            if gid and not memcg.writeback_enabled(gid)
        )

    # ---------------------------------------------------------------------------------
    # 2. pools
    # ---------------------------------------------------------------------------------
    def _pool_create(self, compressor: str, zpool: str, share: _ZpoolShare | None = None) -> _Pool:
        """A new pool, current reference held; ``share``: the zpool to store into."""
        comp_mod = self.registry.require("compressor", compressor)
        zpool_mod = self.registry.require("zpool", zpool)
        with self._pools_lock:
            try:
                pid = self._by_id.index(None, 1)
            except ValueError:
                raise ZswapError("too many live pools (255)") from None
            pool = _Pool(pid, comp_mod, zpool_mod, self.pages, share)
            if self._core is not None:
                try:
                    self._core.pool_add(pid, pool, pool.compressor, pool.zpool)
                except BaseException:
                    pool.release()
                    raise
                pool.core = self._core
            self._by_id[pid] = pool
            comp_mod.use_count += 1
            zpool_mod.use_count += 1
        if pool.share.name == pool.name:
            log.info("zswap: %s created using %s/%s", pool.name, compressor, zpool)
        else:
            log.info(
                "zswap: %s created using %s in %s's %s",
                pool.name,
                compressor,
                pool.share.name,
                zpool,
            )
        if _hooks.STATE.active:
            info = self._info(pool)
            _hooks.call("zswap_compressor_created", zswap=self, pool=info)
            _hooks.call("zswap_pool_created", zswap=self, pool=info)
        return pool

    def _pool_find_get(
        self, compressor: str, zpool: str, share: _ZpoolShare | None = None
    ) -> _Pool | None:
        """A live pool of this combination, with a reference taken; removed from the list.

        With ``share``, only a pool storing into that zpool instance.
        """
        with self._pools_lock:
            for pool in self._pools:
                if (
                    pool.compressor_name == compressor
                    and pool.zpool_type == zpool
                    and (share is None or pool.share is share)
                    and pool is not self._current
                    and pool.tryget()
                ):
                    self._pools.remove(pool)
                    return pool
        return None

    def _pool_make_current(self, pool: _Pool) -> None:
        """Put ``pool`` (one reference held by the caller) at the head of the list."""
        with self._pools_lock:
            closed = self._closed
            old = None
            if not closed:
                old = self._current
                if pool in self._pools:
                    self._pools.remove(pool)
                self._pools.insert(0, pool)
                self._current = pool
                if self._core is not None:
                    self._core.set_current(pool.id)
        if closed:  # close() won the race with this parameter write: nothing changes
            self._pool_put(pool)
            raise ParamError(errno.ENODEV, "this Zswap has been closed")
        if old is not None and old is not pool:
            self._pool_put(old)  # drop its "current" reference; it lives while it has entries

    def _pool_put(self, pool: _Pool) -> None:
        if pool.put():
            self._pool_destroy(pool)

    def _pool_destroy(self, pool: _Pool) -> None:
        with self._pools_lock:
            if pool.dead:
                return
            pool.dead = True
            if pool in self._pools:
                self._pools.remove(pool)
            self._by_id[pool.id] = None
            if self._core is not None:
                self._core.pool_remove(pool.id)
            pool.comp_mod.use_count -= 1
            pool.zpool_mod.use_count -= 1
        info = self._info(pool)
        pool.release()
        log.info("zswap: %s destroyed", pool.name)
        if _hooks.STATE.active:
            _hooks.call("zswap_pool_destroyed", zswap=self, pool=info)
            _hooks.call("zswap_compressor_destroyed", zswap=self, pool=info)

    def _info(self, pool: _Pool, with_size: bool = True) -> PoolInfo:
        cur = pool is self._current
        size = 0
        if not pool.dead and with_size:
            try:
                size = pool.zpool.total_size()
            except Exception as exc:  # a report must not fail (nor leak the pool it names)
                log.warning("zswap: zpool %r total_size() failed: %s", pool.zpool_type, exc)
        return PoolInfo(
            pool.name,
            pool.compressor_name,
            pool.zpool_type,
            max(0, pool.nr_refs() - (1 if cur else 0)),
            size,
            cur,
            pool.share.name,
        )

    @property
    def pools(self) -> list[PoolInfo]:
        """Every live pool, current first: name, compressor, zpool, nr_entries, total_size,
        current, shared (see :class:`PoolInfo`: pools sharing a zpool report its size once).
        """
        with self._pools_lock:
            live = [p for p in self._pools if not p.dead]
        seen: set[int] = set()
        out = []
        for p in live:
            first = id(p.share) not in seen
            seen.add(id(p.share))
            out.append(self._info(p, with_size=first))
        return out

    # ---------------------------------------------------------------------------------
    # 4. store / load / invalidate (the frontswap interface)
    # ---------------------------------------------------------------------------------
    def _tree(self, type: int) -> _Tree:
        if type.__class__ is not int or not 0 <= type < MAX_SWAPFILES:
            raise ValueError(f"swap type must be an int in 0..{MAX_SWAPFILES - 1}, got {type!r}")
        tree = self._trees[type]
        if tree is None:
            raise ValueError(f"swap type {type} is not initialised (call init({type}))")
        return tree

    @staticmethod
    def _check_offset(offset: int) -> None:
        if isinstance(offset, bool) or not isinstance(offset, int):
            raise TypeError(f"offset must be an int, got {type(offset).__name__}")
        if not 0 <= offset <= MAX_OFFSET:
            raise ValueError(f"offset {offset} is out of range 0..{MAX_OFFSET}")

    def init(self, type: int) -> None:
        """Prepare swap type ``type`` (frontswap ``init``; called at swapon)."""
        if isinstance(type, bool) or not isinstance(type, int):
            raise TypeError(f"swap type must be an int, got {type!r}")
        if not 0 <= type < MAX_SWAPFILES:
            raise ValueError(f"swap type must be in 0..{MAX_SWAPFILES - 1}, got {type}")
        if self._closed:
            raise ZswapError("this Zswap has been closed")
        if self._core is not None:
            self._core.init_type(type)
        elif self._trees[type] is None:
            self._trees[type] = _Tree(type, self._memcg_table)

    def store(self, type: int, offset: int, page: Buffer, *, group: Group | None = None) -> bool:
        """Offer one page; True if zswap took it (else it must go to the swap device).

        Order as the kernel: enabled -> the group's limit -> pool limit with
        hysteresis -> same-filled -> compress -> allocate -> copy -> insert
        (replacing a duplicate) -> stats. A refused store also drops any older copy at
        this offset, so a later load can never return stale data.

        ``group`` (a :class:`Group` of this instance) is charged for the entry; at its
        ``memory.zswap.max`` the group's own oldest entries are written back first
        (when its writeback is enabled), and the page is refused if it is still over.
        """
        # This is the product's hot loop: checks are inlined and the common case
        # (bytes page, current pool, allocation succeeds) makes no extra calls.
        tree = self._trees[type] if type.__class__ is int and 0 <= type < MAX_SWAPFILES else None
        if tree is None:
            tree = self._tree(type)  # raises the right error
        if offset.__class__ is not int or not 0 <= offset <= MAX_OFFSET:
            self._check_offset(offset)
        if page.__class__ is not bytes:
            page = _as_page_bytes(page)
        if len(page) != self.page_size:
            raise ValueError(f"page must be {self.page_size} bytes, got {len(page)}")
        if not self._enabled:
            return self._refuse(tree, offset)
        gid = 0
        if group is not None:
            gid = self._group_id(group)
            if not self._memcg.may_zswap(gid) and not self._memcg_reclaim(gid):
                return self._refuse(tree, offset)

        # pool limit, with hysteresis (the 6.5+ logic: cur >= max is full; full clears
        # only at or below the accept threshold)
        cur = self.pages.nr_pages
        if cur >= self._max_pages:
            self._stats.inc("pool_limit_hit")
            self._full = True
        elif self._full and cur <= self._accept_pages:
            self._full = False
        if self._full:
            self._wake_worker()
            return self._refuse(tree, offset)

        # same-filled pages: one word, no pool memory
        same = False
        if self._same_enabled:
            first = page[:8]
            same = page[-8:] == first and (page == self._zero_page or first * self._words == page)
        if same:
            packed = _PRESENT | _SAME
            stamp = int.from_bytes(first, "little")  # the stamp slot holds the fill word
            pid = 0
        else:
            if not self._non_same_enabled:
                return self._refuse(tree, offset)

            pool = self._current
            if pool is None:
                return self._refuse(tree, offset)
            # The entry's pool reference (tryget, inlined). Locks are taken with
            # acquire/release on this path: a `with` block costs about twice as much.
            plock = pool.lock
            plock.acquire()
            refs = pool.refs
            if refs > 0:
                pool.refs = refs + 1
            plock.release()
            if refs <= 0:
                return self._refuse(tree, offset)
            try:
                data = pool.compressor.compress(page)
                # Only bytes, which cannot change after the call: a buffer the codec
                # reuses could be rewritten by another thread before it is copied.
                if data.__class__ is not bytes:
                    raise CompressError(f"compressor returned {data.__class__.__name__}, not bytes")
                dlen = len(data)
                if not 0 < dlen <= 2 * self.page_size:
                    raise CompressError(f"compressor output of {dlen} bytes")
            except Exception as exc:
                self._stats.inc("reject_compress_fail")
                log.debug("compress failed: %s", exc)
                self._pool_put(pool)
                return self._refuse(tree, offset)
            except BaseException:  # KeyboardInterrupt in the codec: no reference may leak
                self._pool_put(pool)
                raise
            zpool = pool.zpool
            try:
                if dlen > _LEN_MASK:  # only with 64 KiB pages: more than an entry can record
                    raise ZpoolError(errno.ENOSPC, "compressed page too large")
                handle = zpool.alloc_write(data)  # malloc + copy
            except Exception as exc:  # any allocator failure is a refusal, never an escape
                poor = isinstance(exc, ZpoolError) and exc.errno == errno.ENOSPC
                self._stats.inc("reject_compress_poor" if poor else "reject_alloc_fail")
                self._pool_put(pool)
                return self._refuse(tree, offset)
            except BaseException:
                self._pool_put(pool)
                raise
            if handle.__class__ is not int or not 0 < handle <= MAX_HANDLE:
                self._bad_handle(pool, handle)
                return self._refuse(tree, offset)
            packed = (
                _PRESENT
                | (pool.id << _POOL_SHIFT)
                | (dlen << _LEN_SHIFT)
                | (handle << _HANDLE_SHIFT)
            )
            stamp = next(self._clock) | 1  # referenced (see Shrinker)
            pid = pool.id
        # insert, replacing a duplicate: one critical section of the tree
        crc = (zlib.crc32(page) | _CRC_VALID) if self._checksums else 0
        ci = offset >> _CHUNK_SHIFT
        i = offset & _CHUNK_MASK
        tree.lock.acquire()
        try:
            if tree.dead:  # invalidate_area won the race: refuse, as if it came first
                old = -1
            else:
                chunk = tree.chunks.get(ci)
                if chunk is None:
                    chunk, stamps = tree.slot(ci)
                else:
                    stamps = tree.stamps[ci]
                old = chunk[i]
                if tree.memcgs or gid:  # the old entry's group pays no more; the new one's
                    if old:
                        tree.uncharge(ci, i, old)
                    tree.set_gid(ci, i, gid)
                    if gid:
                        tree.memcg.charge(gid, (packed >> _LEN_SHIFT) & _LEN_MASK, same)
                chunk[i] = packed
                stamps[i] = stamp
                if crc or tree.crcs:
                    tree.set_crc(ci, i, crc)
                if same:
                    tree.nr_same += 1
                else:
                    key = pid | gid << 8
                    lru = tree.lru.get(key)
                    if lru is None or len(lru.offsets) - lru.head > 4 * tree.nr_stored + 4096:
                        tree.lru_push(key, offset, stamp)
                    else:
                        lru.offsets.append(offset)
                        lru.stamps.append(stamp)
                if old:
                    if old & _SAME:
                        tree.nr_same -= 1
                else:
                    chunk[_COUNT] += 1
                    tree.nr_stored += 1
                if not same:
                    # protection grows with every LRU insertion, halving whenever it
                    # is more than a quarter of the LRU (the kernel's decay)
                    prot = tree.nr_protected + 1
                    if prot > (tree.nr_stored - tree.nr_same) >> 2:
                        prot >>= 1
                    tree.nr_protected = prot
        finally:
            tree.lock.release()
        if old:
            if old < 0:
                return self._refused_dead(tree, offset, packed)
            self._stats.inc("duplicate_entry")
            if not old & _SAME:
                self._free_packed(old)
        return self._stored(type, offset) if _hooks.STATE.active else True

    def _bad_handle(self, pool: _Pool, handle: object) -> None:
        """An allocator broke the handle contract: refuse the page, keep no reference."""
        self._drop_bad_handle(pool, handle)
        self._stat_inc("reject_alloc_fail")
        self._pool_put(pool)

    @staticmethod
    def _drop_bad_handle(pool: _Pool, handle: object) -> None:
        """Give an out-of-contract handle back if it can be, and say so.

        An int out of range is the allocator's own handle, so it gets it back to free;
        anything else is not passed back, and the object, if one was made, stays with
        the allocator until its pool is destroyed (destroy() returns every page).
        """
        if handle.__class__ is int:
            try:
                pool.zpool.free(handle)
            except Exception as exc:
                log.debug("freeing out-of-range handle %r: %s", handle, exc)
        log.warning(
            "zswap: zpool %r returned handle %.40r (expected an int in 1..%d); page refused",
            pool.zpool_type,
            handle,
            MAX_HANDLE,
        )

    def _refused_dead(self, tree: _Tree, offset: int, packed: int) -> bool:
        if not packed & _SAME:
            self._free_packed(packed)
        if _hooks.STATE.active:
            _hooks.call("zswap_store", zswap=self, type=tree.type, offset=offset, stored=False)
        return False

    def _stored(self, type: int, offset: int) -> bool:
        if _hooks.STATE.active:
            _hooks.call("zswap_store", zswap=self, type=type, offset=offset, stored=True)
        return True

    def _refuse(self, tree: _Tree, offset: int) -> bool:
        """A refused store: drop any older copy so that a load cannot return it."""
        self._erase(tree, offset)
        if _hooks.STATE.active:
            _hooks.call("zswap_store", zswap=self, type=tree.type, offset=offset, stored=False)
        return False

    def _free_packed(self, packed: int) -> None:
        """Release the pool memory of a removed entry and its pool reference."""
        pool = self._by_id[(packed >> _POOL_SHIFT) & 0xFF]
        if pool is None:  # pragma: no cover - would be a refcount bug
            log.error("zswap: entry %#x refers to a destroyed pool", packed)
            return
        # The entry is already out of its tree (and for a load, its page delivered):
        # an allocator that fails to free leaks that object until the pool is
        # destroyed, but it can no longer cost a page, so it is logged, not raised.
        try:
            pool.zpool.free(packed >> _HANDLE_SHIFT)
        except Exception as exc:
            self._free_failed(pool, exc)
        finally:
            self._pool_put(pool)

    @staticmethod
    def _free_failed(pool: _Pool, exc: BaseException) -> None:
        log.warning(
            "zswap: zpool %r free() of %s failed: %s: %s",
            pool.zpool_type,
            pool.name,
            type(exc).__name__,
            exc,
        )

    def _erase(self, tree: _Tree, offset: int) -> int:
        """Remove the entry at ``offset`` if any; returns the removed packed entry."""
        ci = offset >> _CHUNK_SHIFT
        with tree.lock:
            chunk = tree.chunks.get(ci)
            if chunk is None:
                return 0
            i = offset & _CHUNK_MASK
            old = chunk[i]
            if not old:
                return 0
            tree.clear(ci, i, old)
        if not old & _SAME:
            self._free_packed(old)
        return old

    def load(self, type: int, offset: int, *, exclusive: bool | None = None) -> bytes | None:
        """The page stored at (type, offset), or None if zswap does not hold it.

        ``exclusive`` (default: the ``exclusive_loads`` parameter) drops the entry once
        the page has been read back intact. Raises :class:`DecompressError` (and counts
        ``decompress_fail``) instead of ever returning wrong bytes.
        """
        return self.load_dirty(type, offset, exclusive=exclusive)[0]

    def load_dirty(
        self, type: int, offset: int, *, exclusive: bool | None = None
    ) -> tuple[bytes | None, bool]:
        """``(page, dirty)``: the page as :meth:`load`, and whether zswap dropped its entry.

        ``dirty`` is True when this load was exclusive and removed the entry, so the
        caller now holds the only copy (the kernel marks the folio dirty after such a
        ``zswap_load``). The decision is taken once, at the start of the call, so a
        concurrent write of ``exclusive_loads`` cannot make the caller guess wrong.
        """
        excl = self._exclusive if exclusive is None else bool(exclusive)
        tree = self._trees[type] if type.__class__ is int and 0 <= type < MAX_SWAPFILES else None
        if tree is None:
            tree = self._tree(type)
        if offset.__class__ is not int or not 0 <= offset <= MAX_OFFSET:
            self._check_offset(offset)
        ci = offset >> _CHUNK_SHIFT
        i = offset & _CHUNK_MASK
        ps = self.page_size
        to_free = 0
        out: bytes | None
        error: Exception | None
        for _attempt in range(8):
            tree.lock.acquire()
            try:
                chunk = tree.chunks.get(ci)
                packed = chunk[i] if chunk is not None else 0
                if not packed:
                    out = None
                    break
                stamp = tree.stamps[ci][i]
                if packed & _SAME:
                    out = self._same_page(stamp)
                    to_free = self._after_load(tree, ci, i, packed, excl)
                    break
                pool = self._by_id[(packed >> _POOL_SHIFT) & 0xFF]
            finally:
                tree.lock.release()
            # Decompress outside the tree lock (the codec releases the GIL, so loads
            # scale across threads); the entry is re-checked below, and its unique
            # stamp means a free + reuse of the same handle cannot go unnoticed.
            # zpool.read copies the object under the allocator's lock, which also keeps
            # compaction from moving it meanwhile.
            try:
                out = pool.compressor.decompress(  # type: ignore[union-attr]
                    pool.zpool.read(packed >> _HANDLE_SHIFT, (packed >> _LEN_SHIFT) & _LEN_MASK),  # type: ignore[union-attr]
                    ps,
                )
                # Exactly a page, as bytes: immutable, so what the caller gets cannot
                # change afterwards (a codec reusing a bytearray would rewrite it).
                error = None if out.__class__ is bytes and len(out) == ps else self._bad_page(out)
            except Exception as exc:
                error = exc
            tree.lock.acquire()
            try:
                chunk = tree.chunks.get(ci)
                if chunk is None or chunk[i] != packed or tree.stamps[ci][i] != stamp:
                    continue  # changed under us: try again
                if error is None and tree.crcs:
                    error = self._verify(tree, ci, i, out)  # type: ignore[arg-type]
                if error is None:
                    to_free = self._after_load(tree, ci, i, packed, excl)
            finally:
                tree.lock.release()
            if error is not None:
                self._decompress_failed(type, offset, error)
            break
        else:
            # Too much contention: let the tree lock keep writers away while we read.
            out, to_free = self._load_locked(tree, type, offset, excl)
        if to_free:
            self._free_packed(to_free)
        if _hooks.STATE.active:
            _hooks.call("zswap_load", zswap=self, type=type, offset=offset, found=out is not None)
        # Every successful exclusive path above dropped the entry; a failure raised.
        return out, excl and out is not None

    def load_into(self, type: int, offset: int, buffer: Buffer) -> bool:
        """Fill ``buffer`` (a writable page) with the stored page; False if not held.

        The codecs return new bytes objects, so this costs one copy into ``buffer``
        and no other. The buffer is checked completely before zswap is touched: with
        exclusive loads the entry is dropped, so the copy into it must not fail.
        """
        try:
            view = memoryview(buffer)
        except TypeError:
            raise TypeError(
                f"buffer must support the buffer protocol, got {buffer.__class__.__name__}"
            ) from None
        need = f"a writable, C-contiguous {self.page_size}-byte buffer"
        if view.readonly or not view.c_contiguous or view.nbytes != self.page_size:
            raise ValueError(f"buffer must be {need}")
        try:
            flat = view.cast("B")
        except (TypeError, ValueError):
            raise ValueError(
                f"buffer must be {need} (its format can't be viewed as bytes)"
            ) from None
        data = self.load(type, offset)
        if data is None:
            return False
        flat[:] = data
        return True

    def _decompress(self, pool: _Pool | None, packed: int) -> tuple[bytes, Exception | None]:
        """Decompress an entry (copied out under the allocator's lock); never raises."""
        try:
            src = pool.zpool.read(  # type: ignore[union-attr]
                packed >> _HANDLE_SHIFT, (packed >> _LEN_SHIFT) & _LEN_MASK
            )
            data = pool.compressor.decompress(src, self.page_size)  # type: ignore[union-attr]
        except Exception as exc:
            return b"", exc
        if data.__class__ is not bytes or len(data) != self.page_size:
            return b"", self._bad_page(data)
        return data, None

    def _bad_page(self, out: object) -> DecompressError:
        try:
            size = f" of {len(out)} bytes"  # type: ignore[arg-type]
        except Exception:
            size = ""
        return DecompressError(
            f"decompressor returned {type(out).__name__}{size}; "
            f"expected bytes of exactly {self.page_size}"
        )

    @staticmethod
    def _verify(tree: _Tree, ci: int, i: int, data: bytes) -> Exception | None:
        crcs = tree.crcs.get(ci)
        crc = crcs[i] if crcs is not None else 0
        if crc and (zlib.crc32(data) | _CRC_VALID) != crc:
            return DecompressError("checksum mismatch: the stored data was corrupted")
        return None

    def _decompress_failed(self, type: int, offset: int, error: Exception) -> None:
        self._stat_inc("decompress_fail")
        raise DecompressError(
            f"swap type {type} offset {offset}: stored page is unreadable: {error}"
        ) from error

    def _load_locked(
        self, tree: _Tree, type: int, offset: int, excl: bool
    ) -> tuple[bytes | None, int]:
        ci = offset >> _CHUNK_SHIFT
        i = offset & _CHUNK_MASK
        with tree.lock:
            chunk = tree.chunks.get(ci)
            packed = chunk[i] if chunk is not None else 0
            if not packed:
                return None, 0
            if packed & _SAME:
                return self._same_page(tree.stamps[ci][i]), self._after_load(
                    tree, ci, i, packed, excl
                )
            data, error = self._decompress(self._by_id[(packed >> _POOL_SHIFT) & 0xFF], packed)
            if error is None and tree.crcs:
                error = self._verify(tree, ci, i, data)
            if error is None:
                to_free = self._after_load(tree, ci, i, packed, excl)
        if error is not None:
            self._decompress_failed(type, offset, error)
        return data, to_free

    def _same_page(self, value: int) -> bytes:
        return self._zero_page if value == 0 else struct.pack("<Q", value) * self._words

    def _after_load(self, tree: _Tree, ci: int, i: int, packed: int, excl: bool) -> int:
        """Caller holds tree.lock. Returns an entry to free (exclusive loads) or 0.

        A load makes the entry the youngest in the LRU; with ``exclusive_loads`` it
        drops the entry in the same critical section, so a racing store is never lost.
        The entry's group counts a zswpin.
        """
        if tree.memcgs:
            gid = tree.gid(ci, i)
            if gid:
                tree.memcg.event(gid, ZSWPIN)
        if excl:
            tree.clear(ci, i, packed)
            return 0 if packed & _SAME else packed
        if not packed & _SAME:
            tree.stamps[ci][i] = next(self._clock)  # young again (see _Lru)
        return 0

    def invalidate_page(self, type: int, offset: int) -> None:
        """Drop the page at (type, offset), if zswap holds it (frontswap ``invalidate_page``)."""
        tree = self._tree(type)
        self._check_offset(offset)
        if self._erase(tree, offset) and _hooks.STATE.active:
            _hooks.call("zswap_invalidate", zswap=self, type=type, offset=offset)

    def invalidate_area(self, type: int) -> None:
        """Drop every page of swap type ``type`` and forget the type (swapoff)."""
        if self._core is not None:
            self._core.invalidate_area(type)
            return
        tree = self._tree(type)
        with tree.lock:
            if self._trees[type] is tree:
                self._trees[type] = None
            tree.dead = True
            removed = []
            for off, e, _st in tree.entries():
                if tree.memcgs:
                    tree.uncharge(off >> _CHUNK_SHIFT, off & _CHUNK_MASK, e)
                if not e & _SAME:
                    removed.append(e)
            tree.chunks.clear()
            tree.stamps.clear()
            tree.crcs.clear()
            tree.memcgs.clear()
            tree.lru.clear()
            tree.nr_stored = tree.nr_same = 0
        for packed in removed:
            self._free_packed(packed)  # never raises: a failing free is logged

    # ---------------------------------------------------------------------------------
    # 5. writeback
    # ---------------------------------------------------------------------------------
    def set_writeback_handler(self, handler: WritebackHandler | None) -> None:
        """Where written-back pages go: ``handler(type, offset, page)`` writes the slot.

        The swap layer installs one; without a handler zswap cannot write back and the
        pool limit only rejects.
        """
        self._writeback_handler = handler

    def _wake_worker(self) -> None:
        if self._writeback_handler is None or self._closed:
            return
        if not self._worker_enabled:
            self._shrink_wanted = True
            return
        if self._worker is None or not self._worker.is_alive():
            with self._pools_lock:
                if self._worker is None or not self._worker.is_alive():
                    self._worker = threading.Thread(
                        target=_shrink_worker,
                        args=(weakref.ref(self), self._worker_wake),
                        name="zswap-shrink",
                        daemon=True,
                    )
                    self._worker.start()
        self._worker_wake.set()

    def writeback(self, nr_pages: int) -> int:
        """Write back up to ``nr_pages`` of the oldest entries now; returns how many.

        Like ``memory.reclaim`` with ``source=zswap``. Needs a writeback handler (the
        swap layer); returns 0 without one.
        """
        if isinstance(nr_pages, bool) or not isinstance(nr_pages, int) or nr_pages < 0:
            raise ValueError(f"nr_pages must be a non-negative int, got {nr_pages!r}")
        if self._writeback_handler is None:
            return 0
        return self._shrink(limit=nr_pages)

    def shrink(self) -> int:
        """Do the shrink worker's work now, if a store found the pool full since the last call.

        That is: compact, then write back the oldest entries until the pool is under
        the accept threshold. Returns the pages written back (0 when nothing was asked).
        Meant for ``Zswap(shrink_worker=False)``, which starts no worker thread: calling
        this between two stores makes a run a function of its inputs alone (the same
        seed gives the same counters), where the worker's progress depends on the
        scheduler. With the worker running it does the same work in the caller's thread.
        """
        if not self._shrink_wanted or self._writeback_handler is None or self._closed:
            return 0
        self._shrink_wanted = False
        return self._shrink(until_accept=True)

    def _shrink(self, *, until_accept: bool = False, limit: int | None = None) -> int:
        """Write back the oldest entries of the oldest pool; 16 failures in a row stop it.

        The limit worker (``until_accept``) first compacts: freeing fragmented pages
        costs no I/O, as zsmalloc's own shrinker does under memory pressure. It
        compacts again every 512 pages written back, since writeback leaves holes.
        """
        written = failures = since_compact = 0
        if until_accept:
            self.compact()
        while not self._closed:
            if until_accept and self.pages.nr_pages <= self._accept_pages:
                break
            if limit is not None and written >= limit:
                break
            if until_accept and since_compact >= 512:
                since_compact = 0
                self.compact()
                continue
            victim = self._pop_oldest()
            if victim is None:
                break
            result = self._writeback_entry(*victim)
            if result is None:
                continue  # changed or gone since it was picked: not a failure
            if result:
                written += 1
                since_compact += 1
                failures = 0
            else:
                failures += 1
                if failures >= 16:
                    break
        return written

    def _pop_oldest(self) -> tuple[Any, int, int, int] | None:
        """The next entry to write back: (tree, offset, entry, stamp), or None.

        Without groups, the oldest entry of the oldest pool that has any. With groups,
        the kernel's order since 6.8 (``shrink_worker``): the groups take turns in a
        walk of the hierarchy from the root (``mem_cgroup_iter``), each giving its
        oldest entry; a group whose writeback is disabled is passed over. On the native
        backend the tree is its type: the core holds the trees.
        """
        order = self._group_order
        if len(order) == 1:
            return self._pop_oldest_of(0)
        memcg = self._memcg
        n = len(order)
        start = self._group_next
        for k in range(n):
            idx = (start + k) % n
            gid = order[idx]
            if gid and (not memcg.stat(gid)[5] or not memcg.writeback_enabled(gid)):
                continue
            victim = self._pop_oldest_of(gid)
            if victim is not None:
                self._group_next = (idx + 1) % n
                return victim
        return None

    def _pop_oldest_of(self, gid: int) -> tuple[Any, int, int, int] | None:
        """The oldest entry of group ``gid`` (0: entries without a group) in the
        oldest pool that has one."""
        with self._pools_lock:
            pools = [p for p in reversed(self._pools) if not p.dead]
        for pool in pools:
            if pool.nr_refs() - (1 if pool is self._current else 0) <= 0:
                continue
            if self._core is not None:
                victim: tuple[int, int, int, int] | None = self._core.lru_pop(pool.id, gid)
                if victim is None:
                    continue
                return victim
            pid = pool.id
            key = pid | gid << 8
            best: tuple[int, int, _Tree] | None = None
            for tree in self._trees:
                if tree is None or key not in tree.lru:
                    continue
                with tree.lock:
                    head = tree.lru_peek(key)
                if head is not None and (best is None or head[0] < best[0]):
                    best = (head[0], head[1], tree)
            if best is None:
                continue
            stamp, offset, tree = best
            with tree.lock:
                lru = tree.lru.get(key)
                if (
                    lru is not None
                    and lru.head < len(lru.offsets)
                    and lru.offsets[lru.head] == offset
                    and lru.stamps[lru.head] == stamp
                ):
                    lru.head += 1
                chunk = tree.chunks.get(offset >> _CHUNK_SHIFT)
                packed = chunk[offset & _CHUNK_MASK] if chunk is not None else 0
            return tree, offset, packed, stamp
        return None

    def _writeback_entry(self, tree: Any, offset: int, packed: int, stamp: int) -> bool | None:
        """Write one entry to its swap slot. True: done; False: failed; None: skipped."""
        if self._core is not None:
            return self._writeback_native(tree, offset, packed, stamp)
        handler = self._writeback_handler
        if handler is None or not packed or self._trees[tree.type] is not tree:
            return None
        type = tree.type
        ci = offset >> _CHUNK_SHIFT
        i = offset & _CHUNK_MASK
        pid = (packed >> _POOL_SHIFT) & 0xFF
        # Hold the tree lock across decompress and write: a racing load then sees the
        # entry (before) or finds it gone and reads the slot (after), never a gap.
        with tree.lock:
            chunk = tree.chunks.get(ci)
            if chunk is None or chunk[i] != packed or tree.stamps[ci][i] != stamp:
                # Gone, replaced or loaded since it was picked. Its record was taken
                # off the LRU, so one that is still here goes back, at the young end.
                tree.lru_requeue(offset, pid)
                return None
            gid = tree.gid(ci, i) if tree.memcgs else 0
            data, error = self._decompress(self._by_id[pid], packed)
            if error is None and tree.crcs:
                error = self._verify(tree, ci, i, data)
            if error is not None:
                self._stat_inc("decompress_fail")
            else:
                try:
                    handler(type, offset, data)
                except Exception as exc:
                    log.debug("writeback of %d:%d failed: %s", type, offset, exc)
                    error = exc
            if error is not None:
                self._stat_inc("reject_reclaim_fail")
                # rotate to the young end so that others are tried first
                stamp = next(self._clock)
                tree.stamps[ci][i] = stamp
                tree.lru_push(pid | gid << 8, offset, stamp)
                ok = False
            else:
                if gid:
                    tree.memcg.event(gid, ZSWPWB)
                tree.clear(ci, i, packed)
                ok = True
        if ok:
            self._free_packed(packed)
            self._stat_inc("written_back_pages")
        if _hooks.STATE.active:
            _hooks.call("zswap_writeback", zswap=self, type=type, offset=offset, ok=ok)
        return ok

    def _writeback_native(self, type: int, offset: int, packed: int, stamp: int) -> bool | None:
        """:meth:`_writeback_entry` on the native backend.

        The core pins the entry instead of holding its tree lock across the handler
        (no C lock is held while Python runs): a racing store, invalidation or
        exclusive load of it waits until the pin is gone; a plain load reads it.
        """
        handler = self._writeback_handler
        if handler is None or not packed:
            return None
        with self._wb_lock:
            ok = self._writeback_pinned(handler, type, offset, packed, stamp)
        if ok is None:
            return None
        if ok:
            self._stat_inc("written_back_pages")
        if _hooks.STATE.active:
            _hooks.call("zswap_writeback", zswap=self, type=type, offset=offset, ok=ok)
        return ok

    def _writeback_pinned(
        self, handler: WritebackHandler, type: int, offset: int, packed: int, stamp: int
    ) -> bool | None:
        core = self._core
        if not core.wb_take(type, offset, packed, stamp):
            return None
        ok = False
        try:
            data, error = self._decompress(self._by_id[(packed >> _POOL_SHIFT) & 0xFF], packed)
            if error is None and not core.wb_verify(type, offset, data):
                error = DecompressError("checksum mismatch: the stored data was corrupted")
            if error is not None:
                self._stat_inc("decompress_fail")
            else:
                try:
                    handler(type, offset, data)
                    ok = True
                except Exception as exc:
                    log.debug("writeback of %d:%d failed: %s", type, offset, exc)
            if not ok:
                self._stat_inc("reject_reclaim_fail")
        finally:
            core.wb_end(type, offset, packed, ok)  # frees the entry when written
        return ok

    # -- the shrinker's pieces (the policy is in Shrinker) ----------------------------------
    def disk_swapin(self, type: int) -> None:
        """Tell zswap a page of swap type ``type`` was swapped in from the swap device.

        That is, zswap did not hold it (the kernel's ``zswap_folio_swapin``): the
        shrinker protects one more entry from writeback. The swap layer calls this.
        """
        if self._core is not None:
            self._core.disk_swapin(type)
            return
        tree = self._tree(type)
        with tree.lock:
            tree.nr_protected += 1

    def _lru_state(self) -> tuple[int, int, int]:
        """(entries on the LRUs, protected size, stored pages that use pool memory)."""
        if self._core is not None:
            lru, prot = (int(v) for v in self._core.lru_state())
        else:
            lru = prot = 0
            for tree in self._trees:
                if tree is not None:
                    with tree.lock:
                        lru += tree.nr_stored - tree.nr_same
                        prot += tree.nr_protected
        # entries of groups with writeback disabled are not the shrinker's to take
        return lru - self._no_writeback_entries(), prot, lru

    def _rotate(self, tree: Any, offset: int, packed: int, stamp: int) -> None:
        """Clear a referenced entry's bit and put it at the young end of its LRU.

        Its record was taken off the LRU by _pop_oldest: an entry that changed since
        (loaded, replaced) goes back with the stamp it has now.
        """
        if self._core is not None:
            self._core.lru_rotate(tree, offset, packed, stamp)
            return
        pid = (packed >> _POOL_SHIFT) & 0xFF
        ci = offset >> _CHUNK_SHIFT
        i = offset & _CHUNK_MASK
        with tree.lock:
            chunk = tree.chunks.get(ci)
            if chunk is not None and chunk[i] == packed and tree.stamps[ci][i] == stamp:
                tree.stamps[ci][i] = stamp & ~1
                tree.lru_push(pid | tree.gid(ci, i) << 8, offset, stamp & ~1)
            else:
                tree.lru_requeue(offset, pid)

    # -- the native core's slow paths (called from C with no C lock held) ------------------
    def _native_wake(self) -> None:
        self._wake_worker()

    def _native_wait_pin(self) -> None:
        # Writeback holds _wb_lock while its entry is pinned. A pin without it (a
        # load that lost 8 races pins its entry for one decompression) is waited out
        # by giving the GIL away.
        with self._wb_lock:
            pass
        time.sleep(0)

    def _native_group_id(self, group: object) -> int:
        return self._group_id(group)

    def _native_memcg_reclaim(self, gid: int) -> None:
        self._memcg_reclaim(gid)  # the core tests the limit again itself

    def _native_pool_empty(self, pid: int) -> None:
        pool = self._by_id[pid]
        if pool is not None:
            self._pool_destroy(pool)

    def _native_hook(self, kind: str, type: int, offset: int, result: bool) -> None:
        if kind == "store":
            _hooks.call("zswap_store", zswap=self, type=type, offset=offset, stored=result)
        elif kind == "load":
            _hooks.call("zswap_load", zswap=self, type=type, offset=offset, found=result)
        else:
            _hooks.call("zswap_invalidate", zswap=self, type=type, offset=offset)

    # (the core holds a reference to the pool across both calls: it is in _by_id)
    def _native_bad_handle(self, pid: int, handle: object) -> None:
        pool = self._by_id[pid]
        if pool is not None:
            self._drop_bad_handle(pool, handle)

    def _native_free_failed(self, pid: int, error: object) -> None:
        pool = self._by_id[pid]
        if pool is not None:
            exc = error if isinstance(error, BaseException) else None
            if exc is None:  # a C allocator's negative errno
                errno_ = int(error)  # type: ignore[call-overload]
                exc = ZpoolError(errno_, os.strerror(errno_))
            self._free_failed(pool, exc)

    def _native_unreadable(self, type: int, offset: int, error: object) -> DecompressError:
        if not isinstance(error, BaseException):
            error = DecompressError(str(error))
        exc = DecompressError(
            f"swap type {type} offset {offset}: stored page is unreadable: {error}"
        )
        exc.__cause__ = error
        return exc

    @staticmethod
    def _native_as_page(page: object) -> bytes:
        return _as_page_bytes(page)

    def entry_length(self, type: int, offset: int) -> int | None:
        """The compressed length of the entry at (type, offset); None when there is none.

        0 for a same-filled entry (one word kept in the entry, no pool memory). What the
        pool holds for the entry, exactly: codec ratios are computed from it without
        compressing the page a second time.
        """
        e = self._entry(type, offset)
        if not e & _PRESENT:
            return None
        if e & _SAME:
            return 0
        return int((e >> _LEN_SHIFT) & _LEN_MASK)

    def _entry(self, type: int, offset: int) -> int:
        """The packed entry at (type, offset), 0 if none: for tests and debugging."""
        if self._core is not None:
            return int(self._core.entry(type, offset))
        tree = self._trees[type]
        if tree is None:
            return 0
        with tree.lock:
            chunk = tree.chunks.get(offset >> _CHUNK_SHIFT)
            return chunk[offset & _CHUNK_MASK] if chunk is not None else 0

    def native_memory(self) -> dict[str, int]:
        """Bytes of C memory this instance holds, by kind; ``{}`` on the Python backend.

        tracemalloc cannot see C memory, so the native core and each native allocator
        count their own: the core's entry tables, LRU records and checksums
        (``core.*``), and each pool's allocator bookkeeping (``zpool.*``; its pages, the
        compressed data, are ``pool_total_size`` in :attr:`stats`, not here).
        """
        if self._core is None:
            return {}
        out = {f"core.{k}": int(v) for k, v in self._core.native_memory().items()}
        with self._pools_lock:
            pools = _one_per_zpool(p for p in self._pools if not p.dead)
        for pool in pools:
            report = getattr(pool.zpool, "native_memory", None)
            if report is None:
                continue
            for k, v in report().items():
                if k in ("arena_bytes_mapped", "arenas"):
                    continue  # the pages (pool_total_size) and a count, not bookkeeping
                out[f"zpool.{k}"] = out.get(f"zpool.{k}", 0) + int(v)
        return out

    def _stat_inc(self, name: str, n: int = 1) -> None:
        if self._core is not None:
            self._core.stat_add(name, n)
        else:
            self._stats.inc(name, n)

    # ---------------------------------------------------------------------------------
    # 6. init, stats, teardown
    # ---------------------------------------------------------------------------------
    def _init(self, boot_params: Mapping[str, object]) -> None:
        values: dict[str, Any] = {}
        for name, value in boot_params.items():
            try:
                decl = self.params.declaration(name)
            except ParamError:
                raise TypeError(f"unknown zswap parameter {name!r}") from None
            values[name] = decl.parse(value)
        for name, value in values.items():
            if name not in ("compressor", "zpool", "enabled"):
                self.params._values[name] = value
        comp = self._fallback("compressor", values.get("compressor", DEFAULT_COMPRESSOR))
        zp = self._fallback("zpool", values.get("zpool", DEFAULT_ZPOOL))
        self.params._values["compressor"] = comp
        self.params._values["zpool"] = zp
        enabled = values.get("enabled", True)
        if comp and zp:
            try:
                self._pool_make_current(self._pool_create(comp, zp))
            except Exception as exc:
                warnings.warn(f"zswap: pool creation failed: {exc}", RuntimeWarning, stacklevel=3)
        if self._current is None and enabled:
            warnings.warn(
                "zswap: no pool could be created; zswap.enabled forced to N",
                RuntimeWarning,
                stacklevel=3,
            )
            enabled = False
        self.params._values["enabled"] = enabled
        self._refresh_cached_params()
        _hooks.load_observer_entry_points()

    def _fallback(self, kind: str, name: str) -> str:
        default = DEFAULT_COMPRESSOR if kind == "compressor" else DEFAULT_ZPOOL

        def why(failed: str) -> str:
            # The registry's reason (bad option, blocked, broken import...) with its fix:
            # a fallback that only says "not available" hides what to repair.
            err = self.registry.error(kind, failed)  # type: ignore[arg-type]
            return f": {err}" if err is not None else ""

        if name and self.registry.request(kind, name) is not None:  # type: ignore[arg-type]
            return name
        if name != default and self.registry.request(kind, default) is not None:  # type: ignore[arg-type]
            warnings.warn(
                f"zswap: {kind} {name!r} not available, using default {default!r}{why(name)}",
                RuntimeWarning,
                stacklevel=4,
            )
            return default
        if name != default:
            warnings.warn(
                f"zswap: {kind} {name!r} not available{why(name)}", RuntimeWarning, stacklevel=4
            )
        warnings.warn(
            f"zswap: default {kind} {default!r} not available{why(default)}",
            RuntimeWarning,
            stacklevel=4,
        )
        return ""

    @property
    def stats(self) -> dict[str, int]:
        """The debugfs counters (``/sys/kernel/debug/zswap/*``), exact."""
        if self._core is not None:
            out = self._core.counters()
            out["pool_total_size"] = self.pages.nr_pages * self.page_size
            return {name: out[name] for name in STAT_NAMES}
        s = self._stats
        with s.lock:
            out = {name: getattr(s, name) for name in _Stats.__slots__ if name != "lock"}
        stored = same = 0
        for tree in self._trees:
            if tree is not None:
                with tree.lock:
                    stored += tree.nr_stored
                    same += tree.nr_same
        out["stored_pages"] = stored
        out["same_filled_pages"] = same
        out["pool_total_size"] = self.pages.nr_pages * self.page_size
        return {name: out[name] for name in STAT_NAMES}

    def zpool_stats(self) -> list[dict[str, Any]]:
        """Each live pool's allocator statistics, current first.

        ``{"name", "compressor", "zpool", "shared", "stats"}`` (``shared``: the zpool
        instance's name, see :class:`PoolInfo`; pools sharing one report the same
        ``stats``); ``stats`` is the allocator's own
        (zsmalloc: the per-class table of ``/sys/kernel/debug/zsmalloc/<pool>/classes``).
        A plugin whose ``stats()`` raises gets ``{"error": ...}`` instead.
        """
        with self._pools_lock:
            pools = [p for p in self._pools if not p.dead]
        out = []
        for pool in pools:
            try:
                st = pool.zpool.stats()
            except Exception as exc:  # a plugin's statistics must not break a report
                st = {"error": f"{type(exc).__name__}: {exc}"}
            out.append(
                {
                    "name": pool.name,
                    "compressor": pool.compressor_name,
                    "zpool": pool.zpool_type,
                    "shared": pool.share.name,
                    "stats": st,
                }
            )
        return out

    def compact(self) -> int:
        """Compact every pool whose allocator can; returns pages freed."""
        with self._pools_lock:
            pools = _one_per_zpool(p for p in self._pools if not p.dead)
        freed = 0
        for pool in pools:
            if pool.zpool.can_compact and pool.tryget():
                try:
                    freed += pool.zpool.compact()
                finally:
                    self._pool_put(pool)
        if freed:
            self._stat_inc("pages_compacted", freed)
        return freed

    @property
    def checksums(self) -> bool:
        """``checksums_enabled`` as the hot path sees it: a plain read, no parameter lock
        (the swap layer asks it for every page it writes to its file)."""
        return self._checksums

    @property
    def pool_limit_pages(self) -> int:
        """``max_pool_percent`` of the configured RAM, in pages."""
        return self._max_pages

    @property
    def accept_threshold_pages(self) -> int:
        return self._accept_pages

    def close(self) -> None:
        """Drop every stored page and destroy every pool."""
        if self._closed:
            return
        self._closed = True
        self._worker_wake.set()
        types = (
            self._core.types()
            if self._core is not None
            else [t for t, tree in enumerate(self._trees) if tree is not None]
        )
        for type in types:
            self.invalidate_area(type)
        with self._pools_lock:
            cur = self._current
            self._current = None
        if cur is not None:
            self._pool_put(cur)

    def __enter__(self) -> Zswap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        p = self.params
        return (
            f"<Zswap enabled={p.sysfs('enabled')} compressor={p['compressor']} "
            f"zpool={p['zpool']} pools={len(self._pools)}>"
        )


#: What :meth:`Shrinker.scan_objects` returns when it cannot make progress (the
#: kernel's ``SHRINK_STOP``).
SHRINK_STOP = -1
#: Objects per ``scan_objects`` call when :meth:`Shrinker.reclaim` drives it (the
#: kernel's ``SHRINK_BATCH``).
SHRINK_BATCH = 128


class Shrinker:
    """zswap's proactive shrinker (``shrinker_enabled``, 6.8+), the kernel's shrinker API.

    Memory pressure (the swap layer's :meth:`~zswap_core.swap.Swap.reclaim`, or a
    caller) asks :meth:`count_objects` how many entries could be freed, then calls
    :meth:`scan_objects` in batches. Writeback follows the zswap LRU, oldest first,
    with a second chance: every store sets its entry's ``referenced`` bit, and the
    shrinker, meeting a referenced entry, clears the bit and moves it to the young
    end instead of writing it back. The pool-limit worker and :meth:`Zswap.writeback`
    keep their own order (oldest first; loaded entries get the second chance).

    Protection: each swap type's LRU has a protected size (the kernel's
    ``nr_zswap_protected``) that grows by one with every store into the LRU and with
    every swap-in that had to come from the swap device (:meth:`Zswap.disk_swapin`),
    and halves on a store when it is more than a quarter of that LRU. The shrinker
    counts only the unprotected entries, scaled by the pool's compression ratio (the
    better zswap compresses, the less a writeback saves), and stops rather than
    scan into the protected part.

    Counted in ``shrinker_written_back_pages`` (and in ``written_back_pages``, the
    total of every writeback).
    """

    def __init__(self, zswap: Zswap) -> None:
        self._z = weakref.ref(zswap)
        #: Objects the last :meth:`scan_objects` call looked at (``sc->nr_scanned``).
        self.nr_scanned = 0

    def _zswap(self) -> Zswap | None:
        z = self._z()
        if z is None or z._closed or not z._shrinker_enabled:
            return None
        return z

    @property
    def nr_protected(self) -> int:
        """The protected size: entries the shrinker leaves alone."""
        z = self._z()
        return 0 if z is None else z._lru_state()[1]

    def count_objects(self) -> int:
        """Entries the shrinker could free now; 0 when it is disabled.

        (LRU size - protected size) x pool pages / stored pages, as the kernel's
        ``zswap_shrinker_count``.
        """
        z = self._zswap()
        if z is None or z._writeback_handler is None:
            return 0
        lru, prot, stored = z._lru_state()
        if not stored or lru <= prot:
            return 0
        return (lru - prot) * z.pages.nr_pages // stored

    def scan_objects(self, nr_to_scan: int) -> int:
        """Look at up to ``nr_to_scan`` of the oldest entries; returns how many were
        written back, or :data:`SHRINK_STOP`.

        A referenced entry loses its bit and goes to the young end (it counts as
        scanned); an unreferenced one is written back. It stops at once when the
        shrinker is disabled, when the scan would reach into the protected part of
        the LRU, or when a writeback fails.
        """
        if isinstance(nr_to_scan, bool) or not isinstance(nr_to_scan, int) or nr_to_scan < 0:
            raise ValueError(f"nr_to_scan must be a non-negative int, got {nr_to_scan!r}")
        self.nr_scanned = 0
        z = self._zswap()
        if z is None or z._writeback_handler is None:
            return SHRINK_STOP
        lru, prot, _stored = z._lru_state()
        # (the kernel's test, whose unsigned difference lets a scan bigger than the
        # LRU through)
        if nr_to_scan <= lru and prot >= lru - nr_to_scan:
            return SHRINK_STOP
        freed = 0
        while self.nr_scanned < nr_to_scan and not z._closed:
            victim = z._pop_oldest()
            if victim is None:
                break
            self.nr_scanned += 1
            tree, offset, packed, stamp = victim
            if stamp & 1 and packed:
                z._rotate(tree, offset, packed, stamp)
                continue
            result = z._writeback_entry(tree, offset, packed, stamp)
            if result:
                freed += 1
                z._stat_inc("shrinker_written_back_pages")
            elif result is not None:
                break  # a failed writeback: the swap device will not take more now
        return freed if freed else SHRINK_STOP

    def reclaim(self, nr_to_scan: int) -> int:
        """Memory pressure of ``nr_to_scan`` objects: count, then scan in batches of
        :data:`SHRINK_BATCH` (as the kernel's ``do_shrink_slab``). Returns pages freed.
        """
        if isinstance(nr_to_scan, bool) or not isinstance(nr_to_scan, int) or nr_to_scan < 0:
            raise ValueError(f"nr_to_scan must be a non-negative int, got {nr_to_scan!r}")
        total = min(nr_to_scan, self.count_objects())
        freed = 0
        while total > 0:
            ret = self.scan_objects(min(SHRINK_BATCH, total))
            if ret == SHRINK_STOP or not self.nr_scanned:
                break
            freed += ret
            total -= self.nr_scanned
        return freed


def _shrink_worker(ref: weakref.ref[Zswap], wake: threading.Event) -> None:
    """The pool limit worker. It holds its Zswap only while it works, so that a Zswap
    nobody references any more can be collected (and its finalizer run)."""
    while True:
        woken = wake.wait(timeout=1.0)
        z = ref()
        if z is None or z._closed:
            return
        if woken:
            wake.clear()
            try:
                z._shrink(until_accept=True)
            except Exception:  # the worker must survive anything a plugin throws
                log.exception("zswap: shrink worker failed")
        del z


def _preorder(groups: Iterator[Group] | Any) -> list[int]:
    """Group ids in a walk of the hierarchy from the root (0), children in creation
    order: the order in which writeback visits them (``mem_cgroup_iter``)."""
    children: dict[int, list[int]] = {0: []}
    for g in groups:
        children.setdefault(g._gid, [])
        children.setdefault(0 if g.parent is None else g.parent._gid, []).append(g._gid)
    out: list[int] = []
    stack = [0]
    while stack:
        gid = stack.pop()
        out.append(gid)
        stack.extend(reversed(children.get(gid, [])))
    return out


def _one_per_zpool(pools: Iterator[_Pool]) -> list[_Pool]:
    """The first of each group of pools sharing one zpool instance."""
    seen: set[int] = set()
    out = []
    for pool in pools:
        if id(pool.share) not in seen:
            seen.add(id(pool.share))
            out.append(pool)
    return out


def _release_pools(pools: list[_Pool]) -> None:
    """Finalizer of a Zswap collected without close(): its plugins are no longer used.

    Runs without the instance (it is gone), on the pools list it shared. Every pool's
    allocator and codec are released and the modules' use counts ("Used by") drop.
    """
    for pool in list(pools):
        if pool.dead:
            continue
        pool.dead = True
        pool.comp_mod.use_count -= 1
        pool.zpool_mod.use_count -= 1
        pool.release()
    pools.clear()


def _as_page_bytes(page: object) -> bytes:
    if isinstance(page, (bytearray, memoryview)):
        return bytes(page)
    try:
        return bytes(memoryview(page))  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"page must be a bytes-like object, got {type(page).__name__}") from None
