"""The zswap core: parameters at run time, pool lifetimes, store/load, counters."""

from __future__ import annotations

import errno
import warnings
import zlib
from collections.abc import Callable, Iterator

import pytest
from helpers import ALL_COMPRESSORS, ALL_ZPOOLS, mixed_pages

import zswap_core
import zswap_core._zswap
from zswap_core import DecompressError, ParamError, Zswap
from zswap_core.testing._common import run_threads
from zswap_core.testing._interleave import Walk, code_filter, watch_locks

GiB = 1 << 30

COMPRESSORS = [c for c in ALL_COMPRESSORS if zswap_core.crypto_has_comp(c)]
ZPOOLS = [z for z in ALL_ZPOOLS if zswap_core.zpool_has_pool(z)]


def make(**kw: object) -> Zswap:
    kw.setdefault("compressor", "lz4")
    kw.setdefault("zpool", "zbud")
    kw.setdefault("ram_bytes", GiB)
    z = Zswap(**kw)  # type: ignore[arg-type]
    z.init(0)
    return z


def fill(z: Zswap, pages: list[bytes], type: int = 0, start: int = 0) -> dict[int, bytes]:
    stored = {}
    for i, page in enumerate(pages):
        if z.store(type, start + i, page):
            stored[start + i] = page
    return stored


def check(z: Zswap, stored: dict[int, bytes], type: int = 0) -> None:
    for off, page in stored.items():
        assert z.load(type, off) == page, f"offset {off}"


# -- round trips ------------------------------------------------------------------------------


def test_installed_plugins_cover_the_project() -> None:
    assert {"lz4", "lz4hc", "zstd", "deflate"} <= set(COMPRESSORS)
    assert set(ZPOOLS) == set(ALL_ZPOOLS)


@pytest.mark.parametrize("zpool", ZPOOLS)
@pytest.mark.parametrize("compressor", COMPRESSORS)
def test_every_compressor_and_zpool_round_trips_mixed_pages(compressor: str, zpool: str) -> None:
    z = make(compressor=compressor, zpool=zpool)
    pages = mixed_pages(60, seed=zlib.crc32(f"{compressor}{zpool}".encode()))
    stored = fill(z, pages)
    # everything but incompressible pages is taken (zbud cannot hold > 3968 bytes)
    assert len(stored) >= 45
    check(z, stored)
    assert z.stats["stored_pages"] == len(stored)
    z.invalidate_area(0)
    assert z.stats["stored_pages"] == 0
    assert z.stats["pool_total_size"] == 0
    assert z.pages.nr_pages == 0


@pytest.mark.parametrize("page_size", [16384, 65536])
def test_large_page_sizes(page_size: int) -> None:
    for zpool in ZPOOLS:
        z = make(zpool=zpool, page_size=page_size)
        stored = fill(z, mixed_pages(18, page_size=page_size, seed=3))
        assert len(stored) >= 14
        check(z, stored)
        buf = bytearray(page_size)
        off, page = next(iter(stored.items()))
        assert z.load_into(0, off, buf) and bytes(buf) == page
        z.close()
        assert z.pages.nr_pages == 0


def test_load_into_fills_caller_buffer() -> None:
    z = make()
    pages = mixed_pages(6)
    fill(z, pages)
    for off, page in enumerate(pages):
        buf = bytearray(4096)
        found = z.load_into(0, off, buf)
        if page == pages[4]:  # incompressible: not held with zbud
            assert not found
        else:
            assert found and bytes(buf) == page
    assert not z.load_into(0, 999, bytearray(4096))
    with pytest.raises(ValueError):
        z.load_into(0, 0, bytes(4096))
    with pytest.raises(ValueError):
        z.load_into(0, 0, bytearray(100))


# -- pools and their lifetimes -----------------------------------------------------------------


def names(z: Zswap) -> list[tuple[str, str, int]]:
    return [(p.compressor, p.zpool, p.nr_entries) for p in z.pools]


