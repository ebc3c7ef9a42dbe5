"""Which implementation runs the per-page paths: the C extension or the Python one.

``zswap_core._core`` (sources in ``zswap_core/_native/``) is the native backend: the
entry trees, the LRU, the counters and store/load/invalidate in C. The Python code in
``_zswap.py`` is the reference, kept and tested alongside, and the fallback where the
extension was not built (no C compiler at install time).

The choice, per :class:`~zswap_core.Zswap`: its ``backend=`` argument, else the
``ZSWAP_BACKEND`` environment variable (``native``, ``python`` or ``auto``), else
``auto``: native when it is built. A missing extension under ``auto`` is said once.
"""

from __future__ import annotations

import os
import warnings
from types import ModuleType

__all__ = ["BACKENDS", "NATIVE_ERROR", "choose", "native_module"]

BACKENDS = ("auto", "native", "python")

_core: ModuleType | None
try:
    import zswap_core._core as _built
except ImportError as exc:  # not built: pure-Python install (or built for another Python)
    _core = None
    #: Why the native backend is unavailable (None: it is available).
    NATIVE_ERROR: str | None = f"the C extension zswap_core._core is not built ({exc})"
else:
    _core = _built
    NATIVE_ERROR = None

_warned = False


def native_module() -> ModuleType | None:
    """The C extension module, or None when it is not built."""
    return _core


def choose(backend: str | None = None) -> str:
    """``"native"`` or ``"python"`` for a new instance (see the module docstring).

    ``native`` asked for explicitly where it is not built is an error, not a silent
    fallback: whoever asks for it wants to measure or test it.
    """
    global _warned
    source = "backend="
    if backend is None:
        backend = os.environ.get("ZSWAP_BACKEND", "").strip().lower() or "auto"
        source = "ZSWAP_BACKEND="
    if backend not in BACKENDS:
        raise ValueError(f"{source}{backend!r}: expected one of {', '.join(BACKENDS)}")
    if backend == "python":
        return "python"
    if _core is not None:
        return "native"
    if backend == "native":
        raise ValueError(f"{source}'native': {NATIVE_ERROR}")
    if not _warned:
        _warned = True
        warnings.warn(
            f"zswap: using the Python backend: {NATIVE_ERROR}; reinstall zswap-core "
            "where gcc and the Python headers are present for the native one",
            RuntimeWarning,
            stacklevel=3,
        )
    return "python"
