"""Workloads for the ``zswap`` command: page sources and access traces.

A page source turns a *content id* (any non-negative int) into one page of bytes,
deterministically, so a simulation can keep one int per page and check every page
it reads back byte for byte:

- :class:`SyntheticSource` - a seeded mix like real swap (zero and same-filled pages,
  English-like text, heap records, machine code, incompressible data);
- :class:`FileSource` - files (or directory trees) cut into pages;
- :class:`ProcessSource` - the present private anonymous pages of a live process
  (read by :class:`ProcessReader`, one mapping at a time).

:class:`ZipfTrace` draws page ids with a zipf popularity, seeded.

Nothing here imports the core's plugins; ``import zswap_core`` does not import this.
"""

from __future__ import annotations

from ._base import PAGE_SIZE, PageSource, WorkloadError, is_same_filled
from ._files import FileSource
from ._process import ProcessReader, ProcessSource
from ._synthetic import KINDS, SyntheticSource
from ._zipf import ZipfTrace

__all__ = [
    "KINDS",
    "PAGE_SIZE",
    "FileSource",
    "PageSource",
    "ProcessReader",
    "ProcessSource",
    "SyntheticSource",
    "WorkloadError",
    "ZipfTrace",
    "is_same_filled",
]
