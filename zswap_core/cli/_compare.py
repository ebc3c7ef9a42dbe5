"""``zswap compare``: one page set through every compressor x zpool pair."""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import click

from . import _signals
from ._common import (
    SEED,
    CliError,
    VerifyError,
    build_source,
    check_plugin,
    complete_names,
    echo_json,
    entry_sizes,
    human_bytes,
    metadata_per_entry,
    progress,
    saved_figures,
    source_options,
    source_pages,
    stderr_is_tty,
    table,
)

if TYPE_CHECKING:
    from zswap_core import Zswap

__all__ = ["Interrupted", "compare", "measure_pair", "run_compare"]

_REJECTS = (
    "reject_reclaim_fail",
    "reject_alloc_fail",
    "reject_kmemcache_fail",
    "reject_compress_fail",
    "reject_compress_poor",
)
PLOT_MISSING = "matplotlib is needed for --plot: pip install 'zswap-core[plot]'"
PLOT_FORMATS = ("png", "svg", "pdf")
MAX_JOBS = 1024
#: Below this much estimated work (seconds) a run without --jobs stays in this process:
#: starting workers would cost more than it saves.
SERIAL_BELOW_S = 0.5
#: Pages stored or loaded between two checks for a signal in measure_pair().
CHUNK = 256


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


def measure_pair(
    compressor: str,
    zpool: str,
    pages: list[bytes],
    repeats: int,
    poll: Callable[[], None] = _signals.poll,
) -> dict[str, Any]:
    """Store and load ``pages`` through a fresh Zswap ``repeats`` times; medians per page.

    The figures of the first run: codec ratio (from the lengths of the entries zswap
    stored: same-filled and incompressible pages left out), pool density, saved (in
    percent of all the pages' bytes: a page zswap refused saves nothing), rejects.
    load_us is None (n/a) when zswap stored no page to load. ``poll`` is called between
    two chunks of :data:`CHUNK` pages, outside the timed part: by default a check for a
    signal held back (which raises only inside ``at_safe_points()``: never in a worker).
    """
    from zswap_core import Zswap

    from ._run import pool_rows

    clock = time.perf_counter_ns
    store_us: list[float] = []
    load_us: list[float] = []
    first: dict[str, Any] = {}
    n = len(pages)
    page_size = len(pages[0])
    meta = metadata_per_entry()
    zero = bytes(page_size)
    for rep in range(repeats):
        # RAM so large that the pool limit never rejects anything
        z: Zswap = Zswap(compressor=compressor, zpool=zpool, ram_bytes=1 << 50)
        try:
            z.init(0)
            store = z.store
            # Timed in chunks, with a signal check between two (a Ctrl-C taken in the
            # middle of a store could leave a lock of the core held): one call per
            # CHUNK pages, outside the timed part.
            spent = 0
            for lo in range(0, n, CHUNK):
                t0 = clock()
                for off in range(lo, min(n, lo + CHUNK)):
                    store(0, off, pages[off])
                spent += clock() - t0
                poll()
            if rep == 0:  # before the loads: with exclusive loads they drop the entries
                st = z.stats
                sizes = entry_sizes(z, [(0, o) for o in range(n)])
                first = {
                    "stored_pages": st["stored_pages"],
                    "same_filled_pages": st["same_filled_pages"],
                    "pool_total_size": st["pool_total_size"],
                    "pool_pages": st["pool_total_size"] // page_size,
                    **saved_figures(
                        page_size=page_size,
                        sizes=sizes,
                        is_zero=lambda i: pages[i] == zero,
                        pool_bytes=st["pool_total_size"],
                        considered_pages=n,
                        meta=meta,
                    ),
                    "rejects": sum(st[k] for k in _REJECTS),
                    "pools": pool_rows(z),
                }
            load = z.load
            out: list[bytes | None] = []
            load_ns = 0
            for lo in range(0, n, CHUNK):
                t0 = clock()
                out += [load(0, off) for off in range(lo, min(n, lo + CHUNK))]
                load_ns += clock() - t0
                poll()
            for off, page in enumerate(pages):
                got = out[off]
                if got is not None and got != page:
                    raise VerifyError(f"{compressor}/{zpool}: page {off} read back wrong")
            stored = sum(1 for o in out if o is not None)
            store_us.append(spent / n / 1000)
            if stored:
                load_us.append(load_ns / stored / 1000)
        finally:
            z.close()
    return {
        "compressor": compressor,
        "zpool": zpool,
        **first,
        "store_us": round(statistics.median(store_us), 2),
        "load_us": round(statistics.median(load_us), 2) if load_us else None,
    }


