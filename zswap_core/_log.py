"""The package's logger, created on first use (``logging`` costs ~10 ms to import)."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from typing import Any

__all__ = ["log"]


class _LazyLogger:
    __slots__ = ("_logger",)

    def __init__(self) -> None:
        self._logger: logging.Logger | None = None

    def __getattr__(self, name: str) -> Any:
        logger = self._logger
        if logger is None:
            import logging

            logger = self._logger = logging.getLogger("zswap_core")
        return getattr(logger, name)


#: ``log.info(...)``, ``log.warning(...)`` etc. on the ``zswap_core`` logger.
log: Any = _LazyLogger()
