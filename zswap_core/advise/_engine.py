"""``advise()``: targets -> census -> sample -> workers -> estimates -> one report (a dict).

The report's keys are the JSON of ``zswap advise --json`` (a contract: other tests and
scripts read it). Figures are for the population of candidate pages, scaled from the
sample; intervals are at ``confidence``; n/a is None.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._estimate import (
    Estimate,
    PoolModel,
    Sample,
    StorePolicy,
    estimate_pair,
    interval_dict,
)
from ._run import INTERRUPT_AFTER_ENV, make_batches, measure_sample, usable_cpus

__all__ = [
    "DEFAULT_CPU_BUDGET",
    "DEFAULT_SAMPLE_BYTES",
    "OBJECTIVES",
    "AdviseError",
    "Request",
    "advise",
    "recommend",
    "what_if",
]

DEFAULT_SAMPLE_BYTES = 64 << 20
#: CPU seconds per GiB (compress + decompress, codec only) the default objective allows.
DEFAULT_CPU_BUDGET = 2.0
OBJECTIVES = ("saved", "cpu", "balanced")
#: "balanced": the cheapest pair among those saving at least this share of the best.
BALANCED_SHARE = 0.95


class AdviseError(Exception):
    """Bad input or a target that cannot be advised on; one line for the user."""


@dataclass
class Request:
    """What to advise on and how (the options of ``zswap advise``)."""

    pids: Sequence[int] = ()
    cgroups: Sequence[str] = ()
    host: bool = False
    files: Sequence[str] = ()
    include_shmem: bool = False
    kernel: str = "host"
    sample_bytes: int | None = DEFAULT_SAMPLE_BYTES  #: None: every candidate page
    seed: int = 0
    confidence: float = 0.95
    compressors: Sequence[str] | None = None  #: None: every one the profile has installed
    zpools: Sequence[str] | None = None
    objective: str = "saved"
    cpu_budget: float = DEFAULT_CPU_BUDGET
    max_pool_percent: Sequence[float] = ()  #: () = the host's value, or 20
    ram_bytes: int | None = None  #: None: MemTotal of /proc/meminfo
    idle: str | None = None  #: "page_idle" when present; "soft-dirty" with --mark-idle
    idle_interval: float = 10.0
    jobs: int | None = None
    #: (name, memory.zswap.max in bytes or None for "max", memory.zswap.writeback)
    groups: Sequence[tuple[str, int | None, bool]] = ()
    progress: Callable[[int, int], Callable[[int], None]] | None = field(default=None)
    #: one-line notices for a person watching (the idle wait), or None
    notice: Callable[[str], None] | None = field(default=None)


def _installed(kind: str) -> list[str]:
    from zswap_core import list_plugins

    return [p.name for p in list_plugins() if p.kind == kind and p.state in ("available", "loaded")]


def _check_plugin(kind: str, name: str) -> None:
    from zswap_core import PluginError, default_registry

    reg = default_registry()
    if not any(p.kind == kind and p.name == name for p in reg.plugins()):
        have = ", ".join(_installed(kind)) or "none"
        raise AdviseError(f"unknown {kind} {name!r} (installed: {have})")
    try:
        reg.require(kind, name)  # type: ignore[arg-type]
    except PluginError as exc:
        raise AdviseError(f"{kind} {name!r} cannot be used: {exc}") from None


def choose_plugins(profile: Any, request: Request) -> tuple[list[str], list[str], list[str]]:
    """Compressors and zpools to measure (the profile's, installed), and notes."""
    notes: list[str] = []
    out: list[list[str]] = []
    for kind, asked, offered in (
        ("compressor", request.compressors, profile.compressors),
        ("zpool", request.zpools, profile.zpools),
    ):
        installed = _installed(kind)
        if asked is not None:
            names = list(dict.fromkeys(asked))
            for n in names:
                _check_plugin(kind, n)
                if offered is not None and n not in offered:
                    have = ", ".join(offered) or "none"
                    raise AdviseError(
                        f"{kind} {n!r} is not in kernel {profile.release} (it has: {have})"
                    )
        else:
            names = [n for n in installed if offered is None or n in offered]
            left_out = [n for n in installed if n not in names]
            if left_out:
                # Said, not silent: on a host whose /proc/crypto lists only the loaded
                # algorithms, lz4 or zstd may be a module away; the user should know
                # why they are not in the table and how to include them.
                notes.append(
                    f"installed {kind}s not offered, as kernel {profile.release} has no "
                    f"{' or '.join(left_out)}"
                    + (
                        " (its /proc/crypto lists loaded algorithms only: "
                        "--kernel RELEASE includes them)"
                        if profile.from_host and kind == "compressor"
                        else ""
                    )
                )
            if offered is not None:
                missing = [n for n in offered if n not in installed]
                if missing:
                    notes.append(
                        f"kernel {profile.release} also has {kind}s not installed here: "
                        + ", ".join(missing)
                    )
            if not names:
                raise AdviseError(
                    f"no installed {kind} is available in kernel {profile.release} "
                    f"(it has: {', '.join(offered or ()) or 'none'}; installed: "
                    f"{', '.join(installed) or 'none'})"
                )
        out.append(names)
    return out[0], out[1], notes


def _meminfo_total() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _host_max_pool_percent() -> float | None:
    try:
        with open("/sys/module/zswap/parameters/max_pool_percent") as fh:
            return float(fh.read().strip())
    except (OSError, ValueError):
        return None


def advise(request: Request) -> dict[str, Any]:
    """Run the whole advice; the report as the JSON of ``zswap advise --json``."""
    from zswap_core.kernels import KernelProfileError, kernel_profile

    from . import _scan

    started = time.monotonic()
    if not 0 < request.confidence < 1:
        raise AdviseError(f"--confidence must be between 0 and 1, got {request.confidence}")
    if request.objective not in OBJECTIVES:
        raise AdviseError(f"--objective must be one of {', '.join(OBJECTIVES)}")
    try:
        profile = kernel_profile(request.kernel)
    except KernelProfileError as exc:
        raise AdviseError(str(exc)) from None
    compressors, zpools, notes = choose_plugins(profile, request)
    if not (request.pids or request.cgroups or request.host or request.files):
        raise AdviseError("nothing to advise on: give --pid, --cgroup, --host or a PATH")
    from zswap_core.workload import WorkloadError

    try:
        targets, skipped = _scan.find_targets(
            pids=request.pids,
            cgroups=request.cgroups,
            host=request.host,
            files=request.files,
            include_shmem=request.include_shmem,
        )
        if not targets:
            why = "; ".join(skipped) if skipped else "no process or file matched"
            raise AdviseError(f"nothing to advise on: {why}")
        notice = request.notice
        census = _scan.census(
            targets,
            idle=request.idle,
            idle_interval=request.idle_interval,
            on_marked=None
            if notice is None
            else lambda: notice(f"pages marked idle; waiting {request.idle_interval:g} s"),
        )
        t_census = time.monotonic()
    except WorkloadError as exc:
        raise AdviseError(str(exc)) from None
    skipped = [*skipped, *census.skipped]
    page_size = _page_size()
    population = census.nr_candidates
    if population <= 0:
        raise AdviseError(
            "nothing to advise on: the targets have no candidate pages "
            f"({census.nr_zero_page} on the zero page, {census.nr_swapped} swapped out, "
            f"{census.nr_not_present} not present)"
        )
    want = None if request.sample_bytes is None else max(1, request.sample_bytes // page_size)
    full = want is None or want >= population
    chosen = _scan.choose(census, None if full else want, request.seed)
    cold_flags = _cold_flags(census, chosen)
    batches = make_batches(chosen, cold_flags)
    nr_sample = sum(len(a) for a in chosen)
    jobs = request.jobs if request.jobs is not None else usable_cpus()
    show = request.progress(nr_sample, page_size) if request.progress is not None else None
    scan = measure_sample(
        census.targets,
        batches,
        compressors,
        population=population,
        page_size=page_size,
        full=full,
        jobs=jobs,
        progress=show,
    )
    t_scan = time.monotonic()
    sample = scan.sample
    if sample.n == 0:
        if scan.interrupted:
            from zswap_core.cli._signals import Terminated

            raise Terminated(scan.signum or 2)
        raise AdviseError("nothing to advise on: every sampled page vanished before it was read")
    models: dict[str, PoolModel] = {}
    stopped: list[bool] = []
    estimates = _estimate_all(sample, compressors, zpools, profile, request, models, stopped)
    if stopped and not estimates:
        from zswap_core.cli._signals import Terminated

        raise Terminated(2)
    t_estimate = time.monotonic()
    report: dict[str, Any] = {
        "kernel": {
            "profile": profile.name,
            "release": profile.release,
            "from_host": bool(getattr(profile, "from_host", profile.name == "host")),
        },
        "targets": _targets_json(census),
        "skipped": list(skipped),
        "population": {
            "pages": population,
            "bytes": population * page_size,
            "zero_page": census.nr_zero_page,
            "swapped": census.nr_swapped,
            "not_present": census.nr_not_present,
            "shmem": census.nr_shmem,
            "zero_page_detection": census.zero_page_detection,
        },
        "sample": {
            "mode": "all" if full else "sample",
            "pages": sample.n,
            "bytes_read": sample.n * page_size,
            "seed": request.seed,
            "confidence": request.confidence,
            "vanished": scan.vanished,
            "batches": scan.batches_total,
            "batches_done": scan.batches_done,
            "jobs": min(jobs, len(batches)),
        },
        "results": [_result_json(e) for e in estimates],
        "recommendation": recommend(estimates, request.objective, request.cpu_budget),
    }
    report["what_if"] = what_if(estimates, report["recommendation"], request)
    report["what_if"]["groups"] = group_what_if(
        estimates, report["recommendation"], request.groups, page_size
    )
    report["cold"] = (
        None
        if stopped
        else _cold_report(census, scan, sample, compressors, zpools, profile, request, models)
    )
    how = (
        "in address order (exact)"
        if full
        else "in the sample's address order and as runs of alike objects (the midpoint; "
        "the interval spans both)"
    )
    report["notes"] = [
        *notes,
        "pool bytes: segregated-fit allocators (zsmalloc) from each object size's "
        "steady-state cost plus the population's partly filled granules; zbud/z3fold by "
        f"replaying the object sizes through the real allocator {how}",
    ]
    report["interrupted"] = scan.interrupted or bool(stopped)
    report["timings_s"] = {
        "census": round(t_census - started, 3),
        "read_and_compress": round(t_scan - t_census, 3),
        "estimate": round(t_estimate - t_scan, 3),
    }
    report["elapsed_s"] = round(time.monotonic() - started, 3)
    return report


def _page_size() -> int:
    import os

    return os.sysconf("SC_PAGE_SIZE")


def _cold_flags(census: Any, chosen: Sequence[Any]) -> list[bytes | None] | None:
    """The cold flag of every chosen page (None when the census has no idle info)."""
    import bisect

    if census.cold is None:
        return None
    out: list[bytes | None] = []
    for t, addrs in enumerate(chosen):
        pages, cold = census.pages[t], census.cold[t]
        if len(addrs) == len(pages):
            out.append(bytes(cold))
            continue
        flags = bytearray(len(addrs))
        lo = 0
        for i, a in enumerate(addrs):
            lo = bisect.bisect_left(pages, a, lo)
            flags[i] = cold[lo] if lo < len(pages) and pages[lo] == a else 2
        out.append(bytes(flags))
    return out


def _targets_json(census: Any) -> list[dict[str, Any]]:
    out = []
    for t, target in enumerate(census.targets):
        counts = census.counts[t]
        out.append(
            {
                "kind": target.kind,
                "pid": target.pid,
                "path": target.path,
                "name": target.name,
                "candidates": len(census.pages[t]),
                "zero_page": counts.zero_page,
                "swapped": counts.swapped,
                "shmem": counts.shmem,
                "not_present": counts.not_present,
                "cold": counts.cold,
            }
        )
    return out


def _estimate_all(
    sample: Sample,
    compressors: Sequence[str],
    zpools: Sequence[str],
    profile: Any,
    request: Request,
    models: dict[str, PoolModel],
    stopped: list[bool] | None = None,
) -> list[Estimate]:
    """Every compressor x zpool; ``models`` keeps each allocator's measurements.

    A Ctrl-C between two pairs (with ``stopped`` given) ends the loop: the pairs done
    are returned and ``stopped`` gets an item.
    """
    from zswap_core.cli import _signals

    out: list[Estimate] = []
    try:
        with _signals.at_safe_points() as poll:
            for zp in zpools:
                model = models.get(zp)
                if model is None:
                    model = models[zp] = PoolModel(zp, sample.page_size, seed=request.seed)
                policy = StorePolicy.from_profile(profile, zp, sample.page_size)
                for c in compressors:
                    out.append(estimate_pair(sample, c, model, policy, request.confidence))
                    _test_interrupt(len(out))
                    poll()
    except _signals.Terminated as exc:
        if stopped is None or exc.signum != signal.SIGINT:
            raise
        stopped.append(True)
    out.sort(key=lambda e: (compressors.index(e.compressor), zpools.index(e.zpool)))
    return out


def _test_interrupt(pairs_done: int) -> None:
    """Tests: ``ZSWAP_ADVISE_INTERRUPT_AFTER=pairs:N`` sends SIGINT after N estimates."""
    import os

    after = os.environ.get(INTERRUPT_AFTER_ENV, "")
    if after.startswith("pairs:") and after[6:] == str(pairs_done):
        os.kill(os.getpid(), signal.SIGINT)


def _alias_of(compressor: str) -> str | None:
    """The compressor whose streams ``compressor`` produces byte for byte (lzo-rle: lzo)."""
    from zswap_core import default_registry

    mod = default_registry().require("compressor", compressor)
    return str(getattr(mod.driver, "alias_of", "") or "") or None


def _result_json(e: Estimate) -> dict[str, Any]:
    return {
        "compressor": e.compressor,
        "alias_of": _alias_of(e.compressor),
        "zpool": e.zpool,
        "codec_backend": e.codec_backend,
        "codec_ratio": interval_dict(e.codec_ratio, 3),
        "pool_density": interval_dict(e.pool_density, 3),
        "saved_bytes": interval_dict(e.saved_bytes, None),
        "saved_percent": interval_dict(e.saved_percent, 2),
        "pool_bytes": interval_dict(e.pool_bytes, None),
        "compress_s_per_gib": e.compress,
        "decompress_s_per_gib": e.decompress,
        "cpu_s_per_gib": None if e.cpu_s_per_gib is None else round(e.cpu_s_per_gib, 4),
        "stored_pages": round(e.stored_pages),
        "rejected_pages": round(e.rejected_pages),
        "same_filled_pages": round(e.same_filled_pages),
        "swapcore_zero_pages": round(e.swapcore_pages),
        "stored_raw_pages": round(e.raw_pages),
        "pool_method": e.pool_method,
    }


def recommend(estimates: Sequence[Estimate], objective: str, budget: float) -> dict[str, Any]:
    """The pair the objective picks, and why (in one sentence)."""
    out: dict[str, Any] = {
        "objective": objective,
        "cpu_budget_s_per_gib": budget,
        "compressor": None,
        "zpool": None,
        "why": "",
    }
    rows = [e for e in estimates if e.cpu_s_per_gib is not None]
    if not rows:
        out["why"] = "nothing was measured"
        return out

    def cpu(e: Estimate) -> float:
        return e.cpu_s_per_gib or 0.0

    def saved(e: Estimate) -> float:
        return e.saved_bytes.value

    best_saved = max(saved(e) for e in rows)
    compare_rivals = False
    if best_saved <= 0 and objective != "cpu":
        pick = min(rows, key=lambda e: (cpu(e), -saved(e)))
        # Either nothing compresses, or there is so little that the pool's fixed costs
        # (a partly filled zspage per size class, metadata) outweigh what it saves.
        why = (
            "no setting saves memory on these pages (too few, or too little compresses, "
            "to pay for the pool and its metadata); the cheapest shown"
        )
    elif objective == "saved":
        within = [e for e in rows if cpu(e) <= budget]
        if within:
            pick = max(within, key=lambda e: (saved(e), -cpu(e)))
            compare_rivals = True
            why = (
                f"most memory saved among the pairs within {budget:g} CPU s/GiB "
                "(compress + decompress)"
            )
        else:
            pick = min(rows, key=lambda e: (cpu(e), -saved(e)))
            why = f"no pair is within {budget:g} CPU s/GiB: the cheapest one"
    elif objective == "cpu":
        pick = min(rows, key=lambda e: (round(cpu(e), 3), -saved(e)))
        why = "the least CPU per GiB (compress + decompress); its best allocator"
    else:
        good = [e for e in rows if saved(e) >= BALANCED_SHARE * best_saved]
        pick = min(good, key=lambda e: (cpu(e), -saved(e)))
        why = (
            f"the least CPU among the pairs saving at least {BALANCED_SHARE:.0%} of the best figure"
        )
    rivals = [
        e
        for e in rows
        if e is not pick
        and e.saved_bytes.high is not None
        and pick.saved_bytes.low is not None
        and e.saved_bytes.high >= pick.saved_bytes.low
        and saved(e) <= saved(pick)
        and (objective != "saved" or cpu(e) <= budget)
    ]
    if rivals and compare_rivals:
        names = ", ".join(f"{e.compressor}/{e.zpool}" for e in rivals[:3])
        why += f"; within the interval: {names}"
    out.update(compressor=pick.compressor, zpool=pick.zpool, why=why)
    return out


def what_if(estimates: Sequence[Estimate], rec: dict[str, Any], request: Request) -> dict[str, Any]:
    """For each max_pool_percent: the pool limit, how much of the workload fits, saved.

    The limit counts pool pages only (as zswap's max_pool_percent does); pages kept
    without pool memory (same-filled, zero) always fit. When the pool would pass the
    limit, the share of the compressed pages that fits saves in proportion.
    """
    mem_total = request.ram_bytes
    source = "--ram"
    if mem_total is None:
        mem_total = _meminfo_total()
        source = "/proc/meminfo"
    percents = list(request.max_pool_percent)
    pct_source = "--max-pool-percent"
    if not percents:
        host = _host_max_pool_percent()
        percents = [host if host is not None else 20.0]
        pct_source = "host" if host is not None else "default"
    out: dict[str, Any] = {
        "mem_total_bytes": mem_total,
        "mem_total_source": source,
        "max_pool_percent_source": pct_source,
        "rows": [],
    }
    pick = next(
        (
            e
            for e in estimates
            if e.compressor == rec.get("compressor") and e.zpool == rec.get("zpool")
        ),
        None,
    )
    if pick is None or mem_total is None:
        return out
    pool = pick.pool_bytes.value
    apart = pick.same_filled_pages + pick.swapcore_pages
    in_pool = pick.stored_pages - pick.same_filled_pages
    for p in percents:
        limit = int(mem_total * p / 100)
        share = 1.0 if pool <= 0 else min(1.0, limit / pool)
        held = apart + in_pool
        fits = 100.0 if held <= 0 else 100.0 * (apart + in_pool * share) / held
        saved = pick.saved_same_bytes + (pick.saved_bytes.value - pick.saved_same_bytes) * share
        out["rows"].append(
            {
                "max_pool_percent": p,
                "pool_limit_bytes": limit,
                "compressor": pick.compressor,
                "zpool": pick.zpool,
                "pool_bytes": round(pool),
                "fits_percent": round(fits, 2),
                "saved_bytes": round(saved),
            }
        )
    return out


def group_what_if(
    estimates: Sequence[Estimate],
    rec: dict[str, Any],
    groups: Sequence[tuple[str, int | None, bool]],
    page_size: int,
) -> list[dict[str, Any]]:
    """For each ``--group``: the measured memory in a cgroup with that
    ``memory.zswap.max``, under the recommended compressor and zpool.

    A group is charged the compressed length of its entries (not pool pages); pages
    kept without pool memory charge nothing and always fit, except with max 0, which
    keeps every page out. Past the limit, the share that fits saves in proportion;
    the rest goes to the swap file, or stays in RAM with writeback 0.
    """
    pick = next(
        (
            e
            for e in estimates
            if e.compressor == rec.get("compressor") and e.zpool == rec.get("zpool")
        ),
        None,
    )
    if pick is None or not groups:
        return []
    compressed = pick.stored_pages - pick.same_filled_pages - pick.raw_pages
    ratio = pick.codec_ratio.value if pick.codec_ratio is not None else None
    charged = pick.raw_pages * page_size + (compressed * page_size / ratio if ratio else 0.0)
    held = pick.stored_pages + pick.swapcore_pages
    rows = []
    for name, limit, writeback in groups:
        if limit == 0:
            share, fits, saved = 0.0, 0.0, 0.0
        else:
            share = 1.0 if limit is None or charged <= 0 else min(1.0, limit / charged)
            apart = pick.same_filled_pages + pick.swapcore_pages
            fits = 100.0 if held <= 0 else 100.0 * (apart + (held - apart) * share) / held
            saved = pick.saved_same_bytes + (pick.saved_bytes.value - pick.saved_same_bytes) * share
        rows.append(
            {
                "group": name,
                "zswap_max_bytes": limit,
                "writeback": int(writeback),
                "compressor": pick.compressor,
                "zpool": pick.zpool,
                "charged_bytes": round(charged * share),
                "fits_percent": round(fits, 2),
                "saved_bytes": round(saved),
                "rest": None if fits >= 100.0 else ("swap file" if writeback else "stays in RAM"),
            }
        )
    return rows


def _cold_report(
    census: Any,
    scan: Any,
    sample: Sample,
    compressors: Sequence[str],
    zpools: Sequence[str],
    profile: Any,
    request: Request,
    models: dict[str, PoolModel],
) -> dict[str, Any] | None:
    """The same advice on the cold (idle) part, when the census has idle info."""
    if census.cold is None or scan.cold is None:
        if request.idle is None:
            return None
        return {"method": None, "note": census.idle_note or "no idle information"}
    cold_pop = sum(c.count(1) for c in census.cold)
    keep = [i for i, f in enumerate(scan.cold) if f == 1]
    unknown = sum(1 for f in scan.cold if f == 2)
    out: dict[str, Any] = {
        "method": census.idle_method,
        "interval_s": request.idle_interval,
        "cold_pages": cold_pop,
        "cold_percent": round(100.0 * cold_pop / census.nr_candidates, 2),
        "sampled_cold_pages": len(keep),
        "unknown_pages": unknown,
        "results": [],
        "recommendation": None,
    }
    if census.idle_note:
        out["note"] = census.idle_note
    if not keep or cold_pop <= 0:
        return out
    sub = sample.subset(keep, cold_pop)
    sub.full = sample.full and len(keep) == cold_pop
    est = _estimate_all(sub, compressors, zpools, profile, request, models)
    out["results"] = [_result_json(e) for e in est]
    out["recommendation"] = recommend(est, request.objective, request.cpu_budget)
    return out
