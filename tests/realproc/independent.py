"""An independent computation of what zswap would do with a process's memory.

No zswap code here: the pages are found from /proc/PID/maps and /proc/PID/pagemap,
the shared zero page is recognised from /proc/kpageflags, the contents are read from
/proc/PID/mem, and every page is compressed with the codec libraries directly, with
the settings the kernel's crypto modules use (which the bundled plugins copy):

- lz4: ``lz4.block.compress`` default mode (acceleration 1), no size prefix;
- lz4hc: ``lz4.block.compress`` high_compression at the kernel's default level 9;
- zstd: python-zstandard at the kernel's default level 3, a frame without checksum,
  content size or dictionary id;
- lzo (and lzo-rle, whose streams this project makes LZO1X-1 too): ``lzo.compress``
  at level 1 (LZO1X-1) without python-lzo's header;
- deflate: raw deflate (no zlib header or trailer), a 2 KiB window (11 bits), memLevel
  9, level 6, the default strategy.

Which pages: the anonymous pages (/proc/kpageflags KPF_ANON) present in the private
mappings of the process: its private anonymous writable mappings (``rw?p`` with no
file, ``[heap]``, ``[stack]``), which hold nearly all of them, and the pages written
in private file mappings (copies on write, anonymous too). Not the shared zero page
(KPF_ZERO_PAGE: a page read before it was ever written maps the one zero page; zswap
never sees it). Swapped-out and absent pages are counted apart. Needs root (PFNs in
pagemap, and /proc/kpageflags).

The kernel rules (``RULES``), for the two profiles the tests use:

- 6.1: same-filled pages (one machine word repeated, zero-filled included) are kept
  in the zswap entry without compression (``same_filled_pages_enabled``, 4.16..6.9),
  so they are not in the codec ratio; a page that does not compress below the page
  size is rejected (``reject_compress_poor``) and stays out too.
- 6.18: zero-filled pages never reach zswap (the swap core handles them since 6.12;
  zswap's own same-filled handling was removed in 6.10), other same-filled pages are
  compressed like any page; an incompressible page is stored as it is, PAGE_SIZE
  bytes (6.18), so it counts with its full size.

The codec ratio is the pages' original bytes over their compressed bytes, over the
pages zswap would compress under those rules (the plan's vocabulary).
"""

from __future__ import annotations

import ctypes
import hashlib
import mmap
import multiprocessing
import os
import struct
import zlib
from array import array
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import lz4.block  # type: ignore[import-untyped]
import lzo
import zstandard

__all__ = [
    "CODECS",
    "PAGE",
    "RULES",
    "SAME_FILLED",
    "ZERO_FILLED",
    "Census",
    "Rules",
    "Scan",
    "census",
    "page_digests",
    "private_regions",
    "scan",
    "size_column",
    "zero_page_pfns",
]

PAGE = 4096
_PRESENT = 1 << 63
_SWAPPED = 1 << 62
_PFN_MASK = (1 << 55) - 1
#: include/uapi/linux/kernel-page-flags.h: KPF_ANON (an anonymous page: what swap, and
#: so zswap, takes) and KPF_ZERO_PAGE (the shared zero page, and the huge zero page).
KPF_ANON = 12
KPF_ZERO_PAGE = 24

#: Page flags kept per page.
ZERO_FILLED = 1
SAME_FILLED = 2  # one 8-byte word repeated (zero-filled pages have it too)


def _zstd() -> Callable[[bytes], bytes]:
    cctx = zstandard.ZstdCompressor(
        level=3, write_checksum=False, write_content_size=False, write_dict_id=False
    )
    return cctx.compress


def _deflate(page: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -11, 9, zlib.Z_DEFAULT_STRATEGY)
    return c.compress(page) + c.flush(zlib.Z_FINISH)


def _codecs() -> dict[str, Callable[[bytes], bytes]]:
    return {
        "lz4": lambda p: lz4.block.compress(p, store_size=False),
        "lz4hc": lambda p: lz4.block.compress(
            p, mode="high_compression", compression=9, store_size=False
        ),
        "zstd": _zstd(),
        "lzo": lambda p: lzo.compress(p, 1, False),
        "deflate": _deflate,
    }


#: The codecs computed, by kernel name. lzo-rle is lzo's stream here (see the module
#: docstring), so it has no column of its own: ``size_column`` maps it.
CODECS: tuple[str, ...] = ("lz4", "lz4hc", "zstd", "lzo", "deflate")


def size_column(codec: str) -> str:
    return "lzo" if codec == "lzo-rle" else codec


@dataclass(frozen=True)
class Rules:
    """What zswap does with special pages, by kernel release (see the module docstring)."""

    same_filled: str  # "zswap": same-filled pages kept apart | "swapcore-zero": zero-filled only
    incompressible: str  # "reject" | "store-raw"


