"""Read and compress the sample in worker processes, batch by batch.

The sample (per target, sorted addresses) is cut into batches of at most
``BATCH_PAGES`` pages by striding: batch ``j`` of ``K`` takes the sample's pages
``j, j + K, j + 2K, ...`` (in address order across all targets). Each batch is thus a
systematic subsample of the whole address space, so the batches finished when Ctrl-C
comes are still a fair sample, and the timing batches are alike.

Workers are forked after the census (they inherit the loaded plugins) and each reads
its batch's pages itself from ``/proc/PID/mem`` (``read_pages``), compresses them with
every codec and sends back only the per-page kind and sizes (a few bytes per page) and
the CPU times. The parent holds the addresses (8 bytes a sampled page) and the results
(1 + 4 x codecs bytes a page); a worker holds one batch (about 1 MiB of pages, twice
that while compressed and decompressed copies exist).
"""

from __future__ import annotations

import os
import signal
import threading
import traceback
from array import array
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._estimate import CodecSample, Sample
from ._measure import BatchResult, Codecs, compress_batch, size_typecode

__all__ = [
    "BATCH_PAGES",
    "INTERRUPT_AFTER_ENV",
    "Batch",
    "ScanResult",
    "make_batches",
    "measure_sample",
    "usable_cpus",
]

BATCH_PAGES = 256
MAX_JOBS = 1024


@dataclass
class Batch:
    """Pages to read: per part, a target index, its addresses and their cold flags."""

    index: int
    parts: list[tuple[int, array[int], bytes | None]] = field(default_factory=list)

    @property
    def nr_pages(self) -> int:
        return sum(len(a) for _, a, _ in self.parts)


