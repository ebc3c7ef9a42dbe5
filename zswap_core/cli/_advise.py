"""``zswap advise``: which settings, and what would they save, for real memory."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from ._common import (
    SEED,
    CliError,
    FiniteFloatRange,
    SizeType,
    echo_json,
    parse_group,
    parse_size,
)

__all__ = ["advise"]

PLOT_MISSING = "matplotlib is needed for --plot: pip install 'zswap-core[plot]'"
PAGE_IDLE = "/sys/kernel/mm/page_idle/bitmap"


class SampleType(click.ParamType):  # type: ignore[type-arg]  # generic in newer click only
    """``all`` or a size (``64M``): how much of the candidates to read."""

    name = "size|all"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value is None or isinstance(value, int):
            return value
        text = str(value).strip()
        if text.lower() == "all":
            return "all"
        try:
            return parse_size(text, minimum=4096)
        except CliError as exc:
            self.fail(f"{exc.message} (or 'all')", param, ctx)


def _complete_names(kind: str) -> Callable[[click.Context, click.Parameter, str], list[str]]:
    """Complete a comma-separated list of installed plugin names of ``kind``."""

    def complete(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
        from zswap_core import list_plugins

        head, _, last = incomplete.rpartition(",")
        prefix = head + "," if head else ""
        done = set(head.split(",")) if head else set()
        names = sorted(
            p.name
            for p in list_plugins()
            if p.kind == kind and p.state in ("available", "loaded") and p.name not in done
        )
        return [prefix + n for n in names if n.startswith(last)]

    return complete


def _kernel_choices() -> list[str]:
    from zswap_core.kernels import PROFILES

    return ["host", *PROFILES]


def _names(text: str | None, option: str) -> list[str] | None:
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise CliError(f"{option}: no names given")
    return names


def _progress(enabled: bool) -> Callable[[int, int], Callable[[int], None]] | None:
    """A rich progress bar with ETA on stderr (no refresh thread: workers are forked)."""
    if not enabled:
        return None

    def start(total: int, page_size: int) -> Callable[[int], None]:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        bar = Progress(
            TextColumn("reading and compressing pages"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            auto_refresh=False,
            transient=True,
        )
        bar.start()
        task = bar.add_task("pages", total=total)
        seen = 0

        def advance(n: int) -> None:
            nonlocal seen
            seen += n
            bar.update(task, advance=n)
            bar.refresh()
            if seen >= total:
                bar.stop()

        _ACTIVE.append(bar)
        return advance

    return start


_ACTIVE: list[Any] = []


def _stop_progress() -> None:
    while _ACTIVE:
        bar = _ACTIVE.pop()
        with contextlib.suppress(Exception):  # a terminal gone away
            bar.stop()


EXAMPLES = """
\b
Examples:
  zswap advise --pid 1234                    # a 64 MiB sample, every pair of this kernel
  zswap advise --pid 1234 --sample all --json
  zswap advise --cgroup system.slice/redis.service --kernel 6.18
  zswap advise --host --max-pool-percent 10 --max-pool-percent 25
  zswap advise /var/lib/dump.bin --compressors lz4,zstd --csv
  zswap advise --pid 1234 --plot advice.png
\b
Shell completion (compressor and zpool names complete from installed plugins):
  eval "$(_ZSWAP_COMPLETE=bash_source zswap)"    # bash; zsh_source / fish_source