RULES: dict[str, Rules] = {
    "6.1": Rules(same_filled="zswap", incompressible="reject"),
    "6.18": Rules(same_filled="swapcore-zero", incompressible="store-raw"),
}


def private_regions(pid: int) -> list[tuple[int, int, str]]:
    """(start, end, kind) of the private mappings of ``pid`` that may hold anonymous
    pages: "anon" (``rw?p`` with no file, ``[heap]``, ``[stack]``, ``[anon:NAME]``) or
    "other" (private file mappings, where written pages are anonymous copies, and
    private anonymous mappings that are not writable now). The kernel's own mappings
    ([vdso], [vvar], [vsyscall]) hold none."""
    out = []
    with open(f"/proc/{pid}/maps") as fh:
        for line in fh:
            fields = line.split(maxsplit=5)
            perms = fields[1]
            name = fields[5].strip() if len(fields) == 6 else ""
            if perms[3] != "p":
                continue
            anon = not name or name in ("[heap]", "[stack]") or name.startswith("[anon:")
            if not anon and name.startswith("["):
                continue
            lo, _, hi = fields[0].partition("-")
            kind = "anon" if anon and perms[:2] == "rw" else "other"
            out.append((int(lo, 16), int(hi, 16), kind))
    return out


class _KPageFlags:
    """/proc/kpageflags: one 8-byte word of flags per PFN."""

    def __init__(self) -> None:
        self.fd = os.open("/proc/kpageflags", os.O_RDONLY)

    def flags(self, pfn: int) -> int:
        raw = os.pread(self.fd, 8, 8 * pfn)
        return struct.unpack("<Q", raw)[0] if len(raw) == 8 else 0

    def close(self) -> None:
        os.close(self.fd)


@dataclass
class Census:
    """Where the candidate pages of one process are, and what was left out.

    A candidate: present, an anonymous page (KPF_ANON) and not the zero page
    (KPF_ZERO_PAGE): exactly what the kernel could swap out, and so zswap store.
    ``by_kind``: candidates in "anon" and "other" regions (see ``private_regions``).
    """

    pid: int
    addrs: array[int] = field(default_factory=lambda: array("Q"))
    zero_page: int = 0
    swapped: int = 0
    not_present: int = 0
    file_pages: int = 0  # present but page cache (unwritten pages of private file maps)
    by_kind: dict[str, int] = field(default_factory=lambda: {"anon": 0, "other": 0})
    zero_page_pfns: set[int] = field(default_factory=set)

    @property
    def candidates(self) -> int:
        return len(self.addrs)


def census(pid: int, regions: Sequence[tuple[int, int, str]] | None = None) -> Census:
    """The candidate pages of ``pid`` (of ``regions`` only, when given)."""
    out = Census(pid)
    kpf = _KPageFlags()
    pagemap = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY)
    try:
        for start, end, kind in private_regions(pid) if regions is None else regions:
            first, count = start // PAGE, (end - start) // PAGE
            step = 1 << 15
            for base in range(0, count, step):
                n = min(step, count - base)
                raw = os.pread(pagemap, 8 * n, 8 * (first + base))
                for i, entry in enumerate(struct.unpack(f"<{len(raw) // 8}Q", raw)):
                    if not entry & _PRESENT:
                        if entry & _SWAPPED:
                            out.swapped += 1
                        elif kind == "anon":
                            out.not_present += 1
                        continue
                    pfn = entry & _PFN_MASK
                    if pfn == 0:
                        raise PermissionError("pagemap hides PFNs: run as root")
                    flags = kpf.flags(pfn)
                    if flags >> KPF_ZERO_PAGE & 1:
                        out.zero_page += 1
                        out.zero_page_pfns.add(pfn)
                        continue
                    if not flags >> KPF_ANON & 1:
                        out.file_pages += 1
                        continue
                    out.by_kind[kind] += 1
                    out.addrs.append(start + (base + i) * PAGE)
    finally:
        os.close(pagemap)
        kpf.close()
    return out


