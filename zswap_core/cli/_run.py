"""``zswap run``: a program-like simulation in front of Swap + Zswap, every read verified."""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import click

from . import _signals
from ._common import (
    SEED,
    CliError,
    FiniteFloatRange,
    SizeType,
    VerifyError,
    build_source,
    check_plugin,
    echo_json,
    entry_sizes,
    group_rows,
    human_bytes,
    make_groups,
    make_zswap,
    metadata_per_entry,
    name_value,
    parse_group,
    percentile,
    progress,
    saved_figures,
    section,
    source_options,
    stderr_is_tty,
    table,
)

if TYPE_CHECKING:
    from zswap_core import Zswap
    from zswap_core.workload import PageSource

__all__ = ["SetPoint", "Simulation", "parse_set", "pool_rows", "run"]

_SET_RE = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*%\s*:\s*([A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)?)=(.*)$")


@dataclass
class SetPoint:
    """A parameter write at a point of the run: ``50%:compressor=zstd``."""

    percent: float
    module: str
    param: str
    value: str
    text: str
    applied_at: int | None = None

    @property
    def key(self) -> str:
        return f"{self.module}.{self.param}"


def parse_set(text: str) -> SetPoint:
    """Parse ``P%:[module.]param=value``; :class:`CliError` if malformed."""
    m = _SET_RE.match(text)
    if m is None:
        raise CliError(
            f"--set {text!r}: expected PERCENT%:PARAM=VALUE, e.g. 50%:compressor=zstd "
            "or 75%:zswap.zpool=z3fold"
        )
    percent = float(m.group(1))
    if not 0 <= percent <= 100:
        raise CliError(f"--set {text!r}: percent must be 0..100")
    key, value = m.group(2), m.group(3)
    module, _, param = key.rpartition(".")
    return SetPoint(percent, module or "zswap", param, value, text.strip())


def _module_params(z: Zswap, module: str) -> Any:
    """The ModuleParams of ``module`` (``zswap`` or a loaded/loadable plugin)."""
    if module == "zswap":
        return z.params
    from zswap_core import PluginError

    kinds = {p.name: p.kind for p in _list_plugins()}
    kind = kinds.get(module)
    if kind is None:
        raise CliError(f"no module named {module!r} (see `zswap lsmod`)")
    try:
        return z.registry.require(kind, module).params
    except PluginError as exc:
        raise CliError(f"module {module!r}: {exc}") from None


def _list_plugins() -> list[Any]:
    from zswap_core import list_plugins

    return list(list_plugins())


def validate_sets(z: Zswap, points: list[SetPoint]) -> None:
    """Check names and values before the run starts, so a typo fails fast."""
    from zswap_core import ParamError

    for sp in points:
        params = _module_params(z, sp.module)
        try:
            params.declaration(sp.param).parse(sp.value)
        except ParamError as exc:
            raise CliError(f"--set {sp.text!r}: {exc.strerror}") from None
        if sp.module == "zswap" and sp.param in ("compressor", "zpool"):
            check_plugin(sp.param, sp.value.strip())


def apply_set(z: Zswap, sp: SetPoint) -> None:
    from zswap_core import ParamError

    params = _module_params(z, sp.module)
    try:
        params[sp.param] = sp.value
    except ParamError as exc:
        raise CliError(f"--set {sp.text!r}: {exc.strerror}") from None


# ---------------------------------------------------------------------------------------
# the simulation
# ---------------------------------------------------------------------------------------


@dataclass
class Latencies:
    store: list[int] = field(default_factory=list)
    load: list[int] = field(default_factory=list)
    swap_out: list[int] = field(default_factory=list)
    swap_in: list[int] = field(default_factory=list)
    recording: bool = True

    def summary(self) -> dict[str, dict[str, float | None]]:
        """count, p50 and p99 (µs) per operation; the percentiles are None (n/a) when
        nothing was timed, as loads when every page was incompressible."""
        out: dict[str, dict[str, float | None]] = {}
        for name in ("store", "load", "swap_out", "swap_in"):
            values = sorted(getattr(self, name))
            out[name] = {
                "count": len(values),
                "p50": round(percentile(values, 50) / 1000, 2) if values else None,
                "p99": round(percentile(values, 99) / 1000, 2) if values else None,
            }
        return out


