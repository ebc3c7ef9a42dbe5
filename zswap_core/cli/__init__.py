"""The ``zswap`` command: run workloads, compare compressors and allocators, inspect plugins.

Every command has ``--help`` with examples. Bad input gives one line on stderr,
``zswap: error: ...``, and a non-zero exit status (1; 2 for usage errors; 3 when a page
read back differs from what was written). SIGINT, SIGTERM and SIGHUP end a command after
its cleanup (``zswap run`` removes its swap file) with one line and 128 + the signal.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import click

from . import _signals
from ._common import CliError

__all__ = ["CliError", "cli", "main"]


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="""
\b
Examples:
  zswap run                                   # the default workload, about a second
  zswap compare --compressors lz4,zstd --json
  zswap lsmod
  zswap modinfo zstd
  zswap params --cmdline "zswap.compressor=zstd zswap.max_pool_percent=30"
  zswap stats --cmdline "zswap.zpool=zsmalloc"
""",
)
@click.version_option(package_name="zswap-core", prog_name="zswap")
def cli() -> None:
    """zswap for userspace: a compressed page cache in front of a swap file.

    Runs workloads through it and reports what the kernel's debugfs and vmstat would.
    """


def _register() -> None:
    from ._advise import advise
    from ._compare import compare
    from ._host import host
    from ._info import lsmod, modinfo, params, stats
    from ._run import run

    for cmd in (advise, run, compare, host, lsmod, modinfo, params, stats):
        cli.add_command(cmd)


_register()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``zswap`` script; returns the exit status.

    Whatever happens, the user sees at most one line on stderr, never a traceback:
    ``zswap: error: ...`` for bad input or an environment that refuses (an OSError),
    ``zswap: terminated (SIGTERM)`` / ``zswap: interrupted`` for a signal (after the
    command's cleanup), and ``zswap: internal error: ...`` for a bug, whose traceback
    ``ZSWAP_DEBUG=1`` shows.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    with _signals.installed():
        try:
            return _main(args)
        except _signals.Terminated as exc:
            click.echo(f"zswap: {exc.message}", err=True)
            return exc.exit_status


def _main(args: list[str]) -> int:
    try:
        cli.main(args=args, prog_name="zswap", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        return 0
    except click.UsageError as exc:
        click.echo(f"zswap: error: {_one_line(exc.format_message())}", err=True)
        return exc.exit_code
    except click.ClickException as exc:
        click.echo(f"zswap: error: {_one_line(exc.format_message())}", err=True)
        return exc.exit_code
    except click.Abort:
        click.echo("zswap: aborted", err=True)
        return 130
    except KeyboardInterrupt:
        click.echo("zswap: interrupted", err=True)
        return 130
    except BrokenPipeError:
        return 141
    except OSError as exc:  # the environment refused: a full disk, a vanished folder...
        click.echo(f"zswap: error: {_one_line(_os_error(exc))}", err=True)
        return 1
    except Exception as exc:
        if os.environ.get("ZSWAP_DEBUG"):
            raise
        click.echo(
            f"zswap: internal error: {type(exc).__name__}: {_one_line(str(exc))} "
            "(a bug; ZSWAP_DEBUG=1 shows the traceback)",
            err=True,
        )
        return 1
    return 0


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _os_error(exc: OSError) -> str:
    if exc.strerror is None:
        return str(exc)
    where = f"{exc.filename}: " if exc.filename is not None else ""
    return f"{where}{exc.strerror}"