def test_switching_compressor_and_zpool_keeps_every_page() -> None:
    z = make()
    pages = mixed_pages(120, seed=1)
    compressible = [p for i, p in enumerate(pages) if i % 6 != 4]
    a = fill(z, compressible[:30], start=0)
    first = z.pools[0].name
    z.params["compressor"] = "zstd"
    assert [p.current for p in z.pools] == [True, False]
    b = fill(z, compressible[30:60], start=100)
    z.params["zpool"] = ZPOOLS[-1]
    c = fill(z, compressible[60:90], start=200)

    def pooled(d: dict[int, bytes]) -> int:  # same-filled pages hold no pool reference
        return sum(1 for p in d.values() if p[:8] * 512 != p)

    assert names(z) == [
        ("zstd", ZPOOLS[-1], pooled(c)),
        ("zstd", "zbud", pooled(b)),
        ("lz4", "zbud", pooled(a)),
    ]
    check(z, {**a, **b, **c})
    # back to lz4/zbud: the live old pool is reused, not recreated
    z.params["compressor"] = "lz4"
    z.params["zpool"] = "zbud"
    assert z.pools[0].name == first
    assert len(z.pools) == 3
    d = fill(z, compressible[90:], start=300)
    check(z, {**a, **b, **c, **d})
    # drain the zstd/zbud pool: it is destroyed the moment its last entry goes
    before = z.stats["pool_total_size"]
    offs = [o for o, p in b.items() if p[:8] * 512 != p]
    for off in offs[:-1]:
        z.invalidate_page(0, off)
    assert ("zstd", "zbud", 1) in names(z)
    z.invalidate_page(0, offs[-1])
    assert all(p[:2] != ("zstd", "zbud") for p in names(z))
    assert z.stats["pool_total_size"] < before
    check(z, {**a, **c, **d})
    for off in set(b) - set(offs):
        assert z.load(0, off) == b[off]


def test_an_emptied_old_pool_is_destroyed_and_its_pages_returned() -> None:
    z = make()
    page = mixed_pages(3)[2]
    z.store(0, 1, page)
    used = z.pages.nr_pages
    assert used > 0
    z.params["compressor"] = "zstd"
    assert len(z.pools) == 2
    z.invalidate_page(0, 1)
    assert [p.compressor for p in z.pools] == ["zstd"]
    assert z.pages.nr_pages == 0
    assert zswap_core.default_registry().loaded("compressor", "lz4") is not None


def test_switching_to_an_empty_combination_destroys_the_old_empty_pool() -> None:
    z = make()
    z.params["compressor"] = "zstd"
    assert [p.compressor for p in z.pools] == ["zstd"]  # lz4 pool had no entries


def test_use_counts_follow_pools() -> None:
    reg = zswap_core.default_registry()
    z = make(compressor="lz4hc")
    lz4hc = reg.require("compressor", "lz4hc")
    before = lz4hc.use_count
    z.store(0, 0, mixed_pages(3)[2])
    z.params["compressor"] = "lz4"
    assert lz4hc.use_count == before  # still used by the old pool's entry
    z.invalidate_page(0, 0)
    assert lz4hc.use_count == before - 1


# -- parameter writes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "err"),
    [
        ("compressor", "nosuch", errno.ENOENT),
        ("compressor", "os:system", errno.ENOENT),
        ("zpool", "nosuch", errno.ENOENT),
        ("zpool", "lz4", errno.ENOENT),
        ("enabled", "maybe", errno.EINVAL),
        ("max_pool_percent", "101", errno.EINVAL),
        ("max_pool_percent", "-1", errno.EINVAL),
        ("accept_threshold_percent", "x", errno.EINVAL),
        ("exclusive_loads", 3, errno.EINVAL),
        ("compressor", "zstd\0", errno.EINVAL),
        ("compressor", "a" * 2000, errno.EINVAL),
        ("nosuch_param", "1", errno.EINVAL),
    ],
)
def test_param_errors_leave_everything_unchanged(name: str, value: object, err: int) -> None:
    z = make()
    z.store(0, 0, mixed_pages(3)[2])
    before_params = z.params.as_sysfs()
    before_pools = names(z)
    with pytest.raises(ParamError) as info:
        z.params[name] = value
    assert info.value.errno == err
    assert z.params.as_sysfs() == before_params
    assert names(z) == before_pools


