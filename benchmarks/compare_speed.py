#!/usr/bin/env python3
"""Wall time of ``zswap compare --pid`` on 100 MiB of a real process's memory.

    python benchmarks/compare_speed.py [--baseline-zswap PATH] [--zswap PATH] [--serial]
                                       [--pages N] [--heap-mib M] [-- EXTRA COMPARE ARGS]

Starts a Python process that builds a realistic heap (dicts of records, English-like
text, lists of numbers, byte strings of varied entropy; about ``--heap-mib`` MiB of
RSS) and sleeps; runs ``zswap compare --pid PID --pages N --json`` on it with the
current ``zswap`` (this tree's venv by default) and, if given, a baseline one (e.g. a
clone at an older commit with its own ``python3 dev.py setup``), and with ``--serial``
the current one with ``--jobs 1`` too. All read the same process, which does not
change while it sleeps. Prints each run's wall and CPU time (its own and its workers'),
the speedup of the current run over the others, and whether the non-timing results
(everything but ``store_us``/``load_us``, over the keys both have) agree. Page contents
are never printed.

On a machine shared with other work the wall times say little: the load average
before each run is printed beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TIMINGS = ("store_us", "load_us")

_TEXT = (
    "the of and to in is was that for on with as by at from his her which this are be "
    "have had not but were all they one been their there would what so if when who will "
    "more no out up into do time can only other new some could these two may first then "
    "memory page swap pool compressed kernel allocator object handle entry store load"
)
_WORDS = _TEXT.split()


def build_heap(mib: int, seed: int = 1) -> list[Any]:
    """About ``mib`` MiB of mixed Python objects, the kinds a long-running service holds."""
    import array
    import random

    rnd = random.Random(seed)
    keep: list[Any] = []
    unit = mib / 230  # the shares below come to about 230 MiB of RSS
    # records: dicts with short strings, ints, floats, small lists (about 60 MiB)
    records = []
    for i in range(int(200_000 * unit)):
        records.append(
            {
                "id": i,
                "name": f"user{i:07d}",
                "email": f"{rnd.choice(_WORDS)}.{i}@example.{rnd.choice(('com', 'org', 'net'))}",
                "score": rnd.random() * 1000,
                "visits": rnd.randrange(10_000),
                "tags": [rnd.choice(_WORDS) for _ in range(rnd.randrange(1, 5))],
                "active": rnd.random() < 0.7,
            }
        )
    keep.append(records)
    # text: English-like lines (about 35 MiB)
    text = []
    for _ in range(int(120_000 * unit)):
        n = rnd.randrange(20, 80)
        text.append(" ".join(rnd.choice(_WORDS) for _ in range(n)))
    keep.append(text)
    # numbers: arrays of doubles and ints, a list of boxed floats (about 30 MiB)
    keep.append(array.array("d", (rnd.gauss(0, 1) for _ in range(int(1_500_000 * unit)))))
    keep.append(array.array("q", (rnd.randrange(1 << 20) for _ in range(int(1_000_000 * unit)))))
    keep.append([rnd.random() for _ in range(int(400_000 * unit))])
    # byte strings: random (incompressible), repetitive and zero-filled (about 25 MiB)
    keep.append([rnd.randbytes(rnd.randrange(256, 8192)) for _ in range(int(1_200 * unit))])
    keep.append(
        [bytes([rnd.randrange(4)]) * rnd.randrange(64, 4096) for _ in range(int(5_000 * unit))]
    )
    blob = bytearray(int(8 * unit) << 20)
    for off in range(0, len(blob), 4096 * 7):  # touched, so present; mostly zeros
        blob[off : off + 64] = rnd.randbytes(64)
    keep.append(blob)
    return keep


def _child(mib: int) -> None:
    heap = build_heap(mib)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sys.stdin.read()  # sleep until the parent closes our stdin
    del heap


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def run_compare(
    zswap: str, pid: int, pages: int, extra: list[str]
) -> tuple[float, float, dict[str, Any]]:
    """(wall seconds, CPU seconds of it and its workers, the JSON output) of one run."""
    cmd = [zswap, "compare", "--pid", str(pid), "--pages", str(pages), "--json", *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if r.returncode != 0:
        raise SystemExit(f"{zswap} compare failed ({r.returncode}): {r.stderr.strip()}")
    return wall, cpu, json.loads(r.stdout)


def non_timing(out: dict[str, Any]) -> dict[str, Any]:
    """The output without the timings (and without keys only one version has)."""
    rows = [{k: v for k, v in row.items() if k not in TIMINGS} for row in out["results"]]
    return {**{k: v for k, v in out.items() if k != "results"}, "results": rows}


def differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Values that differ, over the keys both outputs have (a baseline from before a
    rename, e.g. ratio/density -> codec_ratio/pool_density, has other keys: see
    :func:`key_changes`)."""
    diffs = [
        f"{k}: {a[k]!r} != {b[k]!r}"
        for k in sorted(set(a) & set(b))
        if k != "results" and a[k] != b[k]
    ]
    ra, rb = a["results"], b["results"]
    if len(ra) != len(rb):
        return [*diffs, f"{len(ra)} rows != {len(rb)} rows"]
    for x, y in zip(ra, rb, strict=True):
        for k in sorted(set(x) & set(y)):
            if x[k] != y[k]:
                diffs.append(f"{x['compressor']}/{x['zpool']} {k}: {x[k]!r} != {y[k]!r}")
    return diffs


