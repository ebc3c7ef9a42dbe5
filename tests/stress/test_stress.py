"""Stress: swap traffic on many threads while every zswap parameter flips underneath.

Worker threads ``swap_out`` / ``swap_in`` / ``swap_free`` pages they own and check
every page they read back against what they wrote (each page carries its owner and
serial number, so a page from the wrong slot or an older copy is caught). Flipper
threads change every zswap parameter through every installed compressor and zpool
(``max_pool_percent`` down to 0 and back, ``enabled`` off and on, exclusive loads,
same-filled and non-same-filled pages, checksums), and a maintenance thread calls
``writeback`` and ``compact`` and reads ``stats`` and ``pools``. The configured RAM
is small, so the pool limit is hit and the writeback worker runs all the time.

Options a configuration turns on:

* ``exclusive_flipper``: a thread that flips ``exclusive_loads`` Y/N as fast as it
  can, and an observer that sets it back to N right after each load that found its
  page, so loads often run with Y while the parameter reads N before and after (a
  load that dropped its entry without the swap layer knowing shows as a wrong page
  at the next ``swap_in``).
* ``churn``: that many threads, each swapping a file of its own on and off again and
  again (forced, or plain when it is empty), beside the workers' files and at the same
  priority, so workers' pages land on it. A page on a churned file goes with it: a
  worker tolerates "swapped off" / "not active" only for its own entries on that file,
  and only once that file's swapoff has begun; every other failure still counts. A
  shared/exclusive gate (:class:`Gate`) makes the books exact: a churn swapon (which
  may reuse a type number) never runs while a worker is between asking for a slot
  and noting which file it is on, or is about to touch an entry of a churned file;
  the swapoffs themselves run at any time, racing every worker and zswap's writeback.
* ``raising_observer``: an observer (``zswap_core.register_observer``) whose every
  hook raises on one call in five (``RuntimeError``, ``ValueError``, ``OSError``).
* ``raising_plugins``: a compressor whose ``close()`` and an allocator whose
  ``destroy()`` raise, installed as a fake distribution in the work directory; the
  flippers switch to them, so their pools are created and destroyed all the time.

At the end: no wrong page, no lost page, every slot accounted for, and once all is
freed no slot in use, no page held, only the current pool alive. A watchdog joins
every thread with a deadline and fails with every thread's stack instead of hanging.

Threads switch every 10 us during a run (``sys.setswitchinterval``), not every 5 ms.

Profiles: ``short`` (default, CI: about 30 s) and ``long`` (``ZSWAP_STRESS=long``,
``ZSWAP_STRESS_SECONDS`` per configuration, default 300), or by hand with figures::

    .venv/bin/python tests/stress/run_long.py --seconds 600

The harness (:func:`run_stress`) is shared with ``run_long.py``.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import itertools
import os
import random
import struct
import sys
import tempfile
import textwrap
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from helpers import EveryHook

import zswap_core
from zswap_core import (
    DecompressError,
    ParamError,
    Registry,
    Zswap,
    hookimpl,
    register_observer,
    unregister_observer,
)
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
    exclusive_flipper: bool = False
    raising_observer: bool = False
    raising_plugins: bool = False
    exclusive_flips: int = 0
    churn_threads: int = 0
    churn_cycles: int = 0
    churn_forced: int = 0
    churn_busy: int = 0
    dropped_with_file: int = 0
    observer_calls: int = 0
    observer_raises: collections.Counter[str] = field(default_factory=collections.Counter)
    plugin_cleanup_raises: collections.Counter[str] = field(default_factory=collections.Counter)
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
            f"{self.flippers} parameter flippers, "
            + ("1 exclusive_loads flipper, " if self.exclusive_flips else "")
            + (f"{self.churn_threads} swapon/swapoff churners, " if self.churn_threads else "")
            + "1 writeback/compact; + zswap's writeback worker)",
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
            f"exclusive_loads flips    {self.exclusive_flips} (by the fast flipper)",
            f"swapon/swapoff churn     {self.churn_cycles} cycles ({self.churn_forced} forced, "
            f"{self.churn_busy} refused busy first); {self.dropped_with_file} pages "
            "dropped with their file (expected: forced swapoff)",
            f"raising observer         {sum(self.observer_raises.values())} raises in "
            f"{self.observer_calls} calls"
            + (f": {dict(self.observer_raises)}" if self.observer_raises else ""),
            f"raising plugin cleanup   {sum(self.plugin_cleanup_raises.values())}"
            + (f": {dict(self.plugin_cleanup_raises)}" if self.plugin_cleanup_raises else ""),
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


# -- what the options bring --------------------------------------------------------------------


class Gate:
    """Shared by workers, taken alone by a churn ``swapon`` (waiting writers go first).

    It keeps the books exact, not the swap layer safe: while a worker holds it shared,
    no type number can be handed to a new file, so "this type is churn file generation
    g" stays true from the moment a worker learns it until it has used it.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._waiting = 0

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class RaisingObserver(EveryHook):
    """An observer whose every hook raises on one call in five: the core must not care."""

    def __init__(self) -> None:
        self._n = itertools.count(1)
        self._lock = threading.Lock()
        self.calls = 0
        self.raised: collections.Counter[str] = collections.Counter()

    def hit(self, hook: str) -> None:
        hook = hook.removeprefix("zswap_")  # counted by short name in the report
        n = next(self._n)
        if n % 5:
            return
        with self._lock:
            self.raised[hook] += 1
        kind = (n // 5) % 3
        if kind == 0:
            raise RuntimeError(f"observer {hook} exploded")
        if kind == 1:  # what the swap layer raises for a bad or swapped-off entry
            raise ValueError(f"observer {hook} exploded")
        raise OSError(errno.EIO, f"observer {hook} exploded")  # looks like a failed read

    @property
    def total_calls(self) -> int:
        return next(self._n) - 1  # (the count moves on: read it once, at the end)


class ExclusiveFlipBack:
    """Sets ``exclusive_loads`` back to N right after each load that found its page.

    With the fast flipper setting Y, a load then often runs with Y while the
    parameter reads N both before and after it: exactly the case where a swap layer
    that guesses from the parameter instead of asking the load loses the page.
    """

    @hookimpl
    def zswap_load(self, zswap: Any, type: int, offset: int, found: bool) -> None:
        if found:
            zswap.params["exclusive_loads"] = False


RAISING_MODULE = "zswap_stress_raising_plugins"
RAISING_SOURCE = """
import zlib

from zswap_core import Compressor

#: How often each cleanup raised.
RAISED = {"close": 0, "destroy": 0}


class RaisingComp(Compressor):
    name = "raisingcomp"

    def compress(self, src):
        return zlib.compress(bytes(src), 1)

    def decompress(self, src, dlen):
        return zlib.decompress(bytes(src))

    def close(self):
        RAISED["close"] += 1
        raise RuntimeError("raisingcomp close exploded")


try:
    from zswap_zsmalloc import Zsmalloc
except ImportError:  # the zsmalloc plugin is not installed: no raising allocator
    pass
else:

    class RaisingPool(Zsmalloc):
        type = "raisingpool"

        def destroy(self):
            super().destroy()  # its pages go back: only the report of it fails
            RAISED["destroy"] += 1
            raise RuntimeError("raisingpool destroy exploded")
"""


@contextlib.contextmanager
def _raising_plugins(workdir: Path) -> Iterator[tuple[Registry, list[str], list[str], Any]]:
    """A registry that also has ``raisingcomp`` and (with zsmalloc) ``raisingpool``.

    They are entry points of a fake distribution written into ``workdir``, found as a
    real pip-installed plugin would be. Yields the registry, the extra compressor and
    zpool names, and the plugin module (its ``RAISED`` counts).
    """
    site = workdir / "site"
    site.mkdir()
    info = site / "zswap_stress_raising-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: zswap-stress-raising\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text(
        f"[zswap.compressors]\nraisingcomp = {RAISING_MODULE}:RaisingComp\n"
        f"[zswap.zpools]\nraisingpool = {RAISING_MODULE}:RaisingPool\n"
    )
    (site / f"{RAISING_MODULE}.py").write_text(textwrap.dedent(RAISING_SOURCE))
    sys.path.insert(0, str(site))
    sys.modules.pop(RAISING_MODULE, None)
    try:
        reg = Registry()
        comps = ["raisingcomp"] if reg.request("compressor", "raisingcomp") else []
        pools = ["raisingpool"] if reg.request("zpool", "raisingpool") else []
        assert comps, reg.error("compressor", "raisingcomp")
        yield reg, comps, pools, sys.modules[RAISING_MODULE]
    finally:
        sys.path.remove(str(site))
        sys.modules.pop(RAISING_MODULE, None)


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
    start_compressor: str = "lz4",
    exclusive_flipper: bool = False,
    churn: int = 0,
    raising_observer: bool = False,
    raising_plugins: bool = False,
    grace: float = 60.0,
    progress: Callable[[str], None] | None = None,
) -> StressReport:
    """Run one stress configuration for ``seconds``; returns the figures.

    Never hangs: threads are joined against ``seconds + grace`` and a
    :class:`StressHang` carrying every stack is raised if any is still running.
    """
    with contextlib.ExitStack() as stack:
        # Threads switch every 10 us instead of 5 ms, so that the GIL hands over in
        # the middle of the layers' short critical steps far more often.
        stack.callback(sys.setswitchinterval, sys.getswitchinterval())
        sys.setswitchinterval(1e-5)
        registry: Registry | None = None
        extra_comps: list[str] = []
        extra_pools: list[str] = []
        plugin_module: Any = None
        if raising_plugins:
            registry, extra_comps, extra_pools, plugin_module = stack.enter_context(
                _raising_plugins(workdir)
            )
        if exclusive_flipper:
            flip_back = ExclusiveFlipBack()
            register_observer(flip_back, name=f"stress-flip-back-{id(flip_back)}")
            stack.callback(unregister_observer, flip_back)
        observer: RaisingObserver | None = None
        if raising_observer:
            observer = RaisingObserver()
            register_observer(observer, name=f"stress-raiser-{id(observer)}")
            stack.callback(unregister_observer, observer)
        rep = _run(
            workdir,
            seconds=seconds,
            workers=workers,
            flippers=flippers,
            swap_files=swap_files,
            quota=quota,
            ram_pages=ram_pages,
            seed=seed,
            start_zpool=start_zpool,
            start_compressor=start_compressor,
            exclusive_flipper=exclusive_flipper,
            churn=churn,
            registry=registry,
            compressors=installed("compressor") + extra_comps,
            zpools=installed("zpool") + extra_pools,
            grace=grace,
            progress=progress,
        )
        rep.raising_observer = observer is not None
        if observer is not None:
            rep.observer_calls = observer.total_calls
            rep.observer_raises = observer.raised
        if plugin_module is not None:
            rep.plugin_cleanup_raises = collections.Counter(plugin_module.RAISED)
    return rep