def zero_page_pfns() -> set[int]:
    """The zero page's PFN as this process sees it: a private anonymous page read and
    never written maps it (a cross-check of the kpageflags bit)."""
    m = mmap.mmap(-1, PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        assert m[0] == 0  # a read fault: maps the shared zero page
        view = (ctypes.c_char * 1).from_buffer(m)
        addr = ctypes.addressof(view)
        del view  # releases the export, so that the mapping can be closed
        fd = os.open("/proc/self/pagemap", os.O_RDONLY)
        try:
            entry = struct.unpack("<Q", os.pread(fd, 8, 8 * (addr // PAGE)))[0]
        finally:
            os.close(fd)
        return {entry & _PFN_MASK} if entry & _PRESENT else set()
    finally:
        m.close()


def _runs(addrs: Sequence[int], limit: int = 256) -> Iterator[tuple[int, int]]:
    """(first address, page count) of runs of adjacent pages, at most ``limit`` long."""
    i = 0
    while i < len(addrs):
        j = i + 1
        while j < len(addrs) and j - i < limit and addrs[j] == addrs[j - 1] + PAGE:
            j += 1
        yield addrs[i], j - i
        i = j


def _work(pid: int, addrs: Sequence[int]) -> tuple[bytes, dict[str, bytes], int]:
    """Compress the pages at ``addrs``: (flags per page, sizes per codec, vanished).

    A page that can no longer be read (the process unmapped it) gets flag 0 and size
    0 everywhere and is counted as vanished; the tests expect none.
    """
    codecs = _codecs()
    flags = bytearray()
    sizes = {name: array("I") for name in codecs}
    vanished = 0
    zero = bytes(PAGE)
    fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
    try:
        for addr, n in _runs(addrs):
            try:
                data = os.pread(fd, n * PAGE, addr)
            except OSError:
                data = b""
            for k in range(n):
                page = data[k * PAGE : (k + 1) * PAGE]
                if len(page) != PAGE:
                    vanished += 1
                    flags.append(0)
                    for arr in sizes.values():
                        arr.append(0)
                    continue
                f = 0
                if page == zero:
                    f = ZERO_FILLED | SAME_FILLED
                elif page == page[:8] * (PAGE // 8):
                    f = SAME_FILLED
                flags.append(f)
                for name, compress in codecs.items():
                    sizes[name].append(len(compress(page)))
    finally:
        os.close(fd)
    return bytes(flags), {k: v.tobytes() for k, v in sizes.items()}, vanished


@dataclass
class Scan:
    """Every candidate page of a process, compressed by every codec."""

    census: Census
    flags: bytes
    sizes: dict[str, array[int]]
    vanished: int

    @property
    def pages(self) -> int:
        return len(self.flags)

    def zero_filled(self) -> int:
        return sum(1 for f in self.flags if f & ZERO_FILLED)

    def same_filled(self) -> int:
        return sum(1 for f in self.flags if f & SAME_FILLED)

    def considered(self, codec: str, rules: Rules) -> tuple[int, int, int, int]:
        """(pages compressed and kept, their original bytes, their compressed bytes,
        pages rejected as incompressible) for ``codec`` under ``rules``."""
        sizes = self.sizes[size_column(codec)]
        skip = ZERO_FILLED if rules.same_filled == "swapcore-zero" else SAME_FILLED
        kept = orig = comp = rejected = 0
        for f, c in zip(self.flags, sizes, strict=True):
            if f & skip or c == 0:  # kept apart by the rules, or vanished (no size)
                continue
            if c >= PAGE:
                if rules.incompressible == "reject":
                    rejected += 1
                    continue
                c = PAGE
            kept += 1
            orig += PAGE
            comp += c
        return kept, orig, comp, rejected

    def codec_ratio(self, codec: str, rules: Rules) -> float | None:
        _kept, orig, comp, _rejected = self.considered(codec, rules)
        return orig / comp if comp else None


def scan(
    pid: int,
    *,
    jobs: int | None = None,
    chunk: int = 2048,
    regions: Sequence[tuple[int, int, str]] | None = None,
) -> Scan:
    """Census of ``pid`` (of ``regions`` only, when given) and every candidate page
    compressed, over ``jobs`` processes (default: the usable CPUs).

    The workers are spawned (not forked from a test runner that may hold threads);
    each opens /proc/PID/mem itself.
    """
    c = census(pid, regions)
    addrs = c.addrs
    parts = [addrs[i : i + chunk] for i in range(0, len(addrs), chunk)]
    jobs = jobs or len(os.sched_getaffinity(0))
    flags = bytearray()
    sizes = {name: array("I") for name in CODECS}
    vanished = 0
    if jobs <= 1 or len(parts) <= 1:
        results: Iterator[tuple[bytes, dict[str, bytes], int]] = (_work(pid, p) for p in parts)
        for f, s, v in results:
            flags += f
            for name in CODECS:
                sizes[name].frombytes(s[name])
            vanished += v
    else:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            for f, s, v in pool.map(_work, [pid] * len(parts), parts):
                flags += f
                for name in CODECS:
                    sizes[name].frombytes(s[name])
                vanished += v
    return Scan(census=c, flags=bytes(flags), sizes=sizes, vanished=vanished)


def page_digests(pid: int, addrs: Sequence[int]) -> list[bytes]:
    """An 8-byte BLAKE2b digest of each page at ``addrs`` (b"" when unreadable): to
    compare two processes' memory without keeping or showing it."""
    out: list[bytes] = []
    fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
    try:
        for addr, n in _runs(addrs):
            try:
                data = os.pread(fd, n * PAGE, addr)
            except OSError:
                data = b""
            for k in range(n):
                page = data[k * PAGE : (k + 1) * PAGE]
                out.append(hashlib.blake2b(page, digest_size=8).digest() if page else b"")
    finally:
        os.close(fd)
    return out
