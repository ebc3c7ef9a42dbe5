"""Groups: what a memory cgroup's pages cost in zswap (``memory.zswap.*``, 5.19 / 6.8).

A :class:`Group` is a memory cgroup as zswap sees it: it is charged for what its
entries take (the compressed length, as the kernel's ``obj_cgroup_charge_zswap``),
counts its ``zswpin``/``zswpout``/``zswpwb`` events, and has two knobs:

* ``memory.zswap.max`` (5.19): at or over it, a store first writes back the group's
  own oldest entries (if its writeback is enabled) and is refused if the group is
  still at the limit. The limit holds for the group and its descendants; ``0`` means
  its pages never enter zswap.
* ``memory.zswap.writeback`` (6.8): ``0`` for the group or any ancestor means its
  entries are never written back, and a page zswap refuses stays in memory rather
  than go to the swap file (the swap layer's :class:`WritebackDisabledError`).

Charges are hierarchical: a group's ``memory.zswap.current`` and ``memory.stat``
include its descendants' (the kernel's rstat sums), kept exactly, under one lock.

The table (:class:`MemcgTable`) is the Python backend's accounting; the native core
keeps the same table in C (``_native/zswap.c``, section "memcg") and
:class:`NativeMemcg` puts the same five calls in front of it, so the policy code
(reclaim at the limit, which groups writeback may visit) is written once.
"""

from __future__ import annotations

import errno
import re
import threading
import weakref
from typing import TYPE_CHECKING, Any, Protocol

from ._errors import ParamError

if TYPE_CHECKING:
    from ._zswap import Zswap

#: Group ids fit the 16 bits an entry's chunk keeps for them; 0 is the root.
MAX_GROUPS = 65535
#: The files a group has, with the kernel's names.
FILES = ("memory.zswap.max", "memory.zswap.current", "memory.zswap.writeback", "memory.stat")
#: ``memory.stat``'s zswap keys, in the kernel's order.
STAT_KEYS = ("zswap", "zswapped", "zswpin", "zswpout", "zswpwb")
# indexes into a group's counters
ZSWAP_B, ZSWAPPED, ZSWPIN, ZSWPOUT, ZSWPWB = range(5)
_NO_LIMIT = -1

_NAME_RE = re.compile(r"[A-Za-z0-9_.+@-]{1,64}")
_SIZE_RE = re.compile(r"(\d+)([kKmMgGtT]?)")
_SUFFIX = {"": 0, "k": 10, "m": 20, "g": 30, "t": 40}


