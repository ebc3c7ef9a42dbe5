"""Regression check of the hot path's speed and memory, made for noisy CI machines.

It runs the machinery of ``benchmarks/run.py`` in-process on a small page set and
asserts *ratios* only, never absolute times:

* Zswap (lz4 + zsmalloc) against the floor, a ``dict`` of ``lz4.block`` output. The
  rounds are interleaved (floor, ours, x2, x2, ours, floor, ...); each round's time
  is divided by the floor's time of the same repeat and the median of those ratios
  is checked. Times are the thread's CPU time, which other processes on a busy
  machine do not inflate (their cache pressure still does, hence the margins);
* a contender doing all the work twice must land above the bounds, so they are known
  to catch a hot path that became twice as slow;
* metadata bytes per stored page, by tracemalloc.

Measured when this was written (AMD EPYC, 2 cores, CPython 3.11.7, lz4 4.4.5, load
average 5 to 6 from other jobs; 1500 pages, 11 repeats, 8 runs), time ratios ours /
floor: store 2.1-2.8 (median about 2.4), load 2.5-2.9 (about 2.7); twice the work:
store 4.2-5.6, load 4.8-6.3. The bounds sit about 1.55 times above the current
ratios. When the hot path gets much faster, ``test_bounds_catch_a_twice_as_slow_hot_path``
says so: lower the bounds then, so that they keep catching a 2x slowdown.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from statistics import median
from typing import Any

import pytest

pytest.importorskip("lz4.block")
pytest.importorskip("zict")

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # ``benchmarks`` is a directory of the repository, not installed
    sys.path.append(str(ROOT))

from benchmarks import _bench  # noqa: E402
from benchmarks._peers import DictLz4, ZswapRAM  # noqa: E402
from zswap_core import crypto_has_comp, zpool_has_pool  # noqa: E402

pytestmark = pytest.mark.skipif(
    not (crypto_has_comp("lz4") and zpool_has_pool("zsmalloc")),
    reason="needs the lz4 and zsmalloc plugins",
)

PAGES = 1500
REPEATS = 11

#: our time / the floor's time (CPU time, median of the paired ratios);
#: current: store ~2.2, load ~2.7 (the hot path was trimmed after the first
#: measurements of ~2.4 / ~2.7). The bounds leave ~1.5x room for noise and still sit
#: well below twice the current ratios, which the sensitivity test checks.
MAX_STORE_RATIO = 3.4
MAX_LOAD_RATIO = 4.2
#: metadata per stored page at 1500 pages (current: zswap's entries ~60 B, of which
#: ~44 B is the one 4096-slot chunk pair mostly empty at this size; all metadata
#: ~160 B since zsmalloc no longer keeps a memoryview per page)
MAX_ENTRY_BYTES = 96
MAX_TOTAL_METADATA_BYTES = 240
#: the performance issue's target for all metadata (not met yet, see the xfail below)
TARGET_TOTAL_METADATA_BYTES = 64


class _TwiceAsSlow(ZswapRAM):
    """Zswap doing every store and load twice: what a 2x slower hot path looks like."""

    def __init__(self) -> None:
        super().__init__("zsmalloc")
        self.name = "Zswap x2 work"

    def store_range(self, part: int, pages: Sequence[bytes], lo: int, hi: int) -> None:
        super().store_range(part, pages, lo, hi)
        super().store_range(part, pages, lo, hi)  # duplicates: replaced, same cost

    def load_keys(self, part: int, keys: Sequence[int]) -> None:
        super().load_keys(part, keys)
        super().load_keys(part, keys)


@pytest.fixture(scope="module")
def pages() -> list[bytes]:
    return _bench.make_pages(PAGES, seed=1)


@pytest.fixture(scope="module")
def timings(pages: list[bytes]) -> dict[str, Any]:
    floor, ours, slow = _bench.run_interleaved(
        [(DictLz4(), 0), (ZswapRAM("zsmalloc"), 0), (_TwiceAsSlow(), 0)],
        pages,
        REPEATS,
        clock="cpu",
        warmup=200,
    )
    out: dict[str, Any] = {}
    for res in (ours, slow):
        # time ratios ours / floor, per interleaved pair of rounds; their median
        out[res.name] = {
            "store": median(_bench.paired_ratios(res.store, floor.store)),
            "load": median(_bench.paired_ratios(res.load, floor.load)),
        }
    out["detail"] = (
        f"floor store {floor.store.median:.1f} µs ±{floor.store.spread_pct:.0f}%, "
        f"load {floor.load.median:.1f} µs ±{floor.load.spread_pct:.0f}%; "
        f"ours store {ours.store.median:.1f} µs ±{ours.store.spread_pct:.0f}%, "
        f"load {ours.load.median:.1f} µs ±{ours.load.spread_pct:.0f}%"
    )
    return out


@pytest.fixture(scope="module")
def metadata(pages: list[bytes]) -> dict[str, Any]:
    return _bench.measure_metadata(pages)


def test_store_within_bound_of_the_floor(timings: dict[str, Any]) -> None:
    ratio = timings["Zswap lz4+zsmalloc"]["store"]
    assert ratio <= MAX_STORE_RATIO, (
        f"store takes {ratio:.2f}x the dict+lz4 floor's time (bound {MAX_STORE_RATIO}); "
        + timings["detail"]
    )


def test_load_within_bound_of_the_floor(timings: dict[str, Any]) -> None:
    ratio = timings["Zswap lz4+zsmalloc"]["load"]
    assert ratio <= MAX_LOAD_RATIO, (
        f"load takes {ratio:.2f}x the dict+lz4 floor's time (bound {MAX_LOAD_RATIO}); "
        + timings["detail"]
    )


def test_bounds_catch_a_twice_as_slow_hot_path(timings: dict[str, Any]) -> None:
    """The check is sensitive: twice the work per page lands above both bounds."""
    slow = timings["Zswap x2 work"]
    hint = "the hot path got faster: lower the bounds so that they catch a 2x slowdown; "
    assert slow["store"] > MAX_STORE_RATIO, (
        f"{hint}twice the work stores at {slow['store']:.2f}x the floor's time, "
        f"within the bound {MAX_STORE_RATIO}; " + timings["detail"]
    )
    assert slow["load"] > MAX_LOAD_RATIO, (
        f"{hint}twice the work loads at {slow['load']:.2f}x the floor's time, "
        f"within the bound {MAX_LOAD_RATIO}; " + timings["detail"]
    )


def test_metadata_per_stored_page(metadata: dict[str, Any]) -> None:
    z = metadata["zswap"]
    entries = z["metadata_per_page_by_part"]["zswap_entries"]
    assert entries <= MAX_ENTRY_BYTES, z
    assert z["metadata_per_page"] <= MAX_TOTAL_METADATA_BYTES, z


@pytest.mark.xfail(
    reason="zsmalloc keeps two arrays per zspage and a handle table, and every pool "
    "page is a bytearray object (~140 B per stored page in all); the issue's 64 B "
    "target is not met (see the README's performance section)",
    strict=False,
)
def test_metadata_meets_the_issue_target(metadata: dict[str, Any]) -> None:
    z = metadata["zswap"]
    assert z["metadata_per_page"] <= TARGET_TOTAL_METADATA_BYTES, z