"""


@click.command("advise", epilog=EXAMPLES)
@click.argument("paths", nargs=-1, metavar="[PATH]...", type=click.Path())
@click.option(
    "--pid", "pids", type=click.IntRange(1), multiple=True, help="A process (repeatable)."
)
@click.option(
    "--cgroup",
    "cgroups",
    multiple=True,
    metavar="PATH",
    help="A cgroup v2 directory: every process in it and its descendants (repeatable; "
    "relative to /sys/fs/cgroup).",
)
@click.option("--host", is_flag=True, help="Every process this user may read.")
@click.option(
    "--include-shmem",
    is_flag=True,
    help="Also shared memory, tmpfs and SysV shm mappings (each page counted once).",
)
@click.option(
    "--kernel",
    default="host",
    show_default=True,
    metavar="host|" + "|".join(("4.19", "5.15", "6.1", "6.6", "6.8", "6.12", "6.18")),
    shell_complete=lambda ctx, param, inc: [k for k in _kernel_choices() if k.startswith(inc)],
    help="Kernel profile: its allocators, compressors and store behaviour.",
)
@click.option(
    "--sample",
    "sample",
    type=SampleType(),
    default="64M",
    show_default=True,
    help="Read a uniform random sample of this many bytes of the candidate pages, or "
    "'all'. A target smaller than it is read whole.",
)
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the sample.")
@click.option(
    "--confidence",
    type=FiniteFloatRange(0.5, 0.999),
    default=0.95,
    show_default=True,
    help="Level of the confidence intervals.",
)
@click.option(
    "--compressors",
    default=None,
    metavar="A,B,...",
    shell_complete=_complete_names("compressor"),
    help="Compressors to measure.  [default: every installed one the kernel has]",
)
@click.option(
    "--zpools",
    default=None,
    metavar="A,B,...",
    shell_complete=_complete_names("zpool"),
    help="Allocators to estimate.  [default: every installed one the kernel has]",
)
@click.option(
    "--objective",
    type=click.Choice(["saved", "cpu", "balanced"]),
    default="saved",
    show_default=True,
    help="saved: most memory saved within --cpu-budget; cpu: least CPU; balanced: least "
    "CPU among the pairs saving at least 95% of the best.",
)
@click.option(
    "--cpu-budget",
    type=FiniteFloatRange(0, 1e6, min_open=True),
    default=2.0,
    show_default=True,
    metavar="S_PER_GIB",
    help="CPU seconds per GiB (codec compress + decompress) the 'saved' objective allows.",
)
@click.option(
    "--max-pool-percent",
    "max_pool_percent",
    type=FiniteFloatRange(0, 100, min_open=True),
    multiple=True,
    metavar="P",
    help="What-if pool limits, percent of RAM (repeatable).  [default: the host's "
    "zswap.max_pool_percent, else 20]",
)
@click.option(
    "--group",
    "group_specs",
    multiple=True,
    metavar="NAME[:max=SIZE][:writeback=0|1]",
    help="What if the memory measured were in a cgroup with this memory.zswap.max "
    "(repeatable): what is charged, what fits and saves, where the rest goes.",
)
@click.option(
    "--ram",
    type=SizeType(minimum=1 << 20, what="1M"),
    default=None,
    help="RAM for the what-if.  [default: MemTotal of /proc/meminfo]",
)
@click.option(
    "--mark-idle",
    is_flag=True,
    help="Tell hot from cold pages: page_idle when the kernel has it, else the targets' "
    "soft-dirty bits are cleared (a write to /proc/PID/clear_refs, which other "
    "soft-dirty users would notice) and read back after --idle-interval.",
)
@click.option(
    "--idle-interval",
    type=FiniteFloatRange(0.1, 3600),
    default=10.0,
    show_default=True,
    metavar="S",
    help="Seconds between marking pages idle and reading them back.",
)
@click.option(
    "--jobs",
    type=click.IntRange(1, 1024),
    default=None,
    metavar="N",
    help="Worker processes reading and compressing pages; 1: in this process.  "
    "[default: the CPUs this process may use]",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--csv", "as_csv", is_flag=True, help="Print one CSV row per compressor x zpool.")
@click.option(
    "--plot",
    default=None,
    metavar="FILE.{png,svg,pdf}",
    help="Also draw saved MiB against codec CPU s/GiB (needs matplotlib); the format "
    "comes from the extension.",
)
def advise(
    paths: tuple[str, ...],
    pids: tuple[int, ...],
    cgroups: tuple[str, ...],
    host: bool,
    include_shmem: bool,
    kernel: str,
    sample: int | str,
    seed: int,
    confidence: float,
    compressors: str | None,
    zpools: str | None,
    objective: str,
    cpu_budget: float,
    max_pool_percent: tuple[float, ...],
    group_specs: tuple[str, ...],
    ram: int | None,
    mark_idle: bool,
    idle_interval: float,
    jobs: int | None,
    as_json: bool,
    as_csv: bool,
    plot: str | None,
) -> None:
    """Which zswap settings, and what would they save, for processes, a cgroup or files.

    Pages: the present private anonymous pages of the targets (with --include-shmem,
    shared ones too), minus those mapped to the shared zero page; swapped-out pages
    are counted apart. A uniform random sample of them (--sample) or all of them is
    read from /proc/PID/mem by worker processes and compressed with every compressor.

    For every compressor x allocator of the kernel profile (--kernel; 'host' reads
    this kernel's version, parameters and /proc/crypto): codec ratio, pool density,
    saved MiB and percent (RAM freed: the pool and zswap's metadata per entry
    counted; zero/same-filled and incompressible pages as that kernel handles them),
    each with a confidence interval when sampled (ratio estimators with the finite
    population correction), and the codec's CPU time per GiB (thread CPU time through
    its C ops, or its Python methods: '(py)'), median and p10-p90 over batches.

    Pool bytes are estimated without the bias a small sample has (partly filled
    zspages and unpaired pages that a whole population amortizes), in bounded
    memory: for zsmalloc, each object size's steady-state cost measured from the
    real allocator (objects per zspage) plus the population's one partly filled
    zspage per size class (classes too rare to be sampled estimated from those
    seen once and twice); for zbud and z3fold, whose pairing depends on the
    order of the stores (memory's locality), the sampled sizes replayed through
    the real allocator (without page memory) twice: in address order, and each
    size as a run of N/n alike objects (a sample cannot see how long memory's
    runs are); the midpoint, the interval spanning both. With --sample all:
    every size in address order, exactly as storing the pages.

    Then a recommendation under --objective and, for each --max-pool-percent, the
    pool limit from RAM, how much of this workload fits and what that saves.

    Progress with ETA goes to stderr when it is a terminal. Ctrl-C prints the
    figures from the batches finished so far ("interrupted": true) and exits 130.
    """
    from zswap_core.advise import AdviseError, Request
    from zswap_core.advise import advise as run_advise
    from zswap_core.advise._report import csv_text, plot_format, text_lines
    from zswap_core.kernels import PROFILES

    if as_json and as_csv:
        raise CliError("--json and --csv: choose one")
    if plot is not None:
        if not plot.strip():
            raise CliError("--plot: the file name is empty")
        if plot_format(plot) is None:
            raise CliError(f"--plot {plot}: the extension must be .png, .svg or .pdf")
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise CliError(PLOT_MISSING) from None
        folder = os.path.dirname(os.path.abspath(plot))
        if not os.path.isdir(folder):
            raise CliError(f"--plot {plot}: no such directory {folder}")
    if kernel not in ("host", *PROFILES):
        raise CliError(f"--kernel {kernel!r}: one of host, {', '.join(PROFILES)}")
    idle: str | None = None
    if mark_idle:
        idle = "auto" if os.path.exists(PAGE_IDLE) else "soft-dirty"
        if idle == "soft-dirty":
            click.echo(
                "zswap: warning: --mark-idle clears the targets' soft-dirty bits "
                f"(/proc/PID/clear_refs) and waits {idle_interval:g} s; reads are not seen",
                err=True,
            )
    request = Request(
        pids=pids,
        cgroups=cgroups,
        host=host,
        files=paths,
        include_shmem=include_shmem,
        kernel=kernel,
        sample_bytes=None if sample == "all" else int(sample),
        seed=seed,
        confidence=confidence,
        compressors=_names(compressors, "--compressors"),
        zpools=_names(zpools, "--zpools"),
        objective=objective,
        cpu_budget=cpu_budget,
        max_pool_percent=max_pool_percent,
        groups=_groups(group_specs),
        ram_bytes=ram,
        idle=idle,
        idle_interval=idle_interval,
        jobs=jobs,
        progress=_progress(sys.stderr.isatty()),
        notice=(lambda text: click.echo(f"zswap: {text}", err=True))
        if sys.stderr.isatty()
        else None,
    )
    try:
        report = run_advise(request)
    except AdviseError as exc:
        raise CliError(str(exc)) from None
    finally:
        _stop_progress()
    if plot is not None:
        from zswap_core.advise._report import plot as draw

        try:
            draw(report, plot)
        except OSError as exc:
            raise CliError(f"--plot {plot}: {exc.strerror or exc}") from None
        report["plot"] = plot
    if as_json:
        echo_json(report)
    elif as_csv:
        click.echo(csv_text(report), nl=False)
    else:
        for line in text_lines(report):
            click.echo(line)
        if plot is not None:
            click.echo(f"\nplot written to {plot}")
    if report["interrupted"]:
        from . import _signals

        raise _signals.Terminated(2)  # SIGINT: "zswap: interrupted", exit status 130


def _groups(texts: tuple[str, ...]) -> list[tuple[str, int | None, bool]]:
    """``--group`` specs as (name, memory.zswap.max bytes or None, writeback)."""
    specs = [parse_group(t) for t in texts]
    if len({s.path for s in specs}) != len(specs):
        raise CliError("--group: a group is named twice")
    page = os.sysconf("SC_PAGE_SIZE")
    return [
        (s.path, None if s.max == "max" else int(s.max) // page * page, bool(s.writeback))
        for s in specs
    ]
