"""The measuring machinery of ``benchmarks/run.py`` (also used by the regression test).

Rules every timing here follows:

* all contenders see the same pages (a seeded :class:`SyntheticSource` mix) and the
  same load order (a seeded shuffle);
* repeats are interleaved (A, B, C, then C, B, A, ...) so drift on a noisy machine
  hits every contender alike; each figure is the median over the repeats, reported
  with its spread ((max - min) / median);
* a round times a fresh store: ``open`` and ``close`` are untimed, the cyclic GC is
  collected before and disabled during the timed loops (as ``timeit`` does);
* every round's results are checked afterwards (untimed) on the first repeat.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from zswap_core.workload import SyntheticSource, is_same_filled

from ._peers import PAGE_SIZE, Contender, _lz4c

__all__ = [
    "Figure",
    "Result",
    "Times",
    "density",
    "load_order",
    "machine_info",
    "make_pages",
    "measure_import",
    "measure_metadata",
    "page_mix",
    "paired_ratios",
    "ratio",
    "run_interleaved",
]


# ---------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------


@dataclass
class Figure:
    """Per-repeat samples of one quantity (µs per page unless said otherwise)."""

    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def spread_pct(self) -> float:
        """(max - min) / median, in percent: the noise of this figure."""
        if len(self.samples) < 2:
            return 0.0
        return 100.0 * (max(self.samples) - min(self.samples)) / self.median

    @property
    def cv_pct(self) -> float:
        """Coefficient of variation (stdev / mean), in percent."""
        if len(self.samples) < 2:
            return 0.0
        return 100.0 * statistics.stdev(self.samples) / statistics.fmean(self.samples)

    def as_dict(self) -> dict[str, Any]:
        return {
            "median": round(self.median, 3),
            "min": round(min(self.samples), 3),
            "max": round(max(self.samples), 3),
            "spread_pct": round(self.spread_pct, 1),
            "cv_pct": round(self.cv_pct, 1),
            "samples": [round(s, 3) for s in self.samples],
        }


@dataclass
class Result:
    """Store and load figures of one contender (one thread count)."""

    name: str
    label: str
    threads: int
    store: Figure = field(default_factory=Figure)
    load: Figure = field(default_factory=Figure)
    store_wall: Figure = field(default_factory=Figure)
    load_wall: Figure = field(default_factory=Figure)
    clock: str = "wall"
    info: dict[str, Any] = field(default_factory=dict)


def ratio(base: Figure, ours: Figure) -> dict[str, float]:
    """Throughput of ``ours`` relative to ``base``: base_time / our_time (>1: we are faster).

    ``ratio`` uses the medians; ``paired`` is the median of the per-repeat ratios and
    ``lo``/``hi`` their extremes (the repeats are interleaved, so pairing them cancels
    slow drift; ``paired`` is the steadier figure on a busy machine).
    """
    paired = paired_ratios(base, ours)
    return {
        "ratio": round(base.median / ours.median, 3),
        "paired": round(statistics.median(paired), 3),
        "lo": round(min(paired), 3),
        "hi": round(max(paired), 3),
    }


def paired_ratios(base: Figure, ours: Figure) -> list[float]:
    """base / ours for each repeat (the two were measured next to each other)."""
    return [b / o for b, o in zip(base.samples, ours.samples, strict=True) if o > 0]


# ---------------------------------------------------------------------------------------
# pages
# ---------------------------------------------------------------------------------------


def make_pages(n: int, seed: int = 1) -> list[bytes]:
    """``n`` pages of the realistic synthetic mix (content ids 0..n-1)."""
    src = SyntheticSource(seed=seed)
    return [src.page(i) for i in range(n)]


def load_order(n: int, seed: int = 2) -> list[int]:
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return order


def page_mix(pages: Sequence[bytes]) -> dict[str, Any]:
    """What the page set is: same-filled share and lz4's ratio on the rest."""
    same = sum(1 for p in pages if is_same_filled(p))
    clen = [len(_lz4c(p)) for p in pages if not is_same_filled(p)]
    return {
        "pages": len(pages),
        "same_filled": same,
        "lz4_ratio_non_same": round(len(clen) * PAGE_SIZE / max(1, sum(clen)), 3),
        "lz4_incompressible": sum(1 for c in clen if c >= PAGE_SIZE),
    }


