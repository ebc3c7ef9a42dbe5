"""shared_zpool (issue 17, section 1): a compressor change keeps the current zpool.

Seth Jennings's review of the 2015 series: entries stored with different compressors can
share one zpool if each records its compressor. Here a pool is one compressor slot of a
zpool instance; with ``shared_zpool=Y`` a compressor change makes a new slot (a pool id,
the bits every entry already has) in the current zpool. Runs on both backends.
"""

from __future__ import annotations

import errno
import uuid
import zlib

import pytest
from helpers import ALL_COMPRESSORS, ALL_ZPOOLS, mixed_pages

import zswap_core
from zswap_core import ParamError, Zswap, hookimpl, register_observer, unregister_observer

# every test on both backends: conftest.BACKEND_MODULES

COMPRESSORS = [c for c in ALL_COMPRESSORS if zswap_core.crypto_has_comp(c)]
ZPOOLS = [z for z in ALL_ZPOOLS if zswap_core.zpool_has_pool(z)]
PAGES = mixed_pages(48, seed=17)
#: Pages that take pool memory: not same-filled, and compressible.
REAL = [p for p in PAGES if p != p[:8] * (len(p) // 8) and len(zlib.compress(p)) < 3000]


def _zswap(zpool: str = "zsmalloc", **params: object) -> Zswap:
    z = Zswap(compressor="lz4", zpool=zpool, ram_bytes=1 << 30, **params)
    z.init(0)
    return z


def _check_backend(z: Zswap, backend: str) -> None:
    assert (z._core is not None) == (backend == "native")


def _check_sizes(z: Zswap) -> None:
    assert sum(p.total_size for p in z.pools) == z.stats["pool_total_size"]
    assert (
        sum(p.nr_entries for p in z.pools) == z.stats["stored_pages"] - z.stats["same_filled_pages"]
    )


def test_default_is_n_and_keeps_the_2015_pools(zswap_backend: str) -> None:
    z = _zswap()
    _check_backend(z, zswap_backend)
    assert z.params["shared_zpool"] is False
    assert z.params.as_sysfs()["shared_zpool"] == "N"
    z.store(0, 0, PAGES[2])
    z.params["compressor"] = "zstd"
    z.store(0, 1, PAGES[3])
    pools = z.pools
    assert [(p.compressor, p.zpool) for p in pools] == [("zstd", "zsmalloc"), ("lz4", "zsmalloc")]
    assert [p.shared for p in pools] == [p.name for p in pools]  # a zpool each
    assert all(p.total_size > 0 for p in pools)
    _check_sizes(z)
    z.close()


@pytest.mark.parametrize("zpool", ZPOOLS)
def test_every_pair_round_trips_in_one_zpool(zswap_backend: str, zpool: str) -> None:
    z = _zswap(zpool, shared_zpool=True)
    _check_backend(z, zswap_backend)
    stored: dict[int, bytes] = {}
    order = [*COMPRESSORS, *reversed(COMPRESSORS)]
    off = 0
    for comp in order:
        z.params["compressor"] = comp
        for _ in range(8):
            page = PAGES[off % len(PAGES)]
            if z.store(0, off, page):
                stored[off] = page
            off += 1
        for o, page in stored.items():
            assert z.load(0, o) == page, (comp, o)
    pools = z.pools
    assert len({p.shared for p in pools}) == 1  # one zpool ...
    assert pools[0].shared in {p.name for p in pools if p.compressor == "lz4"}  # the first
    assert {p.zpool for p in pools} == {zpool}
    assert len({p.compressor for p in pools}) == len(pools) > 1  # ... several compressors
    assert [p.total_size > 0 for p in pools] == [True] + [False] * (len(pools) - 1)
    _check_sizes(z)
    zs = z.zpool_stats()
    assert [s["shared"] for s in zs] == [p.shared for p in pools]
    # writeback decompresses each entry with its own compressor
    written: dict[int, bytes] = {}
    z.set_writeback_handler(lambda t, o, data: written.__setitem__(o, data))
    n = z.writeback(len(stored) // 2)
    assert n > 0 and len(written) == n
    for o, data in written.items():
        assert data == stored.pop(o)
    for o, page in stored.items():
        assert z.load(0, o) == page
    _check_sizes(z)
    z.invalidate_area(0)
    assert [(p.current, p.nr_entries) for p in z.pools] == [(True, 0)]
    z.close()
    assert z.pages.nr_pages == 0


def test_a_zpool_change_still_makes_a_new_zpool(zswap_backend: str) -> None:
    if "z3fold" not in ZPOOLS:
        pytest.skip("needs z3fold")
    z = _zswap(shared_zpool=True)
    z.store(0, 0, REAL[2])
    z.params["compressor"] = "zstd"
    z.store(0, 1, REAL[3])
    z.params["zpool"] = "z3fold"
    z.store(0, 2, REAL[4])
    z.params["compressor"] = "lz4"
    z.store(0, 3, REAL[5])
    pools = z.pools
    assert [(p.compressor, p.zpool) for p in pools] == [
        ("lz4", "z3fold"),
        ("zstd", "z3fold"),
        ("zstd", "zsmalloc"),
        ("lz4", "zsmalloc"),
    ]
    assert pools[0].shared == pools[1].shared == pools[1].name
    assert pools[2].shared == pools[3].shared == pools[3].name
    _check_sizes(z)
    # back to zsmalloc: the live lz4/zsmalloc pool is current again
    z.params["zpool"] = "zsmalloc"
    assert (z.pools[0].name, z.pools[0].compressor) == (pools[3].name, "lz4")
    for o, page in enumerate(REAL[2:6]):
        assert z.load(0, o) == page
    z.close()
    assert z.pages.nr_pages == 0


class _Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, str]] = []

    @hookimpl
    def zswap_compressor_created(self, zswap: Zswap, pool: zswap_core.PoolInfo) -> None:
        self.events.append(("created", pool.compressor, pool.name, pool.shared))

    @hookimpl
    def zswap_compressor_destroyed(self, zswap: Zswap, pool: zswap_core.PoolInfo) -> None:
        self.events.append(("destroyed", pool.compressor, pool.name, pool.shared))

    def take(self) -> list[tuple[str, str]]:
        out = [(e[0], e[1]) for e in self.events]
        self.events.clear()
        return out


def test_hooks_report_compressors_closed_with_their_last_entry(zswap_backend: str) -> None:
    rec = _Recorder()
    register_observer(rec, name=f"rec-{uuid.uuid4()}")
    try:
        z = _zswap(shared_zpool=True)
        assert rec.take() == [("created", "lz4")]
        zpool_name = z.pools[0].shared
        z.store(0, 0, REAL[2])
        z.store(0, 1, REAL[3])
        z.params["compressor"] = "zstd"
        assert rec.take() == [("created", "zstd")]
        z.store(0, 2, REAL[4])
        z.params["compressor"] = "deflate"
        z.params["compressor"] = "lzo"  # deflate stored nothing: closed at once
        assert rec.take() == [("created", "deflate"), ("created", "lzo"), ("destroyed", "deflate")]
        z.invalidate_page(0, 0)
        assert rec.take() == []  # lz4 still has an entry
        z.invalidate_page(0, 1)
        assert rec.take() == [("destroyed", "lz4")]  # its last entry went
        assert {p.shared for p in z.pools} == {zpool_name}  # the zpool lives on
        assert z.load(0, 2) == REAL[4]
        z.invalidate_page(0, 2)
        assert rec.take() == [("destroyed", "zstd")]
        assert [(p.compressor, p.shared) for p in z.pools] == [("lzo", zpool_name)]
        assert z.pools[0].name != zpool_name  # the creator's slot is gone, not its zpool
        z.store(0, 3, REAL[5])
        assert z.load(0, 3) == REAL[5]
        z.close()
        assert rec.take() == [("destroyed", "lzo")]
        assert z.pages.nr_pages == 0
    finally:
        unregister_observer(rec)


def test_switching_shared_zpool_y_n_y_keeps_every_page(zswap_backend: str) -> None:
    z = _zswap(shared_zpool=True)
    stored: dict[int, bytes] = {}
    off = 0
    plan = [
        (True, "zstd"),
        (False, "deflate"),
        (False, "lz4"),
        (True, "zstd"),
        (True, "lzo"),
        (False, "zstd"),
    ]
    for shared, comp in plan:
        z.params["shared_zpool"] = shared
        z.params["compressor"] = comp
        for _ in range(6):
            page = PAGES[off % len(PAGES)]
            if z.store(0, off, page):
                stored[off] = page
            off += 1
        for o, page in stored.items():
            assert z.load(0, o) == page
        _check_sizes(z)
    z.params["shared_zpool"] = "N"
    z.params["shared_zpool"] = "Y"
    for o, page in stored.items():
        assert z.load(0, o) == page
    for o in list(stored)[::2]:
        z.invalidate_page(0, o)
        del stored[o]
    for o, page in stored.items():
        assert z.load(0, o) == page
    _check_sizes(z)
    z.close()
    assert z.pages.nr_pages == 0


@pytest.mark.parametrize("bad", ["2", "maybe", "", "YN", "-1", 2, None])
def test_bad_values_change_nothing(zswap_backend: str, bad: object) -> None:
    z = _zswap(shared_zpool=True)
    z.store(0, 0, PAGES[2])
    z.params["compressor"] = "zstd"
    before = (z.pools, z.params.as_sysfs(), z.stats)
    with pytest.raises(ParamError) as info:
        z.params["shared_zpool"] = bad
    assert info.value.errno == errno.EINVAL
    assert (z.pools, z.params.as_sysfs(), z.stats) == before
    assert z.params["shared_zpool"] is True
    z.close()


def test_metadata_per_page_is_unchanged(zswap_backend: str) -> None:
    """The compressor is the pool id every entry has: no new bits, no bigger entry."""
    figures = {}
    for shared in (False, True):
        z = _zswap(shared_zpool=shared)
        for i in range(2000):
            if i % 400 == 0:
                z.params["compressor"] = COMPRESSORS[(i // 400) % len(COMPRESSORS)]
            z.store(0, i, PAGES[i % len(PAGES)])
        if z._core is not None:
            meta = {k: v for k, v in z.native_memory().items() if k.startswith("core.")}
        else:  # one 64-bit word an entry, in per-chunk arrays
            tree = z._tree(0)
            meta = {
                "words": sum(len(c) * c.itemsize for c in tree.chunks.values()),
                "itemsize": next(iter(tree.chunks.values())).itemsize,
            }
        pids = {(z._entry(0, i) >> 2) & 0xFF for i in range(2000)} - {0}  # bits 2-9
        assert len(z.pools) == len(pids) == min(5, len(COMPRESSORS))
        assert {p.compressor for p in z.pools} == set(COMPRESSORS[:5])
        figures[shared] = (meta, z.stats["stored_pages"], len(pids))
        z.close()
    assert figures[False] == figures[True]
    if zswap_backend == "native":
        core, n, _ = figures[True]
        assert core and sum(core.values()) // n < 100


def test_switches_under_threads_lose_no_page(zswap_backend: str) -> None:
    """Stores and loads on four threads while another flips shared_zpool and compressor."""
    import threading

    z = Zswap(compressor="lz4", zpool="zsmalloc", ram_bytes=1 << 30)
    for t in range(4):
        z.init(t)
    stop = threading.Event()
    errors: list[BaseException] = []

    def switcher() -> None:
        i = 0
        while not stop.is_set():
            z.params["shared_zpool"] = i % 3 != 0
            z.params["compressor"] = COMPRESSORS[i % len(COMPRESSORS)]
            i += 1

    def worker(t: int) -> None:
        try:
            kept: dict[int, bytes] = {}
            for i in range(600):
                page = PAGES[(i * 7 + t) % len(PAGES)]
                if z.store(t, i % 150, page):
                    kept[i % 150] = page
                else:
                    kept.pop(i % 150, None)
                if i % 3 == 0:
                    off = (i * 13) % 150
                    assert z.load(t, off) == kept.get(off)
            for off, page in kept.items():
                assert z.load(t, off) == page
        except BaseException as exc:
            errors.append(exc)

    sw = threading.Thread(target=switcher)
    workers = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    sw.start()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    stop.set()
    sw.join()
    assert not errors, errors[0]
    _check_sizes(z)
    z.close()
    assert z.pages.nr_pages == 0
