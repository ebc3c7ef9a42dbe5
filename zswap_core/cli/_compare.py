"""``zswap compare``: one page set through every compressor x zpool pair."""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import click

from . import _signals
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

__all__ = ["codec_ratio", "compare", "measure_pair", "run_compare"]

_REJECTS = (
    "reject_reclaim_fail",
    "reject_alloc_fail",
    "reject_kmemcache_fail",
    "reject_compress_fail",
    "reject_compress_poor",
)
PLOT_MISSING = "matplotlib is needed for --plot: pip install 'zswap-core[plot]'"
MAX_JOBS = 1024
#: Below this much estimated work (seconds) a run without --jobs stays in this process:
#: starting workers would cost more than it saves.
SERIAL_BELOW_S = 0.5


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


# -- running the measurements -----------------------------------------------------------
#
# A task is ("ratio", compressor, "") -> codec_ratio(), or ("pair", compressor, zpool)
# -> measure_pair(). Either runs whole in one process, and a worker runs one at a time,
# so each pair's timings are its own: the parallelism is across pairs, never within one.

Task = tuple[str, str, str]


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def _run_task(task: Task, pages: list[bytes], repeats: int) -> Any:
    kind, compressor, zpool = task
    if kind == "ratio":
        return codec_ratio(compressor, pages)
    return measure_pair(compressor, zpool, pages, repeats)


