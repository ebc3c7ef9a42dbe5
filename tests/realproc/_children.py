"""The Python children: a heap of application objects, and a 1 GiB target."""

from __future__ import annotations

import sys
from pathlib import Path

from ._spawn import Child

__all__ = ["BigTarget", "KnownPages", "PythonHeap"]

_HERE = Path(__file__).resolve().parent


class _ScriptChild:
    script = ""
    timeout = 300.0

    def __init__(self, mib: int, seed: int = 1) -> None:
        self.mib, self.seed = mib, seed
        self._start([str(mib), str(seed)])

    def _start(self, args: list[str]) -> None:
        # -S -s: no site module, no user site: the same modules every run (not -I or
        # -E: they would drop PYTHONHASHSEED, and str hashes order dicts and sets)
        argv = [sys.executable, "-S", "-s", str(_HERE / self.script), *args]
        self.child = Child([*argv, "{ready_fd}"])
        self.pid = self.child.pid
        self.aslr_off = self.child.aslr_off
        try:
            line = self.child.ready_line(self.timeout)
            self.child.wait_blocked_on_stdin()
        except BaseException:
            self.child.close()
            raise
        # "ready key=value ..."
        self.ready = dict(f.split("=", 1) for f in line.split()[1:])

    @property
    def rss_kib(self) -> int:
        return int(self.ready["rss_kib"])

    def close(self) -> None:
        self.child.close()

    def __enter__(self) -> _ScriptChild:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PythonHeap(_ScriptChild):
    """A Python process holding about ``mib`` MiB of records, dicts, lists, text and
    bytes, built from ``random.Random(seed)`` (see _pyheap_child.py)."""

    script = "_pyheap_child.py"


class BigTarget(_ScriptChild):
    """A process with ``mib`` MiB of private anonymous memory of mixed pages
    (see _bigtarget_child.py)."""

    script = "_bigtarget_child.py"


class KnownPages(_ScriptChild):
    """One mapping of pages of known kinds, in this order (see _known_pages_child.py):
    ``zero_page`` read only, ``zero_filled`` written with zeros, ``same_filled`` one
    repeated word, ``random`` incompressible, ``text`` compressible, ``untouched``."""

    script = "_known_pages_child.py"
    timeout = 60.0

    def __init__(
        self,
        *,
        zero_page: int,
        zero_filled: int,
        same_filled: int,
        random: int,
        text: int,
        untouched: int,
        seed: int = 1,
    ) -> None:
        self.counts = {
            "zero_page": zero_page,
            "zero_filled": zero_filled,
            "same_filled": same_filled,
            "random": random,
            "text": text,
            "untouched": untouched,
        }
        self._start([str(v) for v in self.counts.values()] + [str(seed)])
        self.addr = int(self.ready["addr"], 16)
        self.pages = int(self.ready["pages"])

    def region(self) -> tuple[int, int, str]:
        """(start, end, "anon") of the mapping."""
        return self.addr, self.addr + self.pages * 4096, "anon"
