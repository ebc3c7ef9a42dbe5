"""``zswap advise``: which settings, and what would they save (being built: issue 16)."""

from __future__ import annotations

import click

from ._common import CliError

__all__ = ["advise"]


@click.command("advise")
def advise() -> None:
    """Advise zswap settings for a process, a cgroup or the host (not built yet)."""
    raise CliError("zswap advise is not built yet")
