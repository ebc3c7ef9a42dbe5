"""``zswap host``: the running kernel's zswap state, as /sys and /proc show it."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import click

from ._common import CliError, FiniteFloatRange, echo_json

if TYPE_CHECKING:
    from zswap_core.kernels import HostState, KernelProfile

__all__ = ["host"]

#: The vmstat counters whose per-second rates --watch shows, in this order.
_RATES = ("zswpin", "zswpout", "zswpwb", "pswpin", "pswpout")
#: The meminfo sizes whose change --watch shows.
_SIZES = ("Zswap", "Zswapped")


@click.command(
    "host",
    epilog="""
\b
Examples:
  zswap host
  zswap host --json
  zswap host --watch 1                 # rates every second until Ctrl-C
  zswap host --watch 0.5 --count 10 --json
""",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with --watch: one line each).")
@click.option(
    "--watch",
    type=FiniteFloatRange(min=0.01, max=86400),
    default=None,
    metavar="SECONDS",
    help="Every SECONDS, print per-second rates of zswpin, zswpout, zswpwb, pswpin, "
    "pswpout and the change of Zswap and Zswapped.",
)
@click.option(
    "--count",
    type=click.IntRange(min=1),
    default=None,
    help="With --watch: stop after N lines.  [default: until Ctrl-C]",
)
def host(as_json: bool, watch: float | None, count: int | None) -> None:
    """Show the running kernel's zswap: parameters, codecs, sizes and counters.

    Reads /sys/module/zswap/parameters, /proc/crypto (compression algorithms the
    kernel has loaded), /proc/meminfo (Zswap, Zswapped), /proc/vmstat (zswpin,
    zswpout, zswpwb) and /sys/kernel/debug/zswap when readable (root). A file that is
    missing or unreadable is said, not an error. The last lines say what kernels.toml
    knows of this release: its allocators and how it stores pages.
    """
    from zswap_core.kernels import KernelProfileError, kernel_profile, read_host

    if count is not None and watch is None:
        raise CliError("--count needs --watch SECONDS")
    state = read_host()
    if watch is not None:
        _watch(state, watch, count, as_json)
        return
    try:
        profile: KernelProfile | None = kernel_profile("host", host=state)
        why = None
    except KernelProfileError as exc:
        profile, why = None, str(exc)
    if as_json:
        echo_json(_as_json(state, profile, why))
        return
    _print_state(state, profile, why)


def _as_json(state: HostState, profile: KernelProfile | None, why: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "release": state.release,
        "version": list(state.version) if state.version else None,
        "params": state.params,
        "compressors": list(state.compressors) if state.compressors is not None else None,
        "loadable_compressors": list(state.loadable_compressors),
        "meminfo": state.meminfo,
        "vmstat": state.vmstat,
        "debugfs": state.debugfs,
        "debugfs_why": state.debugfs_why,
        "problems": list(state.problems),
    }
    if profile is None:
        out["profile"] = None
        out["profile_error"] = why
    else:
        out["profile"] = {
            "base": profile.base,
            "zpools": list(profile.zpools),
            "compressors": list(profile.compressors) if profile.compressors else None,
            "params": sorted(profile.params),
            "counters": list(profile.counters),
            "exclusive_loads": profile.exclusive_loads,
            "same_filled": profile.same_filled,
            "incompressible": profile.incompressible,
            "entry_bytes": profile.entry_bytes,
            "codec_levels": profile.codec_levels,
            "notes": list(profile.notes),
        }
    return out


def _print_state(state: HostState, profile: KernelProfile | None, why: str | None) -> None:
    click.echo(f"kernel: {state.release or '?'}")
    if state.params is not None:
        for name, value in state.params.items():
            click.echo(f"/sys/module/zswap/parameters/{name}: {value}")
    if state.compressors is not None:
        line = " ".join(state.compressors) or "(none loaded)"
        click.echo(f"/proc/crypto compression algorithms: {line}")
    if state.loadable_compressors:
        click.echo(f"codec modules installed: {' '.join(state.loadable_compressors)}")
    for key, size in state.meminfo.items():
        # /proc/meminfo's own layout: the name, a colon, the size in kB right-aligned.
        click.echo(f"/proc/meminfo {key + ':':<15} {size // 1024:>8} kB")
    for key, n in state.vmstat.items():
        click.echo(f"/proc/vmstat {key} {n}")
    if state.debugfs is not None:
        for key, n in state.debugfs.items():
            click.echo(f"/sys/kernel/debug/zswap/{key}:{n}")
    elif state.debugfs_why:
        click.echo(f"debugfs: {state.debugfs_why}")
    for line in state.problems:
        click.echo(f"missing: {line}")
    if profile is None:
        click.echo(f"kernels.toml: {why}")
        return
    loads = {
        "none": "a load keeps the entry",
        "param": "exclusive_loads says whether a load drops the entry",
        "always": "a load drops the entry",
    }
    click.echo(
        f"kernels.toml for {profile.version[0]}.{profile.version[1]} (profile {profile.base}): "
        f"allocators {', '.join(profile.zpools)}; {loads.get(profile.exclusive_loads, '?')}; "
        f"same-filled pages: {profile.same_filled}; incompressible pages: "
        f"{profile.incompressible}; ~{profile.entry_bytes} bytes of metadata per entry; "
        "no codec levels"
    )
    for note in profile.notes:
        click.echo(f"note: {note}")


def _watch(first: HostState, interval: float, count: int | None, as_json: bool) -> None:
    """A line of rates every ``interval`` seconds, like ``vmstat N``."""
    from zswap_core.kernels import read_host

    if not first.vmstat and not first.meminfo:
        raise CliError("/proc/vmstat and /proc/meminfo are not readable: nothing to watch")
    names = [k for k in _RATES if k in first.vmstat]
    sizes = [k for k in _SIZES if k in first.meminfo]
    if not as_json:
        head = [f"{k + '/s':>10}" for k in names]
        # one word per column, so that `awk` and `split()` find each
        head += [f"{k + '_KiB':>14}{'d' + k + '_KiB/s':>18}" for k in sizes]
        click.echo(f"{'seconds':>8}" + "".join(head))
    prev, start, lines = first, first.monotonic, 0
    while count is None or lines < count:
        # Sleep to the next tick of the schedule, not `interval` after the last read,
        # so that the lines do not drift.
        time.sleep(max(0.0, start + (lines + 1) * interval - time.monotonic()))
        cur = read_host()
        dt = max(cur.monotonic - prev.monotonic, 1e-9)
        rates = {k: (cur.vmstat.get(k, 0) - prev.vmstat.get(k, 0)) / dt for k in names}
        deltas = {k: (cur.meminfo.get(k, 0) - prev.meminfo.get(k, 0)) / dt for k in sizes}
        elapsed = cur.monotonic - start
        if as_json:
            echo_json_line(
                {
                    "elapsed_s": round(elapsed, 3),
                    "interval_s": round(dt, 3),
                    "rates_per_s": {k: round(v, 3) for k, v in rates.items()},
                    "meminfo_bytes": {k: cur.meminfo.get(k, 0) for k in sizes},
                    "meminfo_delta_bytes_per_s": {k: round(v, 3) for k, v in deltas.items()},
                }
            )
        else:
            row = [f"{rates[k]:>10.1f}" for k in names]
            row += [f"{cur.meminfo.get(k, 0) // 1024:>14}{deltas[k] / 1024:>18.1f}" for k in sizes]
            click.echo(f"{elapsed:>8.2f}" + "".join(row))
        prev, lines = cur, lines + 1


def echo_json_line(data: object) -> None:
    """One JSON object on one line (JSON lines), flushed so a pipe sees it at once."""
    import json

    click.echo(json.dumps(data, sort_keys=False))
