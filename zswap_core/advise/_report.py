"""The advice for people: a text report, CSV rows and the plot.

Every figure comes from the report dict (the JSON); nothing is computed twice.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["PLOT_FORMATS", "csv_text", "plot", "plot_format", "text_lines"]

PLOT_FORMATS = ("png", "svg", "pdf")
MIB = 1 << 20


def plot_format(path: str) -> str | None:
    """The image format of ``path`` from its extension, None when not one we write."""
    ext = path.rpartition(".")[2].lower() if "." in path else ""
    return ext if ext in PLOT_FORMATS else None


def _mib(x: float | None) -> str:
    return "n/a" if x is None else f"{x / MIB:.1f}"


def _num(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _iv(d: dict[str, Any] | None, fmt: Callable[[float | None], str]) -> str:
    """``value [low, high]``; ``value`` alone when the interval is a point; n/a for null."""
    if d is None:
        return "n/a"
    v, lo, hi = d["value"], d["low"], d["high"]
    if lo is None or hi is None:
        return f"{fmt(v)} [n/a]"
    if fmt(lo) == fmt(v) == fmt(hi):
        return fmt(v)
    return f"{fmt(v)} [{fmt(lo)}, {fmt(hi)}]"


def _spread(d: dict[str, float] | None) -> str:
    if d is None:
        return "n/a"
    return f"{d['median']:.2f} ({d['p10']:.2f}-{d['p90']:.2f})"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "") -> list[str]:
    widths = [len(h) for h in headers]
    for row in rows:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))
    out = []
    for row in [list(headers), *rows]:
        cells = [c.ljust(widths[i]) if i < 2 else c.rjust(widths[i]) for i, c in enumerate(row)]
        out.append(indent + "  ".join(cells).rstrip())
    return out


def _results_table(results: Sequence[dict[str, Any]], indent: str = "") -> list[str]:
    rows = [
        [
            r["compressor"]
            + (f" (= {r['alias_of']})" if r.get("alias_of") else "")
            + ("" if r["codec_backend"] == "c" else " (py)"),
            r["zpool"],
            _iv(r["codec_ratio"], lambda x: _num(x, 2)),
            _iv(r["pool_density"], lambda x: _num(x, 2)),
            _iv(r["saved_bytes"], _mib),
            _iv(r["saved_percent"], lambda x: _num(x, 1)),
            _spread(r["compress_s_per_gib"]),
            _spread(r["decompress_s_per_gib"]),
            str(r["rejected_pages"]),
        ]
        for r in results
    ]
    headers = [
        "compressor",
        "zpool",
        "codec ratio",
        "pool density",
        "saved MiB",
        "saved %",
        "compress s/GiB",
        "decompress s/GiB",
        "rejected",
    ]
    return _table(headers, rows, indent)


def text_lines(report: dict[str, Any]) -> list[str]:
    """The human report, line by line."""
    k = report["kernel"]
    pop = report["population"]
    smp = report["sample"]
    out: list[str] = []
    host = " (this host)" if k["from_host"] else ""
    names = ", ".join(
        f"{t['name']} (pid {t['pid']})" if t["kind"] == "pid" else str(t["name"])
        for t in report["targets"][:6]
    )
    more = len(report["targets"]) - 6
    if more > 0:
        names += f" and {more} more"
    out.append(f"zswap advise: {names}; kernel {k['release']}{host}")
    out.append(
        f"candidates: {pop['pages']} pages ({_mib(pop['bytes'])} MiB); "
        f"excluded: {pop['zero_page']} on the zero page, {pop['swapped']} swapped out"
        + (f"; {pop['shmem']} shared" if pop.get("shmem") else "")
    )
    if smp["mode"] == "all":
        read = f"read: all {smp['pages']} pages ({_mib(smp['bytes_read'])} MiB)"
    else:
        read = (
            f"read: a uniform sample of {smp['pages']} pages ({_mib(smp['bytes_read'])} MiB,"
            f" seed {smp['seed']}); intervals at {smp['confidence']:.0%}"
        )
    if smp["vanished"]:
        read += f"; {smp['vanished']} pages vanished before they were read"
    out.append(read)
    if report["skipped"]:
        out.append(f"skipped: {len(report['skipped'])} ({'; '.join(report['skipped'][:3])})")
    if report["interrupted"]:
        out.append(
            f"INTERRUPTED: {smp['batches_done']} of {smp['batches']} batches finished; "
            "figures are from those"
        )
    out.append("")
    out.extend(_results_table(report["results"]))
    out.append("")
    out.append(
        "codec ratio: original / compressed bytes of the pages zswap compresses; pool "
        "density: those pages per pool page;"
    )
    out.append(
        "saved: RAM freed, pool and zswap's metadata counted; s/GiB: codec CPU time, "
        "median (p10-p90) over batches; (py): Python codec; (= X): X's streams"
    )
    for note in report.get("notes", [])[:-1]:  # the last one (pool bytes) is in --help
        out.append(f"note: {note}")
    rec = report["recommendation"]
    out.append("")
    if rec["compressor"] is not None:
        out.append(
            f"recommendation ({rec['objective']}): zswap.compressor={rec['compressor']} "
            f"zswap.zpool={rec['zpool']}: {rec['why']}"
        )
    else:
        out.append(f"recommendation: none ({rec['why']})")
    wi = report["what_if"]
    if wi["rows"]:
        out.append("")
        out.append(
            f"what if (MemTotal {_mib(wi['mem_total_bytes'])} MiB from {wi['mem_total_source']}):"
        )
        out.extend(
            _table(
                ["max_pool_percent", "pool limit MiB", "pool MiB", "fits %", "saved MiB"],
                [
                    [
                        f"{r['max_pool_percent']:g}",
                        _mib(r["pool_limit_bytes"]),
                        _mib(r["pool_bytes"]),
                        f"{r['fits_percent']:.1f}",
                        _mib(r["saved_bytes"]),
                    ]
                    for r in wi["rows"]
                ],
                "  ",
            )
        )
    groups = wi.get("groups") or []
    if groups:
        out.append("")
        out.append(
            f"what if in a cgroup (memory.zswap.max), {groups[0]['compressor']}/"
            f"{groups[0]['zpool']}:"
        )
        out.extend(
            _table(
                [
                    "group",
                    "zswap.max MiB",
                    "writeback",
                    "charged MiB",
                    "fits %",
                    "saved MiB",
                    "rest",
                ],
                [
                    [
                        g["group"],
                        "max" if g["zswap_max_bytes"] is None else _mib(g["zswap_max_bytes"]),
                        str(g["writeback"]),
                        _mib(g["charged_bytes"]),
                        f"{g['fits_percent']:.1f}",
                        _mib(g["saved_bytes"]),
                        g["rest"] or "-",
                    ]
                    for g in groups
                ],
                "  ",
            )
        )
    cold = report.get("cold")
    if cold is not None and cold.get("method") is None:
        out.append("")
        out.append(f"cold: n/a ({cold.get('note')})")
    elif cold is not None:
        out.append("")
        out.append(
            f"cold ({cold['method']}, {cold['interval_s']:g} s): {cold['cold_pages']} pages, "
            f"{cold['cold_percent']:.1f}% of the candidates"
            + (f"; {cold['note']}" if cold.get("note") else "")
        )
        if cold["results"]:
            out.extend(_results_table(cold["results"], "  "))
            crec = cold["recommendation"]
            if crec and crec["compressor"]:
                out.append(
                    f"  for the cold part: zswap.compressor={crec['compressor']} "
                    f"zswap.zpool={crec['zpool']}"
                )
    return out


CSV_COLUMNS = (
    "compressor",
    "zpool",
    "codec_backend",
    "codec_ratio",
    "codec_ratio_low",
    "codec_ratio_high",
    "pool_density",
    "pool_density_low",
    "pool_density_high",
    "saved_bytes",
    "saved_bytes_low",
    "saved_bytes_high",
    "saved_percent",
    "saved_percent_low",
    "saved_percent_high",
    "pool_bytes",
    "compress_s_per_gib_p10",
    "compress_s_per_gib_median",
    "compress_s_per_gib_p90",
    "decompress_s_per_gib_p10",
    "decompress_s_per_gib_median",
    "decompress_s_per_gib_p90",
    "rejected_pages",
    "same_filled_pages",
    "sample_pages",
    "population_pages",
    "recommended",
)


def csv_text(report: dict[str, Any]) -> str:
    """One row per compressor x zpool; n/a is an empty cell."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    rec = report["recommendation"]
    for r in report["results"]:
        row: list[Any] = [r["compressor"], r["zpool"], r["codec_backend"]]
        for key in ("codec_ratio", "pool_density", "saved_bytes", "saved_percent"):
            d = r[key]
            row += [None, None, None] if d is None else [d["value"], d["low"], d["high"]]
        row.append(r["pool_bytes"]["value"])
        for key in ("compress_s_per_gib", "decompress_s_per_gib"):
            d = r[key]
            row += [None] * 3 if d is None else [d["p10"], d["median"], d["p90"]]
        row += [
            r["rejected_pages"],
            r["same_filled_pages"],
            report["sample"]["pages"],
            report["population"]["pages"],
            int(r["compressor"] == rec["compressor"] and r["zpool"] == rec["zpool"]),
        ]
        w.writerow(["" if v is None else v for v in row])
    return buf.getvalue()


