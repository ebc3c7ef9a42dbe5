#!/usr/bin/env python
"""Run the stress suite's long profile by hand and print its figures.

    .venv/bin/python tests/stress/run_long.py --seconds 600
    .venv/bin/python tests/stress/run_long.py --seconds 300 --config 1 --json out.json

Runs each stress configuration of ``test_stress.py`` (or one, ``--config``) for
``--seconds`` in a temporary directory and prints: operations by kind, threads,
parameter flips (and the fast ``exclusive_loads`` flips), writebacks, compactions,
swapon/swapoff churn, what the raising observer and plugins raised, pages lost and
wrong pages. Exits 1 if any page was lost or wrong, any thread failed, any check at
the end failed, or a thread hung (its stacks are printed).

The core's own log records (a raising plugin's cleanup is logged each time) are
counted, not printed, and their count shown per configuration.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from test_stress import CONFIGS, StressHang, StressReport, check_report, run_stress  # noqa: E402


class _Counting(logging.Handler):
    """Counts the core's log records by level instead of printing thousands of them."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: collections.Counter[str] = collections.Counter()
        self.first: dict[str, str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[record.levelname] += 1
        self.first.setdefault(record.levelname, record.getMessage())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=600.0, help="per configuration")
    ap.add_argument("--config", type=int, choices=range(len(CONFIGS)), help="only this one")
    ap.add_argument("--workers", type=int, help="override the worker threads")
    ap.add_argument("--seed", type=int, help="override the seed")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)

    configs = [CONFIGS[args.config]] if args.config is not None else CONFIGS
    results: list[dict[str, object]] = []
    failed = False
    for i, base in enumerate(configs):
        cfg = dict(base)
        if args.workers is not None:
            cfg["workers"] = args.workers
        if args.seed is not None:
            cfg["seed"] = args.seed
        print(f"== configuration {i}: {cfg}, {args.seconds:.0f} s", flush=True)
        t0 = time.monotonic()
        counting = _Counting()
        core_log = logging.getLogger("zswap_core")
        core_log.addHandler(counting)
        core_log.propagate = False
        with tempfile.TemporaryDirectory(prefix="zswap-stress-") as d:
            try:
                rep: StressReport = run_stress(
                    Path(d),
                    seconds=args.seconds,
                    progress=lambda msg: print("   ", msg, flush=True),
                    **cfg,
                )
            except StressHang as exc:
                print(f"HANG: {exc}", flush=True)
                return 1
            finally:
                core_log.removeHandler(counting)
                core_log.propagate = True
        print("\n".join("    " + line for line in rep.lines()), flush=True)
        print(f"    core log records         {dict(counting.counts) or 0}", flush=True)
        for level, msg in sorted(counting.first.items()):
            print(f"      first {level}: {msg}", flush=True)
        try:
            check_report(rep)
            verdict = "OK"
        except AssertionError as exc:
            failed = True
            verdict = f"FAILED: {str(exc).splitlines()[0]}"
        print(f"    result: {verdict} ({time.monotonic() - t0:.0f} s with checks)", flush=True)
        row = {f.name: getattr(rep, f.name) for f in fields(rep)}
        for key in ("ops", "flips", "flips_refused", "observer_raises", "plugin_cleanup_raises"):
            row[key] = dict(row[key])  # (asdict() mangles Counters)
        row.update(config=cfg, total_ops=rep.total_ops, verdict=verdict)
        row["core_log_records"] = dict(counting.counts)
        row["pools_seen"] = len(rep.pools_seen)
        results.append(row)

    total_ops = sum(int(r["total_ops"]) for r in results)  # type: ignore[call-overload]
    print(
        f"== total: {total_ops} operations, "
        f"{sum(r['lost_pages'] for r in results)} pages lost, "  # type: ignore[misc]
        f"{sum(r['wrong_pages'] for r in results)} wrong pages",  # type: ignore[misc]
        flush=True,
    )
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
