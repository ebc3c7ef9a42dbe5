"""``zswap compare``: one page set through every compressor x zpool pair."""

from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING, Any

import click

from ._common import (
    SEED,
    CliError,
    VerifyError,
    build_source,
    check_plugin,
    echo_json,
    human_bytes,
    is_tty,
    source_options,
    table,
)

if TYPE_CHECKING:
    from zswap_core import Zswap

__all__ = ["compare", "measure_pair"]

_REJECTS = (
    "reject_reclaim_fail",
    "reject_alloc_fail",
    "reject_kmemcache_fail",
    "reject_compress_fail",
    "reject_compress_poor",
)
PLOT_MISSING = "matplotlib is needed for --plot: pip install 'zswap-core[plot]'"


def _names(option: str | None, kind: str) -> list[str]:
    from zswap_core import list_plugins

    if option is not None:  # given, even if empty: "" is a mistake, not "all of them"
        names = [n.strip() for n in option.split(",") if n.strip()]
        if not names:
            raise CliError(f"--{kind}s: no names given")
        for n in names:
            check_plugin(kind, n)
        return list(dict.fromkeys(names))
    names = [
        p.name for p in list_plugins() if p.kind == kind and p.state in ("available", "loaded")
    ]
    if not names:
        raise CliError(f"no {kind} plugin is installed (see `zswap lsmod`)")
    return names


def measure_pair(compressor: str, zpool: str, pages: list[bytes], repeats: int) -> dict[str, Any]:
    """Store and load ``pages`` through a fresh Zswap ``repeats`` times; medians per page."""
    from zswap_core import Zswap

    from ._run import pool_rows

    clock = time.perf_counter_ns
    store_us: list[float] = []
    load_us: list[float] = []
    first: dict[str, Any] = {}
    n = len(pages)
    page_size = len(pages[0])
    for rep in range(repeats):
        # RAM so large that the pool limit never rejects anything
        z: Zswap = Zswap(compressor=compressor, zpool=zpool, ram_bytes=1 << 50)
        try:
            z.init(0)
            store = z.store
            t0 = clock()
            for off, page in enumerate(pages):
                store(0, off, page)
            t1 = clock()
            load = z.load
            out = [load(0, off) for off in range(n)]
            t2 = clock()
            for off, page in enumerate(pages):
                got = out[off]
                if got is not None and got != page:
                    raise VerifyError(f"{compressor}/{zpool}: page {off} read back wrong")
            stored = sum(1 for o in out if o is not None)
            store_us.append((t1 - t0) / n / 1000)
            load_us.append((t2 - t1) / max(1, stored) / 1000)
            if rep == 0:
                st = z.stats
                pool = st["pool_total_size"]
                compressed_pages = st["stored_pages"] - st["same_filled_pages"]
                pool_pages = pool // page_size
                first = {
                    "stats": st,
                    "stored_pages": st["stored_pages"],
                    "same_filled_pages": st["same_filled_pages"],
                    "pool_total_size": pool,
                    "pool_pages": pool_pages,
                    "density": round(compressed_pages / pool_pages, 3) if pool_pages else 0.0,
                    "rejects": sum(st[k] for k in _REJECTS),
                    "pools": pool_rows(z),
                }
        finally:
            z.close()
    first.pop("stats")
    return {
        "compressor": compressor,
        "zpool": zpool,
        **first,
        "store_us": round(statistics.median(store_us), 2),
        "load_us": round(statistics.median(load_us), 2),
    }


def codec_ratio(compressor: str, pages: list[bytes]) -> float:
    """Original / compressed bytes of the pages zswap would compress and could keep.

    Same-filled pages (never compressed) and pages that do not shrink below a page
    (always rejected, ``reject_compress_poor``) are left out, so this is the codec's
    ratio on what the pool holds and density can be compared with it.
    """
    from zswap_core import default_registry
    from zswap_core.workload import is_same_filled

    mod = default_registry().require("compressor", compressor)
    comp = mod.driver(mod.params)
    orig = packed = 0
    try:
        for p in pages:
            if is_same_filled(p):
                continue
            n = len(comp.compress(p))
            if n < len(p):
                orig += len(p)
                packed += n
    finally:
        comp.close()
    return round(orig / packed, 3) if packed else 0.0


EXAMPLES = """
\b
Examples:
  zswap compare
  zswap compare --compressors lz4,zstd --zpools zbud,zsmalloc --pages 4096
  zswap compare --source files /usr/bin --json
  zswap compare --pid 1234 --plot compare.png
"""


