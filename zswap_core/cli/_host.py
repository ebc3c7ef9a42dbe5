"""``zswap host``: the running kernel's zswap state (being built: issue 16)."""

from __future__ import annotations

import click

from ._common import CliError

__all__ = ["host"]


@click.command("host")
def host() -> None:
    """Show the running kernel's zswap parameters and counters (not built yet)."""
    raise CliError("zswap host is not built yet")
