"""The proactive shrinker (``shrinker_enabled``, 6.8+): count/scan, second chance, protection.

Deterministic throughout: no worker thread (``shrink_worker=False``), the pool-limit
work done by ``Zswap.shrink()`` and memory pressure by explicit ``Swap.reclaim`` /
``Shrinker.scan_objects`` calls. Runs on both backends.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import zswap_core
from zswap_core import ParamError, Zswap
from zswap_core._zswap import SHRINK_STOP
from zswap_core.swap import Swap, SwapEntry

# every test on both backends: conftest.BACKEND_MODULES

PS = 4096
#: a small ``zswap run`` (its defaults otherwise), with the report as JSON
CLI = (sys.executable, "-m", "zswap_core.cli", "run", "--json")
CLI += ("--pages", "2000", "--accesses", "20000")
#: 400 pages of RAM at max_pool_percent=10: a 40-page pool.
RAM = 400 * PS


def compressible(i: int, seed: int = 0) -> bytes:
    """~1.1 KiB after lz4 (two share a zbud page); unique per (seed, i)."""
    rng = random.Random(seed * 1_000_003 + i)
    return rng.randbytes(1000) + i.to_bytes(4, "little") + bytes(PS - 1004)


@pytest.fixture
def make_zswap() -> Iterator[Callable[..., Zswap]]:
    if not zswap_core.zpool_has_pool("zbud"):
        pytest.skip("the zbud plugin is not installed")
    made: list[Zswap] = []

    def _make(**kw: object) -> Zswap:
        kw.setdefault("zpool", "zbud")
        kw.setdefault("compressor", "lz4")
        kw.setdefault("ram_bytes", RAM)
        kw.setdefault("max_pool_percent", 10)
        kw.setdefault("shrink_worker", False)
        z = Zswap(**kw)  # type: ignore[arg-type]
        made.append(z)
        return z

    yield _make
    for z in made:
        z.close()


def held(z: Zswap, entries: list[SwapEntry]) -> list[bool]:
    """Which entries zswap holds, read without loading (a load would touch them)."""
    return [z.entry_length(e.type, e.offset) is not None for e in entries]


def expected_protection(nr_stores: int) -> int:
    """The protected size after ``nr_stores`` stores into an empty LRU (no swap-ins):
    one more per store, halved whenever it exceeds a quarter of the LRU."""
    prot = 0
    for lru in range(1, nr_stores + 1):
        prot += 1
        if prot > lru >> 2:
            prot >>= 1
    return prot


def test_parameter_default_and_writes(make_zswap: Callable[..., Zswap]) -> None:
    z = make_zswap()
    assert z.params["shrinker_enabled"] is False
    assert z.params.sysfs("shrinker_enabled") == "N"
    z.params["shrinker_enabled"] = " Y\n"
    assert z.params.sysfs("shrinker_enabled") == "Y"
    for bad in ("maybe", "2", "", "YY", "-1"):
        with pytest.raises(ParamError):
            z.params["shrinker_enabled"] = bad
        assert z.params["shrinker_enabled"] is True  # a failed write changes nothing
    z.params["shrinker_enabled"] = "n"
    assert z.params.sysfs("shrinker_enabled") == "N"
    assert Zswap.from_cmdline(
        "zswap.shrinker_enabled=Y zswap.zpool=zbud", ram_bytes=RAM, shrink_worker=False
    ).params["shrinker_enabled"]


def test_disabled_shrinker_counts_and_scans_nothing(
    tmp_path: Path, make_zswap: Callable[..., Zswap]
) -> None:
    z = make_zswap(max_pool_percent=100)
    with Swap(z, close_zswap=False) as s:
        s.swapon(tmp_path / "swap", 64)
        entries = [s.swap_out(compressible(i)) for i in range(20)]
        assert z.shrinker.count_objects() == 0
        assert z.shrinker.scan_objects(20) == SHRINK_STOP
        assert z.shrinker.nr_scanned == 0
        assert s.reclaim(100) == 0
        assert all(held(z, entries))
        assert z.stats["written_back_pages"] == z.stats["shrinker_written_back_pages"] == 0
        for bad in (-1, 1.5, True, "3"):
            with pytest.raises(ValueError):
                s.reclaim(bad)  # type: ignore[arg-type]
            with pytest.raises(ValueError):
                z.shrinker.scan_objects(bad)  # type: ignore[arg-type]


def _steady_pressure(z: Zswap, path: Path) -> tuple[dict[str, int], int]:
    """600 pages swapped out, each followed by reclaim of two pages and the limit
    worker's turn; every page read back at the end. (stats, the pool's peak pages)."""
    peak = 0
    with Swap(z, close_zswap=False) as s:
        s.swapon(path, 1024)
        pages = [compressible(i, seed=3) for i in range(600)]
        entries = []
        for p in pages:
            entries.append(s.swap_out(p))
            s.reclaim(2)
            z.shrink()
            peak = max(peak, z.pages.nr_pages)
        stats = z.stats
        assert [s.swap_in(e) for e in entries] == pages
        assert s.vmstat["zswpwb"] == stats["written_back_pages"]
    return stats, peak


def test_steady_pressure_keeps_the_pool_under_its_limit(
    tmp_path: Path, make_zswap: Callable[..., Zswap]
) -> None:
    without, peak_n = _steady_pressure(make_zswap(), tmp_path / "n")
    z = make_zswap(shrinker_enabled=True)
    with_shrinker, peak_y = _steady_pressure(z, tmp_path / "y")
    assert without["pool_limit_hit"] > 0 and peak_n >= z.pool_limit_pages
    assert without["shrinker_written_back_pages"] == 0
    assert with_shrinker["pool_limit_hit"] == 0
    assert peak_y < z.pool_limit_pages
    assert with_shrinker["shrinker_written_back_pages"] > 0
    # every writeback of that run was the shrinker's (the limit was never reached)
    assert with_shrinker["written_back_pages"] == with_shrinker["shrinker_written_back_pages"]


def test_recent_entries_are_not_written_back_before_older_ones(
    tmp_path: Path, make_zswap: Callable[..., Zswap]
) -> None:
    z = make_zswap(max_pool_percent=100, shrinker_enabled=True)
    with Swap(z, close_zswap=False) as s:
        s.swapon(tmp_path / "swap", 128)
        pages = [compressible(i) for i in range(60)]
        entries = [s.swap_out(p) for p in pages[:40]]
        # the first pass only clears the referenced bits of the 40
        for _ in range(2):
            assert z.shrinker.scan_objects(20) == SHRINK_STOP
            assert z.shrinker.nr_scanned == 20 and all(held(z, entries))
        entries += [s.swap_out(p) for p in pages[40:]]
        written = 0
        for _ in range(6):
            n = z.shrinker.scan_objects(5)
            assert n == 5  # the old, unreferenced ones
            written += n
            # what is gone is always the oldest entries, never a recent one
            assert held(z, entries) == [False] * written + [True] * (60 - written)
        assert z.stats["shrinker_written_back_pages"] == 30
        assert [s.swap_in(e) for e in entries] == pages


def test_referenced_entries_get_a_second_chance(
    tmp_path: Path, make_zswap: Callable[..., Zswap]
) -> None:
    z = make_zswap(max_pool_percent=100, shrinker_enabled=True)
    with Swap(z, close_zswap=False) as s:
        s.swapon(tmp_path / "swap", 64)
        pages = [compressible(i) for i in range(30)]
        entries = [s.swap_out(p) for p in pages[:10]]
        # the oldest is referenced: its bit is cleared and it goes to the young end
        assert z.shrinker.scan_objects(1) == SHRINK_STOP
        assert z.shrinker.nr_scanned == 1 and all(held(z, entries))
        for n in (4, 5):  # the other nine likewise
            assert z.shrinker.scan_objects(n) == SHRINK_STOP
            assert z.shrinker.nr_scanned == n and all(held(z, entries))
        entries += [s.swap_out(p) for p in pages[10:]]  # new ones: referenced
        # the ten (second time round) are written back; the next, though reached by
        # the scan, only loses its bit and goes behind the other new ones
        assert z.shrinker.scan_objects(11) == 10
        assert z.shrinker.nr_scanned == 11
        assert held(z, entries) == [False] * 10 + [True] * 20
        for n in (10, 9):  # the other new ones lose their bits...
            assert z.shrinker.scan_objects(n) == SHRINK_STOP
            assert z.shrinker.nr_scanned == n
        # ...and then the one that had its second chance first is the oldest
        assert z.shrinker.scan_objects(1) == 1
        assert held(z, entries) == [False] * 11 + [True] * 19
        assert z.stats["shrinker_written_back_pages"] == 11 == s.vmstat["zswpwb"]
        assert [s.swap_in(e) for e in entries] == pages


def test_protection_grows_with_stores_and_decays(
    tmp_path: Path, make_zswap: Callable[..., Zswap]
) -> None:
    z = make_zswap(max_pool_percent=100, shrinker_enabled=True)
    with Swap(z, close_zswap=False) as s:
        s.swapon(tmp_path / "swap", 256)
        for n in (1, 2, 5, 17, 100, 200):
            while z.stats["stored_pages"] < n:
                s.swap_out(compressible(z.stats["stored_pages"]))
            assert z.shrinker.nr_protected == expected_protection(n), n
            assert z.shrinker.nr_protected <= max(1, n // 4)
            assert z.shrinker.nr_protected > 0 or n < 4
        s.swap_out(bytes(PS))  # a same-filled page is not on the LRU: no change
        assert z.shrinker.nr_protected == expected_protection(200)
        # count: the unprotected entries, scaled by pool pages per stored page
        lru, prot = 200, expected_protection(200)
        assert z.shrinker.count_objects() == (lru - prot) * z.pages.nr_pages // lru


def test_protection_grows_with_swapins_from_the_file(
    tmp_path: Path, make_zswap: Callable[..., Zswap]
) -> None:
    z = make_zswap(max_pool_percent=100, shrinker_enabled=True)
    with Swap(z, close_zswap=False) as s:
        s.swapon(tmp_path / "swap", 256)
        pages = [compressible(i) for i in range(100)]
        entries = [s.swap_out(p) for p in pages]
        assert z.writeback(20) == 20  # these now come from the file
        prot = z.shrinker.nr_protected
        count = z.shrinker.count_objects()
        assert s.swap_in(entries[50]) == pages[50]  # from zswap: no change
        assert z.shrinker.nr_protected == prot
        for k in range(20):
            assert s.swap_in(entries[k]) == pages[k]  # from the file
            assert z.shrinker.nr_protected == prot + k + 1
        assert s.vmstat["pswpin"] == 20
        assert z.shrinker.count_objects() < count
        # enough disk swap-ins protect the whole LRU: the shrinker stops at once
        for _ in range(80):
            s.swap_in(entries[0])
        assert z.shrinker.nr_protected >= 80
        assert z.shrinker.count_objects() == 0
        assert z.shrinker.scan_objects(10) == SHRINK_STOP
        assert z.shrinker.nr_scanned == 0
        assert s.reclaim(50) == 0
        assert z.stats["shrinker_written_back_pages"] == 0
        assert sum(held(z, entries)) == 80


def test_shrinker_counters_and_the_total(tmp_path: Path, make_zswap: Callable[..., Zswap]) -> None:
    z = make_zswap(max_pool_percent=100, shrinker_enabled=True)
    with Swap(z, close_zswap=False) as s:
        s.swapon(tmp_path / "swap", 128)
        pages = [compressible(i) for i in range(64)]
        entries = [s.swap_out(p) for p in pages]
        for _ in range(2):
            assert z.shrinker.scan_objects(32) == SHRINK_STOP  # clear every bit
        freed = s.reclaim(20)
        assert freed == 20
        assert z.writeback(3) == 3
        st = z.stats
        assert st["shrinker_written_back_pages"] == freed
        assert st["written_back_pages"] == freed + 3 == s.vmstat["zswpwb"]
        # turning it off at run time stops it at once
        z.params["shrinker_enabled"] = "N"
        assert s.reclaim(20) == 0 and z.shrinker.count_objects() == 0
        assert z.stats["shrinker_written_back_pages"] == freed
        assert [s.swap_in(e) for e in entries] == pages


def test_a_failing_swap_device_stops_the_scan(
    tmp_path: Path, make_zswap: Callable[..., Zswap]
) -> None:
    z = make_zswap(max_pool_percent=100, shrinker_enabled=True)
    with Swap(z, close_zswap=False) as s:
        s.swapon(tmp_path / "swap", 64)
        pages = [compressible(i) for i in range(30)]
        entries = [s.swap_out(p) for p in pages]
        for _ in range(2):
            assert z.shrinker.scan_objects(15) == SHRINK_STOP
        s.inject_io_errors(entries[0].type, writes=1)
        assert z.shrinker.scan_objects(10) == SHRINK_STOP  # the first write failed
        assert z.shrinker.nr_scanned == 1
        assert z.stats["reject_reclaim_fail"] == 1
        assert z.stats["shrinker_written_back_pages"] == 0
        assert z.shrinker.scan_objects(10) == 10  # the device works again
        assert [s.swap_in(e) for e in entries] == pages


def test_zswap_run_drives_the_shrinker_from_its_resident_set(zswap_backend: str) -> None:
    """``zswap run``: evictions are memory pressure; same seed, N against Y."""

    def run(value: str) -> dict[str, int]:
        r = subprocess.run(
            [*CLI, "--cmdline", f"zswap.shrinker_enabled={value}"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert out["final_check_pages"] > 0  # every page read back intact
        return {**out["stats"], **out["vmstat"]}

    off, on = run("N"), run("Y")
    assert off["shrinker_written_back_pages"] == 0
    assert on["shrinker_written_back_pages"] > 0
    assert on["zswpwb"] == on["written_back_pages"] >= on["shrinker_written_back_pages"]
    assert on["pool_limit_hit"] <= off["pool_limit_hit"]


def test_both_backends_shrink_alike(tmp_path: Path, zswap_backend: str) -> None:
    """One mixed workload on each backend: the same counters, protection and entries."""
    if zswap_backend != "native":
        pytest.skip("compares the two backends once")
    if not zswap_core.zpool_has_pool("zbud"):
        pytest.skip("the zbud plugin is not installed")

    def run(backend: str) -> tuple[dict[str, int], dict[str, int], int, list[bool]]:
        rng = random.Random(7)
        z = Zswap(
            backend=backend,
            zpool="zbud",
            ram_bytes=RAM,
            max_pool_percent=20,
            shrink_worker=False,
            shrinker_enabled=True,
        )
        with Swap(z) as s:
            s.swapon(tmp_path / f"swap-{backend}", 1024)
            entries: list[SwapEntry] = []
            for i in range(1500):
                op = rng.random()
                if op < 0.6 or not entries:
                    entries.append(s.swap_out(compressible(i, seed=9)))
                elif op < 0.85:
                    s.swap_in(rng.choice(entries))  # from zswap or from the file
                else:
                    s.swap_free(entries.pop(rng.randrange(len(entries))))
                s.reclaim(rng.randrange(4))
                if i % 97 == 0:
                    z.params["shrinker_enabled"] = "N" if i % 2 else "Y"
                z.shrink()
            return z.stats, s.vmstat, z.shrinker.nr_protected, held(z, entries)

    native = run("native")
    stats, vmstat, _prot, _held = native
    assert stats["shrinker_written_back_pages"] > 0 and vmstat["pswpin"] > 0  # not vacuous
    assert native == run("python")