# -- the plot --------------------------------------------------------------------------------

_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _place_labels(
    points: Sequence[tuple[float, float]],
    sizes: Sequence[tuple[float, float]],
    bounds: tuple[float, float, float, float] | None = None,
) -> list[tuple[float, float]]:
    """Greedy label offsets (in points) so that no two label boxes overlap.

    ``points``: anchor positions in display points; ``sizes``: (width, height) of each
    label; ``bounds``: the axes box (left, bottom, right, top) labels must stay in.
    Each label tries offsets around its point, nearest first, and takes the first whose
    box meets no box already placed, no marker and stays in bounds; failing that, the
    least-overlapping one.
    """
    candidates = [
        (dx, dy)
        for r in (6, 14, 24, 36, 50, 66)
        for dx, dy in ((r, r * 0.4), (r, -r * 0.9), (-r, r * 0.4), (-r, -r * 0.9), (0, r), (0, -r))
    ]
    placed: list[tuple[float, float, float, float]] = []
    marks = [(x - 4, y - 4, x + 4, y + 4) for x, y in points]
    out: list[tuple[float, float]] = []

    def box(i: int, dx: float, dy: float) -> tuple[float, float, float, float]:
        x, y = points[i]
        w, h = sizes[i]
        left = x + dx if dx >= 0 else x + dx - w
        bottom = y + dy
        return (left, bottom, left + w, bottom + h)

    def overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
        wx = min(a[2], b[2]) - max(a[0], b[0])
        wy = min(a[3], b[3]) - max(a[1], b[1])
        return wx * wy if wx > 0 and wy > 0 else 0.0

    order = sorted(range(len(points)), key=lambda i: (points[i][1], points[i][0]))
    result: dict[int, tuple[float, float]] = {}
    for i in order:
        best: tuple[float, float] | None = None
        best_cost = math.inf
        for dx, dy in candidates:
            b = box(i, dx, dy)
            cost = sum(overlap(b, p) for p in placed) + sum(overlap(b, m) for m in marks)
            if bounds is not None:
                inside = overlap(b, bounds)
                cost += 4 * ((b[2] - b[0]) * (b[3] - b[1]) - inside)
            if cost == 0:
                best = (dx, dy)
                break
            if cost < best_cost:
                best, best_cost = (dx, dy), cost
        assert best is not None
        placed.append(box(i, *best))
        result[i] = best
    out = [result[i] for i in range(len(points))]
    return out


