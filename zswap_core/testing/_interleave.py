"""Forced interleavings: a race in a driver is caught on every run, not when the scheduler
happens to interleave two threads.

Two threads take turns, and only one of them runs at a time:

* the *stepping* thread runs a list of steps (``pool.free(h)``, ``comp.compress(page)``,
  ``zswap.store(...)``) with a trace function that stops it before every bytecode (or
  every line) of the code under test, and
* at every such stop the *probing* thread runs one probe (a few other operations on the
  same object) to its end, while the stepping thread waits.

So every probe lands between two bytecodes of the step, at every position in turn: a
``count -= 1`` that another thread can slip into, a table emptied and rebuilt without
the lock, an output buffer that the next call overwrites. The schedule depends on
nothing but the code, so a test built on it passes or fails the same way every run.

A correct driver holds its lock around such code. The probe then has to wait for that
lock, and waiting would deadlock both threads, so the kit must see it: locks made
through ``threading.Lock()``, ``threading.RLock()`` (and the conditions, events and
barriers built on them) while :func:`watch_locks` is active tell the kit when the
probing thread is about to block on one. The stepping thread then goes on alone, and
when it releases that lock it waits until the probe has finished (or blocks again).
A driver whose locks the kit cannot see (made before :func:`watch_locks`, or in C) is
still tested, only more slowly: when a probe has not moved for ``stall`` seconds the
stepping thread goes on, and after ``max_stalls`` such waits the probes stop (``notes``
says so).

Races inside C code that releases the GIL (a codec context shared by two threads) are
out of reach of any Python-level schedule; the kit's free-running phase
(:func:`zswap_core.testing._common.run_threads`) is the only check for those.
"""

from __future__ import annotations

import _thread
import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from types import CodeType, FrameType
from typing import Any

__all__ = [
    "ContentionLog",
    "Interleaver",
    "Walk",
    "code_filter",
    "driver_code",
    "watch_locks",
]

_ORIG_LOCK: Callable[[], Any] = _thread.allocate_lock
_ORIG_RLOCK: Callable[[], Any] = threading.RLock


# -- locks that say when a thread is about to block on them -----------------------------------


class _Observer:
    """Told about contended acquires and releases of watched locks (on any thread)."""

    def contended(self, lock: object) -> None:
        """The calling thread is about to block on ``lock``."""

    def acquired(self, lock: object) -> None:
        """The calling thread got ``lock`` after :meth:`contended` (or gave up)."""

    def released(self, lock: object) -> None:
        """The calling thread released ``lock`` (an RLock: its last level)."""


#: The observers in effect; watched locks cost one list test when it is empty.
_observers: list[_Observer] = []


def _contended(lock: object) -> None:
    for obs in tuple(_observers):
        obs.contended(lock)


def _acquired(lock: object) -> None:
    for obs in tuple(_observers):
        obs.acquired(lock)


def _released(lock: object) -> None:
    for obs in tuple(_observers):
        obs.released(lock)


class _Watched:
    """A lock that reports contention to the kit's observers (shared by both kinds).

    Only what both kinds have lives here: ``threading.Condition`` looks for
    ``_is_owned`` and friends, so those stay on the reentrant kind alone.
    """

    __slots__ = ("__weakref__", "_inner")
    _inner: Any

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        inner = self._inner
        if inner.acquire(False):
            return True
        if not blocking:
            return False
        if not _observers:
            return bool(inner.acquire(True, timeout))
        _contended(self)
        try:
            return bool(inner.acquire(True, timeout))
        finally:
            _acquired(self)

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        raise NotImplementedError

    def _at_fork_reinit(self) -> None:
        self._inner._at_fork_reinit()

    def __repr__(self) -> str:
        return f"<watched {self._inner!r}>"


class _WatchedLock(_Watched):
    """``threading.Lock`` that reports contention to the kit's observers."""

    __slots__ = ()

    def __init__(self) -> None:
        self._inner = _ORIG_LOCK()

    def release(self) -> None:
        self._inner.release()
        if _observers:
            _released(self)

    def locked(self) -> bool:
        return bool(self._inner.locked())


