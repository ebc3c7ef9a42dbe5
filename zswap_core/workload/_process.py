"""The present private anonymous pages of a live process (Linux /proc)."""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Iterator

from ._base import PAGE_SIZE, PageSource, WorkloadError

__all__ = ["ProcessReader", "ProcessSource", "anonymous_regions"]

_PRESENT = 1 << 63
_SWAPPED = 1 << 62
PF_KTHREAD = 0x00200000  # include/linux/sched.h: the task is a kernel thread


def _no_such_process(pid: int) -> WorkloadError:
    return WorkloadError(f"pid {pid}: no such process")


def _exited(pid: int) -> WorkloadError:
    return WorkloadError(f"pid {pid} exited while being read")


def check_user_process(pid: int, proc: str = "/proc") -> None:
    """Raise :class:`WorkloadError` unless ``pid`` is a live process with user memory.

    A kernel thread has no user address space and a zombie has given its up: /proc
    shows them with empty maps, and opening their ``mem`` fails with ESRCH.
    """
    path = f"{proc}/{pid}/stat"
    try:
        with open(path, "rb") as fh:
            text = fh.read().decode("ascii", "replace")
    except (FileNotFoundError, ProcessLookupError):
        raise _no_such_process(pid) from None
    except OSError as exc:
        raise WorkloadError(f"pid {pid}: cannot read {path}: {exc.strerror or exc}") from None
    # "PID (COMM) STATE PPID PGRP SESSION TTY TPGID FLAGS ...": COMM may hold ")" and spaces
    fields = text.rpartition(")")[2].split()
    try:
        state, flags = fields[0], int(fields[6])
    except (IndexError, ValueError):
        raise WorkloadError(f"pid {pid}: cannot parse {path}") from None
    if flags & PF_KTHREAD:
        raise WorkloadError(f"pid {pid} is a kernel thread: no user memory")
    if state in ("Z", "X", "x"):
        raise WorkloadError(f"pid {pid} is a zombie (it has exited): no user memory")


def anonymous_regions(pid: int, proc: str = "/proc") -> list[tuple[int, int, str]]:
    """(start, end, name) of the private writable anonymous mappings of ``pid``.

    That is ``rw-p`` mappings with no file, or ``[heap]`` / ``[stack]``.
    """
    path = f"{proc}/{pid}/maps"
    try:
        with open(path) as fh:
            lines = fh.read().splitlines()
    except (FileNotFoundError, ProcessLookupError):
        raise _no_such_process(pid) from None
    except PermissionError:
        raise WorkloadError(f"pid {pid}: permission denied reading {path}") from None
    except OSError as exc:
        raise WorkloadError(f"pid {pid}: cannot read {path}: {exc.strerror or exc}") from None
    out = []
    for line in lines:
        fields = line.split(maxsplit=5)
        if len(fields) < 5:
            continue
        perms = fields[1]
        name = fields[5].strip() if len(fields) == 6 else ""
        if perms[:2] != "rw" or perms[3] != "p":
            continue
        if name and name not in ("[heap]", "[stack]"):
            continue
        lo, _, hi = fields[0].partition("-")
        out.append((int(lo, 16), int(hi, 16), name or "[anon]"))
    return out


