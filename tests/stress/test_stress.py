"""Stress: swap traffic on many threads while every zswap parameter flips underneath.

Worker threads ``swap_out`` / ``swap_in`` / ``swap_free`` pages they own and check
every page they read back against what they wrote (each page carries its owner and
serial number, so a page from the wrong slot or an older copy is caught). Flipper
threads change every zswap parameter through every installed compressor and zpool
(``max_pool_percent`` down to 0 and back, ``enabled`` off and on, exclusive loads,
same-filled and non-same-filled pages, checksums), and a maintenance thread calls
``writeback`` and ``compact`` and reads ``stats`` and ``pools``. The configured RAM
is small, so the pool limit is hit and the writeback worker runs all the time.

At the end: no wrong page, no lost page, every slot accounted for, and once all is
freed no slot in use, no page held, only the current pool alive. A watchdog joins
every thread with a deadline and fails with every thread's stack instead of hanging.

Profiles: ``short`` (default, CI: about 20 s) and ``long`` (``ZSWAP_STRESS=long``,
``ZSWAP_STRESS_SECONDS`` per configuration, default 300), or by hand with figures::

    .venv/bin/python tests/stress/run_long.py --seconds 600

The harness (:func:`run_stress`) is shared with ``run_long.py``.
"""

from __future__ import annotations

import collections
import os
import random
import struct
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import zswap_core
from zswap_core import DecompressError, ParamError, Zswap
from zswap_core.swap import Swap, SwapEntry

PS = 4096

ALL_COMPRESSORS = ("lz4", "lz4hc", "zstd", "lzo", "lzo-rle", "deflate")
ALL_ZPOOLS = ("zbud", "z3fold", "zsmalloc")


def installed(kind: str) -> list[str]:
    names = ALL_COMPRESSORS if kind == "compressor" else ALL_ZPOOLS
    has = zswap_core.crypto_has_comp if kind == "compressor" else zswap_core.zpool_has_pool
    return [n for n in names if has(n)]


# -- pages that know whose they are ------------------------------------------------------------


