"""The page allocator every zpool takes its pages from.

It stands for the kernel's buddy allocator: it hands out zeroed page-sized
``bytearray`` s and counts every page, so a pool's size is exact and a test can see
that all pages came back. It can be told to fail (``ENOMEM``) for fault injection.

The counters and the fault injection live in C when the native backend is built
(``zswap_core._core.PageCounter``), where a C allocator takes its pages through the
``page_acct`` capsule and the native store path reads ``nr_pages``; otherwise in
:class:`_PyPageCounter` below. Both behave the same, page for page.
"""

from __future__ import annotations

import errno
import threading
import warnings
from collections.abc import Callable

from . import _backend
from ._errors import ZpoolError

__all__ = ["PageAllocator"]


class _PyPageCounter:
    """The Python twin of ``_core.PageCounter``: same checks in the same order."""

    def __init__(self, page_size: int, limit: int | None) -> None:
        self.page_size = page_size
        self.limit = limit
        self.fail: Callable[[], bool] | None = None
        self.fail_next = 0
        self.nr_pages = 0
        self.peak = 0
        self.failures = 0
        self._lock = threading.Lock()

    def _injected(self) -> bool:
        if self.fail_next > 0:
            self.fail_next -= 1
            return True
        hook = self.fail
        if hook is None:
            return False
        try:
            return bool(hook())
        except Exception as exc:  # a fault hook that raises refuses the page, and says why
            warnings.warn(
                f"page allocator: fail hook {hook!r} raised {exc!r}; the page is refused",
                RuntimeWarning,
                stacklevel=2,
            )
            return True

    def charge(self, n: int) -> bool:
        """Account ``n`` pages, all or none; False when one is refused."""
        if n < 0:
            raise ValueError("cannot charge a negative number of pages")
        for got in range(n):
            refused = self._injected()
            with self._lock:
                if not refused and self.limit is not None and self.nr_pages >= self.limit:
                    refused = True
                if refused:
                    self.failures += 1
                    self.nr_pages -= got
                    return False
                self.nr_pages += 1
                self.peak = max(self.peak, self.nr_pages)
        return True

    def uncharge(self, n: int) -> None:
        with self._lock:
            if n < 0 or n > self.nr_pages:
                raise RuntimeError("page allocator: more pages freed than allocated")
            self.nr_pages -= n


class PageAllocator:
    """Hands out and takes back pages, counting them.

    ``limit`` caps the pages in use (None: no cap). ``fail`` is a fault-injection hook:
    a callable returning True makes that allocation fail; :meth:`fail_randomly` and
    :meth:`fail_next` set common ones. ``backend`` is as for
    :class:`~zswap_core.Zswap` (where the counters live).
    """

    def __init__(
        self, page_size: int = 4096, *, limit: int | None = None, backend: str | None = None
    ) -> None:
        if page_size < 512 or page_size & (page_size - 1):
            raise ValueError(f"page size must be a power of two >= 512, got {page_size}")
        self.page_size = page_size
        self.backend = _backend.choose(backend)
        core = _backend.native_module()
        self._acct: _PyPageCounter
        if self.backend == "native" and core is not None:
            self._acct = core.PageCounter(page_size, limit)
        else:
            self._acct = _PyPageCounter(page_size, limit)

    @property
    def nr_pages(self) -> int:
        """Pages currently handed out."""
        return self._acct.nr_pages

    @property
    def peak_pages(self) -> int:
        return self._acct.peak

    @property
    def failures(self) -> int:
        """Allocations refused so far (injected or over the limit)."""
        return self._acct.failures

    @property
    def limit(self) -> int | None:
        return self._acct.limit

    @limit.setter
    def limit(self, value: int | None) -> None:
        self._acct.limit = value

    @property
    def fail(self) -> Callable[[], bool] | None:
        return self._acct.fail

    @fail.setter
    def fail(self, hook: Callable[[], bool] | None) -> None:
        self._acct.fail = hook

    @property
    def page_acct(self) -> object:
        """A PyCapsule ``"zswap.page_acct"`` for C allocators (``zswap_ops.h``).

        Only on the native backend; an allocator that finds no such attribute takes
        its pages with :meth:`alloc_page`.
        """
        try:
            return self._acct.page_acct  # type: ignore[attr-defined]
        except AttributeError:
            raise AttributeError("page_acct: this PageAllocator is on the Python backend") from None

    def alloc_page(self) -> bytearray:
        """A new zeroed page; raises :class:`ZpoolError` (``ENOMEM``) when refused."""
        if not self._acct.charge(1):
            raise ZpoolError(errno.ENOMEM, "page allocation failed")
        return bytearray(self.page_size)

    def free_page(self, page: bytearray) -> None:
        """Give a page back."""
        if len(page) != self.page_size:
            raise ValueError("not a page of this allocator")
        self._acct.uncharge(1)

    # -- fault injection -------------------------------------------------------------
    def fail_randomly(self, probability: float, *, seed: int = 0) -> None:
        """Refuse each allocation with ``probability`` (seeded, reproducible)."""
        import random  # fault injection only

        rng = random.Random(seed)
        self.fail = lambda: rng.random() < probability

    def fail_next(self, count: int = 1) -> None:
        """Refuse the next ``count`` allocations."""
        self._acct.fail_next = count

    def stop_failing(self) -> None:
        self.fail = None
        self._acct.fail_next = 0
