"""The present private anonymous pages of a live process (Linux /proc)."""

from __future__ import annotations

import errno
import os
import struct

from ._base import PAGE_SIZE, PageSource, WorkloadError

__all__ = ["ProcessSource", "anonymous_regions"]

_PRESENT = 1 << 63
_SWAPPED = 1 << 62


def anonymous_regions(pid: int) -> list[tuple[int, int, str]]:
    """(start, end, name) of the private writable anonymous mappings of ``pid``.

    That is ``rw-p`` mappings with no file, or ``[heap]`` / ``[stack]``.
    """
    path = f"/proc/{pid}/maps"
    try:
        with open(path) as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError:
        raise WorkloadError(f"pid {pid}: no such process") from None
    except PermissionError:
        raise WorkloadError(f"pid {pid}: permission denied reading {path}") from None
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


class ProcessSource(PageSource):
    """Pages read from ``/proc/PID/mem``, only those present in RAM (pagemap bit 63).

    Needs the right to ptrace ``pid`` (one's own processes, or root); without it
    raises :class:`WorkloadError` with a one-line reason. ``max_pages`` caps the read.
    """

    name = "process"

    def __init__(
        self, pid: int, *, page_size: int = PAGE_SIZE, max_pages: int | None = None
    ) -> None:
        if pid <= 0:
            raise WorkloadError(f"pid {pid}: not a valid process id")
        if page_size != os.sysconf("SC_PAGE_SIZE"):
            raise WorkloadError(f"page size must be the system's ({os.sysconf('SC_PAGE_SIZE')})")
        self.pid = pid
        regions = anonymous_regions(pid)
        pages: list[bytes] = []
        self.nr_absent = 0
        try:
            mem = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
            pagemap = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY)
        except FileNotFoundError:
            raise WorkloadError(f"pid {pid}: no such process") from None
        except PermissionError:
            raise WorkloadError(
                f"pid {pid}: permission denied reading its memory "
                "(needs ptrace access: the same user and kernel.yama.ptrace_scope=0, or root)"
            ) from None
        try:
            for start, end, _name in regions:
                if max_pages is not None and len(pages) >= max_pages:
                    break
                self._read_region(mem, pagemap, start, end, page_size, pages, max_pages)
        finally:
            os.close(mem)
            os.close(pagemap)
        if not pages:
            raise WorkloadError(f"pid {pid}: no present anonymous pages could be read")
        self.nr_regions = len(regions)
        super().__init__(pages, page_size)

    def _read_region(
        self,
        mem: int,
        pagemap: int,
        start: int,
        end: int,
        page_size: int,
        pages: list[bytes],
        max_pages: int | None,
    ) -> None:
        first = start // page_size
        count = (end - start) // page_size
        step = 1 << 14  # pagemap entries per read
        for base in range(0, count, step):
            n = min(step, count - base)
            try:
                raw = os.pread(pagemap, 8 * n, 8 * (first + base))
            except PermissionError:
                raise WorkloadError(f"pid {self.pid}: permission denied reading pagemap") from None
            except OSError:
                return
            entries = struct.unpack(f"<{len(raw) // 8}Q", raw)
            run_start = -1
            for i, e in enumerate((*entries, 0)):
                if e & _PRESENT:
                    if run_start < 0:
                        run_start = i
                    continue
                if run_start >= 0:
                    self._read_run(
                        mem,
                        start + (base + run_start) * page_size,
                        i - run_start,
                        page_size,
                        pages,
                        max_pages,
                    )
                    run_start = -1
                    if max_pages is not None and len(pages) >= max_pages:
                        return
                if i < len(entries):
                    self.nr_absent += 1

    def _read_run(
        self, mem: int, addr: int, n: int, page_size: int, pages: list[bytes], max_pages: int | None
    ) -> None:
        if max_pages is not None:
            n = min(n, max_pages - len(pages))
        try:
            data = os.pread(mem, n * page_size, addr)
        except PermissionError:
            raise WorkloadError(f"pid {self.pid}: permission denied reading its memory") from None
        except OSError as exc:
            if exc.errno == errno.ESRCH:
                raise WorkloadError(f"pid {self.pid}: the process exited") from None
            # a page that went away under us (EIO): fall back to page by page
            for k in range(n):
                try:
                    p = os.pread(mem, page_size, addr + k * page_size)
                except OSError:
                    continue
                if len(p) == page_size:
                    pages.append(p)
            return
        for off in range(0, len(data) - page_size + 1, page_size):
            pages.append(data[off : off + page_size])

    def describe(self) -> str:
        return (
            f"process {self.pid}: {self.nr_base} present pages from "
            f"{self.nr_regions} anonymous mappings ({self.nr_absent} not present, skipped)"
        )
