"""Helpers shared by the ``zswap`` commands: errors, sources, zswap creation, output."""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import json
import math
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from zswap_core import Zswap
    from zswap_core.workload import PageSource

__all__ = [
    "NA",
    "SAME_FILLED",
    "SEED",
    "CliError",
    "FiniteFloatRange",
    "Metadata",
    "Progress",
    "SizeType",
    "VerifyError",
    "build_source",
    "check_option_names",
    "check_plugin",
    "complete_names",
    "echo_json",
    "entry_sizes",
    "log_warnings",
    "make_zswap",
    "metadata_per_entry",
    "name_value",
    "parse_size",
    "percentile",
    "progress",
    "saved_figures",
    "section",
    "source_options",
    "source_pages",
    "stderr_is_tty",
]


class CliError(click.ClickException):
    """A one-line error; ``main`` prints ``zswap: error: MESSAGE`` and exits non-zero."""


class VerifyError(CliError):
    """A page read back differs from what was written: exit status 3."""

    exit_code = 3


# -- page sources ------------------------------------------------------------------------


def source_options(f: Any) -> Any:
    """``--source synthetic|files|pid``, ``--file PATH`` (repeatable) and ``--pid PID``."""
    f = click.option(
        "--pid",
        type=int,
        default=None,
        help="Use the present private anonymous pages of this live process "
        "(implies --source pid; needs ptrace access).",
    )(f)
    f = click.option(
        "--file",
        "files",
        multiple=True,
        metavar="PATH",
        help="A file or directory to cut into pages (repeatable; implies --source files).",
    )(f)
    f = click.option(
        "--source",
        type=click.Choice(["synthetic", "files", "pid"]),
        default=None,
        help="Where page contents come from (default: synthetic, a seeded realistic mix).",
    )(f)
    return f


def build_source(
    source: str | None,
    files: Sequence[str],
    extra_paths: Sequence[str],
    pid: int | None,
    seed: int,
    max_pages: int | None,
) -> PageSource:
    """The page source the options ask for; :class:`CliError` on bad input."""
    from zswap_core.workload import FileSource, ProcessSource, SyntheticSource, WorkloadError

    paths = [*files, *extra_paths]
    if source is None:
        source = "pid" if pid is not None else ("files" if paths else "synthetic")
    try:
        if source == "synthetic":
            if paths or pid is not None:
                raise CliError("--source synthetic takes no files and no --pid")
            return SyntheticSource(seed)
        if source == "files":
            if pid is not None:
                raise CliError("--source files takes no --pid")
            if not paths:
                raise CliError("--source files needs at least one PATH (or --file PATH)")
            return FileSource(paths, max_pages=max_pages)
        if pid is None:
            raise CliError("--source pid needs --pid PID")
        if paths:
            raise CliError("--pid takes no files")
        return ProcessSource(pid, max_pages=max_pages)
    except WorkloadError as exc:
        raise CliError(str(exc)) from None


def source_pages(src: PageSource, asked: int) -> int:
    """How many pages to take from ``src`` when ``asked`` for: a synthetic source makes as
    many as asked; files and processes give what they have, never padded with made-up
    pages (a 241-page file is 241 pages), and a note on stderr says so.
    """
    from zswap_core.workload import SyntheticSource

    if isinstance(src, SyntheticSource) or src.nr_base >= asked:
        return asked
    click.echo(f"zswap: note: {src.describe()}: using {src.nr_base} pages, not {asked}", err=True)
    return src.nr_base


# -- zswap instances ---------------------------------------------------------------------


def check_plugin(kind: str, name: str) -> None:
    """Fail with a one-line error if plugin ``name`` of ``kind`` cannot be loaded."""
    from zswap_core import PluginError, default_registry

    reg = default_registry()
    try:
        reg.require(kind, name)  # type: ignore[arg-type]
    except PluginError as exc:
        # "unknown" only for a name nothing provides: an installed plugin that failed,
        # or was blocked or refused, is known, and the reason says which.
        installed = any(p.kind == kind and p.name == name for p in reg.plugins())
        what = f"{kind} {name!r} cannot be used" if installed else f"unknown {kind} {name!r}"
        raise CliError(f"{what}: {exc}") from None