def test_param_writes_strip_and_same_value_is_a_noop() -> None:
    z = make()
    pool = z.pools[0].name
    z.params["compressor"] = " lz4\n"
    assert z.pools[0].name == pool
    z.params["compressor"] = "zstd\n"
    assert z.params["compressor"] == "zstd"
    assert z.params.sysfs("enabled") == "Y"


def test_enable_disable() -> None:
    z = make()
    page = mixed_pages(3)[2]
    assert z.store(0, 1, page)
    z.params["enabled"] = "N"
    assert not z.store(0, 2, page)
    assert z.load(0, 1) == page  # stored pages still load...
    z.invalidate_page(0, 1)  # ...and invalidate
    assert z.load(0, 1) is None
    z.params["enabled"] = True
    assert z.store(0, 2, page)


def test_fallback_at_creation_and_enodev_without_pool() -> None:
    with pytest.warns(RuntimeWarning, match="not available, using default"):
        z = Zswap(compressor="nosuch", zpool="zbud", ram_bytes=GiB)
    assert z.params["compressor"] == "lz4" and z.params["enabled"] is True
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        z = Zswap(compressor="lz4", zpool="nosuch", ram_bytes=GiB, registry=_no_zsmalloc())
    text = " ".join(str(w.message) for w in caught)
    assert "forced to N" in text
    assert z.params["zpool"] == "" and z.params["enabled"] is False
    assert z.pools == []
    with pytest.raises(ParamError) as info:
        z.params["enabled"] = True
    assert info.value.errno == errno.ENODEV
    z.init(0)
    assert not z.store(0, 0, bytes(4096))
    # fixing the zpool creates the pool; then enabling works
    z.params["zpool"] = "zbud"
    assert [p.zpool for p in z.pools] == ["zbud"]
    z.params["enabled"] = True
    assert z.store(0, 0, mixed_pages(3)[2])


def _no_zsmalloc() -> zswap_core.Registry:
    reg = zswap_core.Registry()
    reg.block("zsmalloc")
    return reg


def test_from_cmdline() -> None:
    z = Zswap.from_cmdline(
        "quiet zswap.enabled=Y zswap.compressor=zstd zswap.zpool=zbud "
        "zswap.max_pool_percent=7 zswap.exclusive_loads=1",
        ram_bytes=GiB,
    )
    assert z.params.as_sysfs()["compressor"] == "zstd"
    assert z.params["max_pool_percent"] == 7
    assert z.params.sysfs("exclusive_loads") == "Y"
    with pytest.raises(ParamError):
        Zswap.from_cmdline("zswap.max_pool_percent=lots", ram_bytes=GiB)
    with pytest.raises(ParamError):
        Zswap.from_cmdline("zswap.nosuch=1", ram_bytes=GiB)


# -- store and load paths ----------------------------------------------------------------------


def test_same_filled_pages_take_no_pool_memory() -> None:
    z = make()
    zero = bytes(4096)
    pattern = b"\x01\x02\x03\x04\x05\x06\x07\x08" * 512
    assert z.store(0, 1, zero) and z.store(0, 2, pattern)
    assert z.stats["same_filled_pages"] == 2
    assert z.stats["pool_total_size"] == 0
    assert z.load(0, 1) == zero and z.load(0, 2) == pattern
    z.params["same_filled_pages_enabled"] = False
    assert z.store(0, 3, pattern)
    assert z.stats["same_filled_pages"] == 2 and z.stats["pool_total_size"] > 0
    z.params["non_same_filled_pages_enabled"] = False
    z.params["same_filled_pages_enabled"] = True
    assert not z.store(0, 4, mixed_pages(3)[2])
    assert z.store(0, 5, zero)