def run_compare(
    compressors: Sequence[str],
    zpools: Sequence[str],
    pages: list[bytes],
    repeats: int,
    *,
    jobs: int | None = None,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """One row per compressor x zpool (in that order): :func:`measure_pair` plus ``ratio``.

    ``jobs`` worker processes measure the pairs (and the codec ratios) side by side;
    ``1`` measures them one after another in this process; None is :func:`usable_cpus`,
    but in this process when the whole run is estimated to take under
    ``SERIAL_BELOW_S``. Every figure but the timings is the same whichever way it ran.
    """
    ratio_tasks: list[Task] = [("ratio", c, "") for c in compressors]
    pair_tasks: list[Task] = [("pair", c, zp) for c in compressors for zp in zpools]
    tasks = ratio_tasks + pair_tasks
    workers = min(usable_cpus() if jobs is None else jobs, len(tasks))
    done: dict[Task, Any] = {}
    if workers > 1:
        cost = _estimated_costs(compressors, zpools, pages, repeats)
        if jobs is not None or sum(cost.values()) >= SERIAL_BELOW_S * 1e6:
            order = sorted(tasks, key=lambda t: -cost[t])  # longest first: an even finish
            done = _run_parallel(order, pages, repeats, workers, _progress(progress, pair_tasks))
    if not done:
        show = _progress(progress, pair_tasks)
        last: Task | None = None
        for task in tasks:
            if task[0] == "pair":
                show(last, task)
                last = task
            done[task] = _run_task(task, pages, repeats)
        show(None, None)
    rows = []
    for task in pair_tasks:
        row = dict(done[task])
        row["ratio"] = done[("ratio", task[1], "")]
        rows.append(row)
    return rows


def _progress(enabled: bool, pair_tasks: list[Task]) -> Callable[[Task | None, Task | None], None]:
    """``show(finished, started)``: ``[k/total] c + zp ...`` on stderr; (None, None) clears."""
    total = len(pair_tasks)
    finished_pairs = 0
    shown = ""
    running: list[Task] = []

    def show(finished: Task | None, started: Task | None) -> None:
        nonlocal finished_pairs, shown
        if not enabled:
            return
        if finished is not None and finished[0] == "pair":
            finished_pairs += 1
            running.remove(finished)
        if started is not None and started[0] == "pair":
            running.append(started)
        if finished is None and started is None:
            running.clear()  # the end
        text = ""
        if running:
            names = ", ".join(f"{c} + {zp}" for _, c, zp in running)
            text = f"[{min(total, finished_pairs + 1)}/{total}] {names} ..."[:78]
        if text == shown:
            return
        pad = " " * max(0, len(shown) - len(text))
        click.echo(f"\r{text}{pad}\r{text}", nl=False, err=True)
        shown = text

    return show


def _estimated_costs(
    compressors: Sequence[str], zpools: Sequence[str], pages: list[bytes], repeats: int
) -> dict[Task, float]:
    """Microseconds each task should take, from each codec's time on a sample of pages.

    Only the order of the tasks depends on it (longest first), never a result.
    """
    from zswap_core import default_registry

    sample = pages[:: max(1, len(pages) // 48)][:48]
    per_page: dict[str, float] = {}
    for c in compressors:
        try:
            mod = default_registry().require("compressor", c)
            comp = mod.driver(mod.params)
            try:
                t0 = time.perf_counter_ns()
                for p in sample:
                    comp.compress(p)
                per_page[c] = (time.perf_counter_ns() - t0) / 1000 / len(sample)
            finally:
                comp.close()
        except Exception:  # the task itself will say what is wrong
            per_page[c] = 50.0
    n = len(pages)
    costs: dict[Task, float] = {}
    for c in compressors:
        costs[("ratio", c, "")] = per_page[c] * n
        for zp in zpools:
            # a store compresses; a load costs a fraction of that; the rest is per page
            costs[("pair", c, zp)] = repeats * (per_page[c] * 1.2 + 5.0) * n
    return costs


def _run_parallel(
    tasks: list[Task],
    pages: list[bytes],
    repeats: int,
    workers: int,
    show: Callable[[Task | None, Task | None], None],
) -> dict[Task, Any]:
    """Run ``tasks`` (in this order) in ``workers`` processes; their results by task.

    Each worker gets the pages once (inherited by fork; pickled once where forking is
    unsafe, with other threads running), then takes one task at a time. A failed task
    raises its exception here; a worker that dies is an error; on any exception, a
    signal included, the workers are terminated before it goes on.
    """
    import multiprocessing
    from multiprocessing.connection import wait

    method = "fork" if threading.active_count() == 1 else "spawn"
    if method not in multiprocessing.get_all_start_methods():
        method = "spawn"
    ctx: Any = multiprocessing.get_context(method)
    queue = deque(tasks)
    results: dict[Task, Any] = {}
    procs: list[Any] = []
    busy: dict[Any, tuple[Any, Task]] = {}  # connection -> (process, its task)
    try:
        with _signals.at_safe_points() as poll:
            for _ in range(workers):
                here, there = ctx.Pipe()
                proc = ctx.Process(
                    target=_worker,
                    args=(there, pages, repeats, os.getpid()),
                    name="zswap-compare",
                    daemon=True,
                )
                with _signals_blocked():  # the worker unblocks them once it ignores them
                    proc.start()
                there.close()
                procs.append((proc, here))
                task = queue.popleft()
                here.send(task)
                busy[here] = (proc, task)
                show(None, task)
            while busy:
                poll()
                ready = wait([*busy, *(p.sentinel for p, _ in busy.values())], timeout=0.25)
                for conn in [c for c in busy if c in ready]:
                    proc, task = busy.pop(conn)
                    try:
                        status, value = conn.recv()
                    except EOFError:
                        raise _died(proc, task) from None
                    if status != "ok":
                        raise value
                    results[task] = value
                    nxt = queue.popleft() if queue else None
                    conn.send(nxt)  # None: no more, the worker ends
                    if nxt is not None:
                        busy[conn] = (proc, nxt)
                    show(task, nxt)
                for proc, task in busy.values():
                    if proc.sentinel in ready and not proc.is_alive():
                        raise _died(proc, task)
        show(None, None)
        for proc, _ in procs:
            proc.join()
        return results
    finally:
        for proc, _ in procs:
            if proc.is_alive():
                proc.terminate()
        for proc, conn in procs:
            proc.join()
            conn.close()


_HELD = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def _signals_blocked() -> Iterator[None]:
    """Block the signals that end a command while a worker starts.

    The worker inherits the mask (through exec too) and unblocks them once it ignores
    them, so none can reach it before: a fork would otherwise run this process's handler.
    """
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _died(proc: Any, task: Task) -> CliError:
    proc.join()
    code = proc.exitcode
    how = f"signal {signal.Signals(-code).name}" if code and code < 0 else f"status {code}"
    what = task[1] if task[0] == "ratio" else f"{task[1]}/{task[2]}"
    return CliError(f"{what}: the worker process measuring it ended with {how}")


def _worker(conn: Any, pages: list[bytes], repeats: int, parent: int) -> None:
    """A worker: run tasks from ``conn`` until None (or the parent is gone)."""
    # The parent takes Ctrl-C (the terminal sends it to the whole group) and hang-ups,
    # and ends the workers itself; SIGTERM (its terminate()) ends a worker at once.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _HELD)
    _end_with_parent(parent)
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        try:
            reply: tuple[str, Any] = ("ok", _run_task(task, pages, repeats))
        except Exception as exc:
            exc.add_note("in a `zswap compare` worker:\n" + traceback.format_exc().rstrip())
            reply = ("error", exc)
        try:
            conn.send(reply)
        except Exception as exc:  # an exception that cannot be pickled
            text = f"{type(reply[1]).__name__}: {reply[1]}"
            conn.send(("error", RuntimeError(f"{text} (and sending it failed: {exc})")))


def _end_with_parent(parent: int) -> None:
    """Have the kernel send SIGTERM when the parent dies (Linux), so no worker outlives it."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before the request took effect
        os._exit(1)


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
@click.option(
    "--jobs",
    type=click.IntRange(1, MAX_JOBS),
    default=None,
    metavar="N",
    help="Worker processes that measure pairs side by side; 1: one pair after another "
    "in this process.  [default: the CPUs this process may use; a run estimated under "
    "half a second stays in this process]",
)
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
    jobs: int | None,
    as_json: bool,
    plot: str | None,
) -> None:
    """Store the same pages through every compressor x allocator pair and compare.

    For each pair: ratio (original / compressed bytes of the pages that are compressed
    and fit in a page: the codec alone), density (those pages per pool page: the codec and
    the allocator together), pool size, store and load time per page (median of
    --repeats runs) and rejected pages (the sum of the reject_* counters).

    The pairs are measured side by side in --jobs worker processes, each pair from start
    to end in one worker, one pair at a time per worker (so a pair's timings are its
    own); every figure but the timings is the same as with --jobs 1, which measures
    them one after another in this process. Pairs measured side by side share the CPU
    caches and memory bandwidth: --jobs 1 gives the quietest timings.
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
    show = is_tty() and not as_json
    aliases = {c: _alias_of(c) for c in comps}
    results = run_compare(comps, zps, page_list, repeats, jobs=jobs, progress=show)
    for row in results:
        row["alias_of"] = aliases[row["compressor"]] or None
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