def make_zswap(cmdline: str, *, ram_bytes: int, **overrides: object) -> Zswap:
    """A Zswap from a boot string; every name and value in it is checked.

    Unavailable compressors or zpools are errors here (the library falls back to the
    defaults with a warning, as the kernel does at boot; someone who names a compressor
    on the command line wants that one or an error). So are modules that do not exist
    (``zwsap.compressor=zstd``), parameters a module does not declare
    (``lz4.levle=3``) and values a module refuses, also for a plugin that nothing
    loaded yet: it is loaded here, with the string's options in force, to check them.
    """
    from zswap_core import ParamError, Zswap, default_registry, parse_cmdline

    try:
        parsed = parse_cmdline(cmdline)
    except ParamError as exc:
        raise CliError(f"--cmdline: {exc.strerror}") from None
    check_module_names(parsed)  # before anything changes: a typo changes nothing
    ours = parsed.get("zswap", {})
    wanted = {
        kind: str(overrides.get(kind, ours.get(kind, default))).strip()
        for kind, default in (("compressor", "lz4"), ("zpool", "zsmalloc"))
    }
    # A malformed modprobe.d file is an error of its own (zswap: error: FILE:LINE: ...),
    # not one of --cmdline, which is what from_cmdline's ParamError would be shown as.
    default_registry().blocked()
    # Built first and checked after, never the other way round: from_cmdline puts the
    # string's plugin options in force before it loads any plugin the string names, and
    # a check that loaded the compressor or zpool first would load it without them.
    with warnings.catch_warnings(record=True) as caught, log_warnings() as logged:
        warnings.simplefilter("always")
        try:
            z = Zswap.from_cmdline(cmdline, ram_bytes=ram_bytes, **overrides)
        except ParamError as exc:
            raise CliError(f"--cmdline: {exc.strerror}") from None
        except TypeError as exc:
            raise CliError(f"--cmdline: {exc}") from None
        try:
            for kind, name in wanted.items():
                if z.params[kind] != name:  # it fell back: say why, instead of the warning
                    check_plugin(kind, name)
                    raise CliError(f"{kind} {name!r} was not used; zswap fell back to another")
            load_named_modules(parsed)
            check_option_names(parsed)
        except BaseException:
            z.close()
            raise
    for message in [*(str(w.message) for w in caught), *logged]:
        click.echo(f"zswap: warning: {message}", err=True)
    return z


