"""Files cut into pages (the last partial page zero-padded)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

from ._base import PAGE_SIZE, PageSource, WorkloadError

__all__ = ["FileSource"]


def _walk(path: str) -> Iterator[str]:
    if os.path.isdir(path):
        for root, dirs, files in os.walk(path, onerror=None):
            dirs.sort()
            for f in sorted(files):
                full = os.path.join(root, f)
                if os.path.isfile(full) and not os.path.islink(full):
                    yield full
    else:
        yield path


class FileSource(PageSource):
    """The pages of ``paths`` in order; directories are walked (sorted, regular files).

    ``max_pages`` stops reading once that many pages are in (None: read everything).
    An unreadable path raises :class:`WorkloadError` naming it; inside a directory,
    unreadable files are skipped.
    """

    name = "files"

    def __init__(
        self,
        paths: Iterable[str | os.PathLike[str]],
        *,
        page_size: int = PAGE_SIZE,
        max_pages: int | None = None,
    ) -> None:
        self.paths = [os.fspath(p) for p in paths]
        if not self.paths:
            raise WorkloadError("files: no paths given")
        pages: list[bytes] = []
        nfiles = 0
        for top in self.paths:
            if not os.path.exists(top):
                raise WorkloadError(f"{top}: No such file or directory")
            is_dir = os.path.isdir(top)
            for path in _walk(top):
                if max_pages is not None and len(pages) >= max_pages:
                    break
                try:
                    with open(path, "rb") as fh:
                        while max_pages is None or len(pages) < max_pages:
                            chunk = fh.read(page_size)
                            if not chunk:
                                break
                            if len(chunk) < page_size:
                                chunk += bytes(page_size - len(chunk))
                            pages.append(chunk)
                except OSError as exc:
                    if is_dir:
                        continue
                    raise WorkloadError(f"{path}: {exc.strerror or exc}") from None
                nfiles += 1
        if not pages:
            raise WorkloadError(f"files: no data in {' '.join(self.paths)}")
        self.nr_files = nfiles
        super().__init__(pages, page_size)

    def describe(self) -> str:
        return f"files: {self.nr_base} pages from {self.nr_files} file(s)"