# ---------------------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------------------


class Times(NamedTuple):
    """Seconds of one round; the CPU times are None for threaded rounds."""

    store_cpu: float | None
    load_cpu: float | None
    store_wall: float
    load_wall: float


def _split(n: int, parts: int) -> list[tuple[int, int]]:
    step = -(-n // parts)
    return [(lo, min(n, lo + step)) for lo in range(0, n, step)]


def time_round(c: Contender, pages: Sequence[bytes], order: Sequence[int], threads: int) -> Times:
    """One fresh store of ``pages`` then loads in ``order``, timed.

    ``threads`` = 0: in the calling thread, by the wall clock and by the thread's CPU
    time (which other processes on a busy machine do not inflate). Otherwise that many
    threads, thread ``t`` owning key range ``t`` (and part ``t``: its own swap type),
    started together by a barrier; the time is the wall time until the last one
    finishes.
    """
    n = len(pages)
    if threads == 0:
        gc.collect()
        gc.disable()
        try:
            w0, c0 = time.perf_counter(), time.thread_time()
            c.store_range(0, pages, 0, n)
            w1, c1 = time.perf_counter(), time.thread_time()
            c.load_keys(0, order)
            w2, c2 = time.perf_counter(), time.thread_time()
        finally:
            gc.enable()
        return Times(c1 - c0, c2 - c1, w1 - w0, w2 - w1)

    ranges = _split(n, threads)
    keys = [[i for i in order if lo <= i < hi] for lo, hi in ranges]
    barrier = threading.Barrier(len(ranges) + 1)
    errors: list[BaseException] = []

    def work(t: int) -> None:
        lo, hi = ranges[t]
        try:
            barrier.wait()
            c.store_range(t, pages, lo, hi)
            barrier.wait()
            barrier.wait()
            c.load_keys(t, keys[t])
        except BaseException as exc:  # reported below, after the barrier is released
            errors.append(exc)
            barrier.abort()

    workers = [threading.Thread(target=work, args=(t,)) for t in range(len(ranges))]
    for w in workers:
        w.start()
    gc.collect()
    gc.disable()
    try:
        barrier.wait()
        t0 = time.perf_counter()
        barrier.wait()
        t1 = time.perf_counter()
        barrier.wait()
        t2 = time.perf_counter()
        for w in workers:
            w.join()
        t3 = time.perf_counter()
    except threading.BrokenBarrierError:
        for w in workers:
            w.join()
        raise errors[0] if errors else RuntimeError("benchmark thread failed") from None
    finally:
        gc.enable()
    if errors:
        raise errors[0]
    return Times(None, None, t1 - t0, t3 - t2)


def run_interleaved(
    contenders: Sequence[tuple[Contender, int]],
    pages: Sequence[bytes],
    repeats: int,
    *,
    order: Sequence[int] | None = None,
    warmup: int = 300,
    verify: bool = True,
    clock: str = "cpu",
    progress: Callable[[str], None] | None = None,
) -> list[Result]:
    """Time every (contender, threads) ``repeats`` times, interleaved; µs per page.

    ``threads`` = 0 runs in the calling thread. The direction of the interleaving
    alternates between repeats (A B C, C B A, ...). ``clock="cpu"``: the primary
    figures (``store``/``load``) are the thread's CPU time where the round ran in the
    calling thread, else wall time; ``store_wall``/``load_wall`` are always wall time.
    """
    if clock not in ("cpu", "wall"):
        raise ValueError(f"clock must be 'cpu' or 'wall', got {clock!r}")
    n = len(pages)
    order = load_order(n) if order is None else order
    parts = [max(1, t) for _, t in contenders]
    results = [
        Result(c.name, c.label, t, clock="cpu" if clock == "cpu" and t == 0 else "wall")
        for c, t in contenders
    ]
    with tempfile.TemporaryDirectory(prefix="zswap-bench-") as tmp:
        rounds = 0

        def fresh_dir() -> str:
            nonlocal rounds
            rounds += 1
            path = os.path.join(tmp, f"r{rounds}")
            os.mkdir(path)
            return path

        if warmup:  # imports, plugin loading, caches: untimed
            wp = pages[: min(n, warmup)]
            for (c, t), p in zip(contenders, parts, strict=True):
                workdir = fresh_dir()
                c.open(len(wp), p, workdir)
                try:
                    time_round(c, wp, load_order(len(wp)), t)
                finally:
                    c.close()
                    shutil.rmtree(workdir, ignore_errors=True)
        for r in range(repeats):
            idx = list(range(len(contenders)))
            if r % 2:
                idx.reverse()
            for k in idx:
                c, t = contenders[k]
                workdir = fresh_dir()
                c.open(n, parts[k], workdir)
                try:
                    tm = time_round(c, pages, order, t)
                    if verify and r == 0 and t <= 1:
                        results[k].info = c.verify(pages)
                finally:
                    c.close()
                    shutil.rmtree(workdir, ignore_errors=True)  # swap files, zict's files
                res = results[k]
                res.store_wall.samples.append(tm.store_wall / n * 1e6)
                res.load_wall.samples.append(tm.load_wall / n * 1e6)
                if clock == "cpu" and tm.store_cpu is not None and tm.load_cpu is not None:
                    res.store.samples.append(tm.store_cpu / n * 1e6)
                    res.load.samples.append(tm.load_cpu / n * 1e6)
                else:
                    res.store.samples.append(tm.store_wall / n * 1e6)
                    res.load.samples.append(tm.load_wall / n * 1e6)
            if progress is not None:
                progress(f"repeat {r + 1}/{repeats}")
    return results


# ---------------------------------------------------------------------------------------
# memory
# ---------------------------------------------------------------------------------------


def measure_metadata(
    pages: Sequence[bytes],
    zpool: str = "zsmalloc",
    compressor: str = "lz4",
    *,
    total: int | None = None,
    backend: str | None = None,
) -> dict[str, Any]:
    """Bytes of metadata per stored page, for Zswap and for dict+lz4.

    Zswap stores ``total`` pages (default: one per page of ``pages``, which are reused
    in turn beyond that) at offsets 0..total-1. Its metadata is what it holds beyond the
    compressed data's pool pages, counted where it lives:

    * Python objects, by tracemalloc: traced growth over the stores, minus the pool's
      pages when they are Python ``bytearray`` s (a Python allocator's pages);
    * C memory, which tracemalloc cannot see, by the native core's own report
      (``Zswap.native_memory()``: entry tables, LRU records, checksums, and the C
      allocator's handle table, zspage descriptors and class tables; its arena pages
      are the pool pages and are not metadata).

    Divided by the stored pages (same-filled ones included). dict+lz4: traced growth
    minus the compressed payload bytes: the dict slots, the int keys and the ``bytes``
    object headers (on the first ``len(pages)`` pages). tracemalloc counts requested
    bytes, not the allocator's rounding or headers.
    """
    from zswap_core import Zswap

    n = total or len(pages)
    m = len(pages)
    out: dict[str, Any] = {"pages": n}
    gc.collect()
    z = Zswap(
        compressor=compressor,
        zpool=zpool,
        ram_bytes=10 * max(n, 64) * PAGE_SIZE,
        backend=backend,
    )
    try:
        z.init(0)
        was_tracing = tracemalloc.is_tracing()
        tracemalloc.start(1)
        try:
            gc.collect()
            base = tracemalloc.get_traced_memory()[0]
            store = z.store
            for i in range(n):
                store(0, i, pages[i % m])
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - base
            snap = tracemalloc.take_snapshot()
        finally:
            if not was_tracing:
                tracemalloc.stop()
        stats = z.stats
        native = z.native_memory()
        pool_bytes = z.pages.nr_pages * z.page_size
        zp = z._pools[0].zpool
        traced_pool = 0 if hasattr(zp, "native_memory") else pool_bytes
        compressed = 0
        held_compressed = 0
        for i in range(min(n, m)):
            page = pages[i]
            if not is_same_filled(page) and z.load(0, i) is not None:
                compressed += len(_lz4c(page))
                held_compressed += 1
        stored = stats["stored_pages"]
        meta = grown - traced_pool + sum(native.values())
        # who holds the metadata: zswap's entries, the zpool's bookkeeping, the page
        # objects' headers (bytearray objects, beyond their page_size of data)
        parts = {"zswap_entries": 0, "zpool_bookkeeping": 0, "page_headers": 0, "other": 0}
        for st in snap.statistics("filename"):
            fn = st.traceback[0].filename.replace(os.sep, "/")
            if fn.endswith("zswap_core/_page_alloc.py"):
                parts["page_headers"] += st.size - traced_pool
            elif fn.endswith("zswap_core/_zswap.py"):
                parts["zswap_entries"] += st.size
            elif "/zswap_" + zpool + "/" in fn:
                parts["zpool_bookkeeping"] += st.size
            else:
                parts["other"] += st.size
        parts["other"] += grown - sum(parts.values()) - traced_pool  # freed untraced blocks
        for kind, size in native.items():
            key = "zswap_entries" if kind.startswith("core.") else "zpool_bookkeeping"
            parts[key] += size
        top = [
            {
                "where": f"{os.path.relpath(s.traceback[0].filename)}:{s.traceback[0].lineno}",
                "bytes": s.size,
                "count": s.count,
            }
            for s in snap.statistics("lineno")[:8]
        ]
        out["zswap"] = {
            "pool": f"{compressor}+{zpool}",
            "backend": z.backend,
            "stored_pages": stored,
            "same_filled_pages": stats["same_filled_pages"],
            "traced_growth_bytes": grown,
            "native_bytes": sum(native.values()),
            "native_by_kind_per_page": {
                k: round(v / max(1, stored), 2) for k, v in native.items() if v
            },
            "pool_page_bytes": pool_bytes,
            "compressed_bytes": compressed,
            "metadata_bytes": meta,
            "metadata_per_page": round(meta / max(1, stored), 1),
            "metadata_per_page_by_part": {
                k: round(v / max(1, stored), 1) for k, v in parts.items()
            },
            "pool_slack_per_compressed_page": round(
                (pool_bytes * min(n, m) / n - compressed) / max(1, held_compressed), 1
            ),
            "top_allocations": top,
        }
    finally:
        z.close()
    pages = pages[: min(n, m)]
    n = len(pages)

    gc.collect()
    was_tracing = tracemalloc.is_tracing()
    tracemalloc.start(1)
    try:
        base = tracemalloc.get_traced_memory()[0]
        d: dict[int, bytes] = {}
        for i in range(n):
            d[i] = _lz4c(pages[i])
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        if not was_tracing:
            tracemalloc.stop()
    payload = sum(map(len, d.values()))
    out["dict_lz4"] = {
        "entries": n,
        "traced_growth_bytes": grown,
        "compressed_bytes": payload,
        "metadata_bytes": grown - payload,
        "metadata_per_page": round((grown - payload) / n, 1),
    }
    return out


def allocator_cost(zpool: str, pages: Sequence[bytes], repeats: int = 3) -> dict[str, Any]:
    """µs per page of an allocator's own ``alloc_write``, ``read`` and ``free``.

    Called alone, on the lz4 output of the pages (same-filled ones skipped), in the
    thread's CPU time, median of ``repeats``: what a Python allocator costs on the
    native core's per-page path, beyond the core and the codec.
    """
    from zswap_core import ZpoolError, Zswap

    z = Zswap(compressor="lz4", zpool=zpool, ram_bytes=10 * max(len(pages), 64) * PAGE_SIZE)
    zp = z._pools[0].zpool
    data = []
    for p in pages:  # what zswap would hand it: compressed pages the allocator can hold
        if is_same_filled(p):
            continue
        d = _lz4c(p)
        try:
            zp.free(zp.alloc_write(d))
        except ZpoolError:
            continue
        data.append(d)
    alloc: list[float] = []
    read: list[float] = []
    free: list[float] = []
    try:
        for _ in range(repeats):
            t0 = time.thread_time()
            handles = [zp.alloc_write(d) for d in data]
            t1 = time.thread_time()
            for h, d in zip(handles, data, strict=True):
                zp.read(h, len(d))
            t2 = time.thread_time()
            for h in handles:
                zp.free(h)
            t3 = time.thread_time()
            n = max(1, len(data))
            alloc.append((t1 - t0) * 1e6 / n)
            read.append((t2 - t1) * 1e6 / n)
            free.append((t3 - t2) * 1e6 / n)
    finally:
        z.close()
    return {
        "objects": len(data),
        "alloc_write_us": round(statistics.median(alloc), 2),
        "read_us": round(statistics.median(read), 2),
        "free_us": round(statistics.median(free), 2),
    }


def measure_commands(pages: int, runs: int) -> dict[str, Any]:
    """``zswap compare`` and ``zswap run`` on each backend: wall seconds and results.

    The same command, pages and seed with ``ZSWAP_BACKEND=native`` and ``=python``,
    interleaved ``runs`` times; medians. ``compare``'s results (every figure but the
    timings) must be equal. ``run`` has a writeback thread working beside the
    program, so its counters vary from run to run on either backend; only its time
    is compared.
    """
    exe = shutil.which("zswap") or os.path.join(os.path.dirname(sys.executable), "zswap")
    cmds = {
        "zswap compare": [exe, "compare", "--pages", str(pages), "--repeats", "1", "--json"],
        "zswap run": [exe, "run", "--pages", str(pages), "--seed", "1", "--json"],
    }
    out: dict[str, Any] = {"pages": pages, "runs": runs, "commands": {}}
    for name, cmd in cmds.items():
        wall: dict[str, list[float]] = {"native": [], "python": []}
        results: dict[str, Any] = {}
        for _ in range(runs):
            for backend in ("native", "python"):
                env = {**os.environ, "ZSWAP_BACKEND": backend}
                t0 = time.perf_counter()
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
                wall[backend].append(time.perf_counter() - t0)
                results[backend] = _untimed(json.loads(proc.stdout))
        native_s = statistics.median(wall["native"])
        python_s = statistics.median(wall["python"])
        same = "yes" if results["native"] == results["python"] else "no"
        if name == "zswap run":
            same = "n/a (writeback thread)"
        out["commands"][name] = {
            "native_s": round(native_s, 3),
            "python_s": round(python_s, 3),
            "speedup": round(python_s / native_s, 2),
            "same_results": same,
        }
    return out


def _untimed(report: Any) -> Any:
    """A command's JSON report without its timings (µs, seconds, latency figures)."""
    if isinstance(report, dict):
        return {
            k: _untimed(v)
            for k, v in report.items()
            if not (k.endswith(("_us", "_s")) or k in ("latency_us", "elapsed_s"))
        }
    if isinstance(report, list):
        return [_untimed(v) for v in report]
    return report


def density(info: dict[str, Any], pages: Sequence[bytes]) -> dict[str, Any]:
    """Pool density from a ZswapRAM ``verify`` result."""
    keys = info["held_compressed_keys"]
    pool_pages = info["pool_pages"]
    compressed = sum(len(_lz4c(pages[i])) for i in keys)
    return {
        "stored_pages": info["held"],
        "same_filled": info["same_filled"],
        "compressed_pages": len(keys),
        "refused": len(pages) - info["held"],
        "pool_pages": pool_pages,
        # = the effective compression ratio of the pool: lz4's ratio times the packing
        "pages_per_pool_page": round(len(keys) / max(1, pool_pages), 3),
        "lz4_ratio": round(len(keys) * PAGE_SIZE / max(1, compressed), 3),
        "pool_efficiency": round(compressed / max(1, pool_pages * PAGE_SIZE), 3),
    }


# ---------------------------------------------------------------------------------------
# import time
# ---------------------------------------------------------------------------------------

_IMPORTTIME = re.compile(r"import time:\s*(\d+)\s*\|\s*(\d+)\s*\|(\s*)(.*)$")


def _importtime(env: dict[str, str], module: str) -> tuple[int, list[tuple[str, int]]]:
    """(cumulative µs of ``module``, its direct imports by cumulative µs)."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    # A module's line comes after those of the modules it imported, indented 2 more.
    rows: list[tuple[str, int, int]] = []
    for line in proc.stderr.splitlines():
        m = _IMPORTTIME.match(line)
        if m:
            rows.append((m.group(4).strip(), int(m.group(2)), len(m.group(3))))
    at = next((k for k in range(len(rows) - 1, -1, -1) if rows[k][0] == module), None)
    if at is None:
        raise RuntimeError(f"no importtime line for {module}: {proc.stderr[-500:]}")
    depth = rows[at][2]
    first = at
    while first > 0 and rows[first - 1][2] > depth:
        first -= 1
    children = [(name, us) for name, us, d in rows[first:at] if d == depth + 2]
    return rows[at][1], sorted(children, key=lambda r: -r[1])


def _child_cpu_s(env: dict[str, str], code: str) -> float:
    """user + sys CPU seconds of ``python -c code`` (other processes do not inflate it)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure_import(runs: int, module: str = "zswap_core") -> dict[str, Any]:
    """``import zswap_core`` in fresh interpreters, three ways, ``runs`` times each.

    * ``cpu_delta_ms``: CPU time (user + sys) of ``python -c "import zswap_core"``
      minus that of ``python -c pass``: robust on a busy machine;
    * ``importtime_ms``: ``-X importtime``'s cumulative figure (wall clock);
    * ``as_env_importtime_ms``: the same with the environment unchanged.

    The first two run with bytecode: ``PYTHONDONTWRITEBYTECODE`` dropped and
    ``PYTHONPYCACHEPREFIX`` pointing at a temporary directory filled by one untimed
    warm-up run (so the repository gets no ``__pycache__``). With
    ``PYTHONDONTWRITEBYTECODE=1`` and no cached bytecode, ``as_env`` compiles every
    module on every run.
    """
    env_as_is = dict(os.environ)
    out: dict[str, Any] = {
        "module": module,
        "PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE", ""),
    }
    with tempfile.TemporaryDirectory(prefix="zswap-pyc-") as prefix:
        env = dict(os.environ)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = prefix
        _importtime(env, module)  # warm-up: writes the .pyc files
        importtime = Figure()
        cpu = Figure()
        as_env = Figure()
        children: list[tuple[str, int]] = []
        for _ in range(runs):
            total, children = _importtime(env, module)
            importtime.samples.append(total / 1000)
            cpu.samples.append(
                (_child_cpu_s(env, f"import {module}") - _child_cpu_s(env, "pass")) * 1000
            )
            as_env.samples.append(_importtime(env_as_is, module)[0] / 1000)
    out["bytecode"] = "cached .pyc (temporary PYTHONPYCACHEPREFIX, one warm-up run)"
    out["cpu_delta_ms"] = cpu.as_dict()
    out["importtime_ms"] = importtime.as_dict()
    out["as_env_importtime_ms"] = as_env.as_dict()
    out["top_imports_us"] = dict(children[:8])  # of the last run
    return out


# ---------------------------------------------------------------------------------------
# the machine
# ---------------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def machine_info() -> dict[str, Any]:
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 1
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = []
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "loadavg": load,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "versions": {
            d: _version(d) for d in ("zswap-core", "lz4", "zict", "zstandard", "zswap-zsmalloc")
        },
    }