def check_module_names(parsed: dict[str, dict[str, str]]) -> None:
    """Every module named in --cmdline is zswap or an installed plugin (imports nothing).

    The kernel keeps options of modules it does not know for a module that may load
    later; here no module can appear later, so ``zwsap.compressor=zstd`` is a typo.
    """
    from zswap_core import list_plugins

    known = {p.name for p in list_plugins()}
    for module, opts in parsed.items():
        if module == "zswap" or module in known:
            continue
        name, value = next(iter(opts.items()))
        close = difflib.get_close_matches(module, ["zswap", *sorted(known)], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise CliError(
            f"--cmdline: {module}.{name}={value}: no module named {module!r}{hint}; "
            "see `zswap lsmod`"
        )


def load_named_modules(parsed: dict[str, dict[str, str]]) -> None:
    """Load every plugin named in --cmdline, so that its options meet its declarations.

    Called once the options are in force (after ``Zswap.from_cmdline``): the plugin
    loads with them, as a module loads with its boot options, and a value it refuses
    fails the load. Plugins carry their declarations in their class, so there is no
    way to check a value without importing the plugin.
    """
    from zswap_core import PluginError, default_registry
    from zswap_core._registry import GROUPS

    reg = default_registry()
    installed = {(p.kind, p.name) for p in reg.plugins()}
    for module, opts in parsed.items():
        for kind in GROUPS if module != "zswap" else ():
            if (kind, module) not in installed:
                continue
            try:
                reg.require(kind, module)  # type: ignore[arg-type]
            except PluginError as exc:
                first = ", ".join(f"{module}.{k}={v}" for k, v in opts.items())
                raise CliError(f"--cmdline: {first}: {exc}") from None


def check_option_names(parsed: dict[str, dict[str, str]]) -> None:
    """--cmdline options that a loaded plugin does not declare are errors.

    A plugin that loads ignores (and logs) options it does not declare, as a kernel
    module does; a name typed on the command line is a typo the user should see.
    """
    from zswap_core import ParamError, default_registry
    from zswap_core._registry import GROUPS

    reg = default_registry()
    for module, opts in parsed.items():
        for kind in GROUPS if module != "zswap" else ():
            mod = reg.loaded(kind, module)  # type: ignore[arg-type]
            if mod is None:
                continue
            for name, value in opts.items():
                try:
                    mod.params.declaration(name)
                except ParamError as exc:
                    close = difflib.get_close_matches(name, list(mod.params), n=1)
                    hint = f" (did you mean {module}.{close[0]}?)" if close else ""
                    raise CliError(
                        f"--cmdline: {module}.{name}={value}: {exc.strerror}{hint}"
                    ) from None


@contextlib.contextmanager
def log_warnings() -> Iterator[list[str]]:
    """Collect the library's logged warnings, to print them as ``zswap: warning:`` lines.

    Without a handler, logging's last resort would print them bare on stderr, next to
    (or instead of) the one ``zswap: error:`` line that a failed command shows.
    """
    import logging

    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    logger = logging.getLogger("zswap_core")
    handler = Collect(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50, "E": 1 << 60}
MAX_SIZE = 1 << 60  # 1 EiB: more than any machine has; 10**30 is a typo, not a machine


def parse_size(text: str, *, minimum: int = 1, maximum: int = MAX_SIZE) -> int:
    """``64M``, ``1G``, ``4096``, ``512K``, ``1.5G`` -> bytes; :class:`CliError` if malformed.

    nan, inf (also as ``1e400``), zero, negative and sizes outside ``minimum..maximum``
    are refused.
    """
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    num, unit = (t[:-1], t[-1]) if t and t[-1] in _UNITS else (t, "")
    num = num.strip()
    try:
        if "/" in num:  # Fraction would read "1/3"; a size is a decimal number
            raise ValueError(num)
        value = Fraction(num) * _UNITS[unit]  # exact: 123456789012345678 stays itself
    except ValueError:
        try:
            number = float(num)
        except ValueError:
            raise CliError(f"bad size {text!r} (examples: 4096, 512K, 64M, 1G)") from None
        if not math.isfinite(number):
            raise CliError(f"size {text!r} is not a finite number") from None
        value = Fraction(number) * _UNITS[unit]
    if value <= 0:
        raise CliError(f"size must be positive, got {text!r}")
    if value < minimum:
        raise CliError(f"size must be at least {_size_text(minimum)}, got {text!r}")
    if value > maximum:
        raise CliError(f"size {text!r} is too large: at most {_size_text(maximum)}")
    return int(value)


@dataclasses.dataclass
class GroupSpec:
    """``--group PATH[:max=SIZE][:writeback=0|1]``: a memory cgroup to model."""

    path: str
    max: str = "max"  # as memory.zswap.max takes it
    writeback: int = 1
    text: str = ""


def parse_group(text: str) -> GroupSpec:
    """Parse ``--group``; :class:`CliError` naming what is wrong."""
    from zswap_core._errors import ParamError
    from zswap_core._memcg import check_name

    path, *fields = text.strip().split(":")
    spec = GroupSpec(path, text=text.strip())
    try:
        for part in path.split("/"):
            check_name(part)
    except ParamError as exc:
        raise CliError(f"--group {text!r}: {exc.strerror}") from None
    for field_ in fields:
        key, eq, value = field_.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or key not in ("max", "writeback"):
            raise CliError(
                f"--group {text!r}: expected NAME[:max=SIZE][:writeback=0|1], "
                f"e.g. web:max=64M or batch:writeback=0 (got {field_!r})"
            )
        if key == "max":
            if value != "max":
                value = str(parse_size(value, minimum=0)) if value != "0" else "0"
            spec.max = value
        else:
            if value not in ("0", "1"):
                raise CliError(f"--group {text!r}: writeback must be 0 or 1, got {value!r}")
            spec.writeback = int(value)
    return spec


def make_groups(z: Zswap, specs: Sequence[GroupSpec]) -> list[Any]:
    """Create the groups of ``specs`` (ancestors not named get the defaults); returns
    the leaves, where pages live (cgroup v2 keeps processes in leaves only)."""
    if len({s.path for s in specs}) != len(specs):
        raise CliError("--group: a group is named twice")
    made: dict[str, Any] = {}
    for spec in specs:
        parts = spec.path.split("/")
        for depth in range(1, len(parts) + 1):
            path = "/".join(parts[:depth])
            if path not in made:
                parent = made.get("/".join(parts[: depth - 1])) if depth > 1 else None
                made[path] = z.group(parts[depth - 1], parent=parent)
        g = made[spec.path]
        g.write("memory.zswap.max", spec.max)
        g.write("memory.zswap.writeback", spec.writeback)
    parents = {g.parent.path for g in made.values() if g.parent is not None}
    return [g for path, g in made.items() if path not in parents]


def group_rows(groups: Iterable[Any]) -> list[dict[str, Any]]:
    """Each group's files, for a report."""
    return [
        {
            "group": g.path,
            "max": g.zswap_max,
            "writeback": int(g.zswap_writeback),
            "current": g.zswap_current,
            **g.stat(),
        }
        for g in groups
    ]


def _size_text(n: int) -> str:
    """``4096`` -> ``4K``, ``1 << 60`` -> ``1E``: the largest unit that divides ``n``."""
    for unit, factor in reversed(_UNITS.items()):
        if n % factor == 0:
            return f"{n // factor}{unit}"
    return str(n)  # pragma: no cover - factor 1 divides everything


class SizeType(click.ParamType):  # type: ignore[type-arg]  # generic in newer click only
    """A size in bytes: ``4096``, ``512K``, ``64M``, ``1.5G`` (see :func:`parse_size`)."""

    name = "size"

    def __init__(self, minimum: int = 1, maximum: int = MAX_SIZE, what: str = "") -> None:
        self.minimum = minimum
        self.maximum = maximum
        self.what = what or _size_text(minimum)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        try:
            size = parse_size(str(value), minimum=0, maximum=self.maximum)
        except CliError as exc:
            self.fail(exc.message, param, ctx)
        if size < self.minimum:  # after rounding down: 4095.5 bytes is not a page
            self.fail(f"size must be at least {self.what}, got {value!r}", param, ctx)
        return size


class FiniteFloatRange(click.FloatRange):
    """click's FloatRange, which lets nan through (every comparison with it is False)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        rv = super().convert(value, param, ctx)
        if isinstance(rv, float) and not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return rv


class SeedType(click.types.IntParamType):
    """A seed of pages and traces: an int in 0..2**64-1 (the hashes work on 64 bits)."""

    name = "seed"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        rv = super().convert(value, param, ctx)
        if not 0 <= rv < 1 << 64:
            self.fail(f"{value!r} is not a seed: 0 to 2**64-1", param, ctx)
        return rv


SEED = SeedType()


# -- output --------------------------------------------------------------------------------


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def section(title: str) -> None:
    click.echo()
    click.echo(title)


def name_value(rows: Iterable[tuple[str, object]], indent: str = "") -> None:
    """Aligned ``name value`` lines, as ``grep -r . /sys/...`` reads after tidying."""
    rows = list(rows)
    if not rows:
        return
    width = max(len(n) for n, _ in rows)
    for name, value in rows:
        click.echo(f"{indent}{name:<{width}}  {_fmt(value)}")


def _fmt(value: object) -> str:
    if value is None:
        return NA
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], indent: str = "") -> None:
    """A plain aligned table (numbers right-aligned), like /proc files."""
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))
    numeric = [
        any(isinstance(r[i], (int, float)) for r in rows)
        and all(isinstance(r[i], (int, float)) or r[i] in ("", "Total", None) for r in rows)
        for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(widths[i]) if numeric[i] else v.ljust(widths[i]) for i, v in enumerate(values)
        ]
        return indent + "  ".join(parts).rstrip()

    click.echo(line(headers))
    for row in cells:
        click.echo(line(row))


def echo_json(data: object) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False))


def percentile(sorted_values: Sequence[int], p: float) -> float:
    """The p-th percentile (nearest rank) of already sorted values; 0 when empty."""
    if not sorted_values:
        return 0.0
    k = max(0, min(len(sorted_values) - 1, round(p / 100 * len(sorted_values) + 0.5) - 1))
    return float(sorted_values[k])


def stderr_is_tty() -> bool:
    """Progress goes to stderr, so it is shown when stderr is a terminal (with --json too:
    stdout stays clean for a pipe while the person at the terminal sees how far it is)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed
        return False


class Progress:
    """A progress bar with ETA on stderr (rich), or nothing when ``enabled`` is false.

    ``auto_refresh=False`` draws only on :meth:`update` and :meth:`refresh`: rich's
    refresh thread would otherwise be alive when ``zswap compare`` forks its workers.
    """

    def __init__(self, label: str, total: float, unit: str, *, auto_refresh: bool = True) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.auto_refresh = auto_refresh
        self._prog: Any = None
        self._task: Any = None
        self._drawn = 0.0

    def update(
        self,
        completed: float,
        *,
        done: int | None = None,
        of: int | None = None,
        force: bool = True,
    ) -> None:
        """Set the progress; without auto refresh, redraw (at most every 0.1 s unless
        ``force``: frequent small steps cost no more than ten redraws a second)."""
        if self._prog is None:
            return
        count = f"{done}/{of} {self.unit}" if done is not None and of is not None else ""
        self._prog.update(self._task, completed=completed, count=count)
        if not self.auto_refresh:
            now = time.monotonic()
            if force or now - self._drawn >= 0.1:
                self._drawn = now
                self._prog.refresh()

    def refresh(self) -> None:
        if self._prog is not None:
            self._prog.refresh()


@contextlib.contextmanager
def progress(
    label: str, total: float, unit: str, *, enabled: bool, auto_refresh: bool = True
) -> Iterator[Progress]:
    """A :class:`Progress` on stderr for the block; cleared when the block ends, however."""
    bar = Progress(label, total, unit, auto_refresh=auto_refresh)
    if not enabled:
        yield bar
        return
    from rich.console import Console
    from rich.progress import BarColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.progress import Progress as RichProgress

    columns = (
        TextColumn(label),
        BarColumn(),
        TextColumn("{task.fields[count]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with RichProgress(
        *columns,
        console=Console(stderr=True),
        transient=True,
        auto_refresh=auto_refresh,
    ) as prog:
        bar._prog = prog
        bar._task = prog.add_task(label, total=total, count="")
        try:
            yield bar
        finally:
            bar._prog = None


# -- the vocabulary: codec ratio, pool density, saved -------------------------------------

NA = "n/a"  # what None prints as: a figure that is undefined (no page to divide by)


@dataclasses.dataclass(frozen=True)
class Metadata:
    """What zswap's bookkeeping costs per stored page, for ``saved``."""

    entry_bytes: int  # per stored entry
    zero_pages_free: bool  # zero pages never reach zswap: the swap core marks them
    basis: str  # where the figures come from, as the output states it

    def as_json(self) -> dict[str, object]:
        return {
            "metadata_bytes_per_entry": self.entry_bytes,
            "zero_pages_cost_metadata": not self.zero_pages_free,
            "metadata_basis": self.basis,
        }


def metadata_per_entry() -> Metadata:
    """zswap's metadata per stored page, after the newest kernel profile.

    Its estimate of struct zswap_entry and its index's share (the simulator's own
    entries are smaller: saved is meant as a kernel's would be), and whether zero
    pages cost an entry at all (from 6.12 the swap core keeps them, one bit a slot).
    """
    from zswap_core.kernels import PROFILES, kernel_profile

    p = kernel_profile(PROFILES[-1])
    zero_free = p.same_filled == "swapcore-zero"
    zero = "; zero pages none, the swap core keeps them" if zero_free else ""
    return Metadata(
        int(p.entry_bytes), zero_free, f"kernel {p.name}: {p.entry_bytes} B an entry{zero}"
    )


SAME_FILLED = -1  # entry_sizes(): a same-filled entry (one word, no pool memory)


def entry_sizes(z: Zswap, slots: Iterable[tuple[int, int]]) -> list[int | None]:
    """Per slot (type, offset): None if zswap holds nothing there, :data:`SAME_FILLED`
    for a same-filled entry, else the entry's compressed length.

    Read from zswap's own entries: the codec ratio is that of what zswap holds,
    exactly, with no second compression.
    """
    length = z.entry_length
    out: list[int | None] = []
    for type, offset in slots:
        n = length(type, offset)
        out.append(SAME_FILLED if n == 0 else n)
    return out


def saved_figures(
    *,
    page_size: int,
    sizes: Sequence[int | None],
    is_zero: Callable[[int], bool],
    pool_bytes: int,
    considered_pages: int,
    meta: Metadata,
) -> dict[str, float | int | None]:
    """codec_ratio, pool_density, saved_bytes and saved_percent; None where undefined.

    ``sizes`` are :func:`entry_sizes`; ``is_zero(i)`` says whether the page of slot ``i``
    (a same-filled one) is all zeros.

    - codec ratio: original / compressed bytes of the compressed entries (the codec);
    - pool density: compressed entries per pool page (codec and allocator together);
    - saved: bytes of the stored pages minus what holding them costs (the pool pages
      and ``meta``'s bytes per entry), in percent of ``considered_pages``' bytes.
    """
    stored = compressed = compressed_bytes = zero = 0
    for i, n in enumerate(sizes):
        if n is None:
            continue
        stored += 1
        if n == SAME_FILLED:
            zero += is_zero(i)
        else:
            compressed += 1
            compressed_bytes += n
    entries = stored - zero if meta.zero_pages_free else stored
    saved = stored * page_size - pool_bytes - entries * meta.entry_bytes
    pool_pages = pool_bytes // page_size
    return {
        "codec_ratio": round(compressed * page_size / compressed_bytes, 3) if compressed else None,
        "pool_density": round(compressed / pool_pages, 3) if pool_pages else None,
        "saved_bytes": saved,
        "saved_percent": (
            round(100 * saved / (considered_pages * page_size), 2) if considered_pages else None
        ),
    }


# -- shell completion -------------------------------------------------------------------


def complete_names(kind: str) -> Any:
    """click ``shell_complete`` for a comma-separated list of installed ``kind`` names.

    Completes the last name of ``lz4,zs`` (imports no plugin: names come from the
    installed distributions' entry points).
    """
    from click.shell_completion import CompletionItem

    def complete(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
        from zswap_core import list_plugins

        head, _, last = incomplete.rpartition(",")
        given = set(head.split(",")) if head else set()
        prefix = f"{head}," if head else ""
        names = sorted(
            {
                p.name
                for p in list_plugins()
                if p.kind == kind and p.state in ("available", "loaded")
            }
        )
        return [CompletionItem(prefix + n) for n in names if n.startswith(last) and n not in given]

    return complete