class ProcessReader:
    """Reads the present private anonymous pages of ``pid``, one mapping at a time.

    The process is checked and its mappings listed here (``regions``); iterating opens
    ``/proc/PID/mem`` and ``pagemap`` and yields, for each mapping, the list of its pages
    that are present in RAM (pagemap bit 63). ``max_pages`` caps the total.

    Errors are :class:`WorkloadError` with a one-line reason: no such process, a kernel
    thread or a zombie (no user memory), no permission, or "exited while being read".
    The last one is told apart from an unmapped page by what the kernel returns: once a
    process's memory is gone, reads of its ``mem`` and ``pagemap`` return end of file,
    where a page that is merely not mapped fails with EIO.
    """

    def __init__(
        self,
        pid: int,
        *,
        page_size: int = PAGE_SIZE,
        max_pages: int | None = None,
        proc: str = "/proc",
    ) -> None:
        if pid <= 0:
            raise WorkloadError(f"pid {pid}: not a valid process id")
        if page_size != os.sysconf("SC_PAGE_SIZE"):
            raise WorkloadError(f"page size must be the system's ({os.sysconf('SC_PAGE_SIZE')})")
        self.pid = pid
        self.page_size = page_size
        self.max_pages = max_pages
        self.proc = proc
        check_user_process(pid, proc)
        self.regions = anonymous_regions(pid, proc)
        self.nr_absent = 0
        self.nr_pages = 0

    def _open(self, name: str) -> int:
        path = f"{self.proc}/{self.pid}/{name}"
        try:
            return os.open(path, os.O_RDONLY)
        except PermissionError:
            raise WorkloadError(
                f"pid {self.pid}: permission denied reading its memory "
                "(needs ptrace access: the same user and kernel.yama.ptrace_scope=0, or root)"
            ) from None
        except (FileNotFoundError, ProcessLookupError):
            # It was there when its maps were read: it has exited since (or is exiting).
            raise _exited(self.pid) from None
        except OSError as exc:
            raise WorkloadError(f"pid {self.pid}: cannot open {path}: {exc.strerror}") from None

    def __iter__(self) -> Iterator[list[bytes]]:
        if not self.regions:
            return
        mem = self._open("mem")
        try:
            pagemap = self._open("pagemap")
            try:
                for start, end, _name in self.regions:
                    if self.max_pages is not None and self.nr_pages >= self.max_pages:
                        break
                    pages: list[bytes] = []
                    self._read_region(mem, pagemap, start, end, pages)
                    self.nr_pages += len(pages)
                    yield pages
            finally:
                os.close(pagemap)
        finally:
            os.close(mem)

    def _room(self, pages: list[bytes]) -> int | None:
        """How many more pages may be read into ``pages`` (None: no cap)."""
        if self.max_pages is None:
            return None
        return self.max_pages - self.nr_pages - len(pages)

    def _read_region(
        self, mem: int, pagemap: int, start: int, end: int, pages: list[bytes]
    ) -> None:
        page_size = self.page_size
        first = start // page_size
        count = (end - start) // page_size
        step = 1 << 14  # pagemap entries per read
        for base in range(0, count, step):
            n = min(step, count - base)
            try:
                raw = os.pread(pagemap, 8 * n, 8 * (first + base))
            except PermissionError:
                raise WorkloadError(f"pid {self.pid}: permission denied reading pagemap") from None
            except ProcessLookupError:
                raise _exited(self.pid) from None
            except OSError as exc:
                raise WorkloadError(f"pid {self.pid}: reading pagemap: {exc.strerror}") from None
            if not raw:
                raise _exited(self.pid)  # end of file: the address space is gone
            entries = struct.unpack(f"<{len(raw) // 8}Q", raw)
            run_start = -1
            for i, e in enumerate((*entries, 0)):
                if e & _PRESENT:
                    if run_start < 0:
                        run_start = i
                    continue
                if run_start >= 0:
                    self._read_run(
                        mem, start + (base + run_start) * page_size, i - run_start, pages
                    )
                    run_start = -1
                    room = self._room(pages)
                    if room is not None and room <= 0:
                        return
                if i < len(entries):
                    self.nr_absent += 1

    def _read_run(self, mem: int, addr: int, n: int, pages: list[bytes]) -> None:
        page_size = self.page_size
        room = self._room(pages)
        if room is not None:
            n = min(n, room)
        if n <= 0:
            return
        try:
            data = os.pread(mem, n * page_size, addr)
        except PermissionError:
            raise WorkloadError(f"pid {self.pid}: permission denied reading its memory") from None
        except OSError as exc:
            if exc.errno == errno.ESRCH:
                raise _exited(self.pid) from None
            if exc.errno != errno.EIO:
                raise WorkloadError(f"pid {self.pid}: reading its memory: {exc.strerror}") from None
            # a page that went away under us (EIO): fall back to page by page
            for k in range(n):
                try:
                    p = os.pread(mem, page_size, addr + k * page_size)
                except OSError as exc2:
                    if exc2.errno == errno.ESRCH:
                        raise _exited(self.pid) from None
                    continue
                if not p:
                    raise _exited(self.pid) from None
                if len(p) == page_size:
                    pages.append(p)
            return
        if not data:
            raise _exited(self.pid)  # end of file: the address space is gone
        for off in range(0, len(data) - page_size + 1, page_size):
            pages.append(data[off : off + page_size])


class ProcessSource(PageSource):
    """Pages read from ``/proc/PID/mem``, only those present in RAM (pagemap bit 63).

    Needs the right to ptrace ``pid`` (one's own processes, or root); without it, for a
    kernel thread or a zombie, or if the process exits while it is read, raises
    :class:`WorkloadError` with a one-line reason. ``max_pages`` caps the read.
    ``proc`` is where procfs is mounted.
    """

    name = "process"

    def __init__(
        self,
        pid: int,
        *,
        page_size: int = PAGE_SIZE,
        max_pages: int | None = None,
        proc: str = "/proc",
    ) -> None:
        reader = ProcessReader(pid, page_size=page_size, max_pages=max_pages, proc=proc)
        self.pid = pid
        pages: list[bytes] = []
        for batch in reader:
            pages.extend(batch)
        if not pages:
            raise WorkloadError(f"pid {pid}: no present anonymous pages could be read")
        self.nr_absent = reader.nr_absent
        self.nr_regions = len(reader.regions)
        super().__init__(pages, page_size)

    def describe(self) -> str:
        return (
            f"process {self.pid}: {self.nr_base} present pages from "
            f"{self.nr_regions} anonymous mappings ({self.nr_absent} not present, skipped)"
        )
