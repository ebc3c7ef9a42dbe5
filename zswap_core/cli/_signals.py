"""SIGINT, SIGTERM and SIGHUP end a command cleanly: cleanup runs, then one line.

Python's default SIGTERM and SIGHUP kill the process on the spot, so ``zswap run`` would
leave its temporary swap file behind; Ctrl-C raises KeyboardInterrupt wherever the
program happens to be, also in the middle of a swap-out inside the core. While
:func:`installed` is active the three signals raise :class:`Terminated` instead; inside
an :func:`at_safe_points` section they are only recorded, and raised where the section
calls ``poll()`` or when it ends. ``zswap run`` keeps its swap file's whole life (from
creating the folder to removing it) in such a section, so no signal can land between
creating the file and the ``try`` that removes it, or in the middle of removing it.

A second signal after the first was taken means the user insists: the process ends at
once, with the shell's status for the signal and no cleanup. A signal that was ignored
when the command started (``nohup``, a background job's SIGINT) stays ignored.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

__all__ = [
    "TERM_GRACE_S",
    "WORKER_HELD",
    "Terminated",
    "at_safe_points",
    "blocked_while_starting",
    "end_workers",
    "installed",
    "poll",
    "worker_setup",
]

_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Terminated(BaseException):
    """A signal ends the command (BaseException: ``except Exception`` does not stop it)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)

    @property
    def exit_status(self) -> int:
        return 128 + self.signum  # what a shell shows for a process killed by the signal

    @property
    def message(self) -> str:
        if self.signum == signal.SIGINT:
            return "interrupted"
        return f"terminated ({signal.Signals(self.signum).name})"


class _State:
    depth = 0  # > 0: inside at_safe_points(); signals are recorded, not raised
    pending: int | None = None  # a signal held back
    taken = False  # a signal has been raised as Terminated


_state = _State()


def _handler(signum: int, frame: FrameType | None) -> None:
    if _state.taken or _state.pending is not None:
        os._exit(128 + signum)  # the second one: stop now
    if _state.depth:
        _state.pending = signum
        return
    _state.taken = True
    raise Terminated(signum)


def poll() -> None:
    """Raise :class:`Terminated` if a signal came in while it was held back."""
    signum = _state.pending
    if signum is not None:
        _state.pending = None
        _state.taken = True
        raise Terminated(signum)


@contextmanager
def at_safe_points() -> Iterator[Callable[[], None]]:
    """Hold signals back inside; yields :func:`poll` to call where stopping is safe.

    On a normal exit a signal still held back is raised; when the section ends by an
    exception (a polled signal, an error) that exception goes on.
    """
    _state.depth += 1
    try:
        yield poll
    finally:
        _state.depth -= 1
    if not _state.depth:
        poll()


@contextmanager
def installed() -> Iterator[None]:
    """Handle the signals for the duration (in the main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old: dict[int, object] = {}
    for sig in _SIGNALS:
        current = signal.getsignal(sig)
        default = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
        if current is default:
            old[sig] = current
            signal.signal(sig, _handler)
    try:
        yield
    finally:
        for signum, handler in old.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        _state.depth = 0
        _state.pending = None
        _state.taken = False


#: Seconds a worker process has to end after SIGTERM before it is killed.
TERM_GRACE_S = 2.0


def end_workers(procs: Iterable[Any]) -> None:
    """Terminate the live ones of ``procs`` (multiprocessing processes) and reap them all.

    A worker keeps the command's signals blocked from its fork until it has set its own
    handlers, so that this process's handler never runs in it; a SIGTERM sent in that
    window waits, pending, until the worker gets there, which on a loaded machine (an
    exec'd worker unpickling its pages) may take long. Ctrl-C must not wait on that: a
    worker still there after :data:`TERM_GRACE_S` gets SIGKILL, which it cannot block.
    """
    procs = list(procs)
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    deadline = time.monotonic() + TERM_GRACE_S
    for proc in procs:
        proc.join(max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()
            proc.join()


# -- worker processes (zswap compare, zswap advise) ----------------------------------

#: The signals that end a command; a worker holds them blocked until it has set its own.
WORKER_HELD = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextmanager
def blocked_while_starting() -> Iterator[None]:
    """Block the ending signals while a worker starts.

    The worker inherits the mask (through exec too) and unblocks them in
    :func:`worker_setup`, once it has its own handlers: a fork would otherwise run this
    process's handler.
    """
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, WORKER_HELD)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def worker_setup(parent: int) -> None:
    """A worker's signals: the parent takes Ctrl-C (the terminal sends it to the whole
    group) and hang-ups and ends the workers itself; SIGTERM (its terminate()) ends a
    worker at once; and the kernel sends SIGTERM if the parent dies (Linux)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, WORKER_HELD)
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before the request took effect
        os._exit(1)