def instrument(z: Zswap, lat: Latencies) -> None:
    """Time every zswap store and load that succeeds (perf_counter_ns)."""
    store, load_dirty = z.store, z.load_dirty
    clock = time.perf_counter_ns

    def timed_store(type: int, offset: int, page: Any, **kw: Any) -> bool:
        t0 = clock()
        ok = store(type, offset, page, **kw)
        if ok and lat.recording:
            lat.store.append(clock() - t0)
        return ok

    def timed_load_dirty(
        type: int, offset: int, *, exclusive: bool | None = None
    ) -> tuple[bytes | None, bool]:
        t0 = clock()
        out = load_dirty(type, offset, exclusive=exclusive)
        if out[0] is not None and lat.recording:
            lat.load.append(clock() - t0)
        return out

    # Instance attributes shadow the methods for this object only. The swap layer
    # loads through load_dirty (it must learn whether the entry was dropped).
    setattr(z, "store", timed_store)  # noqa: B010
    setattr(z, "load_dirty", timed_load_dirty)  # noqa: B010


def _no_poll() -> None:
    pass


class Simulation:
    """A program's memory: ``pages`` page ids, at most ``resident`` of them in RAM (LRU).

    An access to a page not in RAM faults it in: the first touch makes it (content from
    the source), later ones swap it in and compare it with what was last written. A
    page leaving RAM is swapped out if it is dirty or has no swap entry; a clean page
    that still has its entry (the swap cache) is just dropped. A write gives the page
    new content and frees its old swap entry. Each batch of pages evicted is memory
    pressure of that many pages on the shrinkers (``Swap.reclaim``).

    With ``groups`` (memory cgroups, leaves of the hierarchy), page ``pid`` belongs
    to ``groups[pid % len(groups)]``: each gets an equal share of hot and cold pages.
    A page its group keeps out of the swap file (``memory.zswap.writeback=0`` and
    zswap refused it) stays in RAM at the young end, as the kernel keeps the folio
    active; RAM then holds more than ``resident`` pages if it must.
    """

    def __init__(
        self,
        swap: Any,
        source: PageSource,
        *,
        pages: int,
        resident: int,
        lat: Latencies,
        groups: list[Any] | None = None,
    ) -> None:
        self.swap = swap
        self.groups = groups or []
        self.source = source
        self.nr_pages = pages
        self.resident_max = resident
        self.lat = lat
        self.ram: OrderedDict[int, bytes] = OrderedDict()
        self.cids: list[int] = list(range(pages))
        self.entries: list[Any] = [None] * pages
        self.touched = bytearray(pages)
        self.next_cid = max(pages, source.nr_base)
        self.verified = 0
        self.faults = self.first_touch = self.hits = self.writes = 0
        self.evictions = self.clean_drops = 0
        self.stayed_in_memory = 0
        self.resident_peak = 0
        # called between two pages of check_all(): where a held-back signal may stop it
        self.poll: Callable[[], None] = _no_poll

    def access(self, pid: int, write: bool) -> None:
        ram = self.ram
        page = ram.get(pid)
        if page is None:
            self.faults += 1
            if not self.touched[pid]:
                self.touched[pid] = 1
                self.first_touch += 1
                page = self.source.page(self.cids[pid])
            else:
                page = self._swap_in(pid)
            evicted = kept = 0
            while len(ram) >= self.resident_max and kept < len(ram):
                if self._evict():
                    evicted += 1
                else:
                    kept += 1
            if evicted:
                # memory pressure: reclaim asks the shrinkers for as many pages as it
                # just evicted (zswap's, with zswap.shrinker_enabled=Y)
                self.swap.reclaim(evicted)
            ram[pid] = page
            if len(ram) > self.resident_peak:
                self.resident_peak = len(ram)
        else:
            self.hits += 1
            ram.move_to_end(pid)
        if write:
            self.writes += 1
            cid = self.next_cid
            self.next_cid += 1
            self.cids[pid] = cid
            ram[pid] = self.source.page(cid)
            e = self.entries[pid]
            if e is not None:
                self.swap.swap_free(e)
                self.entries[pid] = None

    def _swap_in(self, pid: int) -> bytes:
        e = self.entries[pid]
        if e is None:
            raise VerifyError(f"page {pid} was lost: not in RAM and no swap entry")
        t0 = time.perf_counter_ns()
        page: bytes = self.swap.swap_in(e)
        if self.lat.recording:
            self.lat.swap_in.append(time.perf_counter_ns() - t0)
        self._verify(pid, e, page)
        # The entry stays valid (with exclusive_loads=Y the swap layer stores the page
        # again), so a clean page can leave RAM later without another swap-out.
        return page

    def _verify(self, pid: int, e: Any, page: bytes) -> None:
        expected = self.source.page(self.cids[pid])
        if page != expected:
            n = len(page) if isinstance(page, (bytes, bytearray)) else -1
            bad = next((i for i in range(min(n, len(expected))) if page[i] != expected[i]), n)
            raise VerifyError(
                f"page {pid} read back wrong from swap entry {e.type}:{e.offset} "
                f"(length {n}, first difference at byte {bad})"
            )
        self.verified += 1

    def _evict(self) -> bool:
        """Take the oldest page out of RAM; False when it has to stay."""
        from zswap_core import WritebackDisabledError

        pid, page = self.ram.popitem(last=False)
        if self.entries[pid] is not None:
            self.evictions += 1
            self.clean_drops += 1
            return True
        group = self.groups[pid % len(self.groups)] if self.groups else None
        t0 = time.perf_counter_ns()
        try:
            self.entries[pid] = self.swap.swap_out(page, group=group)
        except WritebackDisabledError:
            self.ram[pid] = page  # activated: back at the young end
            self.stayed_in_memory += 1
            return False
        if self.lat.recording:
            self.lat.swap_out.append(time.perf_counter_ns() - t0)
        self.evictions += 1
        return True

    def check_all(self) -> int:
        """Read back every page that is out of RAM; returns how many were checked."""
        n = 0
        for pid, e in enumerate(self.entries):
            if e is not None and pid not in self.ram:
                page = self.swap.swap_in(e)
                self._verify(pid, e, page)
                n += 1
                self.poll()
        return n

    def free_all(self) -> None:
        for pid, e in enumerate(self.entries):
            if e is not None:
                self.swap.swap_free(e)
                self.entries[pid] = None