# -- running the measurements -----------------------------------------------------------
#
# A task is a (compressor, zpool) pair -> measure_pair(). It runs whole in one process,
# and a worker runs one at a time, so each pair's timings are its own: the parallelism
# is across pairs, never within one.

Task = tuple[str, str]


class Interrupted(BaseException):
    """Ctrl-C during :func:`run_compare`: ``rows`` are the pairs finished before it.

    A BaseException, as the signal's own :class:`~._signals.Terminated` is: nothing on
    the way may take it for an error.
    """

    def __init__(self, rows: list[dict[str, Any]], signal: _signals.Terminated) -> None:
        super().__init__("interrupted")
        self.rows = rows
        self.signal = signal


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def _run_task(
    task: Task, pages: list[bytes], repeats: int, poll: Callable[[], None] | None = None
) -> Any:
    compressor, zpool = task
    if poll is None:
        return measure_pair(compressor, zpool, pages, repeats)
    return measure_pair(compressor, zpool, pages, repeats, poll)


def run_compare(
    compressors: Sequence[str],
    zpools: Sequence[str],
    pages: list[bytes],
    repeats: int,
    *,
    jobs: int | None = None,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """One row per compressor x zpool (in that order): :func:`measure_pair`.

    ``jobs`` worker processes measure the pairs side by side; ``1`` measures them one
    after another in this process; None is :func:`usable_cpus`, but in this process
    when the whole run is estimated to take under ``SERIAL_BELOW_S``. Every figure but
    the timings is the same whichever way it ran. ``progress``: a bar with ETA on
    stderr. Ctrl-C raises :class:`Interrupted` with the rows of the pairs done.
    """
    tasks: list[Task] = [(c, zp) for c in compressors for zp in zpools]
    workers = min(usable_cpus() if jobs is None else jobs, len(tasks))
    cost = _estimated_costs(compressors, zpools, pages, repeats)
    done: dict[Task, Any] = {}
    total = sum(cost.values())
    try:
        with _progress_bar(progress, tasks, cost) as show:
            if workers > 1 and (jobs is not None or total >= SERIAL_BELOW_S * 1e6):
                order = sorted(tasks, key=lambda t: -cost[t])  # longest first: an even finish
                _run_parallel(order, pages, repeats, workers, show, done)
            else:
                # Signals are taken where measure_pair polls, between two chunks of pages;
                # the bar moves on there too, so a long pair does not look stuck.
                chunks = repeats * 2 * -(-len(pages) // CHUNK)
                with _signals.at_safe_points() as check:
                    for task in tasks:
                        show(None, task)
                        step = cost[task] / chunks

                        def poll(step: float = step) -> None:
                            check()
                            show(None, None, step)

                        done[task] = _run_task(task, pages, repeats, poll)
                        show(task, None)
    except _signals.Terminated as exc:
        if exc.signum != signal.SIGINT:
            raise
        raise Interrupted([done[t] for t in tasks if t in done], exc) from None
    return [done[t] for t in tasks]


class Show(Protocol):
    def __call__(self, ended: Task | None, started: Task | None, part: float = 0.0) -> None: ...


@contextlib.contextmanager
def _progress_bar(enabled: bool, tasks: list[Task], cost: dict[Task, float]) -> Iterator[Show]:
    """``show(finished, started, part)``: a bar on stderr, advanced by each pair's
    estimated cost (so its ETA weighs a slow codec's pairs as such), with ``k/total
    pairs``; ``part``: some of the running pair's cost done (in this process only).

    Drawn only when called (no refresh thread: workers are forked while it is shown);
    show(None, None) redraws, for the elapsed time and ETA to move.
    """
    total = sum(cost.values()) or 1.0
    finished = 0
    completed = 0.0  # the pairs done
    running = 0.0  # parts of the pair running here
    with progress("zswap compare", total, "pairs", enabled=enabled, auto_refresh=False) as bar:

        def show(ended: Task | None, started: Task | None, part: float = 0.0) -> None:
            nonlocal finished, completed, running
            running += part
            if ended is not None:
                finished += 1
                completed += cost[ended]
                running = 0.0
            bar.update(
                min(completed + running, total),
                done=finished,
                of=len(tasks),
                force=ended is not None or started is not None,
            )

        show(None, None)
        yield show


def _estimated_costs(
    compressors: Sequence[str], zpools: Sequence[str], pages: list[bytes], repeats: int
) -> dict[Task, float]:
    """Microseconds each pair should take, from each codec's time on a sample of pages.

    Only the order of the tasks (longest first) and the progress bar depend on it,
    never a result.
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
    # a store compresses; a load costs a fraction of that; the rest is per page
    return {(c, zp): repeats * (per_page[c] * 1.2 + 5.0) * n for c in compressors for zp in zpools}


def _run_parallel(
    tasks: list[Task],
    pages: list[bytes],
    repeats: int,
    workers: int,
    show: Show,
    results: dict[Task, Any],
) -> None:
    """Run ``tasks`` (in this order) in ``workers`` processes; their results by task
    go into ``results`` as they come (what is there stays, should a signal end it).

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
                with _signals.blocked_while_starting():
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
                show(None, None)  # the clock moves on
        for proc, _ in procs:
            proc.join()
    finally:
        _signals.end_workers(proc for proc, _ in procs)
        for _, conn in procs:
            conn.close()


def _died(proc: Any, task: Task) -> CliError:
    proc.join()
    code = proc.exitcode
    how = f"signal {signal.Signals(-code).name}" if code and code < 0 else f"status {code}"
    return CliError(f"{task[0]}/{task[1]}: the worker process measuring it ended with {how}")


def _worker(conn: Any, pages: list[bytes], repeats: int, parent: int) -> None:
    """A worker: run tasks from ``conn`` until None (or the parent is gone)."""
    _signals.worker_setup(parent)
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


EXAMPLES = """
\b
Examples:
  zswap compare
  zswap compare --compressors lz4,zstd --zpools zbud,zsmalloc --pages 4096
  zswap compare --source files /usr/bin --json
  zswap compare --pid 1234 --plot compare.svg

\b
Shell completion (click's; --compressors and --zpools complete installed names):
  eval "$(_ZSWAP_COMPLETE=bash_source zswap)"    # bash; zsh_source, fish_source
"""


@click.command("compare", epilog=EXAMPLES)
@click.argument("paths", nargs=-1, metavar="[PATH]...")
@click.option(
    "--compressors",
    default=None,
    metavar="A,B,...",
    shell_complete=complete_names("compressor"),
    help="Compressors to compare.  [default: every installed one]",
)
@click.option(
    "--zpools",
    default=None,
    metavar="A,B,...",
    shell_complete=complete_names("zpool"),
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
    metavar="FILE.{png,svg,pdf}",
    help="Also draw saved MiB against store time, and each pair's figures (needs "
    "matplotlib). The format is the file's extension.",
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

    \b
    For each pair:
      codec_ratio    original / compressed bytes of the pages zswap compressed and kept
                     (same-filled and incompressible pages left out): the codec alone
      pool_density   those pages per pool page: the codec and the allocator together
      saved          the stored pages' bytes minus the pool and zswap's metadata per
                     entry (as in zswap run --help), and that in percent of all the
                     pages' bytes (a refused page saves nothing)
      store_us, load_us   time per page, median of --repeats runs
      rejects        the sum of the reject_* counters
    n/a where a figure is undefined (no page compressed, no page to load).

    The pairs are measured side by side in --jobs worker processes, each pair from start
    to end in one worker, one pair at a time per worker (so a pair's timings are its
    own); every figure but the timings is the same as with --jobs 1, which measures
    them one after another in this process. Pairs measured side by side share the CPU
    caches and memory bandwidth: --jobs 1 gives the quietest timings.

    Progress with ETA goes to stderr when it is a terminal (with --json too). Ctrl-C
    prints the pairs finished so far, marked interrupted (exit 130).

    With --pid, the first --pages present pages of the process are stored: the start of
    its address space, not the whole. For figures on a whole process (a uniform sample
    or every page, with confidence intervals and saved MiB) use `zswap advise --pid`.
    """
    if plot is not None:
        _check_plot_name(plot)
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise CliError(PLOT_MISSING) from None
    comps = _names(compressors, "compressor")
    zps = _names(zpools, "zpool")
    src = build_source(source, files, paths, pid, seed, max_pages=pages)
    asked, pages = pages, source_pages(src, pages)
    page_list = [src.page(i) for i in range(pages)]
    aliases = {c: _alias_of(c) for c in comps}
    stopped: _signals.Terminated | None = None
    try:
        results = run_compare(comps, zps, page_list, repeats, jobs=jobs, progress=stderr_is_tty())
    except Interrupted as exc:
        results, stopped = exc.rows, exc.signal
    for row in results:
        row["alias_of"] = aliases[row["compressor"]] or None
    out: dict[str, Any] = {
        "source": src.describe(),
        "pages": pages,
        "pages_asked": asked,
        "page_size": src.page_size,
        "repeats": repeats,
        **metadata_per_entry().as_json(),
        "pairs": len(comps) * len(zps),
        "results": [{k: v for k, v in r.items() if k != "pools"} for r in results],
        "interrupted": stopped is not None,
    }
    if plot is not None and stopped is None:
        _plot(results, plot, f"{src.describe()}; {pages} pages", src.page_size)
        out["plot"] = plot
    if as_json:
        echo_json(out)
    else:
        _print_table(out, results)
        if plot is not None and stopped is None:
            click.echo(f"\nplot written to {plot}")
    if stopped is not None:
        raise stopped  # main() says "zswap: interrupted" and exits 130


def _print_table(out: dict[str, Any], results: list[dict[str, Any]]) -> None:
    pages, page_size = out["pages"], out["page_size"]
    click.echo(
        f"zswap compare: {out['source']}; {pages} pages "
        f"({human_bytes(pages * page_size)}), median of {out['repeats']}"
    )
    click.echo()
    table(
        [
            "compressor",
            "zpool",
            "codec_ratio",
            "pool_density",
            "saved",
            "saved_%",
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
                r["codec_ratio"],
                r["pool_density"],
                human_bytes(r["saved_bytes"]),
                r["saved_percent"],
                human_bytes(r["pool_total_size"]),
                r["store_us"],
                r["load_us"],
                r["rejects"],
                r["same_filled_pages"],
            ]
            for r in results
        ],
    )
    click.echo(
        f"\nsaved: the stored pages' bytes minus the pool and zswap's metadata "
        f"({out['metadata_basis']}); saved_%: of all {pages} pages"
    )
    if any(r["alias_of"] for r in results):
        click.echo("(= X): an alias of compressor X, the same streams byte for byte")
    if out["interrupted"]:
        click.echo(f"(interrupted: {len(results)} of {out['pairs']} pairs measured)")


def _check_plot_name(path: str) -> None:
    """The image format is the extension: png, svg or pdf; checked before any work."""
    if not path.strip():
        raise CliError("--plot: the file name is empty")
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if ext not in PLOT_FORMATS:
        what = f"extension .{ext}" if ext else "no extension"
        raise CliError(f"--plot {path}: {what}; the format comes from it: .png, .svg or .pdf")


def _alias_of(compressor: str) -> str:
    """The compressor whose streams ``compressor`` produces, "" when none."""
    from zswap_core import default_registry

    mod = default_registry().require("compressor", compressor)
    return str(getattr(mod.driver, "alias_of", "") or "")


def _label(row: dict[str, Any]) -> str:
    """A compressor's name as the table and the plot show it: aliases say so."""
    alias = row.get("alias_of")
    return f"{row['compressor']} (= {alias})" if alias else str(row["compressor"])


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def place_labels(
    points: Sequence[tuple[float, float]],
    sizes: Sequence[tuple[float, float]],
    bounds: tuple[float, float, float, float] | None = None,
) -> list[tuple[float, float]]:
    """Offsets (display units) for labels of ``sizes`` at ``points`` that do not overlap.

    Greedy: each label takes the first of a ring of candidate offsets, tried nearest
    first, whose box meets no label placed before it and no point (and stays inside
    ``bounds``, x0, y0, x1, y1, when given); when none is free, the one with the least
    overlap. Deterministic for the same input.
    """
    candidates = [
        (dx * r, dy * r)
        for r in (1, 2, 3, 4, 6)
        for dx, dy in ((1, 1), (1, -1), (-1, 1), (-1, -1), (0, 1.5), (0, -1.5), (1.5, 0), (-1.5, 0))
    ]
    placed: list[tuple[float, float, float, float]] = []
    dots = [(x - 3, y - 3, x + 3, y + 3) for x, y in points]

    def overlap(
        a: tuple[float, float, float, float], b: tuple[float, float, float, float]
    ) -> float:
        w = min(a[2], b[2]) - max(a[0], b[0])
        h = min(a[3], b[3]) - max(a[1], b[1])
        return w * h if w > 0 and h > 0 else 0.0

    out: list[tuple[float, float]] = []
    for (x, y), (w, h) in zip(points, sizes, strict=True):
        best: tuple[float, tuple[float, float], tuple[float, float, float, float]] | None = None
        for cx, cy in candidates:
            ox, oy = cx * 8, cy * 8
            left = x + ox if ox >= 0 else x + ox - w
            low = y + oy if oy >= 0 else y + oy - h
            box = (left, low, left + w, low + h)
            cost = sum(overlap(box, b) for b in placed) + sum(overlap(box, d) for d in dots)
            if bounds is not None:  # the part of the box outside the axes
                cost += (box[2] - box[0]) * (box[3] - box[1]) - overlap(box, bounds)
            if best is None or cost < best[0]:
                best = (cost, (left - x, low - y), box)
            if cost == 0:
                break
        assert best is not None
        placed.append(best[2])
        out.append(best[1])
    return out


def _label_points(fig: Any, ax: Any, xs: list[float], ys: list[float], texts: list[str]) -> None:
    """Annotate each point with its text, the texts apart (see :func:`place_labels`)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    notes = [
        ax.annotate(
            t,
            (xv, yv),
            xytext=(0, 0),
            textcoords="offset pixels",
            fontsize="x-small",
            ha="left",
            va="bottom",
            arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "0.5"},
        )
        for t, xv, yv in zip(texts, xs, ys, strict=True)
    ]
    sizes = []
    for note in notes:
        box = note.get_window_extent(renderer)
        sizes.append((box.width + 2, box.height + 1))
    pts = [tuple(ax.transData.transform((xv, yv))) for xv, yv in zip(xs, ys, strict=True)]
    frame = ax.get_window_extent(renderer)
    bounds = (frame.x0, frame.y0, frame.x1, frame.y1)
    for note, offset in zip(notes, place_labels(pts, sizes, bounds), strict=True):
        note.xyann = offset


def _plot(results: list[dict[str, Any]], path: str, title: str, page_size: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fmt = os.path.splitext(path)[1].lower().lstrip(".")
    labels = [f"{_label(r)}\n{r['zpool']}" for r in results]
    x = list(range(len(results)))
    width = max(8.0, 0.6 * len(results) + 2)
    fig, axes = plt.subplots(3, 1, figsize=(width, 13))
    comps = list(dict.fromkeys(r["compressor"] for r in results))
    zps = list(dict.fromkeys(r["zpool"] for r in results))
    cmap = plt.get_cmap("tab10")
    colour = {c: cmap(i % 10) for i, c in enumerate(comps)}
    marker = {z: MARKERS[i % len(MARKERS)] for i, z in enumerate(zps)}
    # 1. the trade-off a user picks from: memory saved against the time it costs
    ax = axes[0]
    gib_pages = (1 << 30) // page_size
    xs = [r["store_us"] * 1e-6 * gib_pages for r in results]
    ys = [r["saved_bytes"] / (1 << 20) for r in results]
    for r, xv, yv in zip(results, xs, ys, strict=True):
        ax.scatter(xv, yv, color=colour[r["compressor"]], marker=marker[r["zpool"]], s=50)
    ax.set_xlabel("store time, s per GiB of pages (the whole store path, wall clock)")
    ax.set_ylabel("saved MiB (pages minus pool and metadata)")
    ax.set_title("memory saved against store time (up and left is better)")
    ax.grid(True, alpha=0.3)
    ax.set_xlim(left=0)
    colour_legend = ax.legend(
        handles=[Line2D([], [], color=colour[c], marker="o", linestyle="", label=c) for c in comps],
        title="compressor: colour",
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize="small",
    )
    ax.add_artist(colour_legend)
    ax.legend(
        handles=[Line2D([], [], color="0.3", marker=marker[z], linestyle="", label=z) for z in zps],
        title="zpool: marker",
        loc="lower left",
        bbox_to_anchor=(1.01, 0.0),
        fontsize="small",
    )
    # 2-3. the figures per combination (n/a drawn as nothing)
    ax = axes[1]

    def val(v: float | None) -> float:
        return float("nan") if v is None else float(v)

    ax.bar([i - 0.2 for i in x], [val(r["codec_ratio"]) for r in results], 0.4, label="codec ratio")
    ax.bar(
        [i + 0.2 for i in x],
        [val(r["pool_density"]) for r in results],
        0.4,
        label="pool density (pages per pool page)",
    )
    ax.set_title("compression")
    ax.legend(fontsize="small")
    ax = axes[2]
    ax.bar([i - 0.2 for i in x], [r["store_us"] for r in results], 0.4, label="store")
    ax.bar([i + 0.2 for i in x], [val(r["load_us"]) for r in results], 0.4, label="load")
    ax.set_title("µs per page")
    ax.legend(fontsize="small")
    for a in axes[1:]:
        a.set_xticks(x)
        a.set_xticklabels(labels, fontsize="x-small", rotation=30, ha="right")
    fig.suptitle(title, fontsize="small")
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    # The layout is final: the labels are placed in display units, apart.
    _label_points(fig, axes[0], xs, ys, [f"{_label(r)}/{r['zpool']}" for r in results])
    try:
        # "tight": the legends outside the axes are part of the image
        fig.savefig(
            path,
            format=fmt,
            dpi=100,
            bbox_inches="tight",
            bbox_extra_artists=[colour_legend],  # an added artist, not counted otherwise
        )
    except OSError as exc:
        raise CliError(f"--plot {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
