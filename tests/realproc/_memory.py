"""The peak memory of a process and its descendants (its worker processes), sampled.

A thread polls the tree every ``interval`` seconds: the sum of the processes' PSS
(proportional set size: a page shared by k processes counts 1/k in each, so forked
workers sharing their parent's pages are not counted twice), the sum of their RSS (an
upper bound that counts shared pages once per process), and each process's own peak
RSS (VmHWM, kept by the kernel between polls). Polling can miss a peak shorter than
the interval; VmHWM cannot, which is why both are kept.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Measured", "PeakMemory", "run_measured", "tree_pids"]


def tree_pids(root: int) -> list[int]:
    """``root`` and its live descendants (from /proc/PID/task/TID/children)."""
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as fh:
                todo.extend(int(c) for c in fh.read().split())
        except OSError:
            continue  # exited meanwhile
    return out


def _kib(path: str, keys: tuple[str, ...]) -> dict[str, int]:
    found: dict[str, int] = {}
    with open(path) as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key in keys:
                found[key] = int(rest.split()[0])
    return found


@dataclass
class PeakMemory:
    """Polls the tree rooted at ``pid`` in a thread until ``stop()``; figures in KiB."""

    pid: int
    interval: float = 0.02
    peak_pss_kib: int = 0
    peak_rss_kib: int = 0
    hwm_kib: dict[int, int] = field(default_factory=dict)  # per pid, its VmHWM
    polls: int = 0
    processes: int = 0  # the most seen at once

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> PeakMemory:
        self._thread.start()
        return self

    def stop(self) -> PeakMemory:
        self._stop.set()
        self._thread.join()
        return self

    def poll(self) -> None:
        pss = rss = 0
        pids = tree_pids(self.pid)
        for pid in pids:
            with contextlib.suppress(OSError, ValueError):
                roll = _kib(f"/proc/{pid}/smaps_rollup", ("Pss", "Rss"))
                status = _kib(f"/proc/{pid}/status", ("VmHWM",))
                pss += roll.get("Pss", 0)
                rss += roll.get("Rss", 0)
                if "VmHWM" in status:
                    self.hwm_kib[pid] = max(self.hwm_kib.get(pid, 0), status["VmHWM"])
        self.peak_pss_kib = max(self.peak_pss_kib, pss)
        self.peak_rss_kib = max(self.peak_rss_kib, rss)
        self.processes = max(self.processes, len(pids))
        self.polls += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll()
            time.sleep(self.interval)

    @property
    def max_hwm_kib(self) -> int:
        """The largest single process's peak RSS."""
        return max(self.hwm_kib.values(), default=0)


@dataclass
class Measured:
    """A finished command, its output, and its tree's memory."""

    returncode: int
    stdout: str
    stderr: str
    elapsed_s: float
    peak: PeakMemory
    #: wait4's ru_maxrss: the largest peak RSS of the command and of every descendant it
    #: reaped (its workers), exact whatever their lifetimes
    maxrss_kib: int
    #: user + system CPU seconds of the command and its reaped descendants
    cpu_s: float


# The command runs as the child of a small launcher, not of this process: a child's peak
# RSS (ru_maxrss) counts the page tables it inherits at fork, and keeps them across exec,
# so a command forked from a test process holding hundreds of MiB would report that
# process's size as its own. The launcher starts small (a fresh interpreter), forks the
# command, reaps it with wait4 and writes its rusage to a file.
_LAUNCHER = """
import json, os, signal, sys
report, argv = sys.argv[1], sys.argv[2:]
pid = os.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGKILL))
_, status, usage = os.wait4(pid, 0)
with open(report, "w") as fh:
    json.dump({"status": status, "maxrss": usage.ru_maxrss,
               "cpu": usage.ru_utime + usage.ru_stime}, fh)
"""


def run_measured(argv: Sequence[str], workdir: Path, timeout: float = 600.0) -> Measured:
    """Run ``argv`` with its tree's memory polled; output through files (no pipe to
    fill while this thread waits)."""
    out, err, rep = workdir / "stdout", workdir / "stderr", workdir / "rusage.json"
    rep.unlink(missing_ok=True)
    with open(out, "wb") as fo, open(err, "wb") as fe:
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-S", "-c", _LAUNCHER, str(rep), *argv], stdout=fo, stderr=fe
        )
    peak = PeakMemory(proc.pid).start()
    try:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.terminate()  # the launcher kills the command, then reports
            proc.wait()
        elapsed = time.monotonic() - t0
    finally:
        peak.stop()
    usage = json.loads(rep.read_text())
    return Measured(
        os.waitstatus_to_exitcode(usage["status"]),
        out.read_text(),
        err.read_text(errors="replace"),
        elapsed,
        peak,
        usage["maxrss"],
        usage["cpu"],
    )
