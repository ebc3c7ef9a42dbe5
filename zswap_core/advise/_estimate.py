"""From compressed sizes of sampled pages to population estimates with intervals.

Everything here works on small per-page arrays (a kind byte per page and, per codec,
its compressed size), never on page contents, so it runs in the parent process after
the workers have compressed the sample.

**Store policy.** What zswap does with a page follows the kernel profile:
zero/same-filled pages are kept in the entry (``same_filled="zswap"``; ``"zswap-zero"``:
zero pages only), left to the swap core (``"swapcore-zero"``: zero pages never reach
zswap; other same-filled pages are compressed) or compressed like any page
(``"none"``); older kernels put a header in front of each object in allocators that
could evict (``header_bytes``, part of the object's size); a page whose compressed size
is a page or more is refused (``incompressible="reject"``, it goes to the swap device)
or kept raw as a page-sized object (``"store-raw"``, 6.18). An object the allocator
refuses (``ENOSPC``, e.g. zbud above 3968 bytes) is refused as zswap refuses it
(``reject_compress_poor``). Every page zswap holds costs ``entry_bytes`` of metadata.

**Pool bytes without sample-size bias, in bounded memory.** Storing a sample of n
pages for real would leave partly filled zspages (zsmalloc) or unpaired pages
(zbud/z3fold) that a population of N pages amortizes, so the pool per page of a
sample is biased upwards; storing the population is not bounded in memory. Instead:

* *segregated-fit allocators* (zsmalloc): objects of one size class share granules
  (zspages) of ``B`` bytes holding ``m`` objects, and nothing else. For every object
  size in the sample the real allocator is asked, in a scratch pool, for ``(m, B)``
  (allocate until the pool grows a second time) and whether neighbouring sizes share
  a granule (one object of each: the pool grows or not). The population's pool is
  ``sum over groups of ceil(N_g / m_g) * B_g`` with ``N_g`` the group's estimated
  object count: a steady-state cost ``B/m`` per object plus the one partly filled
  granule per group that the population really has. Classes too rare to be in the
  sample still cost a mostly empty granule each: their number is estimated from the
  classes seen once and twice (see :meth:`PoolModel._unseen_classes`). With the whole
  population (``--sample all``) this is exactly what storing every page in one pool
  gives.
* *pairing allocators* (zbud, z3fold): an object's cost depends on which others it
  shares a page with, and so on the order of the stores: memory has locality (runs
  of neighbouring pages compress alike), and runs of alike objects pair worse than
  a mix. The real allocator replays object sizes over page accounting without page
  memory (their bookkeeping lives outside the pages). A sample's pages are N/n pages
  apart, so it cannot tell how long memory's runs are; two replays bound that:
  the sample's sizes in address order (locality only at the sample's spacing), and
  each sampled size repeated N/n times in a row (as if every sampled page stood for
  a run of neighbours like itself). The estimate is their midpoint and the interval
  spans both, beyond the sampling error (the pool attributed to objects in
  proportion to their size). Each replay holds at most ``REPLAY_MAX`` objects, which
  leave about 0.1% of their pages unpaired at the end. With the whole population:
  its sizes in address order, exact as storing them (up to ``REPLAY_ORDERED_MAX``).
  Measured on real processes: the address-order replay came out 0.1-1.4% under the
  whole population's, the run replay 0.3% over to 0.6% under.
* any other allocator: the same replay over real pages, at most ``REPLAY_REAL_MAX``
  objects.

**Intervals.** Simple random sampling without replacement of n of N candidate pages:
the codec ratio and the pool density are ratio estimators (linearized variance, with
the finite population correction ``1 - n/N``); saved bytes is a total estimator with
the same correction. A normal quantile gives the ``confidence`` level. With the whole
population the correction is 0 and low == high == value.
"""

from __future__ import annotations

import errno
import math
import statistics
from array import array
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "KIND_NORMAL",
    "KIND_SAME",
    "KIND_ZERO",
    "REPLAY_MAX",
    "REPLAY_ORDERED_MAX",
    "REPLAY_REAL_MAX",
    "CodecSample",
    "Costs",
    "Estimate",
    "Interval",
    "PoolModel",
    "ProfileLike",
    "Sample",
    "StorePolicy",
    "estimate_pair",
    "interval_dict",
    "page_kind",
    "spread",
]