def _swapped_off(exc: ValueError) -> bool:
    """The swap layer's words for an entry whose file is being, or was, swapped off."""
    msg = str(exc)
    return "being swapped off" in msg or "is not active" in msg


def _run(
    workdir: Path,
    *,
    seconds: float,
    workers: int,
    flippers: int,
    swap_files: int,
    quota: int,
    ram_pages: int,
    seed: int,
    start_zpool: str,
    start_compressor: str,
    exclusive_flipper: bool,
    churn: int,
    registry: Registry | None,
    compressors: list[str],
    zpools: list[str],
    grace: float,
    progress: Callable[[str], None] | None,
) -> StressReport:
    rep = StressReport(workers=workers, flippers=flippers, swap_files=swap_files)
    rep.churn_threads = churn
    rep.exclusive_flipper = exclusive_flipper
    rep.raising_plugins = registry is not None
    rep.threads = workers + flippers + 1 + int(exclusive_flipper) + churn
    z = Zswap(
        ram_bytes=ram_pages * PS,
        compressor=start_compressor,
        zpool=start_zpool,
        max_pool_percent=20,
        registry=registry,
    )
    s = Swap(z)
    # The workers' own files hold every worker's whole quota: a churned file is extra
    # room, never needed, so its going away can never leave a worker without a slot.
    slots_each = workers * quota // swap_files + 64
    main_types = {
        s.swapon(workdir / f"swapfile{i}", slots_each + 1, priority=0) for i in range(swap_files)
    }

    stop = threading.Event()
    lock = threading.Lock()  # the report
    # entry -> (page, generation of the churned file it is on; 0: a workers' file)
    owned: list[dict[SwapEntry, tuple[bytes, int]]] = [{} for _ in range(workers)]
    gate = Gate()
    churn_gen: dict[int, int] = {}  # type -> the churned file (generation) on it last
    dying: set[int] = set()  # generations whose swapoff has begun
    generations = itertools.count(1)

    def shared() -> contextlib.AbstractContextManager[None]:
        return gate.shared() if churn else contextlib.nullcontext()

    def error(msg: str) -> None:
        with lock:
            if len(rep.errors) < 50:
                rep.errors.append(msg)
        if progress is not None:
            progress("ERROR " + msg)

    def check(
        wid: int, entry: SwapEntry, want: bytes, gen: int, ops: collections.Counter[str]
    ) -> bool:
        """Swap in and compare. False: the entry went with its churned file (allowed)."""
        try:
            got = s.swap_in(entry)
        except ValueError as exc:
            if gen and gen in dying and _swapped_off(exc):
                return False
            raise
        except (DecompressError, OSError) as exc:
            with lock:
                rep.lost_pages += 1
            error(f"worker {wid}: swap_in {entry} lost the page: {exc!r}")
            return True
        ops["swap_in"] += 1
        if got != want:
            with lock:
                rep.wrong_pages += 1
            error(f"worker {wid}: swap_in {entry} returned wrong bytes {got[:16].hex()}")
        return True

    def worker(wid: int) -> None:
        rng = random.Random(seed * 7919 + wid)
        mine = owned[wid]
        order: list[SwapEntry] = []  # for O(1) random picks
        ops: collections.Counter[str] = collections.Counter()
        serial = 0
        dropped = 0

        def forget(idx: int) -> SwapEntry:
            entry = order[idx]
            order[idx] = order[-1]
            order.pop()
            del mine[entry]
            return entry

        try:
            while not stop.is_set():
                r = rng.random()
                if not order or (r < 0.4 and len(order) < quota):
                    serial += 1
                    page = make_page(rng, wid, serial)
                    with shared():  # no churn swapon between the slot and its file's name
                        entry = s.swap_out(page if rng.random() < 0.8 else bytearray(page))
                        gen = 0 if entry.type in main_types else churn_gen.get(entry.type, -1)
                    if gen < 0:
                        error(f"worker {wid}: {entry} is on no file that was swapped on")
                    old = mine.get(entry)
                    if old is None:
                        order.append(entry)
                    elif old[1] and old[1] != gen:
                        dropped += 1  # an entry of an earlier file on that type: gone
                    else:
                        error(f"worker {wid}: slot {entry} handed out twice")
                    mine[entry] = (page, gen)
                    ops["swap_out"] += 1
                elif r < 0.85:
                    idx = rng.randrange(len(order))
                    entry = order[idx]
                    want, gen = mine[entry]
                    if not gen:
                        check(wid, entry, want, 0, ops)
                        continue
                    with shared():  # the type cannot go to a new file meanwhile
                        kept = churn_gen.get(entry.type) == gen and check(
                            wid, entry, want, gen, ops
                        )
                    if not kept:
                        forget(idx)
                        dropped += 1
                else:
                    idx = rng.randrange(len(order))
                    entry = order[idx]
                    gen = mine[entry][1]
                    forget(idx)
                    if not gen:
                        s.swap_free(entry)
                        ops["swap_free"] += 1
                        continue
                    with shared():
                        if churn_gen.get(entry.type) != gen:
                            dropped += 1  # that file is gone, the type is another's now
                            continue
                        try:
                            s.swap_free(entry)
                            ops["swap_free"] += 1
                        except ValueError as exc:
                            if not (gen in dying and _swapped_off(exc)):
                                raise
                            dropped += 1
        except Exception as exc:
            error(f"worker {wid}: {exc!r}\n{traceback.format_exc()}")
        finally:
            with lock:
                rep.ops.update(ops)
                rep.dropped_with_file += dropped

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

    def fast_exclusive_flipper() -> None:
        # As fast as it can (ExclusiveFlipBack sets N after each load that found its
        # page): loads keep running while exclusive_loads changes, so the swap layer
        # must learn from each load whether it dropped the entry.
        value = False
        n = 0
        try:
            while not stop.is_set():
                value = not value
                z.params["exclusive_loads"] = value
                n += 1
                time.sleep(0)
        except Exception as exc:
            error(f"exclusive flipper: {exc!r}\n{traceback.format_exc()}")
        finally:
            with lock:
                rep.exclusive_flips += n

    def churner(cid: int) -> None:
        rng = random.Random(seed * 1009 + cid)
        path = workdir / f"churn{cid}"
        cycles = forced = busy = 0
        try:
            while not stop.is_set():
                with gate.exclusive():  # no worker between a slot and its file's name
                    t = s.swapon(path, quota + 65, priority=0)
                    gen = next(generations)
                    if t in main_types:
                        error(f"churn {cid}: swapon reused a live file's type {t}")
                    churn_gen[t] = gen
                cycles += 1
                stop.wait(rng.uniform(0.02, 0.3))
                # From here on its entries may go (and only its entries may).
                dying.add(gen)
                if rng.random() < 0.3:
                    try:
                        s.swapoff(t)  # only when no page is on it
                        continue
                    except OSError as exc:
                        if exc.errno != errno.EBUSY:
                            raise
                        busy += 1
                s.swapoff(t, force=True)
                forced += 1
        except Exception as exc:
            error(f"churn {cid}: {exc!r}\n{traceback.format_exc()}")
        finally:
            with lock:
                rep.churn_cycles += cycles
                rep.churn_forced += forced
                rep.churn_busy += busy

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
    if exclusive_flipper:
        threads.append(
            threading.Thread(
                target=fast_exclusive_flipper, name="stress-exclusive-flipper", daemon=True
            )
        )
    threads += [
        threading.Thread(target=churner, args=(c,), name=f"stress-churn-{c}", daemon=True)
        for c in range(churn)
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

    # Quiesce: parameters back to normal, then check everything once more. Every
    # churned file is off by now: its entries are gone with it.
    z.params["enabled"] = True
    z.params["max_pool_percent"] = 20
    z.params["accept_threshold_percent"] = 90
    z.params["exclusive_loads"] = False
    final_ops: collections.Counter[str] = collections.Counter()
    for wid, mine in enumerate(owned):
        for entry, (want, gen) in list(mine.items()):
            if gen and (churn_gen.get(entry.type) != gen or gen in dying):
                del mine[entry]
                rep.dropped_with_file += 1
                continue
            check(wid, entry, want, gen, final_ops)
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
    {
        "workers": 4,
        "flippers": 1,
        "swap_files": 1,
        "seed": 1,
        "start_zpool": "zbud",
        "exclusive_flipper": True,
    },
    # two files of equal priority, two flippers fighting, starts on zsmalloc, more room
    {
        "workers": 3,
        "flippers": 2,
        "swap_files": 2,
        "seed": 2,
        "start_zpool": "zsmalloc",
        "ram_pages": 2048,
        "exclusive_flipper": True,
        "churn": 2,
    },
    # misbehaving neighbours: an observer that raises, plugins whose cleanup raises
    # (the first pool is theirs, so it is destroyed at the latest by close), churn
    {
        "workers": 3,
        "flippers": 2,
        "swap_files": 1,
        "seed": 3,
        "start_zpool": "raisingpool",
        "start_compressor": "raisingcomp",
        "raising_observer": True,
        "raising_plugins": True,
        "exclusive_flipper": True,
        "churn": 1,
    },
]
CONFIG_IDS = ["1file-zbud", "2files-zsmalloc-churn", "raising-neighbours"]


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
    # and what its options are for
    if rep.exclusive_flipper:
        assert rep.exclusive_flips > 0, detail
    if rep.churn_threads:
        assert rep.churn_cycles > 0, detail
    if rep.raising_observer:
        assert sum(rep.observer_raises.values()) > 0, detail
    if rep.raising_plugins:
        assert sum(rep.plugin_cleanup_raises.values()) > 0, detail


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_stress(config: dict[str, Any], tmp_path: Path) -> None:
    # (the raising plugins build on lz4's neighbour zlib and on zsmalloc)
    needs = "zsmalloc" if config.get("raising_plugins") else config["start_zpool"]
    if needs not in installed("zpool"):
        pytest.skip(f"{needs} is not installed")
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