def plot(report: dict[str, Any], path: str) -> None:
    """Saved MiB against codec CPU s/GiB, colour = compressor, marker = zpool."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fmt = plot_format(path)
    if fmt is None:
        raise ValueError(f"{path}: the extension must be one of {', '.join(PLOT_FORMATS)}")
    # an alias (lzo-rle: lzo's streams) would sit on its original's point: one point
    every = [r for r in report["results"] if r["cpu_s_per_gib"] is not None]
    shown = {(r["compressor"], r["zpool"]) for r in every}
    results = [r for r in every if (r.get("alias_of"), r["zpool"]) not in shown]
    aka: dict[str, list[str]] = {}
    for r in every:
        if (r.get("alias_of"), r["zpool"]) in shown and r["compressor"] not in aka.get(
            r["alias_of"], []
        ):
            aka.setdefault(r["alias_of"], []).append(r["compressor"])
    comps = list(dict.fromkeys(r["compressor"] for r in results))
    zpools = list(dict.fromkeys(r["zpool"] for r in results))
    cmap = plt.get_cmap("tab10")
    colour = {c: cmap(i % 10) for i, c in enumerate(comps)}
    marker = {z: _MARKERS[i % len(_MARKERS)] for i, z in enumerate(zpools)}
    fig, ax = plt.subplots(figsize=(9, 6))
    xs = [r["cpu_s_per_gib"] for r in results]
    ys = [r["saved_bytes"]["value"] / MIB for r in results]
    for r, x, y in zip(results, xs, ys, strict=True):
        lo, hi = r["saved_bytes"]["low"], r["saved_bytes"]["high"]
        if lo is not None and hi is not None and hi > lo:
            ax.errorbar(
                x,
                y,
                yerr=[[y - lo / MIB], [hi / MIB - y]],
                fmt="none",
                ecolor=colour[r["compressor"]],
                alpha=0.5,
                capsize=3,
            )
        ax.scatter(x, y, color=colour[r["compressor"]], marker=marker[r["zpool"]], s=60, zorder=3)
    ax.set_xlabel("codec CPU cost, s/GiB (compress + decompress, median)")
    ax.set_ylabel("saved MiB (pool and zswap metadata counted)")
    ax.grid(True, alpha=0.3)
    ax.set_xlim(left=0, right=max(xs, default=1) * 1.25 or 1)
    if ys:
        lo_y, hi_y = min(0.0, *ys), max(ys)
        ax.set_ylim(lo_y, hi_y * 1.12 + (1 if hi_y <= 0 else 0))
    smp = report["sample"]
    what = (
        "all {} pages".format(smp["pages"])
        if smp["mode"] == "all"
        else "sample of {} pages ({:.0f} MiB), {:.0%} intervals".format(
            smp["pages"], smp["bytes_read"] / MIB, smp["confidence"]
        )
    )
    names = ", ".join(str(t["name"]) for t in report["targets"][:3])
    ax.set_title(
        f"zswap advise: {names}, kernel {report['kernel']['release']}\n"
        f"{report['population']['pages']} candidate pages; {what}",
        fontsize="medium",
    )
    # labels, placed without overlaps in display space
    fig.canvas.draw()
    labels = [
        "{}/{}".format("=".join([r["compressor"], *aka.get(r["compressor"], [])]), r["zpool"])
        for r in results
    ]
    pts: Any = ax.transData.transform(list(zip(xs, ys, strict=True))) if results else []
    to_pt = 72.0 / fig.dpi
    anchors = [(float(px) * to_pt, float(py) * to_pt) for px, py in pts]
    sizes = [(len(t) * 5.2 + 2, 9.0) for t in labels]
    box = ax.get_window_extent()
    bounds = (box.x0 * to_pt, box.y0 * to_pt, box.x1 * to_pt, box.y1 * to_pt)
    offsets = _place_labels(anchors, sizes, bounds)
    for text, x, y, (dx, dy) in zip(labels, xs, ys, offsets, strict=True):
        ax.annotate(
            text,
            (x, y),
            xytext=(dx, dy),
            textcoords="offset points",
            fontsize=8,
            ha="left" if dx >= 0 else "right",
            va="bottom",
            arrowprops={"arrowstyle": "-", "alpha": 0.4, "lw": 0.6} if abs(dx) > 14 else None,
        )
    handles = [
        Line2D(
            [], [], color=colour[c], marker="o", linestyle="", label="=".join([c, *aka.get(c, [])])
        )
        for c in comps
    ]
    handles += [
        Line2D([], [], color="0.3", marker=marker[z], linestyle="", label=z) for z in zpools
    ]
    ax.legend(handles=handles, title="colour: compressor; marker: zpool", fontsize=8, loc="best")
    fig.tight_layout()
    try:
        fig.savefig(path, format=fmt, dpi=110)
    finally:
        plt.close(fig)