KIND_NORMAL = 0
KIND_ZERO = 1
KIND_SAME = 2  # same-filled with a non-zero word

#: Objects in each replay through a pairing allocator (zbud, z3fold) from a sample:
#: their pages cost no memory. The end of a replay leaves a few dozen pages unpaired
#: (a few per free-space list): about 0.1% of this many objects' pages (measured).
REPLAY_MAX = 1 << 15
#: A whole population's sizes are replayed in address order (exact) up to this many.
REPLAY_ORDERED_MAX = 1 << 20
#: Objects replayed through an allocator of unknown kind, over real pages (<= 64 MiB at 4K).
REPLAY_REAL_MAX = 1 << 14

#: Allocators that keep objects of one size class in granules of their own.
SEGREGATED = frozenset({"zsmalloc"})
#: Pairing allocators whose bookkeeping lives outside their pages (replayed without memory).
PAIRING = frozenset({"zbud", "z3fold"})


def page_kind(page: bytes, zero: bytes) -> int:
    """KIND_ZERO, KIND_SAME (one 8-byte word repeated) or KIND_NORMAL."""
    first = page[:8]
    if page[-8:] != first:
        return KIND_NORMAL
    if page == zero:
        return KIND_ZERO
    if first * (len(page) // 8) == page:
        return KIND_SAME
    return KIND_NORMAL


class ProfileLike(Protocol):
    """What the estimate needs of a kernel profile (``zswap_core.kernels.KernelProfile``)."""

    @property
    def same_filled(self) -> str: ...
    @property
    def incompressible(self) -> str: ...
    @property
    def entry_bytes(self) -> int: ...


@dataclass(frozen=True)
class StorePolicy:
    """What zswap does with a page, as the kernel profile says (see the module doc)."""

    page_size: int = 4096
    same_filled: str = "zswap"  # "none" | "zswap" | "zswap-zero" | "swapcore-zero"
    incompressible: str = "reject"  # "reject" | "store-raw"
    entry_bytes: int = 64
    header_bytes: int = 0  # zswap's header in front of each object (old kernels)

    @classmethod
    def from_profile(cls, profile: ProfileLike, zpool: str, page_size: int = 4096) -> StorePolicy:
        header = getattr(profile, "header_bytes", None)
        return cls(
            page_size,
            profile.same_filled,
            profile.incompressible,
            profile.entry_bytes,
            int(header(zpool)) if header is not None else 0,
        )

    def handled_apart(self, kind: int) -> str | None:
        """ "entry" (kept in zswap's entry), "swapcore" (never reaches zswap) or None."""
        if kind == KIND_NORMAL:
            return None
        if self.same_filled == "zswap" or (self.same_filled == "zswap-zero" and kind == KIND_ZERO):
            return "entry"
        if self.same_filled == "swapcore-zero" and kind == KIND_ZERO:
            return "swapcore"
        return None

    def object_size(self, size: int) -> int | None:
        """The pool object for a compressed size, None when zswap refuses the page."""
        if size >= self.page_size and self.incompressible == "store-raw":
            return self.page_size + self.header_bytes
        if size > self.page_size:  # a page-sized output may fit (zsmalloc takes a page)
            return None
        return size + self.header_bytes


# -- samples -------------------------------------------------------------------------------


@dataclass
class CodecSample:
    """One compressor's results on the sampled pages (aligned with ``Sample.kinds``)."""

    compressor: str
    backend: str  #: "c" (its C ops through _core.CodecOps) or "python" (its methods)
    sizes: array[int] = field(default_factory=lambda: array("I"))
    compress_ns: list[int] = field(default_factory=list)  #: CPU time per batch
    decompress_ns: list[int] = field(default_factory=list)
    batch_bytes: list[int] = field(default_factory=list)  #: bytes compressed per batch


@dataclass
class Sample:
    """The sampled pages of a population of ``population`` candidate pages."""

    population: int
    page_size: int
    kinds: bytearray = field(default_factory=bytearray)
    codecs: dict[str, CodecSample] = field(default_factory=dict)
    full: bool = False  #: every candidate was read (no sampling error)

    @property
    def n(self) -> int:
        return len(self.kinds)

    def subset(self, keep: Sequence[int], population: int) -> Sample:
        """The pages at indexes ``keep`` as a sample of a sub-population (the cold part)."""
        out = Sample(population, self.page_size, bytearray(self.kinds[i] for i in keep))
        out.full = self.full
        for name, cs in self.codecs.items():
            sizes = array(cs.sizes.typecode, (cs.sizes[i] for i in keep))
            sub = CodecSample(name, cs.backend, sizes)
            sub.compress_ns, sub.decompress_ns = cs.compress_ns, cs.decompress_ns
            sub.batch_bytes = cs.batch_bytes
            out.codecs[name] = sub
        return out


# -- intervals -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    value: float
    low: float | None
    high: float | None


def interval_dict(iv: Interval | None, digits: int | None) -> dict[str, Any] | None:
    """``{"value", "low", "high"}`` rounded (ints when ``digits`` is None); None stays null."""
    if iv is None:
        return None

    def r(x: float | None) -> float | int | None:
        if x is None:
            return None
        return round(x) if digits is None else round(x, digits)

    return {"value": r(iv.value), "low": r(iv.low), "high": r(iv.high)}


def _z(confidence: float) -> float:
    return statistics.NormalDist().inv_cdf(0.5 + confidence / 2)


# Weighted sums over distinct (a, b) values: a sample of 262144 pages has a few
# thousand distinct compressed sizes, so the sums run over a histogram.
Weighted = Iterable[tuple[float, float, int]]  # (a, b, count)


def ratio_interval(
    rows: Weighted, n: int, population: int, z: float, extra_den: float = 0.0
) -> Interval | None:
    """Ratio estimator ``sum(a) / (sum(b) + extra_den)`` over the population, with FPC.

    ``extra_den`` is a population-level constant added to the denominator (the pool's
    partly filled granules). None when the denominator is 0 (n/a).
    """
    rows = list(rows)
    if n <= 0:
        return None
    scale = population / n
    sa = sum(a * w for a, b, w in rows) * scale
    sb = sum(b * w for a, b, w in rows) * scale + extra_den
    if sb <= 0:
        return None
    r = sa / sb
    se_total = _se_total([(a - r * b, w) for a, b, w in rows], n, population)
    if se_total is None:
        return Interval(r, None, None)
    se = se_total / sb
    return Interval(r, max(0.0, r - z * se), r + z * se)


def total_interval(
    rows: Iterable[tuple[float, int]], n: int, population: int, z: float, minus: float = 0.0
) -> Interval:
    """Total estimator ``population * mean(y) - minus``, with FPC."""
    rows = list(rows)
    total = (sum(y * w for y, w in rows) * population / n if n else 0.0) - minus
    se = _se_total(rows, n, population)
    if se is None:
        return Interval(total, None, None)
    return Interval(total, total - z * se, total + z * se)


def _se_total(rows: list[tuple[float, int]], n: int, population: int) -> float | None:
    """Standard error of ``population * mean(y)`` (simple random sample, no replacement)."""
    if n >= population:
        return 0.0
    if n < 2:
        return None
    mean = sum(y * w for y, w in rows) / n
    ss = sum(w * (y - mean) ** 2 for y, w in rows)
    var_y = ss / (n - 1)
    return population * math.sqrt((1 - n / population) * var_y / n)


def spread(ns: Sequence[int], nbytes: Sequence[int]) -> dict[str, float] | None:
    """p10 / median / p90 of CPU seconds per GiB over batches (None: nothing timed)."""
    per = sorted(
        t / 1e9 / (b / (1 << 30)) for t, b in zip(ns, nbytes, strict=True) if b > 0 and t >= 0
    )
    if not per:
        return None

    def q(p: float) -> float:
        k = (len(per) - 1) * p
        lo = math.floor(k)
        hi = min(lo + 1, len(per) - 1)
        return per[lo] + (per[hi] - per[lo]) * (k - lo)

    return {"p10": round(q(0.1), 4), "median": round(q(0.5), 4), "p90": round(q(0.9), 4)}


# -- allocator cost models -----------------------------------------------------------------


class _NoMemoryPages:
    """Page accounting for a replay: every page handed out is one shared, unused buffer.

    Only for allocators whose bookkeeping lives outside their pages (zbud, z3fold):
    a replay only allocates, never writes or reads an object.
    """

    def __new__(cls, page_size: int) -> Any:
        from zswap_core import PageAllocator, ZpoolError

        class NoMemory(PageAllocator):
            def __init__(self) -> None:
                super().__init__(page_size, backend="python")
                self._shared = bytearray(page_size)
                self.count = 0

            def alloc_page(self) -> bytearray:
                self.count += 1
                if self.count > (1 << 31):  # pragma: no cover - a runaway replay
                    raise ZpoolError(errno.ENOMEM, "replay: too many pages")
                return self._shared

            def free_page(self, page: bytearray) -> None:
                self.count -= 1

        return NoMemory()


class PoolModel:
    """The pool cost of one allocator, measured from the real allocator (see module doc)."""

    def __init__(self, zpool: str, page_size: int = 4096, seed: int = 0) -> None:
        from zswap_core import default_registry

        self.zpool = zpool
        self.page_size = page_size
        self.seed = seed
        self._mod = default_registry().require("zpool", zpool)
        if zpool in SEGREGATED:
            self.method = "segregated"
        elif zpool in PAIRING:
            self.method = "replay"
        else:
            self.method = "replay-real"
        self._max_size: int | None = None
        self._classes: int | None = None
        self._probe: tuple[int, Any, int] | None = None  # (size, pool, its bytes)
        self._granule: dict[int, tuple[int, int]] = {}
        self._shares: dict[tuple[int, int], bool] = {}
        self._replays: dict[bytes, tuple[int, int]] = {}

    # scratch pools
    def _new_pool(self, memoryless: bool = False) -> Any:
        from zswap_core import PageAllocator

        pages = _NoMemoryPages(self.page_size) if memoryless else PageAllocator(self.page_size)
        return self._mod.driver(f"advise-{self.zpool}", pages, self._mod.params)

    def accepts(self, size: int) -> bool:
        """Whether the allocator takes an object of ``size`` bytes (not ENOSPC)."""
        return 0 < size <= self.max_size()

    def max_size(self) -> int:
        """The largest object the allocator takes.

        ENOSPC means "too big": the largest size taken is found once by bisection.
        """
        if self._max_size is None:
            lo, hi = 0, 2 * self.page_size  # lo is taken (0: trivially), hi + 1 is not
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if self._takes(mid):
                    lo = mid
                else:
                    hi = mid - 1
            self._max_size = lo
        return self._max_size

    def _takes(self, size: int) -> bool:
        from zswap_core import ZpoolError

        pool = self._new_pool()
        try:
            pool.malloc(size)
            return True
        except ZpoolError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            return False
        finally:
            pool.destroy()

    def granule(self, size: int) -> tuple[int, int]:
        """``(objects, bytes)`` of the granule objects of ``size`` fill (segregated)."""
        got = self._granule.get(size)
        if got is None:
            pool = self._new_pool()
            try:
                pool.malloc(size)
                nbytes = pool.total_size()
                m = 1
                while m < 1 << 16:
                    pool.malloc(size)
                    if pool.total_size() > nbytes:
                        break
                    m += 1
            finally:
                pool.destroy()
            got = self._granule[size] = (m, nbytes)
        return got

    def shares(self, a: int, b: int) -> bool:
        """Whether objects of sizes ``a`` and ``b`` share granules (one size class).

        One scratch pool holds an object of ``a`` while sizes are tried against it: an
        object of ``b`` that does not grow the pool shares ``a``'s granule (it is freed
        again, so the pool is ready for the next size).
        """
        key = (a, b)
        got = self._shares.get(key)
        if got is None and self.granule(a)[0] == 1:
            got = self._shares[key] = False  # one object a granule: nothing is shared
        if got is None:
            if self._probe is None or self._probe[0] != a:
                self._drop_probe()
                pool = self._new_pool()
                pool.malloc(a)
                self._probe = (a, pool, pool.total_size())
            _, pool, before = self._probe
            handle = pool.malloc(b)
            got = pool.total_size() == before
            if got:
                pool.free(handle)
            else:
                self._drop_probe()
            self._shares[key] = got
        return got

    def _drop_probe(self) -> None:
        if self._probe is not None:
            self._probe[1].destroy()
            self._probe = None

    def replay(self, sizes: Iterable[int]) -> tuple[int, int]:
        """Allocate ``sizes`` in order in a fresh pool: (objects, pool bytes)."""
        pool = self._new_pool(memoryless=self.method == "replay")
        count = 0
        try:
            malloc = pool.malloc
            for s in sizes:
                malloc(s)
                count += 1
            return count, pool.total_size()
        finally:
            pool.destroy()

    def costs(self, objects: Mapping[int, int], scale: float, ordered: Sequence[int]) -> Costs:
        """Per-object cost by size and the population-level corrections.

        ``objects``: object size -> count in the sample; ``scale`` = N / n; ``ordered``:
        the sample's object sizes in address order.
        """
        if not objects:
            return Costs({}, 0.0, True)
        if self.method == "segregated":
            return self._segregated(objects, scale)
        return self._replayed(objects, scale, ordered)

    def _segregated(self, objects: Mapping[int, int], scale: float) -> Costs:
        # Sizes in ascending order; a size that shares granules with the group's first
        # size is in its class (same granule, no need to fill one), else it starts a
        # new group whose granule is measured: a few hundred fills, not one per size.
        sizes = sorted(objects)
        cost: dict[int, float] = {}
        groups: list[list[int]] = []
        for s in sizes:
            if groups and self.shares(groups[-1][0], s):
                groups[-1].append(s)
                self._granule.setdefault(s, self.granule(groups[-1][0]))
            else:
                groups.append([s])
            m, b = self.granule(s)
            cost[s] = b / m
        tail = 0.0
        self._drop_probe()
        seen = [sum(objects[s] for s in g) for g in groups]  # sample objects per class
        for g, k in zip(groups, seen, strict=True):
            m, b = self.granule(g[0])
            count = k * scale
            granules = math.ceil(count / m - 1e-9)
            tail += granules * b - count * b / m
        unseen, up = self._unseen_classes(groups, seen, scale)
        return Costs(cost, tail + unseen, scale == 1.0, up=up)

    def _unseen_classes(
        self, groups: list[list[int]], seen: list[int], scale: float
    ) -> tuple[float, float]:
        """Bytes of the partly filled granules of classes the sample did not see.

        A class with a few objects in the population is likely missing from a sample,
        yet costs the population a mostly empty granule. Their number is estimated from
        the classes seen once and twice (Chao1 for sampling without replacement, a lower
        bound: Chao & Lin, Biometrics 2012); the
        interval reaches the number that classes of a single object would leave unseen,
        ``f1 (1-q)/q`` for a sampling fraction ``q``, at most the allocator's classes
        (of more than one object a granule) not seen. Each costs what a class seen once
        leaves empty on average: its granule less one object. Returns (bytes, how much
        higher the pool may be).
        """
        if scale <= 1.0 or not groups:
            return 0.0, 0.0
        f1 = sum(1 for k in seen if k == 1)
        if not f1:
            return 0.0, 0.0
        f2 = sum(1 for k in seen if k == 2)
        n = sum(seen)
        q = 1.0 / scale
        # Chao & Lin (2012), the lower bound for sampling without replacement
        den = n / (n - 1) * 2 * max(f2, 1) + q / (1 - q) * f1 if n > 1 else 0.0
        chao1 = (f1 * f1 if f2 else f1 * (f1 - 1)) / den if den else 0.0
        most = f1 * (1 - q) / q
        room = max(0, self.class_count() - sum(1 for g in groups if self.granule(g[0])[0] > 1))
        low, high = min(chao1, room), min(max(most, chao1), room)
        single = [self.granule(g[0]) for g, k in zip(groups, seen, strict=True) if k == 1]
        empty = sum(b - b / m for m, b in single) / len(single)
        return low * empty, (high - low) * empty

    def class_count(self) -> int:
        """How many size classes of more than one object a granule the allocator has
        (sizes that share granules counted once), measured once over every size."""
        if self._classes is None:
            first = 0
            count = 0
            for size in range(1, self.max_size() + 1):
                if not first or not self.shares(first, size):
                    first = size
                    count += self.granule(size)[0] > 1
            self._drop_probe()
            self._classes = count
        return self._classes

    def _replayed(self, objects: Mapping[int, int], scale: float, ordered: Sequence[int]) -> Costs:
        """Replay through the real allocator (see the module doc)."""
        n_obj = sum(objects.values())
        mean_size = sum(s * c for s, c in objects.items()) / n_obj
        real = self.method != "replay"
        limit = REPLAY_REAL_MAX if real else REPLAY_MAX
        ordered_limit = REPLAY_REAL_MAX if real else REPLAY_ORDERED_MAX
        down = up = 0.0
        if scale == 1.0 and len(ordered) <= ordered_limit:
            count, nbytes = self._cached_replay(ordered)
            per_object = nbytes / count
            exact = True
        else:
            exact = False
            step = max(1, -(-len(ordered) // limit))  # every k-th: spread, not a prefix
            seq = ordered[::step]
            # the sample in address order, repeated toward the population's count
            cyc = list(seq) * max(1, min(round(scale), limit // max(1, len(seq))))
            count, nbytes = self._cached_replay(cyc)
            spaced = nbytes / count
            # each sampled size as a run of N/n alike objects
            run = max(1, round(scale))
            runs = seq[:: max(1, -(-len(seq) * run // limit))]
            count, nbytes = self._cached_replay([x for x in runs for _ in range(run)])
            in_runs = nbytes / count
            per_object = (spaced + in_runs) / 2
            half = abs(in_runs - spaced) / 2 * n_obj * scale
            down = up = half
        return Costs({s: per_object * s / mean_size for s in objects}, 0.0, exact, down=down, up=up)

    def _cached_replay(self, seq: Sequence[int]) -> tuple[int, int]:
        """:meth:`replay`, once per distinct sequence (an alias codec has the same
        sizes); sequences are kept as digests, not copies."""
        import hashlib

        key = hashlib.blake2b(array("I", seq).tobytes(), digest_size=20).digest()
        got = self._replays.get(key)
        if got is None:
            got = self._replays[key] = self.replay(seq)
        return got


@dataclass(frozen=True)
class Costs:
    """An allocator's cost model for one population of objects."""

    per_size: dict[int, float]  #: bytes per object of each size (steady state)
    tail: float  #: bytes the population adds (partly filled granules)
    exact: bool  #: the figures are what storing the population gives
    #: order effect (pairing allocators): the pool may be this many bytes smaller
    #: (``down``) or larger (``up``) than the estimate; the interval is widened so
    down: float = 0.0
    up: float = 0.0


# -- one compressor x zpool ----------------------------------------------------------------


@dataclass
class Estimate:
    """The population figures of one compressor x zpool pair."""

    compressor: str
    zpool: str
    codec_backend: str
    codec_ratio: Interval | None
    pool_density: Interval | None
    saved_bytes: Interval
    saved_percent: Interval
    pool_bytes: Interval
    stored_pages: float  #: pages zswap holds (same-filled in entries included)
    same_filled_pages: float  #: of those, kept in the entry without pool memory
    swapcore_pages: float  #: zero pages the swap core keeps (never reach zswap)
    rejected_pages: float  #: refused (incompressible, or the allocator's ENOSPC)
    raw_pages: float  #: stored raw (a page each; profiles with store-raw)
    saved_same_bytes: float  #: saved by pages that need no pool memory
    compress: dict[str, float] | None
    decompress: dict[str, float] | None
    pool_method: str
    exact_pool: bool

    @property
    def cpu_s_per_gib(self) -> float | None:
        """Median compress + decompress CPU seconds per GiB (a store and a load)."""
        if self.compress is None or self.decompress is None:
            return None
        return self.compress["median"] + self.decompress["median"]


def estimate_pair(
    sample: Sample,
    compressor: str,
    model: PoolModel,
    policy: StorePolicy,
    confidence: float,
    ordered: Sequence[int] | None = None,
) -> Estimate:
    """Population estimates for ``compressor`` x ``model.zpool`` from ``sample``.

    ``ordered``: indexes of the sample's pages in address order (default: the
    sample's own order, as the workers' results are assembled).
    """
    cs = sample.codecs[compressor]
    n, big_n, ps = sample.n, sample.population, sample.page_size
    z = _z(confidence)
    scale = big_n / n if n else 0.0
    hist = Counter(zip(sample.kinds, cs.sizes, strict=True))
    # classify every distinct (kind, size)
    entry = policy.entry_bytes
    objects: Counter[int] = Counter()
    apart: dict[tuple[int, int], str] = {}
    obj_of: dict[tuple[int, int], int | None] = {}
    for (kind, size), count in hist.items():
        how = policy.handled_apart(kind)
        if how is not None:
            apart[(kind, size)] = how
            continue
        obj = policy.object_size(size)
        if obj is not None and not model.accepts(obj):
            obj = None
        obj_of[(kind, size)] = obj
        if obj is not None:
            objects[obj] += count
    order: list[int] = []  # the pool objects in address order (pairing allocators)
    if model.method != "segregated":
        for i in range(n) if ordered is None else ordered:
            obj = obj_of.get((sample.kinds[i], cs.sizes[i]))
            if obj is not None:
                order.append(obj)
    costs = model.costs(objects, scale, order)
    cost, tail, exact = costs.per_size, costs.tail, costs.exact

    codec_rows: list[tuple[float, float, int]] = []
    density_rows: list[tuple[float, float, int]] = []
    saved_rows: list[tuple[float, int]] = []
    pool_rows: list[tuple[float, int]] = []
    stored = same = swapcore = rejected = raw = 0
    saved_same = 0.0
    for key, count in hist.items():
        kind, size = key
        how = apart.get(key)
        if how == "entry":
            saved_rows.append((ps - entry, count))
            codec_rows.append((0, 0, count))
            density_rows.append((0, 0, count))
            stored += count
            same += count
            saved_same += (ps - entry) * count
            continue
        if how == "swapcore":
            saved_rows.append((ps, count))
            codec_rows.append((0, 0, count))
            density_rows.append((0, 0, count))
            swapcore += count
            saved_same += ps * count
            continue
        # zswap compresses it: the codec ratio counts it if it shrinks (or is kept raw)
        if size < ps or policy.incompressible == "store-raw":
            codec_rows.append((ps, min(size, ps), count))
        else:
            codec_rows.append((0, 0, count))
        obj = obj_of[key]
        if obj is None:
            rejected += count
            saved_rows.append((0, count))
            density_rows.append((0, 0, count))
            pool_rows.append((0, count))
            continue
        c = cost[obj]
        stored += count
        if size >= ps and policy.incompressible == "store-raw":
            raw += count
        saved_rows.append((ps - c - entry, count))
        density_rows.append((1, c / ps, count))
        pool_rows.append((c, count))

    # a pool larger by `up` saves that much less, one smaller by `down` that much more
    saved = _widen(total_interval(saved_rows, n, big_n, z, minus=tail), costs.up, costs.down)
    pool = _widen(total_interval(pool_rows, n, big_n, z, minus=-tail), costs.down, costs.up)
    pop_bytes = big_n * ps

    def pct(iv: Interval) -> Interval:
        def p(x: float | None) -> float | None:
            return None if x is None else 100.0 * x / pop_bytes

        return Interval(100.0 * iv.value / pop_bytes, p(iv.low), p(iv.high))

    density = ratio_interval(density_rows, n, big_n, z, extra_den=tail / ps)
    if density is not None and (costs.up or costs.down) and pool.value > 0:
        # the same pages in a pool larger by `up` (denser: smaller by `down`)
        pages_in_pool = density.value * pool.value / ps
        lower = pages_in_pool / ((pool.value + costs.up) / ps)
        upper = pages_in_pool / max(1.0, (pool.value - costs.down) / ps)
        density = _widen(density, density.value - lower, upper - density.value)
    return Estimate(
        compressor=compressor,
        zpool=model.zpool,
        codec_backend=cs.backend,
        codec_ratio=ratio_interval(codec_rows, n, big_n, z),
        pool_density=density,
        saved_bytes=saved,
        saved_percent=pct(saved),
        pool_bytes=Interval(
            max(0.0, pool.value), _max0(pool.low), None if pool.high is None else pool.high
        ),
        stored_pages=stored * scale,
        same_filled_pages=same * scale,
        swapcore_pages=swapcore * scale,
        rejected_pages=rejected * scale,
        raw_pages=raw * scale,
        saved_same_bytes=saved_same * scale,
        compress=spread(cs.compress_ns, cs.batch_bytes),
        decompress=spread(cs.decompress_ns, cs.batch_bytes),
        pool_method=model.method,
        exact_pool=exact,
    )


def _widen(iv: Interval, down: float, up: float) -> Interval:
    """``iv`` with its low end lowered by ``down`` and its high end raised by ``up``."""
    if iv.low is None or iv.high is None:
        return iv
    return Interval(iv.value, iv.low - down, iv.high + up)


def _max0(x: float | None) -> float | None:
    return None if x is None else max(0.0, x)