# ---------------------------------------------------------------------------------------
# reporting
# ---------------------------------------------------------------------------------------


def pool_rows(z: Zswap) -> list[dict[str, Any]]:
    """One row per pool. Pools that share a zpool instance (``shared_zpool=Y``) name it
    in ``zpool_instance``; its size is on the first of them, and their pool density is
    that of the zpool they share: all their entries over its pages."""
    pools = z.pools
    entries: dict[str, int] = {}
    pages: dict[str, int] = {}
    for p in pools:
        key = p.shared or p.name
        entries[key] = entries.get(key, 0) + p.nr_entries
        pages[key] = pages.get(key, 0) + p.total_size // z.page_size
    rows = []
    for p in pools:
        key = p.shared or p.name
        rows.append(
            {
                "name": p.name,
                "compressor": p.compressor,
                "zpool": p.zpool,
                "zpool_instance": key,
                "current": p.current,
                "entries": p.nr_entries,
                "size": p.total_size,
                "pages": p.total_size // z.page_size,
                "pool_density": round(entries[key] / pages[key], 3) if pages[key] else None,
            }
        )
    return rows


def summary_figures(z: Zswap, sim: Simulation, stats: dict[str, int]) -> dict[str, Any]:
    """codec ratio, pool density and saved, over the pages zswap holds now.

    saved_percent is of the bytes of those pages: what holding them in zswap saves
    against holding them in RAM (None, n/a, when zswap holds nothing).
    """
    meta = metadata_per_entry()
    held = [(pid, e) for pid, e in enumerate(sim.entries) if e is not None]
    sizes = entry_sizes(z, [(e.type, e.offset) for _, e in held])
    zero = bytes(z.page_size)

    def is_zero(i: int) -> bool:
        return sim.source.page(sim.cids[held[i][0]]) == zero

    figures = saved_figures(
        page_size=z.page_size,
        sizes=sizes,
        is_zero=is_zero,
        pool_bytes=stats["pool_total_size"],
        considered_pages=sum(1 for n in sizes if n is not None),
        meta=meta,
    )
    return {**figures, **meta.as_json()}


