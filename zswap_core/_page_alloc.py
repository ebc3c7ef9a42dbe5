"""The page allocator every zpool takes its pages from.

It stands for the kernel's buddy allocator: it hands out zeroed page-sized
``bytearray`` s and counts every page, so a pool's size is exact and a test can see
that all pages came back. It can be told to fail (``ENOMEM``) for fault injection.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable

from ._errors import ZpoolError

__all__ = ["PageAllocator"]


class PageAllocator:
    """Hands out and takes back pages, counting them.

    ``limit`` caps the pages in use (None: no cap). ``fail`` is a fault-injection hook:
    a callable returning True makes that allocation fail; :meth:`fail_randomly` and
    :meth:`fail_next` set common ones.
    """

    def __init__(self, page_size: int = 4096, *, limit: int | None = None) -> None:
        if page_size < 512 or page_size & (page_size - 1):
            raise ValueError(f"page size must be a power of two >= 512, got {page_size}")
        self.page_size = page_size
        self.limit = limit
        self.fail: Callable[[], bool] | None = None
        self._lock = threading.Lock()
        #: Pages currently handed out (a plain attribute: zswap reads it on every store).
        self.nr_pages = 0
        self._peak = 0
        self._failures = 0

    @property
    def peak_pages(self) -> int:
        return self._peak

    @property
    def failures(self) -> int:
        """Allocations refused so far (injected or over the limit)."""
        return self._failures

    def alloc_page(self) -> bytearray:
        """A new zeroed page; raises :class:`ZpoolError` (``ENOMEM``) when refused."""
        with self._lock:
            if (self.fail is not None and self.fail()) or (
                self.limit is not None and self.nr_pages >= self.limit
            ):
                self._failures += 1
                raise ZpoolError(errno.ENOMEM, "page allocation failed")
            self.nr_pages += 1
            if self.nr_pages > self._peak:
                self._peak = self.nr_pages
        return bytearray(self.page_size)

    def free_page(self, page: bytearray) -> None:
        """Give a page back."""
        if len(page) != self.page_size:
            raise ValueError("not a page of this allocator")
        with self._lock:
            if self.nr_pages <= 0:
                raise RuntimeError("page allocator: more pages freed than allocated")
            self.nr_pages -= 1

    # -- fault injection -------------------------------------------------------------
    def fail_randomly(self, probability: float, *, seed: int = 0) -> None:
        """Refuse each allocation with ``probability`` (seeded, reproducible)."""
        import random  # fault injection only

        rng = random.Random(seed)
        self.fail = lambda: rng.random() < probability

    def fail_next(self, count: int = 1) -> None:
        """Refuse the next ``count`` allocations."""
        remaining = [count]

        def _fail() -> bool:
            if remaining[0] > 0:
                remaining[0] -= 1
                return True
            return False

        self.fail = _fail

    def stop_failing(self) -> None:
        self.fail = None