def make_page(rng: random.Random, owner: int, serial: int) -> bytes:
    """A page of a random kind. Every kind but zero-filled is unique per (owner, serial)."""
    tag = struct.pack("<II", owner, serial)
    kind = rng.randrange(10)
    if kind == 0:
        return bytes(PS)  # zero page: same-filled, value 0
    if kind == 1:  # same-filled with a unique word
        return struct.pack("<II", owner | 0x80000000, serial) * (PS // 8)
    if kind in (2, 3, 4):  # compresses to ~0.3-2 KiB: two or three per zpool page
        n = rng.randrange(200, 2000)
        return (tag + rng.randbytes(n) + bytes(PS))[:PS]
    if kind in (5, 6):  # text-like, compresses well
        words = (b"alpha ", b"beta ", b"gamma ", b"delta ", b"epsilon ", tag)
        out = bytearray(tag)
        while len(out) < PS:
            out += rng.choice(words)
        return bytes(out[:PS])
    if kind == 7:  # half random: ~2 KiB compressed, too big for three-per-page
        return (tag + rng.randbytes(PS // 2) + bytes(PS))[:PS]
    # incompressible: rejected as compress_poor by zbud/z3fold, goes to the file
    return tag + rng.randbytes(PS - len(tag))


# -- the report --------------------------------------------------------------------------------


@dataclass
class StressReport:
    seconds: float = 0.0
    workers: int = 0
    flippers: int = 0
    threads: int = 0
    swap_files: int = 0
    ops: collections.Counter[str] = field(default_factory=collections.Counter)
    flips: collections.Counter[str] = field(default_factory=collections.Counter)
    flips_refused: collections.Counter[str] = field(default_factory=collections.Counter)
    writeback_calls: int = 0
    written_back_explicit: int = 0
    compactions: int = 0
    pages_compacted: int = 0
    pools_seen: set[str] = field(default_factory=set)
    peak_pool_pages: int = 0
    pages_checked: int = 0
    wrong_pages: int = 0
    lost_pages: int = 0
    errors: list[str] = field(default_factory=list)
    final_stats: dict[str, int] = field(default_factory=dict)
    final_vmstat: dict[str, int] = field(default_factory=dict)
    live_at_end: int = 0
    used_slots_at_end: int = 0
    used_slots_after_free: int = -1
    pool_pages_after_free: int = -1
    pools_after_free: int = -1
    stored_after_free: int = -1

    @property
    def total_ops(self) -> int:
        return sum(self.ops.values())

    def lines(self) -> list[str]:
        s = self.final_stats
        v = self.final_vmstat
        rate = self.total_ops / self.seconds if self.seconds else 0.0
        return [
            f"duration                 {self.seconds:.1f} s",
            f"threads                  {self.threads} ({self.workers} workers, "
            f"{self.flippers} parameter flippers, 1 writeback/compact; "
            f"+ zswap's writeback worker)",
            f"swap files               {self.swap_files}",
            f"operations               {self.total_ops} ({rate:.0f}/s): "
            + ", ".join(f"{k} {n}" for k, n in sorted(self.ops.items())),
            f"parameter flips          {sum(self.flips.values())}: "
            + ", ".join(f"{k} {n}" for k, n in sorted(self.flips.items())),
            f"flips refused            {sum(self.flips_refused.values())}"
            + (f": {dict(self.flips_refused)}" if self.flips_refused else ""),
            f"pools seen               {len(self.pools_seen)} (sampled from z.pools: "
            "a lower bound on pools created)",
            f"writeback calls          {self.writeback_calls} "
            f"({self.written_back_explicit} pages written back by them)",
            f"written_back_pages       {s.get('written_back_pages', 0)} (calls + worker); "
            f"zswpwb {v.get('zswpwb', 0)}",
            f"compactions              {self.compactions} ({self.pages_compacted} pages freed)",
            f"pool_limit_hit           {s.get('pool_limit_hit', 0)}; "
            f"peak pool {self.peak_pool_pages} pages",
            f"vmstat                   {v}",
            f"pages checked            {self.pages_checked}",
            f"pages lost               {self.lost_pages}",
            f"wrong pages              {self.wrong_pages}",
            f"other errors             {len(self.errors)}",
            f"end: live {self.live_at_end}, slots used {self.used_slots_at_end}; "
            f"after freeing all: slots {self.used_slots_after_free}, "
            f"stored {self.stored_after_free}, pool pages {self.pool_pages_after_free}, "
            f"pools {self.pools_after_free}",
        ]


# -- the watchdog ------------------------------------------------------------------------------


class StressHang(AssertionError):
    """Threads did not finish by the deadline; the message holds their stacks."""


def thread_stacks(threads: Iterable[threading.Thread] | None = None) -> str:
    frames = sys._current_frames()
    wanted = list(threads) if threads is not None else threading.enumerate()
    out = []
    for t in wanted:
        frame = frames.get(t.ident or -1)
        stack = "".join(traceback.format_stack(frame)) if frame is not None else "  (no frame)\n"
        out.append(f"--- thread {t.name} (alive={t.is_alive()}):\n{stack}")
    return "".join(out)


def join_all(threads: list[threading.Thread], deadline: float) -> None:
    """Join with a deadline (``time.monotonic()``); raise :class:`StressHang` with stacks."""
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    stuck = [t for t in threads if t.is_alive()]
    if stuck:
        raise StressHang(
            f"{len(stuck)} thread(s) still running after the deadline: "
            f"{[t.name for t in stuck]}\n\nstacks of every thread:\n{thread_stacks()}"
        )


# -- the run -----------------------------------------------------------------------------------


def run_stress(
    workdir: Path,
    *,
    seconds: float,
    workers: int = 4,
    flippers: int = 1,
    swap_files: int = 1,
    quota: int = 300,
    ram_pages: int = 1024,
    seed: int = 0,
    start_zpool: str = "zbud",
    grace: float = 60.0,
    progress: Callable[[str], None] | None = None,
) -> StressReport:
    """Run one stress configuration for ``seconds``; returns the figures.

    Never hangs: threads are joined against ``seconds + grace`` and a
    :class:`StressHang` carrying every stack is raised if any is still running.
    """
    compressors = installed("compressor")
    zpools = installed("zpool")
    rep = StressReport(workers=workers, flippers=flippers, swap_files=swap_files)
    rep.threads = workers + flippers + 1
    z = Zswap(
        ram_bytes=ram_pages * PS,
        compressor="lz4",
        zpool=start_zpool,
        max_pool_percent=20,
    )
    s = Swap(z)
    slots_each = workers * quota // swap_files + 64
    for i in range(swap_files):
        s.swapon(workdir / f"swapfile{i}", slots_each + 1, priority=0)

    stop = threading.Event()
    lock = threading.Lock()  # the report
    owned: list[dict[SwapEntry, bytes]] = [{} for _ in range(workers)]

    def error(msg: str) -> None:
        with lock:
            if len(rep.errors) < 50:
                rep.errors.append(msg)
        if progress is not None:
            progress("ERROR " + msg)

    def check(wid: int, entry: SwapEntry, want: bytes, ops: collections.Counter[str]) -> None:
        try:
            got = s.swap_in(entry)
        except (DecompressError, OSError) as exc:
            with lock:
                rep.lost_pages += 1
            error(f"worker {wid}: swap_in {entry} lost the page: {exc!r}")
            return
        ops["swap_in"] += 1
        if got != want:
            with lock:
                rep.wrong_pages += 1
            error(f"worker {wid}: swap_in {entry} returned wrong bytes {got[:16].hex()}")

    def worker(wid: int) -> None:
        rng = random.Random(seed * 7919 + wid)
        mine = owned[wid]
        order: list[SwapEntry] = []  # for O(1) random picks
        ops: collections.Counter[str] = collections.Counter()
        serial = 0
        try:
            while not stop.is_set():
                r = rng.random()
                if not order or (r < 0.4 and len(order) < quota):
                    serial += 1
                    page = make_page(rng, wid, serial)
                    entry = s.swap_out(page if rng.random() < 0.8 else bytearray(page))
                    if entry in mine:
                        error(f"worker {wid}: slot {entry} handed out twice")
                    mine[entry] = page
                    order.append(entry)
                    ops["swap_out"] += 1
                elif r < 0.85:
                    idx = rng.randrange(len(order))
                    check(wid, order[idx], mine[order[idx]], ops)
                else:
                    idx = rng.randrange(len(order))
                    entry = order[idx]
                    order[idx] = order[-1]
                    order.pop()
                    s.swap_free(entry)
                    del mine[entry]
                    ops["swap_free"] += 1
        except Exception as exc:
            error(f"worker {wid}: {exc!r}\n{traceback.format_exc()}")
        finally:
            with lock:
                rep.ops.update(ops)

    flip_choices: list[tuple[str, list[object]]] = [
        ("compressor", list(compressors)),
        ("zpool", list(zpools)),
        ("enabled", [True, True, True, True, False, "Y\n", "0"]),
        ("max_pool_percent", [0, 1, 5, 10, 20, 20, 20, 40, 40, 100, " 20\n"]),
        ("accept_threshold_percent", [0, 50, 90, 90, 100, "90\n"]),
        ("exclusive_loads", [True, False, "N"]),
        ("same_filled_pages_enabled", [True, True, False, "y"]),
        ("non_same_filled_pages_enabled", [True, True, True, False, "1"]),
        ("checksums_enabled", [True, False, "Y"]),
    ]

    def flipper(fid: int) -> None:
        rng = random.Random(seed * 104729 + fid)
        flips: collections.Counter[str] = collections.Counter()
        refused: collections.Counter[str] = collections.Counter()
        try:
            while not stop.is_set():
                name, values = rng.choice(flip_choices)
                try:
                    z.params[name] = rng.choice(values)
                    flips[name] += 1
                except ParamError as exc:
                    refused[f"{name}: {exc}"] += 1
                time.sleep(rng.uniform(0, 0.02))
        except Exception as exc:
            error(f"flipper {fid}: {exc!r}\n{traceback.format_exc()}")
        finally:
            with lock:
                rep.flips.update(flips)
                rep.flips_refused.update(refused)

    def maintenance() -> None:
        rng = random.Random(seed * 31 + 5)
        try:
            while not stop.is_set():
                r = rng.random()
                if r < 0.5:
                    n = z.writeback(rng.randrange(1, 64))
                    with lock:
                        rep.writeback_calls += 1
                        rep.written_back_explicit += n
                elif r < 0.7:
                    freed = z.compact()
                    with lock:
                        rep.compactions += 1
                        rep.pages_compacted += freed
                else:
                    st = z.stats
                    bad = {k: v for k, v in st.items() if v < 0}
                    if bad:
                        error(f"negative counters {bad}")
                    names = {p.name for p in z.pools}
                    with lock:
                        rep.pools_seen |= names
                        rep.peak_pool_pages = max(rep.peak_pool_pages, z.pages.nr_pages)
                    s.swaps  # noqa: B018 - reading /proc/swaps races the workers too
                time.sleep(rng.uniform(0, 0.01))
        except Exception as exc:
            error(f"maintenance: {exc!r}\n{traceback.format_exc()}")

    threads = [
        threading.Thread(target=worker, args=(w,), name=f"stress-worker-{w}", daemon=True)
        for w in range(workers)
    ]
    threads += [
        threading.Thread(target=flipper, args=(f,), name=f"stress-flipper-{f}", daemon=True)
        for f in range(flippers)
    ]
    threads.append(threading.Thread(target=maintenance, name="stress-maintenance", daemon=True))
    start = time.monotonic()
    try:
        for t in threads:
            t.start()
        end = start + seconds
        next_report = start + 30
        while time.monotonic() < end and not all(not t.is_alive() for t in threads):
            time.sleep(min(0.1, max(0.0, end - time.monotonic())))
            if progress is not None and time.monotonic() >= next_report:
                next_report += 30
                st = z.stats
                progress(
                    f"{time.monotonic() - start:6.0f} s: stored {st['stored_pages']}, "
                    f"pool {z.pages.nr_pages} pages, written back "
                    f"{st['written_back_pages']}, errors {len(rep.errors)}"
                )
    finally:
        stop.set()
        join_all(threads, time.monotonic() + grace)
    rep.seconds = time.monotonic() - start

    # Quiesce: parameters back to normal, then check everything once more.
    z.params["enabled"] = True
    z.params["max_pool_percent"] = 20
    z.params["accept_threshold_percent"] = 90
    z.params["exclusive_loads"] = False
    final_ops: collections.Counter[str] = collections.Counter()
    for wid, mine in enumerate(owned):
        for entry, want in mine.items():
            check(wid, entry, want, final_ops)
    rep.pages_checked = rep.ops["swap_in"] + final_ops["swap_in"]
    rep.live_at_end = sum(len(m) for m in owned)
    rep.used_slots_at_end = sum(a.used for a in s.swaps)
    if z.stats["stored_pages"] > rep.live_at_end:
        error(f"zswap holds {z.stats['stored_pages']} pages for {rep.live_at_end} live entries")

    for mine in owned:
        for entry in mine:
            s.swap_free(entry)
        mine.clear()
    rep.used_slots_after_free = sum(a.used for a in s.swaps)
    rep.final_stats = z.stats
    rep.final_vmstat = s.vmstat
    rep.stored_after_free = rep.final_stats["stored_pages"]
    rep.pool_pages_after_free = z.pages.nr_pages
    rep.pools_after_free = len(z.pools)
    s.close()
    z.close()
    if z.pages.nr_pages != 0:
        error(f"{z.pages.nr_pages} pages still held after close")
    return rep


# -- the tests ---------------------------------------------------------------------------------

PROFILE = os.environ.get("ZSWAP_STRESS", "short").strip().lower()
LONG_SECONDS = float(os.environ.get("ZSWAP_STRESS_SECONDS", "300"))

CONFIGS: list[dict[str, Any]] = [
    # one file, the classic mix; starts on zbud
    {"workers": 4, "flippers": 1, "swap_files": 1, "seed": 1, "start_zpool": "zbud"},
    # two files of equal priority, two flippers fighting, starts on zsmalloc, more room
    {
        "workers": 3,
        "flippers": 2,
        "swap_files": 2,
        "seed": 2,
        "start_zpool": "zsmalloc",
        "ram_pages": 2048,
    },
]


def check_report(rep: StressReport) -> None:
    detail = "\n".join(rep.lines()) + "\n\nerrors:\n" + "\n".join(rep.errors[:10])
    assert rep.errors == [], detail
    assert rep.wrong_pages == 0, detail
    assert rep.lost_pages == 0, detail
    # every slot accounted for: one used slot per live entry
    assert rep.used_slots_at_end == rep.live_at_end, detail
    # after freeing everything: no slot used, nothing stored, no page held, one pool
    assert rep.used_slots_after_free == 0, detail
    assert rep.stored_after_free == 0, detail
    assert rep.pool_pages_after_free == 0, detail
    assert rep.final_stats["pool_total_size"] == 0, detail
    assert rep.pools_after_free == 1, detail
    # the run did what it is for
    assert rep.ops["swap_out"] > 0 and rep.ops["swap_in"] > 0 and rep.ops["swap_free"] > 0
    assert sum(rep.flips.values()) > 0, detail
    assert rep.final_stats["pool_limit_hit"] > 0, detail
    assert rep.final_stats["written_back_pages"] > 0, detail
    assert len(rep.pools_seen) > 1, detail


@pytest.mark.parametrize("config", CONFIGS, ids=["1file-zbud", "2files-zsmalloc"])
def test_stress(config: dict[str, Any], tmp_path: Path) -> None:
    if not installed("zpool") or config["start_zpool"] not in installed("zpool"):
        pytest.skip(f"{config['start_zpool']} is not installed")
    seconds = LONG_SECONDS if PROFILE == "long" else 8.0
    rep = run_stress(tmp_path, seconds=seconds, **config)
    print("\n" + "\n".join(rep.lines()))
    check_report(rep)


def test_watchdog_reports_stuck_threads_instead_of_hanging() -> None:
    gate = threading.Event()

    def stuck_here() -> None:
        gate.wait(30)

    t = threading.Thread(target=stuck_here, name="deliberately-stuck", daemon=True)
    t.start()
    try:
        with pytest.raises(StressHang, match="deliberately-stuck") as info:
            join_all([t], time.monotonic() + 0.2)
        assert "stuck_here" in str(info.value)  # the stack shows where it is stuck
    finally:
        gate.set()
        t.join(5)


if __name__ == "__main__":  # pragma: no cover - a quick manual run
    with tempfile.TemporaryDirectory() as d:
        r = run_stress(Path(d), seconds=float(sys.argv[1]) if len(sys.argv) > 1 else 10)
        print("\n".join(r.lines()))
