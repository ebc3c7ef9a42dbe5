#!/usr/bin/env python3
"""zswap_core against its peers, in one process, on one realistic page set.

    python benchmarks/run.py [--quick] [--json] [--pages N] [--repeats R] [--seed S]

Measures, on ``SyntheticSource(seed=S)`` pages (20000 full, 3000 with ``--quick``):

1. store/load µs per page of ``Zswap`` (lz4) on zbud, z3fold and zsmalloc, against the
   floor (a ``dict`` of ``lz4.block`` output) and ``zict.LRU(Func)``; the native backend
   (the default) and, for lz4+zsmalloc, the Python reference backend beside it; the
   pure-Python allocators' own cost per page (their alloc_write/read called alone);
2. the same with 2 threads (own key range and swap type each) for Zswap+zsmalloc and
   the floor: aggregate throughput and scaling against 1 thread;
3. with writeback: ``Zswap`` + ``Swap`` (swap file in a temporary directory, pool limit
   20% of the working set) against ``zict.Buffer(Func, File)`` holding 20% of the pages;
4. metadata bytes per stored page (Python objects by tracemalloc, C memory by the
   native core's own report), for Zswap+zsmalloc at the page count and at 1,000,000
   pages (full run), and for dict+lz4;
5. pool density per zpool;
6. ``import zswap_core`` time in fresh interpreters;
7. ``zswap compare`` and ``zswap run`` end to end on the native and Python backends.

Each timing is the median of R interleaved repeats (5 full, 3 quick); the spread
((max - min) / median) says how noisy it was. Ratios are throughput ratios,
``their_time / our_time``: above 1 we are faster. The targets of the performance issue
are printed next to each ratio as PASS/MISS; a MISS does not change the exit status.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import _bench  # noqa: E402
from benchmarks._peers import (  # noqa: E402
    DictLz4,
    ZictBuffer,
    ZictLRU,
    ZswapRAM,
    ZswapSwap,
    codec_floor,
)

ZPOOLS = ("zbud", "z3fold", "zsmalloc")
#: allocators written in Python: on the native core they are called per page
PY_ZPOOLS = ("zbud", "z3fold")
MAIN = "Zswap lz4+zsmalloc"
REFERENCE = "Zswap lz4+zsmalloc (python)"
FLOOR = "dict+lz4"
FLOOR_SYSTEM = "dict+lz4 (system liblz4)"
#: codecs whose native path is held to their own floor (section 1b)
CODECS = ("zstd", "lzo", "deflate")
ZICT = "zict LRU(Func)"

#: The targets of the performance issues (native core, codec ops): (key, description,
#: operator, bound).
TARGETS: tuple[tuple[str, str, str, float], ...] = (
    ("store_vs_floor", "store, lz4+zsmalloc (native) vs dict+lz4 floor", ">=", 1.0),
    ("load_vs_floor", "load, lz4+zsmalloc (native) vs dict+lz4 floor", ">=", 1.1),
    (
        "store_vs_floor_same_lib",
        "store, lz4+zsmalloc vs the floor on the system liblz4",
        ">=",
        0.97,
    ),
    ("load_vs_floor_same_lib", "load, lz4+zsmalloc vs the floor on the system liblz4", ">=", 1.0),
    ("store_scaling_2", "store, 2 threads vs 1, aggregate, lz4+zsmalloc", ">=", 1.5),
    ("load_scaling_2", "load, 2 threads vs 1, aggregate, lz4+zsmalloc", ">=", 1.3),
    ("zstd_store_vs_floor", "store, zstd+zsmalloc vs dict+zstd", ">=", 0.95),
    ("zstd_load_vs_floor", "load, zstd+zsmalloc vs dict+zstd", ">=", 0.95),
    ("lzo_store_vs_floor", "store, lzo+zsmalloc vs dict+lzo", ">=", 0.95),
    ("lzo_load_vs_floor", "load, lzo+zsmalloc vs dict+lzo", ">=", 0.95),
    ("deflate_store_vs_floor", "store, deflate+zsmalloc vs dict+deflate", ">=", 0.95),
    ("deflate_load_vs_floor", "load, deflate+zsmalloc vs dict+deflate", ">=", 0.95),
    ("store_vs_zict", "store, lz4+zsmalloc vs zict LRU(Func)", ">", 1.0),
    ("load_vs_zict", "load, lz4+zsmalloc vs zict LRU(Func)", ">", 1.0),
    ("py_zpool_store_vs_floor", "store, a Python allocator (zbud) on the native core", ">=", 0.7),
    ("py_zpool_load_vs_floor", "load, a Python allocator (zbud) on the native core", ">=", 0.6),
    ("writeback_out_vs_zict", "swap-out with writeback vs zict Buffer(Func, File)", ">=", 5.0),
    ("writeback_in_vs_zict", "swap-in with writeback vs zict Buffer(Func, File)", ">=", 5.0),
    ("metadata_bytes_per_page", "metadata B per stored page, lz4+zsmalloc, page count", "<=", 40.0),
    ("metadata_bytes_per_page_1m", "metadata B per stored page at 1,000,000 pages", "<=", 40.0),
    ("import_ms", "import zswap_core, ms (CPU time, cached .pyc)", "<", 50.0),
)


def _meets(value: float, op: str, bound: float) -> bool:
    return {
        ">=": value >= bound,
        ">": value > bound,
        "<=": value <= bound,
        "<": value < bound,
    }[op]


def _progress(quiet: bool) -> Any:
    start = time.perf_counter()

    def say(msg: str) -> None:
        if not quiet:
            print(f"[{time.perf_counter() - start:6.1f}s] {msg}", file=sys.stderr, flush=True)

    return say


def _results_dict(results: Sequence[_bench.Result]) -> dict[str, Any]:
    return {
        f"{r.name}" + (f" x{r.threads}" if r.threads else ""): {
            "label": r.label,
            "threads": max(1, r.threads),
            "clock": r.clock,
            "store_us_per_page": r.store.as_dict(),
            "load_us_per_page": r.load.as_dict(),
            "store_us_per_page_wall": r.store_wall.as_dict(),
            "load_us_per_page_wall": r.load_wall.as_dict(),
        }
        for r in results
    }


def run(pages_n: int, repeats: int, seed: int, quick: bool, say: Any) -> dict[str, Any]:
    t_start = time.perf_counter()
    report: dict[str, Any] = {
        "config": {
            "mode": "quick" if quick else "full",
            "pages": pages_n,
            "repeats": repeats,
            "seed": seed,
            "page_source": f"SyntheticSource(seed={seed}).page(0..{pages_n - 1})",
            "timing": (
                "median of interleaved repeats; gc disabled in timed loops; single-thread"
                " figures in the thread's CPU time (wall time beside them), threads and"
                " writeback in wall time"
            ),
        },
        "machine": _bench.machine_info(),
    }
    say(f"making {pages_n} pages")
    pages = _bench.make_pages(pages_n, seed)
    report["page_set"] = _bench.page_mix(pages)

    # 1. one thread -------------------------------------------------------------------
    say("1/7 store/load, one thread")
    system_floor = codec_floor("lz4-system")
    if system_floor is None:
        raise SystemExit("the lz4 plugin has no C codec ops: build it (python3 dev.py setup)")
    inram = _bench.run_interleaved(
        [(DictLz4(), 0), (system_floor, 0), (ZictLRU(), 0)]
        + [(ZswapRAM(zp), 0) for zp in ZPOOLS]
        + [(ZswapRAM("zsmalloc", backend="python"), 0)],
        pages,
        repeats,
        progress=lambda m: say(f"    {m}"),
    )
    backends = {r.name: r.info.get("backend", "") for r in inram}
    if backends.get(MAIN) != "native":
        # The figures below would be the Python backend's under the native names.
        raise SystemExit(f"the native backend is not in use ({backends.get(MAIN)!r}): build it")
    by = {r.name: r for r in inram}
    report["single_thread"] = _results_dict(inram)
    ratios: dict[str, Any] = {}
    for zp in ZPOOLS:
        ours = by[f"Zswap lz4+{zp}"]
        ratios[f"lz4+{zp}"] = {
            "store_vs_floor": _bench.ratio(by[FLOOR].store, ours.store),
            "load_vs_floor": _bench.ratio(by[FLOOR].load, ours.load),
            "store_vs_zict": _bench.ratio(by[ZICT].store, ours.store),
            "load_vs_zict": _bench.ratio(by[ZICT].load, ours.load),
        }
    ratios["lz4+zsmalloc"]["store_vs_floor_same_lib"] = _bench.ratio(
        by[FLOOR_SYSTEM].store, by[MAIN].store
    )
    ratios["lz4+zsmalloc"]["load_vs_floor_same_lib"] = _bench.ratio(
        by[FLOOR_SYSTEM].load, by[MAIN].load
    )
    ratios["system_lz4_vs_floor"] = {
        "store": _bench.ratio(by[FLOOR].store, by[FLOOR_SYSTEM].store),
        "load": _bench.ratio(by[FLOOR].load, by[FLOOR_SYSTEM].load),
    }
    ratios["lz4+zsmalloc (python)"] = {
        "store_vs_floor": _bench.ratio(by[FLOOR].store, by[REFERENCE].store),
        "load_vs_floor": _bench.ratio(by[FLOOR].load, by[REFERENCE].load),
        "store_vs_zict": _bench.ratio(by[ZICT].store, by[REFERENCE].store),
        "load_vs_zict": _bench.ratio(by[ZICT].load, by[REFERENCE].load),
    }
    ratios["zict_vs_floor"] = {
        "store": _bench.ratio(by[FLOOR].store, by[ZICT].store),
        "load": _bench.ratio(by[FLOOR].load, by[ZICT].load),
    }
    ratios["native_vs_python"] = {
        "store": _bench.ratio(by[REFERENCE].store, by[MAIN].store),
        "load": _bench.ratio(by[REFERENCE].load, by[MAIN].load),
    }
    report["single_thread_ratios"] = ratios
    # where a Python allocator's time goes: its own alloc_write/read, called alone
    report["py_allocator_cost"] = {zp: _bench.allocator_cost(zp, pages) for zp in PY_ZPOOLS}

    # 1b. other codecs against their own floors -----------------------------------------
    say("1b/7 zstd, lzo, deflate against their own floors")
    codecs: dict[str, Any] = {}
    for codec in CODECS:
        floor = codec_floor(codec)
        if floor is None:
            codecs[codec] = {"skipped": "not installed"}
            continue
        mine = ZswapRAM("zsmalloc", compressor=codec)
        same_lib = codec_floor(f"{codec}-system")
        field = [(floor, 0), (mine, 0)] + ([(same_lib, 0)] if same_lib is not None else [])
        res = _bench.run_interleaved(field, pages, repeats, progress=lambda m: say(f"    {m}"))
        f, o = res[0], res[1]
        codecs[codec] = {
            "results": _results_dict(res),
            "store_vs_floor": _bench.ratio(f.store, o.store),
            "load_vs_floor": _bench.ratio(f.load, o.load),
            "codec_backend": o.info.get("codec_backend", ""),
        }
        if same_lib is not None:
            codecs[codec]["store_vs_floor_same_lib"] = _bench.ratio(res[2].store, o.store)
            codecs[codec]["load_vs_floor_same_lib"] = _bench.ratio(res[2].load, o.load)
    report["codecs"] = codecs

    # 2. two threads ------------------------------------------------------------------
    say("2/7 store/load, 1 vs 2 threads")
    thr = _bench.run_interleaved(
        [(DictLz4(), 1), (DictLz4(), 2), (ZswapRAM("zsmalloc"), 1), (ZswapRAM("zsmalloc"), 2)],
        pages,
        repeats,
        progress=lambda m: say(f"    {m}"),
    )
    scaling: dict[str, Any] = {}
    for name in (FLOOR, MAIN):
        one = next(r for r in thr if r.name == name and r.threads == 1)
        two = next(r for r in thr if r.name == name and r.threads == 2)
        scaling[name] = {
            "store_pages_per_s_1": round(1e6 / one.store.median),
            "store_pages_per_s_2": round(1e6 / two.store.median),
            "load_pages_per_s_1": round(1e6 / one.load.median),
            "load_pages_per_s_2": round(1e6 / two.load.median),
            "store_scaling": _bench.ratio(one.store, two.store),
            "load_scaling": _bench.ratio(one.load, two.load),
        }
    report["threads"] = {"results": _results_dict(thr), "scaling": scaling}

    # 3. writeback --------------------------------------------------------------------
    say("3/7 swap-out/swap-in with writeback")
    wb = _bench.run_interleaved(
        [(ZictBuffer(0.2), 0), (ZswapSwap("zsmalloc", percent=20), 0)],
        pages,
        repeats,
        clock="wall",  # file I/O and zswap's writeback thread: only wall time sees them
        progress=lambda m: say(f"    {m}"),
    )
    zb, zs = wb
    report["writeback"] = {
        "results": _results_dict(wb),
        "out_vs_zict": _bench.ratio(zb.store, zs.store),
        "in_vs_zict": _bench.ratio(zb.load, zs.load),
        "zswap": zs.info,
        "zict": zb.info,
    }

    # 4. metadata ---------------------------------------------------------------------
    say("4/7 metadata (tracemalloc + the native core's report)")
    report["metadata"] = _bench.measure_metadata(pages)
    big = 100_000 if quick else 1_000_000
    say(f"    at {big:,} pages")
    report["metadata_large"] = _bench.measure_metadata(pages, total=big)["zswap"]

    # 5. density ----------------------------------------------------------------------
    say("5/7 pool density")
    report["density"] = {zp: _bench.density(by[f"Zswap lz4+{zp}"].info, pages) for zp in ZPOOLS}
    for r in inram:  # verify() results are big; keep only the counters in the report
        r.info.pop("held_compressed_keys", None)
    for zp in ZPOOLS:
        report["density"][zp]["stats"] = by[f"Zswap lz4+{zp}"].info.get("stats", {})

    # 6. import -----------------------------------------------------------------------
    say("6/7 import time")
    report["import"] = _bench.measure_import(5 if quick else 7)

    # 7. the commands ----------------------------------------------------------------------
    say("7/7 zswap compare / zswap run, native and python backends")
    report["commands"] = _bench.measure_commands(2048 if quick else 8192, 3)

    # targets -------------------------------------------------------------------------
    main = ratios["lz4+zsmalloc"]
    values = {
        "store_vs_floor": main["store_vs_floor"]["ratio"],
        "load_vs_floor": main["load_vs_floor"]["ratio"],
        "store_vs_zict": main["store_vs_zict"]["ratio"],
        "load_vs_zict": main["load_vs_zict"]["ratio"],
        "store_vs_floor_same_lib": main["store_vs_floor_same_lib"]["ratio"],
        "load_vs_floor_same_lib": main["load_vs_floor_same_lib"]["ratio"],
        "store_scaling_2": scaling[MAIN]["store_scaling"]["ratio"],
        "load_scaling_2": scaling[MAIN]["load_scaling"]["ratio"],
        **{
            f"{c}_{op}_vs_floor": codecs[c][f"{op}_vs_floor"]["ratio"]
            for c in CODECS
            if "results" in codecs[c]
            for op in ("store", "load")
        },
        "py_zpool_store_vs_floor": ratios["lz4+zbud"]["store_vs_floor"]["ratio"],
        "py_zpool_load_vs_floor": ratios["lz4+zbud"]["load_vs_floor"]["ratio"],
        "writeback_out_vs_zict": report["writeback"]["out_vs_zict"]["ratio"],
        "writeback_in_vs_zict": report["writeback"]["in_vs_zict"]["ratio"],
        "metadata_bytes_per_page": report["metadata"]["zswap"]["metadata_per_page"],
        "metadata_bytes_per_page_1m": report["metadata_large"]["metadata_per_page"],
        "import_ms": report["import"]["cpu_delta_ms"]["median"],
    }
    report["targets"] = [
        {
            "key": key,
            "what": what,
            "value": values[key],
            "target": f"{op} {bound:g}",
            "pass": _meets(values[key], op, bound),
        }
        for key, what, op, bound in TARGETS
        if key in values
    ]
    report["elapsed_s"] = round(time.perf_counter() - t_start, 1)
    return report


# ---------------------------------------------------------------------------------------
# human output
# ---------------------------------------------------------------------------------------


def _table(rows: Sequence[Sequence[str]], right: set[int] | None = None) -> str:
    right = right or set()
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for k, row in enumerate(rows):
        cells = [
            c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(row)
        ]
        lines.append("  " + "  ".join(cells).rstrip())
        if k == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fig(d: dict[str, Any]) -> str:
    return f"{d['median']:.2f} ±{d['spread_pct']:.0f}%"


def _rat(d: dict[str, Any]) -> str:
    return f"{d['ratio']:.2f}x ({d['lo']:.2f}-{d['hi']:.2f})"


def human(report: dict[str, Any]) -> str:
    cfg, m, ps = report["config"], report["machine"], report["page_set"]
    out: list[str] = []
    out.append(
        f"zswap_core benchmark ({cfg['mode']}): {cfg['pages']} pages, {cfg['repeats']} "
        f"interleaved repeats; figures are medians, ± is (max-min)/median"
    )
    out.append(
        f"machine: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), {m['python']}, "
        f"loadavg {' '.join(map(str, m['loadavg']))}"
    )
    out.append("versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()))
    out.append(
        f"pages: {cfg['page_source']}: {ps['same_filled']} same-filled, lz4 ratio "
        f"{ps['lz4_ratio_non_same']} on the rest, {ps['lz4_incompressible']} incompressible"
    )
    out.append("ratios are throughput ratios (their time / our time; >1 = we are faster),")
    out.append("with the range of the per-repeat paired ratios in brackets")

    out.append("\n1. store / load, one thread (µs per page: CPU time of the thread; wall beside)")
    st = report["single_thread"]
    rows = [["contender", "store µs", "load µs", "store µs wall", "load µs wall", "refused"]]
    for name, r in st.items():
        zp = name.removeprefix("Zswap lz4+")
        refused = str(report["density"][zp]["refused"]) if zp in report["density"] else "0"
        rows.append(
            [
                name,
                _fig(r["store_us_per_page"]),
                _fig(r["load_us_per_page"]),
                _fig(r["store_us_per_page_wall"]),
                _fig(r["load_us_per_page_wall"]),
                refused,
            ]
        )
    out.append(_table(rows, {1, 2, 3, 4, 5}))
    out.append("  (a refused page is not held, as in the kernel: its load is a miss)")
    rows = [["ours", "store vs floor", "load vs floor", "store vs zict", "load vs zict"]]
    for key, r in report["single_thread_ratios"].items():
        if key in ("zict_vs_floor", "native_vs_python", "system_lz4_vs_floor"):
            continue
        rows.append(
            [
                key,
                _rat(r["store_vs_floor"]),
                _rat(r["load_vs_floor"]),
                _rat(r["store_vs_zict"]),
                _rat(r["load_vs_zict"]),
            ]
        )
    zf = report["single_thread_ratios"]["zict_vs_floor"]
    rows.append(["(zict LRU)", _rat(zf["store"]), _rat(zf["load"]), "", ""])
    out.append("")
    out.append(_table(rows, {1, 2, 3, 4}))
    main_r = report["single_thread_ratios"]["lz4+zsmalloc"]
    sl = report["single_thread_ratios"]["system_lz4_vs_floor"]
    out.append(
        f"  against the floor on the system liblz4 (the library the C ops link): store "
        f"{_rat(main_r['store_vs_floor_same_lib'])}, load {_rat(main_r['load_vs_floor_same_lib'])}"
        f"; that floor against python-lz4's: store {_rat(sl['store'])}, load {_rat(sl['load'])}"
    )
    nv = report["single_thread_ratios"]["native_vs_python"]
    out.append(
        f"  native backend against the Python one (lz4+zsmalloc): store {_rat(nv['store'])}, "
        f"load {_rat(nv['load'])} faster"
    )
    out.append("  a Python allocator's own alloc_write / read per page, called alone (µs):")
    for zp, c in report["py_allocator_cost"].items():
        out.append(
            f"    {zp}: alloc_write {c['alloc_write_us']:.2f}, read {c['read_us']:.2f}, "
            f"free {c['free_us']:.2f} (the gap to the floor is mostly this)"
        )

    out.append("\n1b. other codecs on the native path against their own floor (a dict of the")
    out.append("    codec's output, through its Python library's cheapest call)")
    rows = [
        [
            "codec",
            "floor store µs",
            "floor load µs",
            "ours store µs",
            "ours load µs",
            "store vs floor",
            "load vs floor",
            "vs system-lib floor",
            "codec path",
        ]
    ]
    for codec, c in report["codecs"].items():
        if "results" not in c:
            rows.append([codec, c.get("skipped", ""), "", "", "", "", "", "", ""])
            continue
        f, o = list(c["results"].values())[:2]
        same = (
            f"{_rat(c['store_vs_floor_same_lib'])} / {_rat(c['load_vs_floor_same_lib'])}"
            if "store_vs_floor_same_lib" in c
            else ""
        )
        rows.append(
            [
                codec,
                _fig(f["store_us_per_page"]),
                _fig(f["load_us_per_page"]),
                _fig(o["store_us_per_page"]),
                _fig(o["load_us_per_page"]),
                _rat(c["store_vs_floor"]),
                _rat(c["load_vs_floor"]),
                same,
                c["codec_backend"],
            ]
        )
    out.append(_table(rows, {1, 2, 3, 4, 5, 6, 7}))

    out.append("\n2. threads: aggregate µs per page (wall time / pages) and scaling vs 1 thread")
    rows = [["contender", "threads", "store µs", "load µs", "store pages/s", "load pages/s"]]
    for name, r in report["threads"]["results"].items():
        s, ld = r["store_us_per_page"], r["load_us_per_page"]
        rows.append(
            [
                name.rsplit(" x", 1)[0],
                str(r["threads"]),
                _fig(s),
                _fig(ld),
                f"{1e6 / s['median']:,.0f}",
                f"{1e6 / ld['median']:,.0f}",
            ]
        )
    out.append(_table(rows, {1, 2, 3, 4, 5}))
    rows = [["contender", "store scaling 2 vs 1", "load scaling 2 vs 1"]]
    for name, sc in report["threads"]["scaling"].items():
        rows.append([name, _rat(sc["store_scaling"]), _rat(sc["load_scaling"])])
    out.append("")
    out.append(_table(rows, {1, 2}))

    wb = report["writeback"]
    out.append("\n3. with writeback: swap-out then swap-in of every page (µs per page)")
    rows = [["contender", "out µs", "in µs"]]
    for name, r in wb["results"].items():
        rows.append([name, _fig(r["store_us_per_page"]), _fig(r["load_us_per_page"])])
    out.append(_table(rows, {1, 2}))
    zs, zb = wb["zswap"], wb["zict"]
    if zs:
        st_, vm = zs["stats"], zs["vmstat"]
        out.append(
            f"  Zswap: pool limit {zs['pool_limit_pages']} pages; pool_limit_hit "
            f"{st_['pool_limit_hit']}, written_back_pages {st_['written_back_pages']}, "
            f"zswpout {vm['zswpout']}, pswpout {vm['pswpout']}, zswpin {vm['zswpin']}, "
            f"pswpin {vm['pswpin']} (first repeat)"
        )
    if zb:
        out.append(
            f"  zict: n={zb['n']} pages in fast; after the run fast {zb['fast']}, slow {zb['slow']}"
        )
    out.append(f"  ratio out {_rat(wb['out_vs_zict'])}, in {_rat(wb['in_vs_zict'])}")

    md = report["metadata"]
    z, d = md["zswap"], md["dict_lz4"]
    out.append(
        f"\n4. metadata per stored page ({md['pages']} pages; Python objects by tracemalloc,"
        " C memory by the native core's report)"
    )
    traced_pool = z["pool_page_bytes"] if z["backend"] == "python" else 0
    out.append(
        f"  Zswap {z['pool']} ({z['backend']}): {z['metadata_per_page']} B/page = (Python "
        f"objects {z['traced_growth_bytes'] - traced_pool:,} + C memory "
        f"{z['native_bytes']:,}) / {z['stored_pages']} stored "
        f"({z['same_filled_pages']} same-filled)"
    )
    parts = ", ".join(f"{k} {v}" for k, v in z["metadata_per_page_by_part"].items())
    out.append(f"    by holder, B/page: {parts}")
    out.append(
        f"    pool slack beside that (pool bytes - compressed bytes): "
        f"{z['pool_slack_per_compressed_page']} B per compressed page"
    )
    native = ", ".join(f"{k} {v}" for k, v in z["native_by_kind_per_page"].items())
    out.append(f"    C memory by kind, B/page: {native or 'none (Python backend)'}")
    lg = report["metadata_large"]
    out.append(
        f"  at {lg['stored_pages']:,} stored pages: {lg['metadata_per_page']} B/page; C memory "
        "by kind, B/page: "
        + ", ".join(f"{k} {v}" for k, v in lg["native_by_kind_per_page"].items())
    )
    for t in z["top_allocations"][:5]:
        out.append(f"    {t['bytes']:>10,} B {t['count']:>7,} blocks  {t['where']}")
    out.append(
        f"  dict+lz4: {d['metadata_per_page']} B/entry = (traced growth "
        f"{d['traced_growth_bytes']:,} - payload {d['compressed_bytes']:,}) / {d['entries']}"
    )

    out.append("\n5. pool density (lz4, one thread's store of every page)")
    rows = [
        [
            "zpool",
            "compressed",
            "same-filled",
            "refused",
            "pool pages",
            "pages/pool page",
            "lz4 ratio",
            "pool efficiency",
        ]
    ]
    for zp, dn in report["density"].items():
        rows.append(
            [
                zp,
                str(dn["compressed_pages"]),
                str(dn["same_filled"]),
                str(dn["refused"]),
                str(dn["pool_pages"]),
                f"{dn['pages_per_pool_page']:.2f}",
                f"{dn['lz4_ratio']:.2f}",
                f"{dn['pool_efficiency']:.0%}",
            ]
        )
    out.append(_table(rows, {1, 2, 3, 4, 5, 6, 7}))
    out.append("  pages/pool page = effective ratio; efficiency = compressed bytes / pool bytes")

    imp = report["import"]
    out.append("\n6. import zswap_core in a fresh interpreter (ms)")
    out.append(f"  bytecode: {imp['bytecode']}")
    out.append(
        "  CPU time (user+sys) of 'python -c \"import zswap_core\"' minus 'python -c pass': "
        + _fig(imp["cpu_delta_ms"])
    )
    out.append(f"  -X importtime cumulative (wall clock): {_fig(imp['importtime_ms'])}")
    top = ", ".join(f"{k} {v / 1000:.1f}" for k, v in imp["top_imports_us"].items())
    out.append(f"    its direct imports (ms, last run): {top}")
    out.append(
        f"  -X importtime, environment as is (PYTHONDONTWRITEBYTECODE="
        f"{imp['PYTHONDONTWRITEBYTECODE'] or 'unset'}): {_fig(imp['as_env_importtime_ms'])}"
    )

    cm = report["commands"]
    out.append(
        f"\n7. the commands end to end, native against python backend ({cm['pages']} pages, "
        f"median of {cm['runs']} runs, wall seconds of the whole process)"
    )
    rows = [["command", "native s", "python s", "speed-up", "same results"]]
    for name, c in cm["commands"].items():
        rows.append(
            [
                name,
                f"{c['native_s']:.2f}",
                f"{c['python_s']:.2f}",
                f"{c['speedup']:.2f}x",
                c["same_results"],
            ]
        )
    out.append(_table(rows, {1, 2, 3}))

    out.append("\nTargets of the native-core issue (a MISS is information, not a failure)")
    rows = [["", "value", "target", "what"]]
    for t in report["targets"]:
        rows.append(["PASS" if t["pass"] else "MISS", f"{t['value']:g}", t["target"], t["what"]])
    out.append(_table(rows, {1}))
    out.append(f"\n({report['elapsed_s']} s)")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="3000 pages, 3 repeats (< 1 minute)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--pages", type=int, help="pages in the set (20000; 3000 quick)")
    ap.add_argument("--repeats", type=int, help="repeats per figure (5; 3 quick)")
    ap.add_argument("--seed", type=int, default=1, help="SyntheticSource seed (1)")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    args = ap.parse_args(argv)
    n = args.pages or (3000 if args.quick else 20000)
    repeats = args.repeats or (3 if args.quick else 5)
    if n < 100 or repeats < 1:
        ap.error("need --pages >= 100 and --repeats >= 1")
    report = run(n, repeats, args.seed, args.quick, _progress(args.quiet))
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(human(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