class _WatchedRLock(_Watched):
    """``threading.RLock`` that reports contention to the kit's observers."""

    __slots__ = ()

    def __init__(self) -> None:
        self._inner = _ORIG_RLOCK()

    def release(self) -> None:
        inner = self._inner
        inner.release()
        if _observers and not inner._is_owned():
            _released(self)

    # threading.Condition uses these when its lock has them
    def _is_owned(self) -> bool:
        return bool(self._inner._is_owned())

    def _release_save(self) -> Any:
        state = self._inner._release_save()
        if _observers:
            _released(self)
        return state

    def _acquire_restore(self, state: Any) -> None:
        if _observers:
            _contended(self)
            try:
                self._inner._acquire_restore(state)
            finally:
                _acquired(self)
        else:
            self._inner._acquire_restore(state)


_watch_depth = 0


@contextlib.contextmanager
def watch_locks() -> Iterator[None]:
    """While active, ``threading.Lock()``, ``threading.RLock()`` and the locks inside
    new conditions, events, semaphores and barriers are watched locks.

    They behave as the real ones; the kit sees when a thread is about to block on one.
    Create the object under test (a pool, a compressor, a Zswap) inside the block.
    """
    global _watch_depth
    saved = (threading.Lock, threading.RLock, threading._allocate_lock)  # type: ignore[attr-defined]
    threading.Lock = _WatchedLock  # type: ignore[assignment]
    threading.RLock = _WatchedRLock  # type: ignore[assignment]
    threading._allocate_lock = _WatchedLock  # type: ignore[attr-defined]
    _watch_depth += 1
    try:
        yield
    finally:
        _watch_depth -= 1
        threading.Lock, threading.RLock, threading._allocate_lock = saved  # type: ignore[attr-defined]


