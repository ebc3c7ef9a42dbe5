"""The advise estimator against storing the pages for real, edge cases and intervals.

The populations are synthetic and seeded (page i is a function of (seed, i)), so every
figure here is deterministic: the samples are drawn with fixed seeds, and a sampled
estimate either is inside its interval or the test fails the same way every time.
"""

from __future__ import annotations

import random
from array import array

import pytest

from zswap_core import Zswap
from zswap_core.advise import (
    KIND_NORMAL,
    KIND_SAME,
    KIND_ZERO,
    Codecs,
    CodecSample,
    Estimate,
    Interval,
    PoolModel,
    Sample,
    StorePolicy,
    compress_batch,
    estimate_pair,
    page_kind,
    recommend,
)
from zswap_core.advise._estimate import ratio_interval, spread, total_interval
from zswap_core.advise._measure import size_typecode
from zswap_core.advise._run import make_batches

P = 4096
N = 40_000


def _page(seed: int, i: int) -> bytes:
    """Runs of alike pages (memory's locality): zero, same-filled, random, or a random
    prefix of a run-specific typical length followed by zeros."""
    run = i // 32
    r = random.Random(seed * 7_919 + run)
    kind = r.random()
    typical = int(r.triangular(64, 4000, 900))
    r = random.Random(seed * 1_000_003 + i)
    if kind < 0.08:
        return bytes(P)
    if kind < 0.10:
        return r.randbytes(8) * (P // 8)
    if kind < 0.17:
        return r.randbytes(P)
    n = max(16, min(P, int(r.gauss(typical, typical * 0.15))))
    return (r.randbytes(n) + bytes(P))[:P]


def _measure(pages: list[bytes], compressors: list[str]) -> Sample:
    codecs = Codecs(compressors)
    try:
        sample = Sample(len(pages), P, full=True)
        for c in compressors:
            sample.codecs[c] = CodecSample(c, codecs.backend[c], array(size_typecode(P)))
        for b in range(0, len(pages), 256):
            r = compress_batch(b, pages[b : b + 256], codecs)
            sample.kinds += r.kinds
            for c in compressors:
                cs = sample.codecs[c]
                cs.sizes.frombytes(r.sizes[c])
                cs.compress_ns.append(r.compress_ns[c])
                cs.decompress_ns.append(r.decompress_ns[c])
                cs.batch_bytes.append(r.nbytes)
        return sample
    finally:
        codecs.close()


@pytest.fixture(scope="module")
def population() -> Sample:
    return _measure([_page(1, i) for i in range(N)], ["lz4", "zstd"])


def _sampled(full: Sample, n: int, seed: int) -> Sample:
    idx = sorted(random.Random(seed).sample(range(full.n), n))
    out = full.subset(idx, full.population)
    out.full = False
    return out


def _store_for_real(compressor: str, zpool: str, n: int = N) -> dict[str, int]:
    z = Zswap(compressor=compressor, zpool=zpool, ram_bytes=1 << 50)
    try:
        z.init(0)
        for i in range(n):
            z.store(0, i, _page(1, i))
        return dict(z.stats)
    finally:
        z.close()


# "zswap": same-filled pages in the entry, incompressible ones refused (as the core does)
POLICY = StorePolicy(P, "zswap", "reject", 64)


@pytest.mark.parametrize(
    ("compressor", "zpool"), [("lz4", "zsmalloc"), ("zstd", "zbud"), ("lz4", "z3fold")]
)
def test_whole_population_equals_storing_it(
    population: Sample, compressor: str, zpool: str
) -> None:
    """With every page read, the pool is exactly what storing every page in one pool gives."""
    real = _store_for_real(compressor, zpool)
    est = estimate_pair(population, compressor, PoolModel(zpool), POLICY, 0.95)
    assert est.exact_pool
    assert round(est.pool_bytes.value) == real["pool_total_size"]
    assert est.stored_pages == real["stored_pages"]
    assert est.same_filled_pages == real["same_filled_pages"]
    # no sampling error: every interval is a point
    for iv in (est.codec_ratio, est.pool_density, est.saved_bytes, est.pool_bytes):
        assert iv is not None
        assert iv.low == iv.value == iv.high
    compressed = real["stored_pages"] - real["same_filled_pages"]
    assert est.pool_density is not None
    assert est.pool_density.value == pytest.approx(compressed / (real["pool_total_size"] / P))
    saved = N * P - est.rejected_pages * P - real["pool_total_size"] - 64 * real["stored_pages"]
    assert est.saved_bytes.value == pytest.approx(saved)


@pytest.mark.parametrize(
    ("compressor", "zpool"),
    [("lz4", "zsmalloc"), ("zstd", "zsmalloc"), ("zstd", "zbud"), ("lz4", "z3fold")],
)
def test_sampled_estimate_within_its_interval_of_the_real_store(
    population: Sample, compressor: str, zpool: str
) -> None:
    """A 10% sample: the real pool, density and saved lie inside the printed intervals,
    where storing the sample for real and scaling it up is biased out of them."""
    real = _store_for_real(compressor, zpool)
    sample = _sampled(population, N // 10, seed=11)
    est = estimate_pair(sample, compressor, PoolModel(zpool, seed=3), POLICY, 0.95)
    assert not est.exact_pool
    pool = est.pool_bytes
    assert pool.low is not None and pool.high is not None
    assert pool.low <= real["pool_total_size"] <= pool.high
    compressed = real["stored_pages"] - real["same_filled_pages"]
    density = est.pool_density
    assert density is not None and density.low is not None and density.high is not None
    assert density.low <= compressed / (real["pool_total_size"] / P) <= density.high
    # the interval is a real one, not the whole line
    assert pool.high - pool.low < 0.1 * real["pool_total_size"]
    if zpool == "zsmalloc":
        # the naive estimate: the sample's own pool (partly filled zspages) times N/n
        z = Zswap(compressor=compressor, zpool=zpool, ram_bytes=1 << 50)
        try:
            z.init(0)
            idx = sorted(random.Random(11).sample(range(N), N // 10))
            for i in idx:
                z.store(0, i, _page(1, i))
            naive = z.stats["pool_total_size"] * 10
        finally:
            z.close()
        assert naive > pool.high  # biased upwards, out of the interval


def test_codec_ratio_interval_covers_the_population(population: Sample) -> None:
    """Over 40 fixed samples of 400 pages, the 90% interval holds the whole population's
    codec ratio about 90% of the time (the ratio estimator with the FPC is calibrated)."""
    model = PoolModel("zsmalloc")
    truth = estimate_pair(population, "lz4", model, POLICY, 0.9).codec_ratio
    assert truth is not None
    inside = 0
    for seed in range(40):
        est = estimate_pair(_sampled(population, 400, seed), "lz4", model, POLICY, 0.9)
        ratio = est.codec_ratio
        assert ratio is not None and ratio.low is not None and ratio.high is not None
        inside += ratio.low <= truth.value <= ratio.high
    assert 31 <= inside <= 40


def test_higher_confidence_gives_wider_intervals(population: Sample) -> None:
    sample = _sampled(population, 2000, 5)
    model = PoolModel("zsmalloc")
    a = estimate_pair(sample, "lz4", model, POLICY, 0.8).saved_bytes
    b = estimate_pair(sample, "lz4", model, POLICY, 0.99).saved_bytes
    assert a.value == b.value
    assert a.low is not None and a.high is not None and b.low is not None and b.high is not None
    assert b.low < a.low < a.value < a.high < b.high


def _uniform(kind_pages: list[bytes], population: int | None = None) -> Sample:
    s = _measure(kind_pages, ["lz4"])
    if population is not None:
        s.population = population
        s.full = False
    return s


def test_all_random_pages_have_no_codec_ratio_and_save_nothing() -> None:
    r = random.Random(4)
    sample = _uniform([r.randbytes(P) for _ in range(300)])
    est = estimate_pair(sample, "lz4", PoolModel("zsmalloc"), POLICY, 0.95)
    assert est.codec_ratio is None  # n/a, not 0 and not a division by zero
    assert est.pool_density is None
    assert est.saved_bytes.value == 0 and est.saved_percent.value == 0
    assert est.rejected_pages == 300
    # 6.18 keeps them raw: a page each in the pool, plus the entry: a loss
    raw = StorePolicy(P, "swapcore-zero", "store-raw", 65)
    est = estimate_pair(sample, "lz4", PoolModel("zsmalloc"), raw, 0.95)
    assert est.raw_pages == 300 and est.rejected_pages == 0
    assert est.saved_bytes.value == -65 * 300
    assert est.codec_ratio is not None and est.codec_ratio.value == 1.0


@pytest.mark.parametrize(
    ("same_filled", "entry", "percent"),
    [("zswap", 56, 100 * (P - 56) / P), ("zswap-zero", 65, 100 * (P - 65) / P)],
)
def test_all_zero_pages_save_all_but_the_metadata(
    same_filled: str, entry: int, percent: float
) -> None:
    sample = _uniform([bytes(P)] * 200, population=1000)
    policy = StorePolicy(P, same_filled, "reject", entry)
    est = estimate_pair(sample, "lz4", PoolModel("zbud"), policy, 0.95)
    assert est.saved_percent.value == pytest.approx(percent)
    assert est.saved_bytes.value == 1000 * (P - entry)
    assert est.codec_ratio is None and est.pool_density is None
    assert est.same_filled_pages == 1000 and est.pool_bytes.value == 0


def test_zero_pages_left_to_the_swap_core_save_the_whole_page() -> None:
    sample = _uniform([bytes(P)] * 100 + [b"\x01" * P] * 100)
    policy = StorePolicy(P, "swapcore-zero", "reject", 65)
    est = estimate_pair(sample, "lz4", PoolModel("zsmalloc"), policy, 0.95)
    assert est.swapcore_pages == 100 and est.same_filled_pages == 0
    # the non-zero same-filled pages are compressed and stored in the pool
    assert est.stored_pages == 100 and est.pool_bytes.value > 0


def test_old_kernels_header_counts_in_the_object() -> None:
    """Before 6.5 zswap put an 8-byte header in front of zbud/z3fold objects: an object
    of 3965 bytes fits zbud (at most 3968), with the header it is refused."""
    sample = Sample(100, P, bytearray(10), full=False)
    sample.codecs["lz4"] = CodecSample("lz4", "c", array("I", [3965] * 10))
    plain = estimate_pair(sample, "lz4", PoolModel("zbud"), POLICY, 0.95)
    assert plain.rejected_pages == 0 and plain.stored_pages == 100
    header = StorePolicy(P, "zswap", "reject", 64, header_bytes=8)
    assert header.object_size(1000) == 1008
    with_header = estimate_pair(sample, "lz4", PoolModel("zbud"), header, 0.95)
    assert with_header.rejected_pages == 100 and with_header.stored_pages == 0
    assert with_header.saved_bytes.value == 0


def test_page_kinds() -> None:
    zero = bytes(P)
    assert page_kind(zero, zero) == KIND_ZERO
    assert page_kind(b"\x00\x00\x00\x00\x00\x00\x00\x07" * 512, zero) == KIND_SAME
    assert page_kind(bytes(P - 1) + b"\x01", zero) == KIND_NORMAL
    assert page_kind(b"\x01" + bytes(P - 1), zero) == KIND_NORMAL


def test_interval_formulas() -> None:
    # a census (n == N): no sampling error
    iv = total_interval([(1.0, 5), (3.0, 5)], 10, 10, 1.96)
    assert iv.value == iv.low == iv.high == 20
    # n of N: the finite population correction shrinks the error as n nears N
    small = total_interval([(1.0, 5), (3.0, 5)], 10, 1000, 1.96)
    big = total_interval([(1.0, 50), (3.0, 50)], 100, 1000, 1.96)
    assert small.value == big.value == 2000
    assert small.high is not None and big.high is not None
    assert big.high - big.value < small.high - small.value
    # a ratio with a zero denominator is n/a
    assert ratio_interval([(0.0, 0.0, 10)], 10, 100, 1.96) is None
    r = ratio_interval([(4096.0, 1024.0, 10)], 10, 100, 1.96)
    assert r is not None and r.value == r.low == r.high == 4.0  # no spread at all
    # one page of a larger population: no interval can be given
    one = total_interval([(1.0, 1)], 1, 10, 1.96)
    assert one.low is None and one.high is None


def test_cpu_spread_is_per_batch() -> None:
    gib = 1 << 30
    got = spread([1_000_000_000, 2_000_000_000, 3_000_000_000], [gib, gib, gib])
    assert got == {"p10": 1.2, "median": 2.0, "p90": 2.8}
    assert spread([], []) is None


def test_batches_are_strided_and_cover_every_page() -> None:
    chosen = [array("Q", range(0, 4096 * 700, 4096)), array("Q", range(0, 4096 * 30, 4096))]
    batches = make_batches(chosen)
    assert len(batches) == 3  # 730 pages, 256 a batch
    seen: dict[int, list[int]] = {0: [], 1: []}
    for b in batches:
        for t, addrs, _ in b.parts:
            assert list(addrs) == sorted(addrs)
            seen[t].extend(addrs)
        assert abs(b.nr_pages - 730 / 3) <= 1  # every batch spans the whole sample
    assert sorted(seen[0]) == list(chosen[0]) and sorted(seen[1]) == list(chosen[1])


# -- the recommendation ----------------------------------------------------------------------


def _est(compressor: str, zpool: str, saved: float, cpu: float, half: float = 0.0) -> Estimate:
    iv = Interval(saved, saved - half, saved + half)
    return Estimate(
        compressor=compressor,
        zpool=zpool,
        codec_backend="c",
        codec_ratio=None,
        pool_density=None,
        saved_bytes=iv,
        saved_percent=iv,
        pool_bytes=iv,
        stored_pages=0,
        same_filled_pages=0,
        swapcore_pages=0,
        rejected_pages=0,
        raw_pages=0,
        saved_same_bytes=0,
        compress={"p10": cpu / 2, "median": cpu / 2, "p90": cpu / 2},
        decompress={"p10": cpu / 2, "median": cpu / 2, "p90": cpu / 2},
        pool_method="segregated",
        exact_pool=False,
    )


ROWS = [
    _est("lz4", "zsmalloc", 100.0, 0.8, half=3),
    _est("zstd", "zsmalloc", 130.0, 1.6, half=3),
    _est("zstd", "zbud", 90.0, 1.6),
    _est("deflate", "zsmalloc", 135.0, 30.0, half=3),
    _est("lzo", "zsmalloc", 129.0, 0.9, half=3),
]


def test_recommendation_objectives() -> None:
    r = recommend(ROWS, "saved", 2.0)
    assert (r["compressor"], r["zpool"]) == ("zstd", "zsmalloc")  # deflate is over budget
    assert "within the interval: lzo/zsmalloc" in r["why"]  # 129 + 3 >= 130 - 3
    assert recommend(ROWS, "saved", 50.0)["compressor"] == "deflate"
    r = recommend(ROWS, "saved", 0.5)  # nothing within: the cheapest, said so
    assert r["compressor"] == "lz4" and "no pair is within 0.5" in r["why"]
    assert recommend(ROWS, "cpu", 2.0)["compressor"] == "lz4"
    # balanced: the cheapest among those saving >= 95% of the best (135): lzo at 129
    r = recommend(ROWS, "balanced", 2.0)
    assert (r["compressor"], r["zpool"]) == ("lzo", "zsmalloc")
    # nothing saves memory: no "best" pretends otherwise
    r = recommend(
        [_est("lz4", "zsmalloc", -10.0, 1.0), _est("zstd", "zsmalloc", 0.0, 2.0)], "saved", 2
    )
    assert "no setting saves memory" in r["why"]


def test_codec_without_c_ops_is_timed_through_its_methods(monkeypatch: pytest.MonkeyPatch) -> None:
    """A compressor without C ops is measured through its Python methods and labelled
    so; its sizes are the C ops' (the same streams)."""
    from zswap_core import default_registry

    pages = [_page(2, i) for i in range(300)]
    with_ops = _measure(pages, ["lz4", "lzo-rle", "lzo"])
    assert with_ops.codecs["lz4"].backend == "c"
    # an alias is measured once and gets its original's figures
    assert with_ops.codecs["lzo-rle"].sizes == with_ops.codecs["lzo"].sizes
    driver = default_registry().require("compressor", "lz4").driver
    monkeypatch.setattr(driver, "codec_ops", None)
    without = _measure(pages, ["lz4"])
    assert without.codecs["lz4"].backend == "python"
    assert without.codecs["lz4"].sizes == with_ops.codecs["lz4"].sizes
    assert without.kinds == with_ops.kinds
    assert all(t > 0 for t in without.codecs["lz4"].compress_ns)


def test_rare_size_classes_are_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Most objects in a few sizes, some in many rare ones (as redis's heap): each rare
    class costs the population a mostly empty zspage that a sample mostly misses.
    Estimated from the classes seen once and twice, the pool's interval holds the
    truth; without that term the estimate is biased low, out of its interval."""
    r = random.Random(12)
    n = 60_000
    sizes = array("H", (r.choice((98, 99, 100)) if r.random() < 0.995 else r.randrange(200, 3000)
                        for _ in range(n)))  # fmt: skip
    full = Sample(n, P, bytearray(n), full=True)
    full.codecs["x"] = CodecSample("x", "c", sizes)
    model = PoolModel("zsmalloc")
    truth = estimate_pair(full, "x", model, POLICY, 0.95).pool_bytes.value
    sample = _sampled(full, n // 5, seed=2)
    est = estimate_pair(sample, "x", model, POLICY, 0.95).pool_bytes
    assert est.low is not None and est.high is not None
    assert est.low <= truth <= est.high
    monkeypatch.setattr(PoolModel, "_unseen_classes", lambda *a: (0.0, 0.0))
    naive = estimate_pair(sample, "x", model, POLICY, 0.95).pool_bytes
    assert naive.high is not None and naive.high < truth