def test_duplicate_store_replaces_and_counts() -> None:
    z = make()
    a, b = mixed_pages(4)[2:4]
    assert z.store(0, 9, a)
    assert z.store(0, 9, b)
    assert z.load(0, 9) == b
    assert z.stats["duplicate_entry"] == 1
    assert z.stats["stored_pages"] == 1


def test_failed_store_drops_the_older_copy() -> None:
    z = make()
    page = mixed_pages(3)[2]
    incompressible = mixed_pages(5)[4]
    assert z.store(0, 4, page)
    assert not z.store(0, 4, incompressible)  # too big for zbud: reject_compress_poor
    assert z.stats["reject_compress_poor"] == 1
    assert z.load(0, 4) is None  # never the stale page
    assert z.stats["stored_pages"] == 0


def test_alloc_failure_counts_and_changes_nothing() -> None:
    z = make()
    z.pages.fail_next(1)
    assert not z.store(0, 1, mixed_pages(3)[2])
    assert z.stats["reject_alloc_fail"] == 1
    assert z.store(0, 1, mixed_pages(3)[2])


def test_exclusive_loads_drop_the_entry() -> None:
    z = make(exclusive_loads=True)
    page = mixed_pages(3)[2]
    z.store(0, 1, page)
    z.store(0, 2, bytes(4096))
    assert z.load(0, 1) == page and z.load(0, 1) is None
    assert z.load(0, 2) == bytes(4096) and z.load(0, 2) is None
    assert z.stats["stored_pages"] == 0 and z.pages.nr_pages == 0
    z.params["exclusive_loads"] = False
    z.store(0, 1, page)
    assert z.load(0, 1) == page and z.load(0, 1) == page


def test_invalidate_area_and_use_after() -> None:
    z = make()
    stored = fill(z, mixed_pages(30))
    z.init(1)
    fill(z, mixed_pages(10), type=1)
    z.invalidate_area(0)
    assert z.stats["stored_pages"] == sum(1 for p in mixed_pages(10) if p != mixed_pages(10)[4])
    with pytest.raises(ValueError):
        z.load(0, next(iter(stored)))
    with pytest.raises(ValueError):
        z.store(0, 0, bytes(4096))
    z.invalidate_area(1)
    assert z.pages.nr_pages == 0 and z.stats["pool_total_size"] == 0


def test_bad_arguments() -> None:
    z = make()
    with pytest.raises(ValueError):
        z.store(0, 0, b"short")
    with pytest.raises(TypeError):
        z.store(0, 0, "text" * 1024)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        z.store(0, -1, bytes(4096))
    with pytest.raises(ValueError):
        z.store(0, 1 << 40, bytes(4096))
    with pytest.raises(TypeError):
        z.load(0, "1")  # type: ignore[arg-type]
    for t in (-1, 32, 5, "0", None, True):
        with pytest.raises(ValueError):
            z.store(t, 0, bytes(4096))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        z.init(32)
    assert z.load(0, 12345) is None
    z.invalidate_page(0, 12345)  # not stored: nothing happens
    assert z.stats["stored_pages"] == 0


class CorruptingCompressor(zswap_core.Compressor):
    name = "lz4"

    def compress(self, src: object) -> bytes:
        import lz4.block

        return lz4.block.compress(src, store_size=False)

    def decompress(self, src: object, dlen: int) -> bytes:
        return b"\x00" * dlen  # wrong bytes, the kind of bug checksums catch