@click.command("compare", epilog=EXAMPLES)
@click.argument("paths", nargs=-1, metavar="[PATH]...")
@click.option(
    "--compressors",
    default=None,
    metavar="A,B,...",
    help="Compressors to compare.  [default: every installed one]",
)
@click.option(
    "--zpools",
    default=None,
    metavar="A,B,...",
    help="Allocators to compare.  [default: every installed one]",
)
@click.option(
    "--pages",
    type=click.IntRange(1, 1 << 22),
    default=2048,
    show_default=True,
    help="How many pages to store.",
)
@click.option(
    "--repeats",
    type=click.IntRange(1, 100),
    default=3,
    show_default=True,
    help="Timing runs per pair; the median is reported.",
)
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of synthetic pages.")
@source_options
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option(
    "--plot",
    default=None,
    metavar="FILE.png",
    help="Also draw ratio, density and speed per pair (needs matplotlib).",
)
def compare(
    paths: tuple[str, ...],
    compressors: str | None,
    zpools: str | None,
    pages: int,
    repeats: int,
    seed: int,
    source: str | None,
    files: tuple[str, ...],
    pid: int | None,
    as_json: bool,
    plot: str | None,
) -> None:
    """Store the same pages through every compressor x allocator pair and compare.

    For each pair: ratio (original / compressed bytes of the pages that are compressed
    and fit in a page: the codec alone), density (those pages per pool page: the codec and
    the allocator together), pool size, store and load time per page (median of
    --repeats runs) and rejected pages (the sum of the reject_* counters).
    """
    if plot is not None:
        if not plot.strip():
            raise CliError("--plot: the file name is empty")
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise CliError(PLOT_MISSING) from None
    comps = _names(compressors, "compressor")
    zps = _names(zpools, "zpool")
    src = build_source(source, files, paths, pid, seed, max_pages=pages)
    page_list = [src.page(i) for i in range(pages)]
    results: list[dict[str, Any]] = []
    ratios = {c: codec_ratio(c, page_list) for c in comps}
    total = len(comps) * len(zps)
    show = is_tty() and not as_json
    aliases = {c: _alias_of(c) for c in comps}
    for c in comps:
        for zp in zps:
            if show:
                click.echo(f"\r[{len(results) + 1}/{total}] {c} + {zp} ...", nl=False, err=True)
            row = measure_pair(c, zp, page_list, repeats)
            row["ratio"] = ratios[c]
            row["alias_of"] = aliases[c] or None
            results.append(row)
    if show:
        click.echo("\r" + " " * 60 + "\r", nl=False, err=True)
    out = {
        "source": src.describe(),
        "pages": pages,
        "page_size": src.page_size,
        "repeats": repeats,
        "results": [{k: v for k, v in r.items() if k != "pools"} for r in results],
    }
    if plot is not None:
        _plot(results, plot, src.describe())
        out["plot"] = plot
    if as_json:
        echo_json(out)
        return
    click.echo(
        f"zswap compare: {out['source']}; {pages} pages "
        f"({human_bytes(pages * src.page_size)}), median of {repeats}"
    )
    click.echo()
    table(
        [
            "compressor",
            "zpool",
            "ratio",
            "density",
            "pool_size",
            "store_us",
            "load_us",
            "rejects",
            "same_filled",
        ],
        [
            [
                _label(r),
                r["zpool"],
                r["ratio"],
                r["density"],
                human_bytes(r["pool_total_size"]),
                r["store_us"],
                r["load_us"],
                r["rejects"],
                r["same_filled_pages"],
            ]
            for r in results
        ],
    )
    if any(r["alias_of"] for r in results):
        click.echo("\n(= X): an alias of compressor X, the same streams byte for byte")
    if plot is not None:
        click.echo(f"\nplot written to {plot}")


def _alias_of(compressor: str) -> str:
    """The compressor whose streams ``compressor`` produces, "" when none."""
    from zswap_core import default_registry

    mod = default_registry().require("compressor", compressor)
    return str(getattr(mod.driver, "alias_of", "") or "")


def _label(row: dict[str, Any]) -> str:
    """A compressor's name as the table and the plot show it: aliases say so."""
    alias = row.get("alias_of")
    return f"{row['compressor']} (= {alias})" if alias else str(row["compressor"])


def _plot(results: list[dict[str, Any]], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{_label(r)}\n{r['zpool']}" for r in results]
    x = list(range(len(results)))
    width = max(8.0, 0.6 * len(results) + 2)
    fig, axes = plt.subplots(4, 1, figsize=(width, 15))
    # 1. the trade-off a user picks from: density against store cost
    ax = axes[0]
    markers = {"zbud": "s", "z3fold": "^", "zsmalloc": "o"}
    for r in results:
        ax.scatter(r["store_us"], r["density"], marker=markers.get(r["zpool"], "D"), s=40)
        ax.annotate(
            f"{_label(r)}/{r['zpool']}",
            (r["store_us"], r["density"]),
            fontsize="x-small",
            xytext=(4, 3),
            textcoords="offset points",
        )
    ax.set_xscale("log")
    ax.set_xlabel("store µs/page (log)")
    ax.set_ylabel("stored pages per pool page")
    ax.set_title("density against store cost (up and left is better)")
    ax.grid(True, alpha=0.3)
    # 2-4. the figures per combination
    ax = axes[1]
    ax.bar([i - 0.2 for i in x], [r["ratio"] for r in results], 0.4, label="ratio (codec)")
    ax.bar(
        [i + 0.2 for i in x],
        [r["density"] for r in results],
        0.4,
        label="density (pages/pool page)",
    )
    ax.set_title("compression")
    ax.legend(fontsize="small")
    axes[2].bar(x, [r["store_us"] for r in results], color="tab:orange")
    axes[2].set_yscale("log")
    axes[2].set_title("store µs/page (log)")
    axes[3].bar(x, [r["load_us"] for r in results], color="tab:green")
    axes[3].set_title("load µs/page")
    for a in axes[1:]:
        a.set_xticks(x)
        a.set_xticklabels(labels, fontsize="x-small")
    fig.suptitle(title, fontsize="small")
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    try:
        fig.savefig(path, format="png", dpi=100)
    except OSError as exc:
        raise CliError(f"--plot {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
