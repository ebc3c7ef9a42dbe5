"""The contenders: what a user could run instead of zswap_core, and zswap_core itself.

Every contender has the same shape so one harness times them all:

* ``open(n, parts, workdir)`` - make an empty store for ``n`` pages in ``parts`` key
  ranges (one per thread; a swap type for Zswap);
* ``store_range(part, pages, lo, hi)`` - store ``pages[lo:hi]`` under keys ``lo..hi-1``;
* ``load_keys(part, keys)`` - read those keys back (the result is dropped);
* ``verify(pages)`` - untimed: check every page read back and describe what is held;
* ``close()``.

The loops are written out per contender with local bindings, so the harness adds the
same small cost (a ``range`` loop and a list index) to every one of them.

Peers (see ``/work/shared/reference/peers.md`` section 1):

* :class:`DictLz4` - the floor: a ``dict`` of ``lz4.block`` output (no limit, no LRU);
* :class:`ZictLRU` - ``zict.LRU(n, zict.Func(lz4c, lz4d, {}))`` with ``n`` above the
  page count (no eviction): zict's in-RAM path;
* :class:`ZictBuffer` - ``zict.Buffer(Func(lz4c, lz4d, {}), File(dir), n)``: zict's
  spilling path, the peer of zswap with writeback.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from typing import Any

import lz4.block  # type: ignore[import-untyped]
import zict

from zswap_core import Zswap
from zswap_core.swap import Swap, SwapEntry
from zswap_core.workload import is_same_filled

__all__ = [
    "PAGE_SIZE",
    "Contender",
    "DictCodec",
    "DictLz4",
    "ZictBuffer",
    "ZictLRU",
    "ZswapRAM",
    "ZswapSwap",
    "codec_floor",
]

PAGE_SIZE = 4096

_lz4c: Callable[[bytes], bytes] = functools.partial(lz4.block.compress, store_size=False)
_lz4d: Callable[[bytes], bytes] = functools.partial(
    lz4.block.decompress, uncompressed_size=PAGE_SIZE
)


class VerifyError(AssertionError):
    """A contender returned wrong bytes: its figures would be meaningless."""


class Contender:
    """Base class; see the module docstring for the protocol."""

    name = "contender"
    #: a one-line description for the report
    label = ""

    def open(self, n: int, parts: int, workdir: str) -> None:
        raise NotImplementedError

    def store_range(self, part: int, pages: Sequence[bytes], lo: int, hi: int) -> None:
        raise NotImplementedError

    def load_keys(self, part: int, keys: Sequence[int]) -> None:
        raise NotImplementedError

    def verify(self, pages: Sequence[bytes]) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------------------------
# peers
# ---------------------------------------------------------------------------------------


class DictLz4(Contender):
    """The floor: ``d[k] = lz4.block.compress(page, store_size=False)``."""

    name = "dict+lz4"
    label = "dict of lz4.block.compress(page, store_size=False) (the floor)"

    def open(self, n: int, parts: int, workdir: str) -> None:
        self.d: dict[int, bytes] = {}

    def store_range(self, part: int, pages: Sequence[bytes], lo: int, hi: int) -> None:
        d = self.d
        compress = lz4.block.compress
        for i in range(lo, hi):
            d[i] = compress(pages[i], store_size=False)

    def load_keys(self, part: int, keys: Sequence[int]) -> None:
        d = self.d
        decompress = lz4.block.decompress
        for i in keys:
            decompress(d[i], uncompressed_size=PAGE_SIZE)

    def verify(self, pages: Sequence[bytes]) -> dict[str, Any]:
        for i, page in enumerate(pages):
            if _lz4d(self.d[i]) != page:
                raise VerifyError(f"{self.name}: page {i} came back wrong")
        return {"held": len(self.d), "compressed_bytes": sum(map(len, self.d.values()))}

    def close(self) -> None:
        self.d = {}


class DictCodec(Contender):
    """A codec's own floor: ``d[k] = compress(page)``, ``decompress(d[k], PAGE_SIZE)``.

    Made by :func:`codec_floor`: with the system liblz4 the C ops link (the same library
    as Zswap's lz4 on the native path, so a gain that only comes from another build of
    lz4 shows), and for zstd, lzo and deflate with their Python libraries' cheapest
    calls and the plugin's settings.
    """

    def __init__(
        self,
        name: str,
        label: str,
        compress: Callable[[bytes], bytes],
        decompress: Callable[[bytes, int], bytes],
    ) -> None:
        self.name = name
        self.label = label
        self.compress = compress
        self.decompress = decompress

    def open(self, n: int, parts: int, workdir: str) -> None:
        self.d: dict[int, bytes] = {}

    def store_range(self, part: int, pages: Sequence[bytes], lo: int, hi: int) -> None:
        d = self.d
        compress = self.compress
        for i in range(lo, hi):
            d[i] = compress(pages[i])

    def load_keys(self, part: int, keys: Sequence[int]) -> None:
        d = self.d
        decompress = self.decompress
        for i in keys:
            decompress(d[i], PAGE_SIZE)

    def verify(self, pages: Sequence[bytes]) -> dict[str, Any]:
        for i, page in enumerate(pages):
            if self.decompress(self.d[i], PAGE_SIZE) != page:
                raise VerifyError(f"{self.name}: page {i} came back wrong")
        return {"held": len(self.d), "compressed_bytes": sum(map(len, self.d.values()))}

    def close(self) -> None:
        self.d = {}


def codec_floor(codec: str) -> DictCodec | None:
    """The floor of ``codec`` ("zstd", "lzo", "deflate"; "<name>-system": through the
    plugin's C ops, on the system library), or None."""
    if codec.endswith("-system"):
        name = codec.removesuffix("-system")
        try:
            from zswap_core import default_registry
            from zswap_core._core import CodecOps
        except ImportError:
            return None
        mod = default_registry().request("compressor", name)
        cap = mod.driver(mod.params).codec_ops if mod is not None else None
        if cap is None:
            return None
        ops = CodecOps(cap)
        lib = {"lz4": "liblz4", "zstd": "libzstd", "lzo": "liblzo2", "deflate": "zlib"}[name]
        return DictCodec(
            f"dict+{name} (system {lib})",
            f"dict of the {name} plugin's C ops output (the system {lib}), called from Python",
            ops.compress,
            ops.decompress,
        )
    if codec == "zstd":
        import zstandard

        cctx = zstandard.ZstdCompressor(
            level=3, write_checksum=False, write_content_size=False, write_dict_id=False
        )
        dctx = zstandard.ZstdDecompressor()
        return DictCodec(
            "dict+zstd",
            "dict of zstandard.ZstdCompressor(level=3) output",
            cctx.compress,
            lambda src, n: dctx.decompress(src, max_output_size=n),
        )
    if codec == "lzo":
        try:
            import lzo
        except ImportError:
            return None
        return DictCodec(
            "dict+lzo",
            "dict of lzo.compress(page, 1, False) output (python-lzo, LZO1X-1)",
            lambda page: lzo.compress(page, 1, False),
            lambda src, n: lzo.decompress(src, False, n),
        )
    if codec == "deflate":
        import zlib

        def deflate(page: bytes) -> bytes:
            c = zlib.compressobj(6, zlib.DEFLATED, -11, 9, zlib.Z_DEFAULT_STRATEGY)
            return c.compress(page) + c.flush()

        return DictCodec(
            "dict+deflate",
            "dict of raw deflate output (zlib, level 6, 2 KiB window, memLevel 9)",
            deflate,
            lambda src, n: zlib.decompress(src, -11, n),
        )
    raise ValueError(f"no floor for {codec!r}")


class ZictLRU(Contender):
    """``zict.LRU(n, zict.Func(lz4c, lz4d, {}))`` with room for every page."""

    name = "zict LRU(Func)"
    label = "zict.LRU(n, zict.Func(lz4c, lz4d, {})), n above the page count (no eviction)"

    def open(self, n: int, parts: int, workdir: str) -> None:
        self.m: Any = zict.LRU(n + 1, zict.Func(_lz4c, _lz4d, {}))

    def store_range(self, part: int, pages: Sequence[bytes], lo: int, hi: int) -> None:
        m = self.m
        for i in range(lo, hi):
            m[i] = pages[i]

    def load_keys(self, part: int, keys: Sequence[int]) -> None:
        m = self.m
        for i in keys:
            m[i]

    def verify(self, pages: Sequence[bytes]) -> dict[str, Any]:
        for i, page in enumerate(pages):
            if self.m[i] != page:
                raise VerifyError(f"{self.name}: page {i} came back wrong")
        return {"held": len(self.m)}

    def close(self) -> None:
        self.m.close()


class ZictBuffer(Contender):
    """``zict.Buffer(fast=Func(lz4c, lz4d, {}), slow=File(dir), n=fraction * pages)``.

    zict's ``File`` wants ``str`` keys; they are made once in :meth:`open`, untimed.
    """

    name = "zict Buffer(Func, File)"

    def __init__(self, fraction: float = 0.2) -> None:
        self.fraction = fraction
        self.label = (
            f"zict.Buffer(Func(lz4c, lz4d, {{}}), File(tmpdir), n={fraction:.0%} of the pages)"
        )

    def open(self, n: int, parts: int, workdir: str) -> None:
        self.keys = [str(i) for i in range(n)]
        self.n = max(1, int(n * self.fraction))
        path = os.path.join(workdir, "zict")
        os.mkdir(path)
        self.m: Any = zict.Buffer(zict.Func(_lz4c, _lz4d, {}), zict.File(path), n=self.n)

    def store_range(self, part: int, pages: Sequence[bytes], lo: int, hi: int) -> None:
        m = self.m
        keys = self.keys
        for i in range(lo, hi):
            m[keys[i]] = pages[i]

    def load_keys(self, part: int, keys: Sequence[int]) -> None:
        m = self.m
        skeys = self.keys
        for i in keys:
            m[skeys[i]]

    def verify(self, pages: Sequence[bytes]) -> dict[str, Any]:
        # checked on a sample: a full pass would reshuffle fast and slow once more
        for i in range(0, len(pages), max(1, len(pages) // 64)):
            if bytes(self.m[self.keys[i]]) != pages[i]:
                raise VerifyError(f"{self.name}: page {i} came back wrong")
        return {"fast": len(self.m.fast), "slow": len(self.m.slow), "n": self.n}

    def close(self) -> None:
        self.m.close()


# ---------------------------------------------------------------------------------------
# ours
# ---------------------------------------------------------------------------------------


class ZswapRAM(Contender):
    """``Zswap`` alone (no swap device), the pool limit far above the data."""

    def __init__(self, zpool: str, compressor: str = "lz4", backend: str | None = None) -> None:
        self.zpool = zpool
        self.compressor = compressor
        self.backend = backend
        self.name = f"Zswap {compressor}+{zpool}" + (f" ({backend})" if backend else "")
        self.label = (
            f"Zswap(compressor={compressor}, zpool={zpool}"
            + (f", backend={backend}" if backend else "")
            + "), store/load per page"
        )

    def open(self, n: int, parts: int, workdir: str) -> None:
        # ram_bytes such that the 20% pool limit is twice the uncompressed data
        self.z = Zswap(
            compressor=self.compressor,
            zpool=self.zpool,
            ram_bytes=10 * max(n, 64) * PAGE_SIZE,
            backend=self.backend,
        )
        for t in range(parts):
            self.z.init(t)

    def store_range(self, part: int, pages: Sequence[bytes], lo: int, hi: int) -> None:
        store = self.z.store
        for i in range(lo, hi):
            store(part, i, pages[i])

    def load_keys(self, part: int, keys: Sequence[int]) -> None:
        load = self.z.load
        for i in keys:
            load(part, i)

    def verify(self, pages: Sequence[bytes]) -> dict[str, Any]:
        """Single-part stores only (the in-RAM figures); returns what zswap held."""
        z = self.z
        held = same = 0
        held_keys: list[int] = []
        for i, page in enumerate(pages):
            got = z.load(0, i)
            if got is None:
                continue
            if got != page:
                raise VerifyError(f"{self.name}: page {i} came back wrong")
            held += 1
            if is_same_filled(page):
                same += 1
            else:
                held_keys.append(i)
        stats = z.stats
        core, pool = z._core, z._current
        return {
            "backend": z.backend,
            # the codec and allocator paths: "native" (C ops) or "python" (methods)
            "codec_backend": core.pool_codec_backend(pool.id) if core and pool else "python",
            "zpool_backend": core.pool_backend(pool.id) if core and pool else "python",
            "nogil": bool(core.pool_nogil(pool.id)) if core and pool else False,
            "held": held,
            "same_filled": same,
            "held_compressed_keys": held_keys,
            "pool_pages": z.pages.nr_pages,
            "pool_total_size": stats["pool_total_size"],
            "stats": stats,
        }

    def close(self) -> None:
        self.z.close()


class ZswapSwap(Contender):
    """``Zswap`` + ``Swap``: a swap file in ``workdir``; the pool limit at ``percent``.

    ``ram_bytes`` is the pages' total size, so ``max_pool_percent`` is a share of the
    working set. Stores are ``swap_out`` (zswap first, else the file; the pool limit
    wakes zswap's writeback worker), loads are ``swap_in``.
    """

    name = "Zswap+Swap"

    def __init__(self, zpool: str = "zsmalloc", compressor: str = "lz4", percent: int = 20) -> None:
        self.zpool = zpool
        self.compressor = compressor
        self.percent = percent
        self.label = (
            f"Zswap({compressor}, {zpool}, max_pool_percent={percent}, ram_bytes=working set)"
            " + Swap(swap file)"
        )

    def open(self, n: int, parts: int, workdir: str) -> None:
        self.z = Zswap(
            compressor=self.compressor,
            zpool=self.zpool,
            ram_bytes=n * PAGE_SIZE,
            max_pool_percent=self.percent,
        )
        self.s = Swap(self.z)
        self.entries: list[SwapEntry | None] = [None] * n
        for t in range(parts):
            # one file per part, sized for all pages (plus the header slot)
            self.s.swapon(os.path.join(workdir, f"swapfile{t}"), n + 2)

    def store_range(self, part: int, pages: Sequence[bytes], lo: int, hi: int) -> None:
        swap_out = self.s.swap_out
        entries = self.entries
        for i in range(lo, hi):
            entries[i] = swap_out(pages[i])

    def load_keys(self, part: int, keys: Sequence[int]) -> None:
        swap_in = self.s.swap_in
        entries = self.entries
        for i in keys:
            swap_in(entries[i])  # type: ignore[arg-type]

    def verify(self, pages: Sequence[bytes]) -> dict[str, Any]:
        info = {  # the counters of the timed phases, before this pass adds to them
            "pool_limit_pages": self.z.pool_limit_pages,
            "stats": self.z.stats,
            "vmstat": self.s.vmstat,
        }
        for i, page in enumerate(pages):
            e = self.entries[i]
            if e is None or self.s.swap_in(e) != page:
                raise VerifyError(f"{self.name}: page {i} came back wrong")
        return info

    def close(self) -> None:
        self.s.close()
        self.z.close()