def test_decompress_errors_raise_and_count() -> None:
    z = make()
    page = mixed_pages(3)[2]
    z.store(0, 1, page)
    pool = z._pools[0]
    # corrupt the stored bytes in place
    packed = z._entry(0, 1)
    handle = packed >> 27
    view = pool.zpool.map(handle)
    view[:8] = b"\xff" * 8
    pool.zpool.unmap(handle)
    with pytest.raises(DecompressError):
        z.load(0, 1)
    assert z.stats["decompress_fail"] == 1


def test_checksums_turn_silent_corruption_into_an_error() -> None:
    z = make(checksums_enabled=True)
    page = mixed_pages(3)[2]
    z.store(0, 1, page)
    z._pools[0].compressor = CorruptingCompressor()
    with pytest.raises(DecompressError, match="checksum"):
        z.load(0, 1)
    assert z.stats["decompress_fail"] == 1
    z2 = make()
    z2.store(0, 1, page)
    z2._pools[0].compressor = CorruptingCompressor()
    assert z2.load(0, 1) != page  # without checksums the bug goes unnoticed


def test_counters_pool_total_size_and_compact() -> None:
    z = make(zpool=ZPOOLS[-1])
    stored = fill(z, mixed_pages(200, seed=5))
    s = z.stats
    assert s["stored_pages"] == len(stored)
    assert s["pool_total_size"] == z.pages.nr_pages * 4096 == sum(p.total_size for p in z.pools)
    assert set(s) >= {
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
    }
    for off in list(stored)[::2]:
        z.invalidate_page(0, off)
    z.compact()
    check(z, {o: p for o, p in stored.items() if o not in list(stored)[::2]})


def test_pool_limit_rejects_and_counts() -> None:
    # 1 MiB of "RAM", 20%: the pool may hold 51 pages
    z = make(ram_bytes=1 << 20)
    assert z.pool_limit_pages == 51
    pages = [p for p in mixed_pages(600, seed=9) if p[:8] * 512 != p]
    results = [z.store(0, i, p) for i, p in enumerate(pages)]
    assert z.stats["pool_limit_hit"] >= 1
    assert z.pages.nr_pages <= 52
    assert results.count(False) > 0
    # max_pool_percent=0: nothing enters
    z2 = make(max_pool_percent=0)
    assert not z2.store(0, 0, bytes(4096))
    assert z2.stats["stored_pages"] == 0


def test_many_instances_have_their_own_params_and_pools() -> None:
    a, b = make(), make(compressor="zstd")
    a.params["max_pool_percent"] = 5
    assert b.params["max_pool_percent"] == 20
    assert a.pools[0].name != b.pools[0].name


# -- threads -----------------------------------------------------------------------------------


@pytest.fixture
def walk() -> Iterator[tuple[Walk, Zswap]]:
    """A Zswap whose locks (and its pools' and plugins', made later too) the kit sees."""
    with watch_locks():
        z = make()
        z.init(1)
        yield Walk(code_filter([zswap_core._zswap.__file__])), z
        z.close()


def switcher(z: Zswap) -> Callable[[], None]:
    """Each call moves the pool to the next compressor x zpool, same-filled on or off."""
    combos = [(c, p) for c in ("lz4", "zstd", "deflate") if c in COMPRESSORS for p in ZPOOLS]
    i = [0]

    def switch() -> None:
        c, p = combos[i[0] % len(combos)]
        z.params["compressor"] = c
        z.params["zpool"] = p
        z.params["same_filled_pages_enabled"] = bool(i[0] % 2)
        i[0] += 1

    return switch