PAGE_SIZE = 4096  # the workload sources' page size; a --pid source has the system's
MAX_ACCESSES = 1 << 40  # about a year of accesses; 10**30 is a typo

EXAMPLES = """
\b
Examples:
  zswap run
  zswap run --pages 20000 --resident 4000 --accesses 200000 --alpha 0.8
  zswap run --cmdline "zswap.compressor=zstd zswap.zpool=z3fold" --json
  zswap run --set 50%:compressor=zstd --set 75%:zpool=z3fold
  zswap run --source files /usr/lib/python3*/ --pages 4096
  zswap run --pid 1234
"""


@click.command("run", epilog=EXAMPLES)
@click.argument("paths", nargs=-1, metavar="[PATH]...")
@click.option(
    "--pages",
    type=click.IntRange(16, 1 << 24),
    default=8192,
    show_default=True,
    help="Working set: how many distinct pages the program touches.",
)
@click.option(
    "--resident",
    type=click.IntRange(1),
    default=None,
    help="Pages that fit in RAM (LRU).  [default: pages/4]",
)
@click.option(
    "--accesses",
    type=click.IntRange(0, MAX_ACCESSES),
    default=None,
    help="Length of the access trace.  [default: 6 x pages]",
)
@click.option(
    "--alpha",
    type=FiniteFloatRange(0, 5),
    default=0.9,
    show_default=True,
    help="Zipf skew of the trace.",
)
@click.option(
    "--writes",
    type=FiniteFloatRange(0, 1),
    default=0.25,
    show_default=True,
    help="Fraction of accesses that write (give the page new content).",
)
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of trace and pages.")
@source_options
@click.option(
    "--cmdline",
    default="",
    metavar="STRING",
    help='Boot parameters, e.g. "zswap.compressor=zstd zswap.zpool=z3fold zstd.level=5".',
)
@click.option(
    "--ram",
    type=SizeType(PAGE_SIZE, what=f"one page ({PAGE_SIZE} bytes)"),
    default=None,
    metavar="SIZE",
    help="RAM size that max_pool_percent applies to (e.g. 64M).  "
    "[default: the working set size, so the pool limit is hit and writeback runs]",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="P%:PARAM=VALUE",
    help="Change a parameter when the run is P% done (repeatable), e.g. 50%:compressor=zstd.",
)
@click.option(
    "--compact-every",
    type=click.IntRange(0, MAX_ACCESSES),
    default=0,
    show_default=True,
    metavar="N",
    help="Also compact the pools every N accesses (0: only when the pool limit is hit, "
    "which zswap does by itself before writing back).",
)
@click.option(
    "--async-writeback",
    "async_writeback",
    is_flag=True,
    help="Write back in zswap's own worker thread, as the kernel's shrink worker runs "
    "beside the program. Counters then depend on thread timing.  [default: write back "
    "between two accesses, in the command's thread, so the same --seed gives the same "
    "counters]",
)
@click.option(
    "--group",
    "group_specs",
    multiple=True,
    metavar="NAME[:max=SIZE][:writeback=0|1]",
    help="Model a memory cgroup (repeatable; a/b is b under a): memory.zswap.max and "
    "memory.zswap.writeback. Pages are shared among the leaf groups (page i belongs "
    "to leaf i mod n); the report shows each group's memory.stat.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def run(
    paths: tuple[str, ...],
    pages: int,
    resident: int | None,
    accesses: int | None,
    alpha: float,
    writes: float,
    seed: int,
    source: str | None,
    files: tuple[str, ...],
    pid: int | None,
    cmdline: str,
    ram: int | None,
    sets: tuple[str, ...],
    compact_every: int,
    async_writeback: bool,
    group_specs: tuple[str, ...],
    as_json: bool,
) -> None:
    """Run a program-like workload through swap + zswap and report what happened.

    A program with a working set of --pages pages, of which --resident fit in RAM,
    touches its pages along a zipf trace. Pages leaving RAM are swapped out (zswap
    first, the swap file in a temporary directory behind it); pages coming back are
    swapped in and compared byte for byte with what was written. Exits 3 if any page
    comes back wrong.

    \b
    The summary, over the pages zswap holds at the end:
      codec_ratio    original / compressed bytes of its compressed pages (the codec)
      pool_density   compressed pages per pool page (codec and allocator together)
      saved          their bytes minus the pool and zswap's metadata per entry (the
                     newest kernel profile's estimate; zero pages none when that kernel
                     keeps them in the swap core), and that in percent of their bytes
    n/a where a figure is undefined (zswap holds nothing, nothing was loaded...).

    Progress with ETA goes to stderr when it is a terminal (with --json too). Ctrl-C
    stops the run and prints the report so far, marked interrupted (exit 130); SIGTERM
    or SIGHUP end it after removing the swap file.
    """
    from zswap_core.workload import ZipfTrace

    points = sorted((parse_set(s) for s in sets), key=lambda p: p.percent)
    specs = [parse_group(g) for g in group_specs]
    if resident is None:
        resident = max(1, pages // 4)
    if resident >= pages:
        raise CliError(f"--resident ({resident}) must be smaller than --pages ({pages})")
    if accesses is None:
        accesses = 6 * pages
    src = build_source(source, files, paths, pid, seed, max_pages=pages)
    page_size = src.page_size
    if ram is not None and ram < page_size:
        raise CliError(f"--ram must be at least one page ({page_size} bytes), got {ram}")
    ram_bytes = ram if ram is not None else pages * page_size
    try:
        from zswap_core.swap import Swap
    except ImportError as exc:  # pragma: no cover - the swap layer ships with the core
        raise CliError(f"the swap layer is not available: {exc}") from None

    # Synchronous writeback by default: zswap starts no shrink worker, and step() does
    # its work between two accesses (Zswap.shrink), so the same seed gives the same
    # counters; a worker thread's progress would depend on the scheduler.
    z = make_zswap(cmdline, ram_bytes=ram_bytes, shrink_worker=async_writeback)
    interrupted: _signals.Terminated | None = None
    try:
        validate_sets(z, points)
        leaves = make_groups(z, specs)
        lat = Latencies()
        instrument(z, lat)
        trace = ZipfTrace(pages, alpha=alpha, seed=seed)
        wrng = random.Random(seed ^ 0x77)
        report: dict[str, Any] = {}
        # From creating the swap file's folder to removing it, signals (Ctrl-C, SIGTERM)
        # are held back and taken only at poll(), between two accesses: never inside a
        # swap-out, never between creating the folder and the try that removes it.
        try:
            with _signals.at_safe_points() as poll:

                def step() -> None:  # between two accesses (and two pages of the final check)
                    if not async_writeback:
                        z.shrink()
                    poll()

                tmp = tempfile.mkdtemp(prefix="zswap-run-")
                try:
                    swap = Swap(z, close_zswap=False)  # z is reported on, then closed below
                    try:
                        swap_pages = pages + pages // 8 + 16
                        swap.swapon(os.path.join(tmp, "swapfile"), swap_pages)
                        sim = Simulation(
                            swap, src, pages=pages, resident=resident, lat=lat, groups=leaves
                        )
                        sim.poll = step
                        marks = [(int(sp.percent / 100 * accesses), sp) for sp in points]
                        t0 = time.perf_counter()
                        i = 0
                        try:
                            with progress(
                                "zswap run", accesses, "accesses", enabled=stderr_is_tty()
                            ) as bar:
                                rand = wrng.random
                                for pg in trace.draw(accesses):
                                    while marks and marks[0][0] <= i:
                                        sp = marks.pop(0)[1]
                                        apply_set(z, sp)
                                        sp.applied_at = i
                                    sim.access(pg, rand() < writes)
                                    i += 1
                                    if compact_every and not i % compact_every:
                                        z.compact()
                                    step()
                                    if not i & 1023:
                                        bar.update(i, done=i, of=accesses)
                                for _, sp in marks:  # 100%: after the last access
                                    apply_set(z, sp)
                                    sp.applied_at = i
                        except _signals.Terminated as exc:
                            if exc.signum != signal.SIGINT:
                                raise  # SIGTERM, SIGHUP: clean up and go
                            interrupted = exc  # Ctrl-C: report what was done
                        elapsed = time.perf_counter() - t0
                        lat.recording = False
                        report = _report(
                            z, swap, sim, src.describe(), lat, points,
                            pages=pages, resident=resident, accesses=accesses, done=i,
                            alpha=alpha, writes=writes, seed=seed, compact_every=compact_every,
                            page_size=page_size, ram_bytes=ram_bytes,
                            writeback="async" if async_writeback else "sync",
                            elapsed=elapsed,
                        )  # fmt: skip
                        checked = None
                        if interrupted is None:
                            try:
                                checked = sim.check_all()
                            except _signals.Terminated as exc:
                                if exc.signum != signal.SIGINT:
                                    raise
                                interrupted = exc
                        report["pages_verified"] = sim.verified
                        report["final_check_pages"] = checked  # None: not done (interrupted)
                        report["interrupted"] = interrupted is not None
                        sim.free_all()
                    finally:
                        swap.close()
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
        except _signals.Terminated as exc:
            # A Ctrl-C held back to the end of the section (the swap file is gone by
            # then): the report is whole; print it, then stop as asked.
            if exc.signum != signal.SIGINT or not report or interrupted is not None:
                raise
            interrupted = exc
    finally:
        z.close()
    if as_json:
        echo_json(report)
    else:
        print_run_report(report)
    if interrupted is not None:
        raise interrupted  # main() says "zswap: interrupted" and exits 130


def _report(
    z: Zswap,
    swap: Any,
    sim: Simulation,
    source: str,
    lat: Latencies,
    points: list[SetPoint],
    *,
    pages: int,
    resident: int,
    accesses: int,
    done: int,
    alpha: float,
    writes: float,
    seed: int,
    compact_every: int,
    page_size: int,
    ram_bytes: int,
    writeback: str,
    elapsed: float,
) -> dict[str, Any]:
    stats = z.stats
    return {
        "workload": {
            "source": source,
            "pages": pages,
            "resident": resident,
            "accesses": accesses,
            "accesses_done": done,
            "alpha": alpha,
            "writes": writes,
            "seed": seed,
            "compact_every": compact_every,
            "page_size": page_size,
            "ram_bytes": ram_bytes,
            "pool_limit_pages": z.pool_limit_pages,
            "writeback": writeback,
        },
        "params": z.params.as_sysfs(),
        "stats": stats,
        "vmstat": dict(swap.vmstat),
        "pools": pool_rows(z),
        **summary_figures(z, sim, stats),
        "latency_us": lat.summary(),
        "faults": {
            "faults": sim.faults,
            "first_touch": sim.first_touch,
            "ram_hits": sim.hits,
            "writes": sim.writes,
            "evictions": sim.evictions,
            "clean_drops": sim.clean_drops,
            "stayed_in_memory": sim.stayed_in_memory,
            "resident_peak": sim.resident_peak,
        },
        "groups": group_rows(z.groups.values()),
        "sets": [
            {"set": sp.text, "param": sp.key, "value": sp.value, "at_access": sp.applied_at}
            for sp in points
        ],
        "elapsed_s": round(elapsed, 3),
    }


def _marked(values: dict[str, Any]) -> list[tuple[str, object]]:
    """zswap's ``name value`` rows, "(simulator only)" after what no kernel has."""
    from zswap_core.kernels import simulator_only_note

    return [
        (k, f"{v}   (simulator only)" if simulator_only_note("zswap", k) is not None else v)
        for k, v in values.items()
    ]


def print_run_report(r: dict[str, Any]) -> None:
    w = r["workload"]
    done = (
        "" if w["accesses_done"] == w["accesses"] else f" (interrupted after {w['accesses_done']})"
    )
    click.echo(
        f"zswap run: {w['source']}\n"
        f"  {w['pages']} pages ({human_bytes(w['pages'] * w['page_size'])}) working set, "
        f"{w['resident']} resident, {w['accesses']} accesses{done}, zipf alpha {w['alpha']}, "
        f"{w['writes']:.0%} writes, seed {w['seed']}, compact every {w['compact_every']}\n"
        f"  ram {human_bytes(w['ram_bytes'])}, pool limit {w['pool_limit_pages']} pages "
        f"(max_pool_percent={r['params']['max_pool_percent']}), {w['writeback']} writeback, "
        f"{r['elapsed_s']:.2f} s"
    )
    for sp in r["sets"]:
        click.echo(f"  set {sp['param']}={sp['value']} at access {sp['at_access']}")
    section("/sys/module/zswap/parameters/")
    name_value(_marked(r["params"]), "  ")
    section("/sys/kernel/debug/zswap/")
    name_value(_marked(r["stats"]), "  ")
    section("/proc/vmstat")
    name_value(r["vmstat"].items(), "  ")
    section("pools")
    # The zpool instance only when pools share one (shared_zpool=Y): then the size is on
    # the first of them and the density is the shared zpool's.
    shared = any(p["zpool_instance"] != p["name"] for p in r["pools"])
    table(
        [
            "name",
            "compressor",
            "zpool",
            *(["zpool_instance"] if shared else []),
            "entries",
            "size",
            "pool_density",
            "",
        ],
        [
            [
                p["name"],
                p["compressor"],
                p["zpool"],
                *([p["zpool_instance"]] if shared else []),
                p["entries"],
                p["size"],
                p["pool_density"],
                "current" if p["current"] else "",
            ]
            for p in r["pools"]
        ],
        "  ",
    )
    if r["groups"]:
        section("groups (memory.zswap.*, memory.stat)")
        table(
            ["group", "zswap.max", "writeback", "zswap.current", *_STAT_KEYS],
            [
                [
                    g["group"],
                    "max" if g["max"] is None else human_bytes(g["max"]),
                    g["writeback"],
                    human_bytes(g["current"]),
                    *(g[k] for k in _STAT_KEYS),
                ]
                for g in r["groups"]
            ],
            "  ",
        )
    section("summary (the pages zswap holds)")
    saved = r["saved_bytes"]
    rows: list[tuple[str, object]] = [
        ("codec_ratio", r["codec_ratio"]),
        ("pool_density", r["pool_density"]),
        ("saved", f"{human_bytes(saved)} ({_percent(r['saved_percent'])})"),
        ("metadata", r["metadata_basis"]),
    ]
    lat = r["latency_us"]
    for name in ("store", "load", "swap_out", "swap_in"):
        rows.append((f"{name}_p50_us", lat[name]["p50"]))
        rows.append((f"{name}_p99_us", lat[name]["p99"]))
    rows += list(r["faults"].items())
    rows.append(("pages_verified", r["pages_verified"]))
    name_value(rows, "  ")
    if r["interrupted"]:
        click.echo("\n(interrupted: the figures are those of the run so far)")


_STAT_KEYS = ("zswap", "zswapped", "zswpin", "zswpout", "zswpwb")


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}%"