class ContentionLog(_Observer):
    """Which threads have blocked on a watched lock, and which are blocked right now.

    ``with ContentionLog() as log: ...``; then ``log.count(thread)``,
    ``log.blocked(thread)`` or ``log.wait_for(thread, ...)``.
    """

    def __init__(self) -> None:
        self._mutex = _ORIG_LOCK()
        self._idents: dict[int, int] = {}
        self._waiting: dict[int, object] = {}

    def contended(self, lock: object) -> None:
        ident = _thread.get_ident()
        with self._mutex:
            self._idents[ident] = self._idents.get(ident, 0) + 1
            self._waiting[ident] = lock

    def acquired(self, lock: object) -> None:
        with self._mutex:
            self._waiting.pop(_thread.get_ident(), None)

    def released(self, lock: object) -> None:
        # whoever waits for this lock is about to run: no longer blocked
        with self._mutex:
            for ident in [i for i, held in self._waiting.items() if held is lock]:
                del self._waiting[ident]

    def count(self, thread: threading.Thread) -> int:
        """How many times ``thread`` was about to block on a watched lock."""
        with self._mutex:
            return self._idents.get(thread.ident or -1, 0)

    def blocked(self, thread: threading.Thread) -> bool:
        """``thread`` waits on a watched lock (or condition, or event) that nobody has
        released for it yet: it cannot run until another thread acts."""
        with self._mutex:
            return (thread.ident or -1) in self._waiting

    def wait_for(
        self, thread: threading.Thread, *, until: Callable[[], bool] | None = None, timeout: float
    ) -> bool:
        """Wait until ``thread`` has blocked on a watched lock (or ``until()`` is true, or
        the thread ended); False after ``timeout`` seconds (a hang, not a verdict)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count(thread) or (until is not None and until()) or not thread.is_alive():
                return True
            time.sleep(0.001)
        return False

    def __enter__(self) -> ContentionLog:
        _observers.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _observers.remove(self)


# -- which code the stepping thread stops in --------------------------------------------------


def code_filter(files: Iterable[str] = (), dirs: Iterable[str] = ()) -> Callable[[CodeType], bool]:
    """A test for code objects: defined in one of ``files`` or under one of ``dirs``."""
    fileset = frozenset(os.path.normcase(os.path.abspath(f)) for f in files)
    prefixes = tuple(os.path.join(os.path.normcase(os.path.abspath(d)), "") for d in dirs)

    def is_target(code: CodeType) -> bool:
        name = os.path.normcase(os.path.abspath(code.co_filename))
        return name in fileset or (bool(prefixes) and name.startswith(prefixes))

    return is_target


def driver_code(cls: type[Any], *, exclude: Sequence[type[Any]] = ()) -> Callable[[CodeType], bool]:
    """The code of a driver class: the modules of its classes (but not ``exclude``, the
    core's base classes), and the whole package when it is one (zsmalloc's helpers)."""
    files: set[str] = set()
    dirs: set[str] = set()
    for klass in cls.__mro__:
        if klass is object or klass in exclude:
            continue
        mod = sys.modules.get(klass.__module__)
        path = getattr(mod, "__file__", None)
        if path:
            files.add(path)
        top = klass.__module__.partition(".")[0]
        if top != klass.__module__ and top != "zswap_core":
            dirs.update(getattr(sys.modules.get(top), "__path__", ()))
    return code_filter(files, dirs)


# -- the two threads --------------------------------------------------------------------------

_IDLE, _RUNNING, _BLOCKED, _WAKING = range(4)


class Interleaver(_Observer):
    """Run ``steps`` on one thread; before every bytecode of target code that it runs,
    run ``probe(n)`` (n = 0, 1, 2, ...) to its end on a second thread.

    ``is_target``: which code objects to stop in (see :func:`driver_code`).
    ``budget``: the most probes per step (the rest of a long step runs through).
    ``granularity``: ``"opcode"`` (between any two bytecodes) or ``"line"``.
    A step may also call :meth:`pause` itself, at a point of its own (``"after
    compress() returned"``). The first exception of either thread is raised by
    :meth:`run`, with a note saying where the other thread was stopped.
    """

    def __init__(
        self,
        is_target: Callable[[CodeType], bool],
        probe: Callable[[int], None],
        *,
        budget: int = 200,
        granularity: str = "opcode",
        stall: float = 2.0,
        max_stalls: int = 3,
        timeout: float = 120.0,
    ) -> None:
        if granularity not in ("opcode", "line"):
            raise ValueError(f"granularity must be 'opcode' or 'line', not {granularity!r}")
        self._is_target = is_target
        self._probe = probe
        self.budget = budget
        self._opcodes = granularity == "opcode"
        self.stall = stall
        self.max_stalls = max_stalls
        self.timeout = timeout
        self._cache: dict[CodeType, bool] = {}
        self._mutex = _ORIG_LOCK()
        self._go = _ORIG_LOCK()  # released: the prober has work (or must stop)
        self._go.acquire()
        self._wake = _ORIG_LOCK()  # released: the prober went idle or blocked
        self._wake.acquire()
        self._state = _IDLE
        self._blocked_on: object = None
        self._request = False
        self._stop = False
        self._unsynced = False
        self._enabled = True
        self._failed = False
        self._left = 0
        self._skip = 0
        self._step = ""
        self._where = ""
        self._stepper_ident = -1
        self._prober_ident = -1
        self._tool = -1  # the sys.monitoring tool id in use, or -1: settrace
        self._stepping = False
        #: Probes run, and probes that had to wait for a lock the step held.
        self.probes = 0
        self.blocked = 0
        #: Waits that ended after ``stall`` seconds (a lock the kit cannot see).
        self.stalls = 0
        #: What the interleaver had to give up, for the test's report.
        self.notes: list[str] = []
        self.errors: list[BaseException] = []

    # -- observer (watched locks) -------------------------------------------------------
    def _signal_wake(self) -> None:  # with self._mutex held
        if self._wake.locked():
            self._wake.release()

    def contended(self, lock: object) -> None:
        if _thread.get_ident() != self._prober_ident:
            return
        with self._mutex:
            if self._state == _RUNNING:
                self._state = _BLOCKED
                self._blocked_on = lock
                self.blocked += 1
                self._signal_wake()

    def acquired(self, lock: object) -> None:
        if _thread.get_ident() != self._prober_ident:
            return
        with self._mutex:
            if self._state in (_BLOCKED, _WAKING):
                self._state = _RUNNING
                self._blocked_on = None

    def released(self, lock: object) -> None:
        if _thread.get_ident() != self._stepper_ident:
            return
        with self._mutex:
            if self._state != _BLOCKED or self._blocked_on is not lock:
                return
            self._state = _WAKING
        # Hand the lock over: the probe runs on until it ends or blocks again.
        self._wait_prober()

    # -- the stepping thread -------------------------------------------------------------
    def _wait_prober(self) -> None:
        """Wait until the probing thread is idle or blocked on a watched lock.

        A probe that makes no progress (its innermost frame stays where it is) for
        ``stall`` seconds is waiting for something the kit cannot see: the stepping
        thread then goes on without it.
        """
        deadline = 0.0
        seen: object = None
        while True:
            with self._mutex:
                if self._state in (_IDLE, _BLOCKED) or self._unsynced:
                    return
            now = time.monotonic()
            if not deadline:
                deadline = now + self.stall  # the common case: no frames looked at
            elif (here := self._prober_position()) != seen:
                deadline, seen = now + self.stall, here
            elif now >= deadline:
                with self._mutex:
                    if self._state in (_IDLE, _BLOCKED):
                        return
                    self._unsynced = True
                    self.stalls += 1
                    if self.stalls >= self.max_stalls and self._enabled:
                        self._enabled = False
                        self.notes.append(
                            f"probes stopped after {self.stalls} waits of {self.stall}s: the "
                            "probe blocks on something the kit cannot see (a lock not made "
                            "with threading.Lock/RLock while the object was created)"
                        )
                return
            self._wake.acquire(True, min(0.1, max(0.0, deadline - now)))

    def _prober_position(self) -> object:
        frame = sys._current_frames().get(self._prober_ident)
        return None if frame is None else (id(frame), frame.f_lasti)

    def _pause(self, where: Callable[[], str]) -> None:
        if self._state == _BLOCKED:
            return  # the probe waits for a lock this thread holds: go on alone
        if self._state == _IDLE:
            if self._left <= 0 or not self._enabled or self._failed:
                return
            if self._skip > 0:
                self._skip -= 1
                return
        self._wait_prober()
        with self._mutex:
            if (
                self._state != _IDLE
                or self._left <= 0
                or not self._enabled
                or self._failed
                or self._unsynced
            ):
                return
            self._left -= 1
            self._where = f"stopped {where()}, during step {self._step!r}"
            self._state = _RUNNING
            self._request = True
            if self._go.locked():
                self._go.release()
        self._wait_prober()

    def limit(self, probes: int, *, skip: int = 0) -> None:
        """From here on in this step, ``probes`` probes (instead of what is left of the
        budget), the first after ``skip`` stops that probe nothing (stepping thread)."""
        self._left = probes
        self._skip = skip

    def settle(self) -> None:
        """Wait until the probe has ended, or waits for a lock (stepping thread)."""
        if _thread.get_ident() == self._stepper_ident:
            self._wait_prober()

    @contextlib.contextmanager
    def quiet(self) -> Iterator[None]:
        """No probes inside this block (stepping thread): a step's own set-up."""
        left, self._left = self._left, 0
        try:
            yield
        finally:
            self._left = left

    def pause(self, where: str) -> None:
        """A stop of the step's own choosing: one probe runs here (stepping thread only)."""
        if _thread.get_ident() == self._stepper_ident:
            self._pause(lambda: where)

    def _target(self, code: CodeType) -> bool:
        hit = self._cache.get(code)
        if hit is None:
            hit = self._cache[code] = self._is_target(code)
        return hit

    # settrace (3.11): the stepping thread's own trace function
    def _global_trace(self, frame: FrameType, event: str, arg: object) -> Any:
        if not self._target(frame.f_code):
            return None
        if self._opcodes:
            frame.f_trace_opcodes = True
        return self._local_trace

    def _local_trace(self, frame: FrameType, event: str, arg: object) -> Any:
        if event == ("opcode" if self._opcodes else "line"):
            self._pause(lambda: _describe(frame))
        return self._local_trace

    # sys.monitoring (3.12+, where opcode events of settrace do not arrive): events of
    # the target code on every thread, of which only the stepping thread's stop
    def _monitor_start(self) -> bool:
        mon = sys.monitoring  # type: ignore[attr-defined,unused-ignore]
        tool = next((t for t in (3, 4, 2, 1, 0, 5) if mon.get_tool(t) is None), None)
        if tool is None:
            return False  # every tool id is taken (coverage, a debugger...): settrace
        mon.use_tool_id(tool, "zswap_core.testing interleaver")
        self._tool = tool
        self._event = mon.events.INSTRUCTION if self._opcodes else mon.events.LINE
        self._codes: list[CodeType] = []
        mon.register_callback(tool, mon.events.PY_START, self._on_start)
        mon.register_callback(tool, self._event, self._on_event)
        mon.restart_events()  # code starts that an earlier run disabled
        mon.set_events(tool, mon.events.PY_START)
        return True

    def _monitor_stop(self) -> None:
        mon = sys.monitoring  # type: ignore[attr-defined,unused-ignore]
        tool = self._tool
        mon.set_events(tool, 0)
        for code in self._codes:
            mon.set_local_events(tool, code, 0)
        mon.register_callback(tool, mon.events.PY_START, None)
        mon.register_callback(tool, self._event, None)
        mon.free_tool_id(tool)
        self._tool = -1

    def _on_start(self, code: CodeType, offset: int) -> Any:
        mon = sys.monitoring  # type: ignore[attr-defined,unused-ignore]
        if self._target(code) and code not in self._codes:
            mon.set_local_events(self._tool, code, self._event)
            self._codes.append(code)
        return mon.DISABLE  # once per code object is enough

    def _on_event(self, code: CodeType, arg: int) -> Any:
        if self._stepping and _thread.get_ident() == self._stepper_ident:
            frame = sys._getframe(1)
            self._pause(lambda: _describe(frame))

    def _trace(self, on: bool) -> None:
        if self._tool >= 0:
            self._stepping = on
        else:
            sys.settrace(self._global_trace if on else None)

    def _stepper(self, steps: Sequence[tuple[str, Callable[[], None]]]) -> None:
        self._stepper_ident = _thread.get_ident()
        try:
            for name, step in steps:
                self._wait_prober()
                with self._mutex:
                    if self._failed:
                        return
                    self._left = self.budget
                    self._skip = 0
                    self._step = name
                self._trace(True)
                try:
                    step()
                except BaseException as exc:
                    exc.add_note(f"(in the stepping thread, step {name!r})")
                    with self._mutex:
                        self.errors.append(exc)
                        self._failed = True
                    return
                finally:
                    self._trace(False)
            # the last probe ends before the run does
            deadline = time.monotonic() + self.timeout
            while time.monotonic() < deadline:
                with self._mutex:
                    if self._state == _IDLE:
                        return
                self._wake.acquire(True, 0.05)
            with self._mutex:
                self.errors.append(
                    AssertionError(
                        f"a probe did not finish within {self.timeout}s after the last step "
                        f"(stopped {self._where}): a lock left held, or a deadlock"
                    )
                )
        finally:
            with self._mutex:
                self._stop = True
                if self._go.locked():
                    self._go.release()

    # -- the probing thread ---------------------------------------------------------------
    def _prober(self) -> None:
        self._prober_ident = _thread.get_ident()
        while True:
            self._go.acquire()
            with self._mutex:
                if not self._request:
                    if self._stop:
                        return
                    continue
                self._request = False
                n = self.probes
                self.probes += 1
                where = self._where
            try:
                self._probe(n)
            except BaseException as exc:
                exc.add_note(
                    f"(in the probing thread, probe {n}, run while the stepping thread was {where})"
                )
                with self._mutex:
                    self.errors.append(exc)
                    self._failed = True
            finally:
                with self._mutex:
                    self._state = _IDLE
                    self._blocked_on = None
                    self._unsynced = False
                    self._signal_wake()

    # -- running ------------------------------------------------------------------------------
    def run(self, steps: Sequence[tuple[str, Callable[[], None]]]) -> None:
        """Run the steps with probes between their bytecodes; re-raise the first failure."""
        if sys.version_info >= (3, 12):
            self._monitor_start()
        _observers.append(self)
        prober = threading.Thread(target=self._prober, name="kit-prober", daemon=True)
        stepper = threading.Thread(
            target=self._stepper, args=(steps,), name="kit-stepper", daemon=True
        )
        try:
            prober.start()
            stepper.start()
            stepper.join(self.timeout)
            alive = stepper.is_alive()
            with self._mutex:
                self._stop = True
                if self._go.locked():
                    self._go.release()
            prober.join(0 if alive else self.timeout)
        finally:
            _observers.remove(self)
            if self._tool >= 0:
                self._stepping = False
                self._monitor_stop()
        stuck = [t.name for t in (stepper, prober) if t.is_alive()]
        if self.errors:
            if stuck:
                self.errors[0].add_note(f"(threads still running: {stuck})")
            raise self.errors[0]
        if stuck:
            raise AssertionError(
                f"{stuck} did not finish within {self.timeout}s (deadlock?); the stepping "
                f"thread was last {self._where or 'not stopped'}"
            )


class Walk:
    """One action of a second thread walked through every stop of an operation.

    ``run(step, stops)`` runs ``step(j)`` for j = 0 .. stops-1 on the stepping thread.
    A step sets itself up inside :meth:`quiet`, calls :meth:`at` (``at(j, action)``),
    runs the operation, and calls :meth:`done`: ``action`` runs on the other thread at
    the j-th stop of the operation in target code, while the operation waits there (or,
    when the action needs a lock the operation holds, from the moment it lets go).
    """

    def __init__(self, is_target: Callable[[CodeType], bool], *, granularity: str = "line"):
        self._action: Callable[[], None] | None = None
        self._ran = False
        self.il = Interleaver(is_target, self._probe, granularity=granularity, budget=10**9)
        #: Steps whose action ran (a step with fewer than j stops runs none).
        self.fired = 0

    def _probe(self, n: int) -> None:
        action, self._action = self._action, None
        if action is not None:
            self._ran = True
            action()

    def quiet(self) -> contextlib.AbstractContextManager[None]:
        return self.il.quiet()

    def at(self, j: int, action: Callable[[], None]) -> None:
        self._action, self._ran = action, False
        self.il.limit(1, skip=j)

    def done(self) -> bool:
        """The operation is over: no action after this; waits for the action to end
        (unless it waits for a lock the step still holds). Whether the action ran."""
        self.il.limit(0)
        self.il.settle()
        self._action = None
        self.fired += self._ran
        return self._ran

    def run(self, step: Callable[[int], None], stops: int) -> None:
        """``step(j)`` for j = 0 .. stops-1; the last must be past the end of every
        operation (its actions never ran), so that every line was reached."""
        last = [0]

        def one(j: int) -> Callable[[], None]:
            def run() -> None:
                before = self.fired
                step(j)
                last[0] = self.fired - before

            return run

        self.il.run([(f"stop {j}", one(j)) for j in range(stops)])
        assert not self.il.stalls, self.il.notes
        assert self.fired and not last[0], (
            f"the actions ran {self.fired} times, {last[0]} of them in the last step: the "
            f"walk must go past the end of each operation, to reach every line (raise "
            f"{stops})"
        )


def _describe(frame: FrameType) -> str:
    code = frame.f_code
    name = getattr(code, "co_qualname", code.co_name)
    return (
        f"in {name}() at {os.path.basename(code.co_filename)}:{frame.f_lineno} "
        f"(bytecode offset {frame.f_lasti})"
    )
