"""Run the thread-dependent tests many times in a row, beside CPU-burning processes.

Issue 12 asks that no test pass or fail by luck. This script is the proof: every test
that uses threads (listed in ``THREAD_TESTS``, by node id) runs ``--runs`` times in a
row (one pytest process per run) while ``--burners`` processes spin on the CPU, and
the summary gives runs, failures, failures per test and the time taken. The exit
status is 1 if any run failed.

    .venv/bin/python tests/flake_check.py                # 30 runs, 2 burners
    .venv/bin/python tests/flake_check.py --runs 5 --burners 0

Not a test module (pytest collects ``test_*.py`` only); run it by hand, or in CI
after the suite.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Every test that uses threads, by node id (a node id without [params] runs them all).
THREAD_TESTS = (
    # the conformance kit: broken drivers caught, correct ones passed, the interleaver
    "tests/test_conformance_kit.py::test_broken_drivers_are_caught",
    "tests/test_conformance_kit.py::test_the_same_drivers_without_the_bugs_pass",
    "tests/test_conformance_kit.py::test_interleaver_forces_a_lost_update_every_run",
    "tests/test_conformance_kit.py::test_interleaver_with_a_watched_lock_loses_nothing_and_never_stalls",
    "tests/test_conformance_kit.py::test_interleaver_with_a_lock_it_cannot_see_stalls_and_gives_up",
    "tests/test_conformance_kit.py::test_interleaver_reports_where_the_probe_failed",
    "tests/test_conformance_kit.py::TestReferencePagePool::test_threads[page4096]",
    "tests/test_conformance_kit.py::TestReferencePagePool::test_zswap_threads[page4096]",
    "tests/test_conformance_kit.py::TestReferenceDeflate::test_threads[page4096]",
    "tests/test_conformance_kit.py::TestReferenceDeflate::test_zswap_threads[page4096]",
    # the kit's thread tests on every bundled plugin (at one page size: the schedules
    # are the same at every size, and a run must stay short)
    # (zsmalloc: on the C pool and on the Python one)
    "plugins/zpools/zsmalloc/tests/test_zsmalloc_conformance.py::TestZsmalloc::test_threads[page4096-native]",
    "plugins/zpools/zsmalloc/tests/test_zsmalloc_conformance.py::TestZsmalloc::test_threads[page4096-python]",
    "plugins/zpools/zsmalloc/tests/test_zsmalloc_conformance.py::TestZsmalloc::test_zswap_threads[page4096-native]",
    "plugins/zpools/zsmalloc/tests/test_zsmalloc_conformance.py::TestZsmalloc::test_zswap_threads[page4096-python]",
    "plugins/zpools/zbud/tests/test_zbud_conformance.py::TestZbud::test_threads[page4096]",
    "plugins/zpools/zbud/tests/test_zbud_conformance.py::TestZbud::test_zswap_threads[page4096]",
    "plugins/zpools/z3fold/tests/test_z3fold_conformance.py::TestZ3fold::test_threads[page4096]",
    "plugins/zpools/z3fold/tests/test_z3fold_conformance.py::TestZ3fold::test_zswap_threads[page4096]",
    "plugins/compressors/lz4/tests/test_lz4_conformance.py::TestLZ4::test_threads[page4096]",
    "plugins/compressors/lz4/tests/test_lz4_conformance.py::TestLZ4HC::test_threads[page4096]",
    "plugins/compressors/zstd/tests/test_zstd_conformance.py::TestZstd::test_threads[page4096]",
    "plugins/compressors/lzo/tests/test_lzo_conformance.py::TestLZO::test_threads[page4096]",
    "plugins/compressors/deflate/tests/test_deflate_conformance.py::TestDeflate::test_threads[page4096]",
    "plugins/compressors/zstd/tests/test_zstd_plugin.py::TestZstdLevel::test_threads_while_level_changes",
    "plugins/compressors/deflate/tests/test_deflate_plugin.py::TestDeflateLevel::test_threads_while_level_changes",
    # the native core: writeback pins with forced waits, re-entrant hooks, the
    # differential tests (both backends in one process)
    "tests/test_native_core.py::test_a_plain_load_of_a_pinned_entry_returns_at_once",
    "tests/test_native_core.py::test_writers_wait_for_a_pinned_entry",
    "tests/test_native_core.py::test_the_pin_goes_when_the_handler_raises",
    "tests/test_native_core.py::test_the_pin_goes_when_the_handler_raises_a_base_exception",
    "tests/test_native_core.py::test_hooks_can_call_back_into_the_same_zswap",
    "tests/test_backend_differential.py",
    # the GIL-free paths: forced interleavings inside the codec, threads on two cores
    # against a model, the C zsmalloc's pthreads without the GIL, the codec ops' threads
    "tests/test_native_nogil.py",
    "tests/test_native_threads.py",
    # shared_zpool and compressor flipping while four threads store and load
    "tests/test_shared_zpool.py::test_switches_under_threads_lose_no_page",
    # groups: four threads store, load and free while limits and writeback change
    "tests/test_memcg.py::test_threads_keep_charges_exact",
    "tests/test_native_fuzz.py",
    "plugins/zpools/zsmalloc/tests/test_zsmalloc_threads.py",
    "tests/test_codec_ops_plugins.py",
    # the core, the swap layer and the registry
    "tests/test_zswap_core.py::test_params_switch_at_every_line_of_store_load_invalidate",
    "tests/test_zswap_core.py::test_store_load_invalidate_at_every_line_of_a_switch",
    "tests/test_zswap_core.py::test_threads_store_load_invalidate_while_params_flip",
    "tests/test_swap_layer.py::test_swap_ops_at_every_line_of_each_other",
    "tests/test_swap_layer.py::test_threads_swap_out_in_free",
    "tests/test_writeback.py::test_loads_race_writeback",
    "tests/test_writeback.py::test_swap_free_races_writeback",
    "tests/test_writeback.py::test_writeback_when_the_limit_is_hit",
    "tests/test_writeback.py::test_worker_brings_pool_under_accept_threshold",
    "tests/test_writeback.py::test_worker_gives_up_on_failing_writes_and_recovers",
    "tests/test_registry.py::test_two_threads_import_once",
    "tests/test_param_lock_deadlock.py",
)

BURN = "while True: pass"


def start_burners(n: int) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen([sys.executable, "-c", BURN]) for _ in range(n)]


def stop_burners(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()


def run_once(tests: list[str], xml: Path, extra: list[str]) -> tuple[int, dict[str, str]]:
    """One pytest process over ``tests``: its exit status and each test's outcome."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", f"--junitxml={xml}"]
    proc = subprocess.run(
        [*cmd, *extra, *tests], cwd=ROOT, capture_output=True, text=True, check=False
    )
    outcomes: dict[str, str] = {}
    if xml.exists():
        for case in ET.parse(xml).getroot().iter("testcase"):
            name = f"{case.get('classname')}::{case.get('name')}"
            kinds = {child.tag for child in case}
            if kinds & {"failure", "error"}:
                outcomes[name] = "failed"
            elif "skipped" in kinds:
                outcomes[name] = "skipped"
            else:
                outcomes[name] = "passed"
    if proc.returncode not in (0, 1) or (proc.returncode == 1 and not outcomes):
        outcomes["<pytest itself>"] = "failed"
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-40:])
        print(f"    pytest exit status {proc.returncode}:\n{tail}", flush=True)
    return proc.returncode, outcomes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=30, help="runs in a row (default 30)")
    ap.add_argument(
        "--burners", type=int, default=2, help="CPU-burning processes beside them (default 2)"
    )
    ap.add_argument("--list", action="store_true", help="print the tests and exit")
    ap.add_argument("tests", nargs="*", help="node ids instead of the thread tests")
    args, extra = ap.parse_known_args(argv)
    tests = args.tests or list(THREAD_TESTS)
    if args.list:
        print("\n".join(tests))
        return 0

    print(
        f"flake check: {len(tests)} node ids, {args.runs} runs, {args.burners} CPU burners, "
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}",
        flush=True,
    )
    # a kill ends the runs as Ctrl-C does: the burners are stopped on the way out
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    failed_runs = 0
    per_test: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    durations: list[float] = []
    burners = start_burners(args.burners)
    start = time.monotonic()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for i in range(1, args.runs + 1):
                t0 = time.monotonic()
                status, outcomes = run_once(tests, Path(tmp) / f"run{i}.xml", extra)
                durations.append(time.monotonic() - t0)
                counts.update(outcomes.values())
                bad = sorted(name for name, outcome in outcomes.items() if outcome == "failed")
                per_test.update(bad)
                failed_runs += bool(bad) or status != 0
                print(
                    f"run {i:3d}/{args.runs}: {durations[-1]:6.1f}s  "
                    f"{sum(o == 'passed' for o in outcomes.values())} passed"
                    + (f", FAILED: {', '.join(bad)}" if bad else "")
                    + ("" if status == 0 or bad else f", pytest exit status {status}"),
                    flush=True,
                )
    finally:
        stop_burners(burners)
    total = time.monotonic() - start

    print()
    print(f"runs:            {args.runs} (one pytest process each, {len(tests)} node ids)")
    print(f"load:            {args.burners} CPU-burning processes on {os.cpu_count()} CPUs")
    print(f"failed runs:     {failed_runs}")
    print(
        f"test results:    {counts['passed']} passed, {counts['failed']} failed, "
        f"{counts['skipped']} skipped"
    )
    if durations:
        print(
            f"time:            {total:.0f}s in all; per run {min(durations):.1f}s min, "
            f"{sum(durations) / len(durations):.1f}s mean, {max(durations):.1f}s max"
        )
    if per_test:
        print("failures per test:")
        for name, n in per_test.most_common():
            print(f"  {n:3d}  {name}")
    else:
        print("failures per test: none")
    return 1 if failed_runs else 0


if __name__ == "__main__":
    sys.exit(main())