def parse_max(value: object, page_size: int) -> int:
    """``memory.zswap.max`` as written: ``"max"``, or bytes with an optional K/M/G/T
    suffix (the kernel's memparse). Rounded down to whole pages, as the kernel keeps
    it; -1 for no limit. A bad value is a ParamError (EINVAL)."""
    if isinstance(value, bool):
        raise ParamError(errno.EINVAL, f"memory.zswap.max: not a size: {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ParamError(errno.EINVAL, f"memory.zswap.max must be >= 0, got {value}")
        return value // page_size * page_size
    if not isinstance(value, str):
        raise ParamError(errno.EINVAL, f"memory.zswap.max: not a size: {value!r}")
    text = value.strip()
    if text == "max":
        return _NO_LIMIT
    m = _SIZE_RE.fullmatch(text)
    if m is None:
        raise ParamError(
            errno.EINVAL, f"memory.zswap.max: {value!r} is not 'max' or bytes (e.g. 10M)"
        )
    size = int(m.group(1)) << _SUFFIX[m.group(2).lower()]
    return size // page_size * page_size


def parse_writeback(value: object) -> bool:
    """``memory.zswap.writeback``: 0 or 1 (as the kernel's kstrtoint, then != 0)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    if isinstance(value, str):
        try:
            return int(value.strip(), 0) != 0
        except ValueError:
            pass
    raise ParamError(errno.EINVAL, f"memory.zswap.writeback: not an integer: {value!r}")


class MemcgOps(Protocol):
    """What the policy code asks of either backend's table."""

    def add(self, gid: int, parent: int) -> None: ...
    def set(self, gid: int, max_bytes: int, writeback: bool) -> None: ...
    def stat(self, gid: int) -> tuple[int, int, int, int, int, int]: ...
    def may_zswap(self, gid: int) -> bool: ...
    def writeback_enabled(self, gid: int) -> bool: ...


class MemcgTable:
    """The Python backend's group accounting (the native core has its own in C).

    Counters are hierarchical: every change walks the group and its ancestors, so a
    limit check reads one number per level. The lock protects every list here; it is
    taken inside a tree lock and takes no other.
    """

    __slots__ = ("counts", "lock", "max", "own_lru", "parent", "writeback")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.parent: list[int] = [0]
        self.max: list[int] = [_NO_LIMIT]
        self.writeback: list[bool] = [True]
        self.counts: list[list[int]] = [[0, 0, 0, 0, 0]]
        self.own_lru: list[int] = [0]

    def add(self, gid: int, parent: int) -> None:
        with self.lock:
            if gid != len(self.parent):  # ids are handed out in order by Zswap.group
                raise ValueError(f"group id {gid} out of order")
            self.parent.append(parent)
            self.max.append(_NO_LIMIT)
            self.writeback.append(True)
            self.counts.append([0, 0, 0, 0, 0])
            self.own_lru.append(0)

    def set(self, gid: int, max_bytes: int, writeback: bool) -> None:
        with self.lock:
            self.max[gid] = max_bytes
            self.writeback[gid] = writeback

    def stat(self, gid: int) -> tuple[int, int, int, int, int, int]:
        with self.lock:
            c = self.counts[gid]
            return c[0], c[1], c[2], c[3], c[4], self.own_lru[gid]

    def may_zswap(self, gid: int) -> bool:
        """False if the group or an ancestor is at its limit (or has ``max`` 0)."""
        with self.lock:
            while gid:
                limit = self.max[gid]
                if limit == 0 or (limit > 0 and self.counts[gid][ZSWAP_B] >= limit):
                    return False
                gid = self.parent[gid]
        return True

    def writeback_enabled(self, gid: int) -> bool:
        with self.lock:
            while gid:
                if not self.writeback[gid]:
                    return False
                gid = self.parent[gid]
        return True

    # -- called with a tree lock held ---------------------------------------------------
    def charge(self, gid: int, length: int, same: bool) -> None:
        """A new entry of ``gid``: its length, one page, one zswpout."""
        with self.lock:
            if not same:
                self.own_lru[gid] += 1
            while gid:
                c = self.counts[gid]
                c[ZSWAP_B] += length
                c[ZSWAPPED] += 1
                c[ZSWPOUT] += 1
                gid = self.parent[gid]

    def uncharge(self, gid: int, length: int, same: bool) -> None:
        with self.lock:
            if not same:
                self.own_lru[gid] -= 1
            while gid:
                c = self.counts[gid]
                c[ZSWAP_B] -= length
                c[ZSWAPPED] -= 1
                gid = self.parent[gid]

    def event(self, gid: int, which: int) -> None:
        with self.lock:
            while gid:
                self.counts[gid][which] += 1
                gid = self.parent[gid]


class NativeMemcg:
    """The same calls, answered by the native core's table."""

    __slots__ = ("_core",)

    def __init__(self, core: Any) -> None:
        self._core = core

    def add(self, gid: int, parent: int) -> None:
        self._core.memcg_add(gid, parent)

    def set(self, gid: int, max_bytes: int, writeback: bool) -> None:
        self._core.memcg_set(gid, max_bytes, writeback)

    def stat(self, gid: int) -> tuple[int, int, int, int, int, int]:
        return tuple(int(v) for v in self._core.memcg_stat(gid))  # type: ignore[return-value]

    def may_zswap(self, gid: int) -> bool:
        return bool(self._core.memcg_may_zswap(gid))

    def writeback_enabled(self, gid: int) -> bool:
        return bool(self._core.memcg_writeback_enabled(gid))


class Group:
    """A memory cgroup as zswap sees it; made by :meth:`Zswap.group`.

    Its files read and write as cgroupfs's (strings, the kernel's formats and
    errors): ``g.read("memory.zswap.current")``, ``g.write("memory.zswap.max", "10M")``.
    The properties are the same files, typed. Pass the group to
    :meth:`Zswap.store` (``group=g``) or to :meth:`~zswap_core.swap.Swap.swap_out`.
    """

    __slots__ = ("__weakref__", "_gid", "_zswap", "name", "parent")

    def __init__(self, zswap: Zswap, gid: int, name: str, parent: Group | None) -> None:
        self._zswap = weakref.ref(zswap)
        self._gid = gid
        self.name = name
        #: The parent group, None for a child of the root.
        self.parent = parent

    @property
    def path(self) -> str:
        """The group's path from the root, ``"parent/child"``."""
        parts = []
        g: Group | None = self
        while g is not None:
            parts.append(g.name)
            g = g.parent
        return "/".join(reversed(parts))

    def _owner(self) -> Zswap:
        z = self._zswap()
        if z is None:
            raise ParamError(errno.ENODEV, f"group {self.path!r}: its Zswap is gone")
        return z

    # -- typed files --------------------------------------------------------------------
    @property
    def zswap_max(self) -> int | None:
        """``memory.zswap.max`` in bytes (whole pages); None for no limit ("max")."""
        limit = self._owner()._group_limits[self._gid][0]
        return None if limit == _NO_LIMIT else limit

    @zswap_max.setter
    def zswap_max(self, value: int | str | None) -> None:
        self.write("memory.zswap.max", "max" if value is None else value)

    @property
    def zswap_current(self) -> int:
        """``memory.zswap.current``: bytes charged now, descendants included."""
        return self._owner()._memcg.stat(self._gid)[ZSWAP_B]

    @property
    def zswap_writeback(self) -> bool:
        """``memory.zswap.writeback``: this group's own setting (ancestors also count)."""
        return self._owner()._group_limits[self._gid][1]

    @zswap_writeback.setter
    def zswap_writeback(self, value: bool | int | str) -> None:
        self.write("memory.zswap.writeback", value)

    def stat(self) -> dict[str, int]:
        """``memory.stat``'s zswap lines: ``zswap`` (bytes charged), ``zswapped`` (bytes
        of the pages stored), ``zswpin``, ``zswpout``, ``zswpwb``; descendants included."""
        z = self._owner()
        c = z._memcg.stat(self._gid)
        return {
            "zswap": c[ZSWAP_B],
            "zswapped": c[ZSWAPPED] * z.page_size,
            "zswpin": c[ZSWPIN],
            "zswpout": c[ZSWPOUT],
            "zswpwb": c[ZSWPWB],
        }

    # -- cgroupfs-style files -------------------------------------------------------------
    def read(self, file: str) -> str:
        """The file's text, as ``cat`` shows it (newline-terminated)."""
        if file == "memory.zswap.max":
            limit = self.zswap_max
            return "max\n" if limit is None else f"{limit}\n"
        if file == "memory.zswap.current":
            return f"{self.zswap_current}\n"
        if file == "memory.zswap.writeback":
            return f"{int(self.zswap_writeback)}\n"
        if file == "memory.stat":
            return "".join(f"{k} {v}\n" for k, v in self.stat().items())
        raise ParamError(errno.ENOENT, _no_such_file(file))

    def write(self, file: str, value: object) -> None:
        """Write a file: ``memory.zswap.max`` ("max", bytes, 10K/10M/1G) or
        ``memory.zswap.writeback`` (0/1). A bad value raises ParamError (EINVAL) and
        changes nothing; the other files are read-only (EACCES)."""
        z = self._owner()
        if file == "memory.zswap.max":
            z._group_set(self._gid, max_bytes=parse_max(value, z.page_size))
        elif file == "memory.zswap.writeback":
            z._group_set(self._gid, writeback=parse_writeback(value))
        elif file in FILES:
            raise ParamError(errno.EACCES, f"{file} is read-only")
        else:
            raise ParamError(errno.ENOENT, _no_such_file(file))

    def __repr__(self) -> str:
        return f"<Group {self.path!r} id={self._gid}>"


def _no_such_file(file: str) -> str:
    return f"a group has no file {file!r} (it has {', '.join(FILES)})"


def check_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ParamError(
            errno.EINVAL,
            f"group name must be 1-64 letters, digits or _.+@-, got {name!r}",
        )
    return name
