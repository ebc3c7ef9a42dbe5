"""Exceptions raised by the core and by drivers.

ZswapError
 +-- ParamError (also OSError: .errno is EINVAL, ENOENT, ENODEV ... as the kernel returns)
 +-- PluginError (a plugin could not be found or loaded; says which and how to fix it)
 |    +-- DuplicatePluginError
 |    +-- ApiVersionError
 +-- ZpoolError (also OSError: ENOSPC too big, EINVAL bad size/handle, ENOMEM no pages)
 +-- CompressError / DecompressError
 +-- WritebackDisabledError (also OSError, EAGAIN: a page its group keeps out of the file)
"""

from __future__ import annotations

import errno as _errno

__all__ = [
    "ApiVersionError",
    "CompressError",
    "DecompressError",
    "DuplicatePluginError",
    "ParamError",
    "PluginError",
    "ZpoolError",
    "ZswapError",
]


class ZswapError(Exception):
    """Base class of every error this package raises on purpose."""


class ParamError(ZswapError, OSError):
    """A parameter write or a boot string was refused; the old value is unchanged.

    ``errno`` follows the kernel: ``EINVAL`` for a bad value, ``ENOENT`` for an
    unavailable compressor or allocator, ``ENODEV`` for enabling without a pool.
    """

    def __init__(self, err: int, message: str) -> None:
        OSError.__init__(self, err, message)

    def __str__(self) -> str:
        return f"[{_errno.errorcode.get(self.errno or 0, self.errno)}] {self.strerror}"


class PluginError(ZswapError):
    """A plugin is missing, broken, duplicated or incompatible.

    The message names the plugin, its distribution and version where known, and the
    ``pip install`` command that would install or repair it.
    """

    def __init__(
        self,
        message: str,
        *,
        kind: str = "",
        name: str = "",
        distribution: str | None = None,
        version: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.kind = kind
        self.name = name
        self.distribution = distribution
        self.version = version
        self.hint = hint
        full = message if hint is None else f"{message}; to fix: {hint}"
        super().__init__(full)


class DuplicatePluginError(PluginError):
    """Two installed distributions provide a plugin of the same name."""


class ApiVersionError(PluginError):
    """A plugin was written for a core API version this core does not support."""


class ZpoolError(ZswapError, OSError):
    """An allocator refused a request (``ENOSPC``: too big, ``EINVAL``, ``ENOMEM``)."""

    def __init__(self, err: int, message: str) -> None:
        OSError.__init__(self, err, message)

    def __str__(self) -> str:
        return f"[{_errno.errorcode.get(self.errno or 0, self.errno)}] {self.strerror}"


class CompressError(ZswapError):
    """A compressor failed or its output would not fit the two-page buffer."""


class DecompressError(ZswapError):
    """Stored data did not decompress to exactly one page: never returned as data."""


class WritebackDisabledError(ZswapError, OSError):
    """:meth:`Swap.swap_out <zswap_core.swap.Swap.swap_out>`: zswap refused the page and
    its group has ``memory.zswap.writeback=0``, so it is not written to the swap file
    either. The page stays in memory (the kernel keeps the folio active); nothing
    changed. ``errno`` is ``EAGAIN``."""

    def __str__(self) -> str:
        return f"[{_errno.errorcode.get(self.errno or 0, self.errno)}] {self.strerror}"