def key_changes(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Keys only one of the two outputs has (top level and rows), to be told, not compared."""
    rows_a = set().union(*(r.keys() for r in a["results"])) if a["results"] else set()
    rows_b = set().union(*(r.keys() for r in b["results"])) if b["results"] else set()
    out = []
    for where, ka, kb in (("", set(a), set(b)), ("rows: ", rows_a, rows_b)):
        if ka - kb:
            out.append(f"{where}only the first has {sorted(ka - kb)}")
        if kb - ka:
            out.append(f"{where}only the second has {sorted(kb - ka)}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline-zswap", help="the zswap script of the baseline venv")
    ap.add_argument(
        "--zswap", default=str(ROOT / ".venv" / "bin" / "zswap"), help="the current zswap script"
    )
    ap.add_argument(
        "--serial", action="store_true", help="also run the current zswap with --jobs 1"
    )
    ap.add_argument("--pages", type=int, default=25600, help="pages to compare (default 100 MiB)")
    ap.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run each version this many times, alternating; the fastest run of each counts",
    )
    ap.add_argument("--save", metavar="DIR", help="write each run's JSON output into DIR")
    ap.add_argument("--heap-mib", type=int, default=150, help="RSS of the process, about")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("extra", nargs="*", help="more `zswap compare` arguments (after --)")
    args = ap.parse_args()
    if args.child is not None:
        _child(args.child)
        return 0
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", str(args.heap_mib)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise SystemExit("the heap process did not start")
        rss = _rss_mib(proc.pid)
        print(f"process {proc.pid}: {rss:.0f} MiB RSS; zswap compare --pages {args.pages}")
        plan = []
        if args.baseline_zswap:
            plan.append(("baseline", args.baseline_zswap, args.extra))
        if args.serial:
            plan.append(("current --jobs 1", args.zswap, [*args.extra, "--jobs", "1"]))
        plan.append(("current", args.zswap, args.extra))
        runs: dict[str, tuple[float, float, dict[str, Any]]] = {}
        for rnd in range(args.rounds):
            for name, zswap, extra in plan:
                load = os.getloadavg()[0]
                run = run_compare(zswap, proc.pid, args.pages, extra)
                if name not in runs or run[0] < runs[name][0]:
                    runs[name] = run
                print(
                    f"{name + ':':<18}{run[0]:7.1f} s wall, {run[1]:6.1f} s CPU "
                    f"(load average before: {load:.1f})  {zswap}",
                    flush=True,
                )
                if args.save:
                    out = Path(args.save) / f"{name.replace(' ', '').replace('-', '')}-{rnd}.json"
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_text(json.dumps(run[2], indent=1))
        if args.rounds > 1:
            for name, run in runs.items():
                print(f"{name + ':':<18}{run[0]:7.1f} s wall at best")
        print(f"source: {runs['current'][2]['source']}")
        ok = True
        for name in ("baseline", "current --jobs 1"):
            if name not in runs:
                continue
            print(f"speedup over {name}: {runs[name][0] / runs['current'][0]:.2f}x")
            old, new = non_timing(runs[name][2]), non_timing(runs["current"][2])
            for change in key_changes(old, new):
                print(f"  keys: {change}")
            diffs = differences(old, new)
            if diffs:
                ok = False
                print(f"  non-timing results differ from {name} ({len(diffs)}):")
                for d in diffs[:20]:
                    print(f"    {d}")
            else:
                print(f"  non-timing results equal ({len(runs[name][2]['results'])} pairs)")
        return 0 if ok else 1
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    sys.exit(main())
