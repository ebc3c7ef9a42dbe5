"""Helpers shared by the ``zswap`` commands: errors, sources, zswap creation, output."""

from __future__ import annotations

import contextlib
import json
import math
import sys
import warnings
from collections.abc import Iterable, Iterator, Sequence
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from zswap_core import Zswap
    from zswap_core.workload import PageSource

__all__ = [
    "SEED",
    "CliError",
    "FiniteFloatRange",
    "SizeType",
    "VerifyError",
    "build_source",
    "check_option_names",
    "check_plugin",
    "echo_json",
    "log_warnings",
    "make_zswap",
    "name_value",
    "parse_size",
    "percentile",
    "section",
    "source_options",
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
    """A Zswap from a boot string; unavailable compressors or zpools are errors here.

    (The library falls back to the defaults with a warning, as the kernel does at boot;
    someone who names a compressor on the command line wants that one or an error.)
    """
    from zswap_core import ParamError, Zswap, default_registry, parse_cmdline

    try:
        parsed = parse_cmdline(cmdline)
    except ParamError as exc:
        raise CliError(f"--cmdline: {exc.strerror}") from None
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
        check_option_names(parsed)
    except BaseException:
        z.close()
        raise
    for message in [*(str(w.message) for w in caught), *logged]:
        click.echo(f"zswap: warning: {message}", err=True)
    return z


def check_option_names(parsed: dict[str, dict[str, str]]) -> None:
    """--cmdline options that a loaded plugin does not declare are errors.

    A plugin that loads ignores (and logs) options it does not declare, as a kernel
    module does; a name typed on the command line for a plugin that is now loaded is
    a typo the user should see, as it was when such a plugin was loaded beforehand.
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
                    raise CliError(f"--cmdline: {module}.{name}={value}: {exc.strerror}") from None


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
        and all(isinstance(r[i], (int, float)) or r[i] in ("", "Total") for r in rows)
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


def is_tty() -> bool:
    return sys.stdout.isatty()
