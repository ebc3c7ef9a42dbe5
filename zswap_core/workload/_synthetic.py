"""A seeded synthetic page mix shaped like real swap.

Shares follow published swap statistics (see the design notes, "a realistic
workload"): about 10% zero pages, 1% other same-filled pages, heap records as the
bulk, some text and machine code, and 5% incompressible pages. Each kind has a
small pool of distinct pages made once from a seeded ``random.Random``; a page for a
content id is a pool page picked by a hash of the id, with a 16-byte stamp of the id
written into it, so pages are distinct and cost about a microsecond each.
"""

from __future__ import annotations

import os
import random
import struct
import sys
import sysconfig
from itertools import accumulate

from ._base import PAGE_SIZE, PageSource, WorkloadError, mix64

__all__ = ["DEFAULT_MIX", "KINDS", "SyntheticSource"]

#: Page kinds and their default shares of the mix (they sum to 1).
DEFAULT_MIX: dict[str, float] = {
    "zero": 0.10,
    "same": 0.01,
    "heap": 0.64,
    "text": 0.10,
    "binary": 0.10,
    "random": 0.05,
}
KINDS = tuple(DEFAULT_MIX)
_SAME_KINDS = frozenset({"zero", "same"})
_TABLE = 4096  # resolution of the kind table


