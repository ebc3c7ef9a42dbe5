"""What every page source shares: content ids, cheap variants, errors."""

from __future__ import annotations

import struct

__all__ = ["PAGE_SIZE", "PageSource", "WorkloadError", "is_same_filled", "mix64"]

PAGE_SIZE = 4096

_M64 = (1 << 64) - 1
_STAMP = struct.Struct("<QQ")


class WorkloadError(Exception):
    """A workload cannot be built (unreadable file, no such process, no permission)."""


def mix64(x: int) -> int:
    """splitmix64's finaliser: a cheap, well-spread hash of an int."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def is_same_filled(page: bytes) -> bool:
    """True if the page is one 8-byte word repeated (zswap's same-filled test)."""
    first = page[:8]
    return page[-8:] == first and first * (len(page) // 8) == page


class PageSource:
    """Pages by content id; ``page(cid)`` is deterministic and cheap.

    A source has ``nr_base`` distinct base pages. Content ids below ``nr_base`` are
    the base pages themselves; a larger id is a *variant* of base ``cid % nr_base``
    with 16 bytes overwritten by a stamp of the id (what a write to the page does),
    except that same-filled base pages stay as they are.
    """

    name = "source"
    page_size = PAGE_SIZE

    def __init__(self, bases: list[bytes], page_size: int = PAGE_SIZE) -> None:
        if not bases:
            raise WorkloadError(f"{self.name}: no pages")
        self.page_size = page_size
        self._bases = bases
        self._same = [is_same_filled(b) for b in bases]

    @property
    def nr_base(self) -> int:
        return len(self._bases)

    def base(self, index: int) -> bytes:
        return self._bases[index]

    def page(self, cid: int) -> bytes:
        n = len(self._bases)
        idx = cid % n
        base = self._bases[idx]
        if cid < n or self._same[idx]:
            return base
        return self._variant(base, cid)

    def _variant(self, base: bytes, cid: int) -> bytes:
        h = mix64(cid)
        buf = bytearray(base)
        pos = (h % (self.page_size // 16)) * 16
        _STAMP.pack_into(buf, pos, cid, h)
        return bytes(buf)

    def describe(self) -> str:
        return f"{self.name}: {self.nr_base} distinct pages"

    def __len__(self) -> int:
        return len(self._bases)
