"""Child processes whose memory is the same run to run, and that never outlive a test.

Address space layout randomization moves the heap, the stack and every mmap from run
to run, and with them every pointer a process stores in its memory: the pages then
compress a little differently each time. ``personality(ADDR_NO_RANDOMIZE)`` in the
child before exec turns it off for that process only (it survives exec, as setarch -R
does). Where the personality call is refused (some container seccomp profiles), the
child runs with ASLR and ``Child.aslr_off`` says so.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import subprocess
import time
from collections.abc import Sequence
from types import TracebackType

__all__ = ["Child", "ChildError", "child_env", "disable_aslr"]

#: include/uapi/linux/personality.h
ADDR_NO_RANDOMIZE = 0x0040000
#: read(2)'s number, as /proc/PID/syscall shows it, by machine
_SYS_READ = {"x86_64": 0, "aarch64": 63, "riscv64": 63}
_QUERY = 0xFFFFFFFF
#: include/uapi/linux/prctl.h
_PR_SET_PDEATHSIG = 1


class ChildError(RuntimeError):
    """A child did not start, or did not become ready in time."""


def disable_aslr() -> None:
    """preexec_fn: turn ASLR off for this (forked, not yet exec'd) process, and have
    it killed if the test runner dies without closing it (a redis-server would not
    notice otherwise: it does not read its stdin).

    Errors are ignored here (a preexec_fn that raises aborts the spawn); the parent
    reads the child's personality from /proc to know whether it took.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    current = libc.personality(_QUERY)
    if current != -1:
        libc.personality(current | ADDR_NO_RANDOMIZE)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _personality(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/personality") as fh:
            return int(fh.read().strip(), 16)
    except (OSError, ValueError):
        return None


def child_env(**extra: str) -> dict[str, str]:
    """A small fixed environment: the environment is copied onto the child's stack,
    so the same variables give the same stack page run to run."""
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "MALLOC_ARENA_MAX": "1",
        # glibc's tcache writes a per-process random key (from getrandom) into every
        # chunk it holds, to catch double frees: no tcache, no random words in the heap
        "GLIBC_TUNABLES": "glibc.malloc.tcache_count=0",
    }
    env.update(extra)
    return env


class Child:
    """A child process, started with ASLR off, killed and reaped on ``close()``.

    ``ready_line()`` waits for the child's readiness line on a pipe of its own (file
    descriptor ``ready_fd`` in the child, passed as an argument by the caller's
    command through the ``{ready_fd}`` placeholder). The child's stdin is a pipe that
    ``close()`` closes first: children that wait on it exit by themselves.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        ready_pipe: bool = True,
        stdout: int | None = subprocess.DEVNULL,
    ) -> None:
        self._ready_r: int | None = None
        w = -1
        pass_fds: tuple[int, ...] = ()
        if ready_pipe:
            self._ready_r, w = os.pipe()
            pass_fds = (w,)
        args = [a.replace("{ready_fd}", str(w)) for a in argv]
        try:
            self.proc = subprocess.Popen(
                args,
                stdin=subprocess.PIPE,
                stdout=stdout,
                stderr=subprocess.PIPE,
                env=env if env is not None else child_env(),
                cwd=cwd,
                pass_fds=pass_fds,
                preexec_fn=disable_aslr,
                close_fds=True,
            )
        except BaseException:
            if self._ready_r is not None:
                os.close(self._ready_r)
            raise
        finally:
            if ready_pipe:
                os.close(w)
        self.pid = self.proc.pid
        flags = _personality(self.pid)
        self.aslr_off = flags is not None and bool(flags & ADDR_NO_RANDOMIZE)

    def ready_line(self, timeout: float) -> str:
        """The first line the child writes on its readiness pipe."""
        assert self._ready_r is not None, "started without a readiness pipe"
        deadline = time.monotonic() + timeout
        buf = b""
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ChildError(f"pid {self.pid}: not ready after {timeout:.0f} s")
            r, _, _ = select.select([self._ready_r], [], [], left)
            if not r:
                continue
            chunk = os.read(self._ready_r, 4096)
            if not chunk:
                raise ChildError(
                    f"pid {self.pid} exited before it was ready "
                    f"(exit {self.proc.wait()}): {self.stderr_tail()}"
                )
            buf += chunk
        return buf.partition(b"\n")[0].decode()

    def wait_blocked_on_stdin(self, timeout: float = 30.0) -> None:
        """Wait until the child sits in read(0, ...): after its readiness line it still
        runs a little (the call that blocks allocates its buffer, grows its stack), and
        a read of its memory in that moment would see a page more or less."""
        nr = _SYS_READ.get(os.uname().machine)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ChildError(f"pid {self.pid} exited: {self.stderr_tail()}")
            try:
                with open(f"/proc/{self.pid}/syscall") as fh:
                    fields = fh.read().split()
            except OSError:
                fields = []
            if nr is None or not fields:  # unknown arch or no permission: state only
                with open(f"/proc/{self.pid}/stat") as fh:
                    if fh.read().rpartition(")")[2].split()[0] == "S":
                        time.sleep(0.2)
                        return
            elif fields[0] == str(nr) and int(fields[1], 16) == 0:
                return
            time.sleep(0.005)
        raise ChildError(f"pid {self.pid}: not blocked on stdin after {timeout:.0f} s")

    def stderr_tail(self) -> str:
        """The end of the child's stderr, once it has exited (for error messages)."""
        if self.proc.poll() is None or self.proc.stderr is None:
            return ""
        return self.proc.stderr.read().decode(errors="replace")[-2000:].strip()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self, grace: float = 5.0) -> None:
        """Ask the child to exit (stdin closed, then SIGTERM), kill it if it lingers,
        and reap it. Safe to call twice, and when the child is already gone."""
        proc = self.proc
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait()
        if proc.stderr is not None:
            with contextlib.suppress(OSError):
                proc.stderr.close()
        if self._ready_r is not None:
            with contextlib.suppress(OSError):
                os.close(self._ready_r)
            self._ready_r = None

    def __enter__(self) -> Child:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