class SyntheticSource(PageSource):
    """Pages of a seeded realistic mix; ``page(cid)`` is deterministic per ``seed``.

    ``mix`` overrides shares by kind (e.g. ``{"random": 1.0}``); ``pool`` is how many
    distinct pages each compressible kind has before stamping.
    """

    name = "synthetic"

    def __init__(
        self,
        seed: int = 0,
        *,
        page_size: int = PAGE_SIZE,
        mix: dict[str, float] | None = None,
        pool: int = 64,
    ) -> None:
        shares = dict(DEFAULT_MIX if mix is None else mix)
        unknown = set(shares) - set(DEFAULT_MIX)
        if unknown:
            raise WorkloadError(f"unknown page kinds {sorted(unknown)}; known: {list(KINDS)}")
        total = sum(shares.values())
        if total <= 0 or any(v < 0 for v in shares.values()):
            raise WorkloadError("page kind shares must be non-negative and not all zero")
        if page_size < 512 or page_size & (page_size - 1):
            raise WorkloadError(f"page size must be a power of two >= 512, got {page_size}")
        self.seed = seed
        self.page_size = page_size
        self.mix = {k: v / total for k, v in shares.items() if v > 0}
        self._salt = mix64(seed ^ 0x5A5A5A5A)
        rng = random.Random(seed)
        builders = {
            "zero": lambda: [bytes(page_size)],
            "same": lambda: _same_pages(page_size),
            "heap": lambda: [_heap_page(rng, page_size) for _ in range(pool)],
            "text": lambda: _text_pages(rng, page_size, pool),
            "binary": lambda: _binary_pages(rng, page_size, pool),
            "random": lambda: [rng.randbytes(page_size) for _ in range(max(1, pool // 2))],
        }
        # Build in a fixed order so the pools do not depend on the mix's key order.
        self._pools: dict[str, list[bytes]] = {k: builders[k]() for k in KINDS if k in self.mix}
        self._table: list[str] = []
        kinds = list(self.mix)
        bounds = list(accumulate(self.mix[k] for k in kinds))
        j = 0
        for i in range(_TABLE):
            while j < len(kinds) - 1 and (i + 0.5) / _TABLE > bounds[j]:
                j += 1
            self._table.append(kinds[j])
        super().__init__([p for k in self._pools for p in self._pools[k]], page_size)

    def kind(self, cid: int) -> str:
        """Which kind of page ``page(cid)`` is."""
        return self._table[mix64(cid ^ self._salt) % _TABLE]

    def page(self, cid: int) -> bytes:
        h = mix64(cid ^ self._salt)
        kind = self._table[h % _TABLE]
        pool = self._pools[kind]
        base = pool[(h >> 12) % len(pool)]
        if kind in _SAME_KINDS:
            return base
        return self._variant(base, cid)

    def describe(self) -> str:
        shares = ", ".join(f"{k} {v:.0%}" for k, v in self.mix.items())
        return f"synthetic mix (seed {self.seed}): {shares}"


# -- same-filled ------------------------------------------------------------------------


def _same_pages(page_size: int) -> list[bytes]:
    words = (0xFFFFFFFFFFFFFFFF, 0x0101010101010101, 0xDEADBEEFDEADBEEF, 0x00000000FFFFFFFF)
    return [struct.pack("<Q", w) * (page_size // 8) for w in words]


# -- heap records -----------------------------------------------------------------------

_NAMES = (
    b"id",
    b"name",
    b"value",
    b"count",
    b"next",
    b"prev",
    b"parent",
    b"data",
    b"key",
    b"items",
    b"size",
    b"flags",
    b"owner",
    b"user",
    b"path",
    b"status",
    b"index",
    b"created",
    b"updated",
    b"type",
    b"offset",
    b"length",
    b"buffer",
    b"cache",
)


def _heap_page(rng: random.Random, page_size: int) -> bytes:
    """Packed records as a C or Python heap holds them: headers, pointers, ints, strings."""
    heap_base = 0x55D0_0000_0000 + (rng.randrange(1 << 16) << 20)
    types = [0x7F3A_2B40_0000 + 0x1A0 * k for k in range(12)]
    out = bytearray()
    pack = struct.pack

    def ptr() -> int:
        return heap_base + (rng.randrange(1 << 11) << 4)

    used = page_size if rng.random() < 0.45 else rng.randrange(page_size // 3, page_size)
    while len(out) < used:
        r = rng.random()
        refcnt = rng.choice((1, 1, 1, 2, 2, 3, 5, 17))
        if r < 0.22:  # small int object
            out += pack("<QQQQQ", 0x31, refcnt, types[0], 1, rng.randrange(1000))
        elif r < 0.40:  # short string object
            s = rng.choice(_NAMES) + (b"_%d" % rng.randrange(100) if rng.random() < 0.3 else b"")
            body = s + b"\0" * (-len(s) % 8 or 8)
            out += pack(
                "<QQQQQQ", 0x41 + len(body), refcnt, types[1], len(s), rng.getrandbits(64), 0xE4
            )
            out += body
        elif r < 0.55:  # list / tuple of pointers
            n = rng.randrange(1, 7)
            out += pack("<QQQQ", 0x21 + 8 * n, refcnt, types[2 + rng.randrange(2)], n)
            out += b"".join(pack("<Q", ptr()) for _ in range(n))
        elif r < 0.75:  # dict entries: hash, key ptr, value ptr
            for _ in range(rng.randrange(2, 6)):
                out += pack("<QQQ", rng.getrandbits(64) if rng.random() < 0.4 else 0, ptr(), ptr())
        elif r < 0.85:  # float object
            out += pack("<QQQd", 0x21, refcnt, types[4], round(rng.random() * 100, 2))
        elif r < 0.95:  # C struct: pointers, small ints, flags, NULLs
            out += pack(
                "<QQQIIQQ",
                ptr(),
                ptr() if rng.random() < 0.5 else 0,
                types[5 + rng.randrange(7)],
                rng.randrange(64),
                rng.choice((0, 1, 0x10, 0x80)),
                0,
                rng.randrange(4096),
            )
        else:  # freed chunk: fd/bk pointers and stale zeros
            n = rng.randrange(2, 10)
            out += pack("<QQQ", 0x10 * n + 1, ptr(), ptr()) + bytes(8 * n)
    del out[used:]
    return bytes(out) + bytes(page_size - len(out))


# -- English-like text ------------------------------------------------------------------

_COMMON = (
    "the of and to a in is that for it as was with be by on not he this are or his from "
    "at which but have an they you were her she there one all we their been has when who "
    "will more no if out so said what up its about into than them can only other new some "
    "could time these two may then do first any my now such like our over man me even most"
)
_ONSETS = (
    "",
    "b",
    "c",
    "d",
    "f",
    "g",
    "h",
    "l",
    "m",
    "n",
    "p",
    "r",
    "s",
    "t",
    "v",
    "w",
    "st",
    "tr",
    "pr",
    "ch",
    "th",
    "sh",
    "pl",
    "gr",
    "br",
    "cl",
)
_NUCLEI = ("a", "e", "i", "o", "u", "ea", "ou", "io", "ai", "ee", "y")
_CODAS = ("", "", "n", "r", "s", "t", "l", "nd", "st", "ng", "ck", "rt", "ble", "tion", "ment")


def _text_pages(rng: random.Random, page_size: int, count: int) -> list[bytes]:
    vocab = _COMMON.split(" ")
    seen = set(vocab)
    while len(vocab) < 600:
        w = "".join(
            rng.choice(_ONSETS) + rng.choice(_NUCLEI) for _ in range(rng.choice((1, 1, 2, 2, 3)))
        ) + rng.choice(_CODAS)
        if w not in seen:
            seen.add(w)
            vocab.append(w)
    cum = list(accumulate((r + 1) ** -1.2 for r in range(len(vocab))))
    pages = []
    for _ in range(count):
        parts: list[str] = []
        size = 0
        while size < page_size:
            words = rng.choices(vocab, cum_weights=cum, k=rng.randrange(5, 18))
            sentence = " ".join(words).capitalize() + rng.choice((". ", ". ", ", ", "? ", ".\n"))
            parts.append(sentence)
            size += len(sentence)
        pages.append("".join(parts).encode()[:page_size])
    return pages


# -- machine code -----------------------------------------------------------------------


def _binary_files() -> list[str]:
    paths = [sys.executable]
    libdir = sysconfig.get_config_var("LIBDIR")
    ldlib = sysconfig.get_config_var("LDLIBRARY")
    if libdir and ldlib:
        paths.append(os.path.join(libdir, ldlib))
    return [os.path.realpath(p) for p in paths if p]


def _binary_pages(rng: random.Random, page_size: int, count: int) -> list[bytes]:
    """Pages of this Python's own executable and libpython; synthetic code if unreadable."""
    pages: list[bytes] = []
    for path in dict.fromkeys(_binary_files()):
        try:
            with open(path, "rb") as fh:
                data = fh.read(8 << 20)
        except OSError:
            continue
        for off in range(0, len(data) - page_size + 1, page_size):
            p = data[off : off + page_size]
            if p.count(0) < page_size // 2:  # skip padding and mostly-empty pages
                pages.append(p)
    if len(pages) >= count:
        step = len(pages) / count
        return [pages[int(i * step)] for i in range(count)]
    return pages + [_code_page(rng, page_size) for _ in range(count - len(pages))]


def _code_page(rng: random.Random, page_size: int) -> bytes:
    """x86-64-like code: prologues, moves with small displacements, calls, padding."""
    out = bytearray()
    while len(out) < page_size:
        r = rng.random()
        if r < 0.1:
            out += b"\x55\x48\x89\xe5"  # push rbp; mov rbp, rsp
        elif r < 0.4:
            out += bytes(
                (0x48, 0x8B, rng.choice((0x45, 0x4D, 0x55, 0x7D)), -8 * rng.randrange(1, 16) & 0xFF)
            )
        elif r < 0.55:
            out += b"\xe8" + rng.getrandbits(32).to_bytes(4, "little")  # call rel32
        elif r < 0.7:
            out += bytes((0x48, 0x83, 0xC4, rng.choice((8, 16, 24, 32))))
        elif r < 0.8:
            out += bytes((0x74 + rng.randrange(4), rng.randrange(128)))  # jcc rel8
        elif r < 0.9:
            out += b"\x5d\xc3" + b"\x90" * rng.randrange(0, 14)  # pop rbp; ret; nop pad
        else:
            out += bytes((0x48, 0xC7, 0xC0)) + rng.randrange(256).to_bytes(4, "little")
    return bytes(out[:page_size])