@pytest.mark.python_backend_only  # native: test_native_core.py switches inside plugin calls
def test_params_switch_at_every_line_of_store_load_invalidate(
    walk: tuple[Walk, Zswap],
) -> None:
    """The compressor, the zpool and same_filled_pages_enabled change at every line of
    a store, of a load and of an invalidation (forced: the operation waits at that line
    while another thread switches). No page is lost or wrong; old pools go."""
    w, z = walk
    switch = switcher(z)
    pages = mixed_pages(16, seed=21)
    mine: dict[int, bytes] = {}

    def step(j: int) -> None:
        page = pages[j % len(pages)]
        w.at(j, switch)
        stored = z.store(0, j, page)
        w.done()
        if stored:
            mine[j] = page
        w.at(j, switch)
        got = z.load(0, j)
        w.done()
        assert got == mine.get(j), f"a switch at line {j} of a store or load lost the page"
        if j % 2:
            w.at(j, switch)
            z.invalidate_page(0, j)
            w.done()
            mine.pop(j, None)
            assert z.load(0, j) is None, f"a switch at line {j} of an invalidation kept it"
        with w.quiet():
            for off, want in mine.items():
                assert z.load(0, off) == want, f"offset {off} went wrong at line {j}"

    w.run(step, 120)
    z.invalidate_area(0)
    assert z.stats["stored_pages"] == 0 and z.pages.nr_pages == 0
    assert len(z.pools) == 1  # only the current pool survives


def test_store_load_invalidate_at_every_line_of_a_switch(walk: tuple[Walk, Zswap]) -> None:
    """A store, a load and an invalidation at every line of a compressor, zpool and
    same-filled switch (forced, as above). No page is lost or wrong; old pools go."""
    w, z = walk
    switch = switcher(z)
    pages = mixed_pages(16, seed=22)
    theirs: dict[int, bytes] = {}

    def step(j: int) -> None:
        def ops() -> None:
            page = pages[j % len(pages)]
            if z.store(1, j, page):
                theirs[j] = page
            for off in (j, j - 1) if j else (j,):
                got = z.load(1, off)
                assert got == theirs.get(off), f"offset {off} went wrong at line {j} of a switch"
            if j % 3 == 0 and j - 1 in theirs:
                z.invalidate_page(1, j - 1)
                del theirs[j - 1]

        w.at(j, ops)
        switch()
        w.done()
        if j % 40 == 39:
            with w.quiet():
                for off, want in theirs.items():
                    assert z.load(1, off) == want, f"offset {off} went wrong after line {j}"

    w.run(step, 400)
    for off, want in theirs.items():
        assert z.load(1, off) == want, f"offset {off} went wrong"
    z.invalidate_area(1)
    assert z.stats["stored_pages"] == 0 and z.pages.nr_pages == 0
    assert len(z.pools) == 1


def test_threads_store_load_invalidate_while_params_flip() -> None:
    """Free-running threads (started together, switch interval lowered) while another
    thread switches pools: real parallelism on top of the forced interleavings above."""
    z = make()
    for t in range(1, 4):
        z.init(t)
    pages = mixed_pages(64, seed=11)

    def worker(wid: int) -> None:
        import random

        rng = random.Random(wid)
        mine: dict[tuple[int, int], bytes] = {}
        for _ in range(600):
            t = rng.randrange(4)
            off = wid * 1000 + rng.randrange(64)
            op = rng.random()
            if op < 0.5:
                page = rng.choice(pages)
                if z.store(t, off, page):
                    mine[(t, off)] = page
                else:
                    mine.pop((t, off), None)
            elif op < 0.85:
                got = z.load(t, off)
                want = mine.get((t, off))
                assert got == want, f"{wid}: {t}:{off}"
                if z.params["exclusive_loads"] and got is not None:
                    mine.pop((t, off), None)
            else:
                z.invalidate_page(t, off)
                mine.pop((t, off), None)
        for (t, off), page in mine.items():
            assert z.load(t, off) == page, f"final {wid}: {t}:{off}"

    run_threads(4, worker, background=switcher(z))
    for t in range(4):
        z.invalidate_area(t)
    assert z.stats["stored_pages"] == 0
    assert z.pages.nr_pages == 0
    assert len(z.pools) == 1  # only the current pool survives