@dataclass
class ScanResult:
    """The measured sample, in address order, and what happened while reading it."""

    sample: Sample
    cold: bytearray | None  #: per sampled page: 1 cold, 0 hot, 2 unknown (a page vanished)
    vanished: int
    pages_read: int
    batches_done: int
    batches_total: int
    interrupted: bool = False
    signum: int | None = None


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def make_batches(
    chosen: Sequence[array[int]], cold: Sequence[bytes | None] | None = None
) -> list[Batch]:
    """Strided batches over the chosen addresses (per target, sorted)."""
    total = sum(len(a) for a in chosen)
    k = max(1, -(-total // BATCH_PAGES))
    batches = [Batch(j) for j in range(k)]
    g0 = 0  # global index of the target's first page
    for t, addrs in enumerate(chosen):
        flags = cold[t] if cold is not None else None
        for j in range(k):
            first = (j - g0) % k  # first local index i with (g0 + i) % k == j
            if first >= len(addrs):
                continue
            part = addrs[first::k]
            batches[j].parts.append((t, part, None if flags is None else flags[first::k]))
        g0 += len(addrs)
    return batches


def _read_and_measure(batch: Batch, targets: Sequence[Any], codecs: Codecs) -> BatchResult:
    from ._scan import read_pages

    pages: list[bytes] = []
    vanished = 0
    cold: bytearray | None = bytearray()
    for t, addrs, flags in batch.parts:
        lost = [0]
        got = list(read_pages(targets[t], addrs, vanished=lost))
        pages.extend(got)
        vanished += lost[0]
        if cold is not None and flags is not None and not lost[0]:
            cold += flags
        else:
            cold = None
    out = compress_batch(batch.index, pages, codecs)
    out.vanished = vanished
    out.cold = bytes(cold) if cold is not None else None
    return out


def measure_sample(
    targets: Sequence[Any],
    batches: list[Batch],
    compressors: Sequence[str],
    *,
    population: int,
    page_size: int,
    full: bool,
    jobs: int,
    progress: Callable[[int], None] | None = None,
    poll_interrupt: bool = True,
) -> ScanResult:
    """Measure every batch (in ``jobs`` workers; 1: in this process), in address order.

    A SIGINT (``_signals.Terminated``) during the run stops it and returns what was
    finished, ``interrupted`` set; any other signal or error ends the workers and goes on.
    """
    from zswap_core.cli import _signals

    done: dict[int, BatchResult] = {}
    interrupted = False
    signum: int | None = None
    try:
        if jobs <= 1 or len(batches) <= 1:
            codecs = Codecs(compressors)
            try:
                with _signals.at_safe_points() as poll:
                    for b in batches:
                        done[b.index] = _read_and_measure(b, targets, codecs)
                        _finished(len(done), b, progress)
                        poll()
            finally:
                codecs.close()
        else:
            _parallel(targets, batches, compressors, min(jobs, len(batches)), done, progress)
    except _signals.Terminated as exc:
        if exc.signum != signal.SIGINT or not poll_interrupt:
            raise
        interrupted, signum = True, exc.signum
    return _assemble(batches, done, compressors, population, page_size, full, interrupted, signum)


#: Tests: after this many finished batches ("N", or "N:TERM" for SIGTERM) this process
#: sends itself SIGINT (a Ctrl-C at a known point, whatever the machine's speed);
#: "pairs:N": after N estimated compressor x zpool pairs.
INTERRUPT_AFTER_ENV = "ZSWAP_ADVISE_INTERRUPT_AFTER"


def _finished(count: int, batch: Batch, progress: Callable[[int], None] | None) -> None:
    if progress is not None:
        progress(batch.nr_pages)
    after = os.environ.get(INTERRUPT_AFTER_ENV)  # "N" (SIGINT) or "N:TERM"
    if after:
        n, _, sig = after.partition(":")
        if n.isdigit() and count == int(n):
            os.kill(os.getpid(), signal.SIGTERM if sig == "TERM" else signal.SIGINT)


def _assemble(
    batches: list[Batch],
    done: dict[int, BatchResult],
    compressors: Sequence[str],
    population: int,
    page_size: int,
    full: bool,
    interrupted: bool,
    signum: int | None,
) -> ScanResult:
    """Interleave the finished batches back into address order."""
    k = len(batches)
    sample = Sample(population, page_size)
    code = size_typecode(page_size)
    results = [done.get(j) for j in range(k)]
    kinds = [r.kinds if r is not None else b"" for r in results]
    sizes = {
        c: [array(code, r.sizes[c]) if r is not None else array(code) for r in results]
        for c in compressors
    }
    have_cold = all(b.parts and all(f is not None for _, _, f in b.parts) for b in batches)
    cold: bytearray | None = bytearray() if have_cold else None
    colds = [
        (r.cold if r.cold is not None else b"\x02" * len(r.kinds)) if r is not None else b""
        for r in results
    ]
    longest = max((len(x) for x in kinds), default=0)
    kind_out = bytearray()
    size_out = {c: array(code) for c in compressors}
    for pos in range(longest):
        for j in range(k):
            if pos < len(kinds[j]):
                kind_out.append(kinds[j][pos])
                for c in compressors:
                    size_out[c].append(sizes[c][j][pos])
                if cold is not None:
                    cold.append(colds[j][pos])
    sample.kinds = kind_out
    for c in compressors:
        backend = next((r.backend.get(c, "") for r in results if r is not None), "")
        cs = CodecSample(c, backend or "c")
        cs.sizes = size_out[c]
        for r in results:
            if r is None or not r.kinds:
                continue
            cs.compress_ns.append(r.compress_ns[c])
            cs.decompress_ns.append(r.decompress_ns[c])
            cs.batch_bytes.append(r.nbytes)
        sample.codecs[c] = cs
    vanished = sum(r.vanished for r in results if r is not None)
    sample.full = full and not interrupted and not vanished and len(kind_out) == population
    return ScanResult(
        sample=sample,
        cold=cold,
        vanished=vanished,
        pages_read=len(kind_out),
        batches_done=len(done),
        batches_total=k,
        interrupted=interrupted,
        signum=signum,
    )


# -- worker processes ----------------------------------------------------------------------


def _parallel(
    targets: Sequence[Any],
    batches: list[Batch],
    compressors: Sequence[str],
    workers: int,
    done: dict[int, BatchResult],
    progress: Callable[[int], None] | None,
) -> None:
    """Run the batches in ``workers`` processes, filling ``done`` as they finish.

    On any exception (a signal included) the workers are terminated first; ``done``
    keeps what finished.
    """
    import multiprocessing
    from multiprocessing.connection import wait

    from zswap_core.cli import _signals
    from zswap_core.cli._common import CliError

    method = "fork" if threading.active_count() == 1 else "spawn"
    if method not in multiprocessing.get_all_start_methods():
        method = "spawn"
    ctx: Any = multiprocessing.get_context(method)
    queue = deque(batches)
    procs: list[tuple[Any, Any]] = []
    busy: dict[Any, tuple[Any, Batch]] = {}
    try:
        with _signals.at_safe_points() as poll:
            for _ in range(workers):
                here, there = ctx.Pipe()
                proc = ctx.Process(
                    target=_worker,
                    args=(there, list(targets), list(compressors), os.getpid()),
                    name="zswap-advise",
                    daemon=True,
                )
                with _signals.blocked_while_starting():
                    proc.start()
                there.close()
                procs.append((proc, here))
                b = queue.popleft()
                here.send(b)
                busy[here] = (proc, b)
            while busy:
                poll()
                ready = wait([*busy, *(p.sentinel for p, _ in busy.values())], timeout=0.25)
                for conn in [c for c in busy if c in ready]:
                    proc, b = busy.pop(conn)
                    try:
                        status, value = conn.recv()
                    except EOFError:
                        raise _died(proc) from None
                    if status != "ok":
                        raise CliError(str(value))
                    done[b.index] = value
                    nxt = queue.popleft() if queue else None
                    conn.send(nxt)
                    if nxt is not None:
                        busy[conn] = (proc, nxt)
                    _finished(len(done), b, progress)
                for proc, _b in list(busy.values()):
                    if proc.sentinel in ready and not proc.is_alive():
                        raise _died(proc)
        for proc, _ in procs:
            proc.join()
    finally:
        _signals.end_workers(proc for proc, _ in procs)
        for _, conn in procs:
            conn.close()


def _died(proc: Any) -> Exception:
    from zswap_core.cli._common import CliError

    proc.join()
    code = proc.exitcode
    how = f"signal {signal.Signals(-code).name}" if code and code < 0 else f"status {code}"
    return CliError(f"a worker process reading pages ended with {how}")


def _worker(conn: Any, targets: list[Any], compressors: list[str], parent: int) -> None:
    """Measure batches from ``conn`` until None (or the parent is gone)."""
    from zswap_core.cli import _signals

    _signals.worker_setup(parent)
    codecs = Codecs(compressors)
    try:
        while True:
            try:
                batch = conn.recv()
            except (EOFError, OSError):
                return
            if batch is None:
                return
            try:
                reply: tuple[str, Any] = ("ok", _read_and_measure(batch, targets, codecs))
            except Exception as exc:
                if os.environ.get("ZSWAP_DEBUG"):
                    traceback.print_exc()
                reply = ("error", f"{type(exc).__name__}: {exc}")
            conn.send(reply)
    finally:
        codecs.close()
