"""Files as ``zswap advise`` targets: a regular file's pages, as the page cache holds them."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

from ..workload._base import PAGE_SIZE, WorkloadError

__all__ = ["file_pages", "file_targets"]


def _walk(top: str, skipped: list[str]) -> Iterator[str]:
    """The regular files under directory ``top``, sorted; symlinks are not followed."""

    def onerror(exc: OSError) -> None:
        skipped.append(f"{exc.filename}: {exc.strerror or exc}")

    for root, dirs, files in os.walk(top, onerror=onerror):
        dirs.sort()
        for f in sorted(files):
            full = os.path.join(root, f)
            if os.path.islink(full) or not os.path.isfile(full):
                continue
            yield full


def file_pages(path: str) -> int:
    """How many pages ``path`` has now (its last page is zero-tailed, as in the page cache).

    Raises OSError when it cannot be opened for reading.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
    finally:
        os.close(fd)
    return (size + PAGE_SIZE - 1) // PAGE_SIZE


def file_targets(paths: Sequence[str]) -> tuple[list[tuple[str, int]], list[str]]:
    """(path, pages) of the regular files named or found under the directories named.

    A named path that is missing or unreadable raises :class:`WorkloadError` (bad input:
    nothing is done); an unreadable file inside a directory is skipped with one line in
    the second item. An empty file is kept, with 0 pages: a source is reported as it is.
    """
    out: list[tuple[str, int]] = []
    skipped: list[str] = []
    for top in paths:
        top = os.fspath(top)
        if not os.path.exists(top):
            raise WorkloadError(f"{top}: No such file or directory")
        if os.path.isdir(top):
            for path in _walk(top, skipped):
                try:
                    out.append((path, file_pages(path)))
                except OSError as exc:
                    skipped.append(f"{path}: {exc.strerror or exc}")
            continue
        if not os.path.isfile(top):
            raise WorkloadError(f"{top}: not a regular file or a directory")
        try:
            out.append((top, file_pages(top)))
        except OSError as exc:
            raise WorkloadError(f"{top}: {exc.strerror or exc}") from None
    return out, skipped
