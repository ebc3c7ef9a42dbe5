"""Observer hooks (pluggy): the userspace analogue of zswap's tracepoints.

Observers are 1:N listeners: pool created/destroyed, parameter changed, store, load,
invalidate, writeback. They come from the ``zswap.hooks`` entry point group (loaded
when the first :class:`~zswap_core.Zswap` is made) or from :func:`register_observer`.

The store/load path pays nothing measurable while no observer is registered: it tests
one module attribute (:data:`STATE.active`) before building any call.
"""

from __future__ import annotations

import math
import threading

from . import _backend
from ._log import log

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    import pluggy

__all__ = [
    "STATE",
    "call",
    "hookimpl",
    "plugin_manager",
    "register_observer",
    "unregister_observer",
]

PROJECT = "zswap"


class _State:
    __slots__ = ("active", "entry_points_loaded", "pm")

    def __init__(self) -> None:
        self.active = False
        self.pm: pluggy.PluginManager | None = None
        self.entry_points_loaded = False


STATE = _State()
_lock = threading.Lock()


class _Specs:
    """Hook specifications; an observer implements any subset of them."""

    def __init__(self) -> None:
        import pluggy

        spec = pluggy.HookspecMarker(PROJECT)

        class Specs:
            @spec
            def zswap_pool_created(self, zswap: Any, pool: Any) -> None:
                """A pool (compressor + zpool) was created."""

            @spec
            def zswap_pool_destroyed(self, zswap: Any, pool: Any) -> None:
                """A pool lost its last entry and was destroyed."""

            @spec
            def zswap_compressor_created(self, zswap: Any, pool: Any) -> None:
                """A compressor instance was created, for the pool (compressor slot) named
                in ``pool``. With ``shared_zpool=Y`` the pool may share an older pool's zpool
                (``pool.shared``)."""

            @spec
            def zswap_compressor_destroyed(self, zswap: Any, pool: Any) -> None:
                """A compressor instance was closed: the last entry that used it went, and
                it was no longer current. Its zpool lives on while another pool shares it."""

            @spec
            def zswap_param_changed(self, module: str, name: str, old: Any, new: Any) -> None:
                """A module parameter took a new value."""

            @spec
            def zswap_store(self, zswap: Any, type: int, offset: int, stored: bool) -> None:
                """A page was offered to zswap; ``stored`` says whether zswap took it."""

            @spec
            def zswap_load(self, zswap: Any, type: int, offset: int, found: bool) -> None:
                """A page was asked for; ``found`` says whether zswap had it."""

            @spec
            def zswap_invalidate(self, zswap: Any, type: int, offset: int) -> None:
                """A stored page was dropped."""

            @spec
            def zswap_writeback(self, zswap: Any, type: int, offset: int, ok: bool) -> None:
                """An entry was written back to the swap device (or the attempt failed)."""

        self.specs = Specs


def hookimpl(function: Any = None, **kwargs: Any) -> Any:
    """Decorator for observer methods (``pluggy.HookimplMarker("zswap")``)."""
    import pluggy

    marker = pluggy.HookimplMarker(PROJECT)
    return marker(function, **kwargs) if function is not None else marker(**kwargs)


def plugin_manager() -> pluggy.PluginManager:
    """The process-wide observer manager (pluggy imported on first use)."""
    if STATE.pm is None:
        with _lock:
            if STATE.pm is None:
                import pluggy

                pm = pluggy.PluginManager(PROJECT)
                pm.add_hookspecs(_Specs().specs)
                STATE.pm = pm
    return STATE.pm


def load_observer_entry_points() -> None:
    """Register every ``zswap.hooks`` observer once; no observer can stop or hang this.

    Each import runs on a daemon thread with the registry's load deadline
    (``$ZSWAP_PLUGIN_LOAD_TIMEOUT``). An observer whose import raises anything,
    ``SystemExit`` included, or does not finish in time is skipped with a warning
    naming it; the others still load.
    """
    if STATE.entry_points_loaded:
        return
    from ._registry import default_registry

    reg = default_registry()
    if not _claim_entry_point_loading():
        return
    pm = plugin_manager()
    for cand in reg.hook_entry_points():
        name = cand.ep.name
        where = cand.distribution or "?"
        try:
            if reg.is_blocked("hooks", name, cand) or pm.has_plugin(name):
                continue
        except Exception as exc:  # a malformed modprobe.d file: can't tell, don't load
            log.warning("observer %r from %s not loaded: %s", name, where, exc)
            continue
        plugin, error = _import_observer(cand, reg.load_timeout)
        if error is None:
            try:
                pm.register(plugin, name=name)
            except Exception as exc:  # not a valid pluggy plugin
                error = f"{type(exc).__name__}: {exc}"
        if error is not None:
            log.warning("observer %r from %s failed to load: %s", name, where, error)
    _refresh()


def _import_observer(cand: Any, timeout: float) -> tuple[object, str | None]:
    """(the observer, None), or (None, why not): never raises, never waits past timeout."""
    box: dict[str, object] = {}
    done = threading.Event()

    def run() -> None:
        try:
            box["plugin"] = cand.ep.load()
        except BaseException as exc:  # SystemExit from an import must not end the program
            box["error"] = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        finally:
            done.set()

    # A daemon thread: an import that never returns must not keep the program alive.
    threading.Thread(target=run, name=f"zswap-observer-{cand.ep.name}", daemon=True).start()
    if not done.wait(None if math.isinf(timeout) else timeout):
        return None, (
            f"its import did not finish within {timeout:g}s "
            "(allow more time with $ZSWAP_PLUGIN_LOAD_TIMEOUT)"
        )
    if "error" in box:
        return None, str(box["error"])
    return box["plugin"], None


def _claim_entry_point_loading() -> bool:
    with _lock:
        first = not STATE.entry_points_loaded
        STATE.entry_points_loaded = True
        return first


def register_observer(plugin: object, name: str | None = None) -> str | None:
    """Register an object whose methods are marked with :func:`hookimpl`."""
    out = plugin_manager().register(plugin, name=name)
    _refresh()
    return out


def unregister_observer(plugin: object) -> None:
    plugin_manager().unregister(plugin)
    _refresh()


def _refresh() -> None:
    pm = STATE.pm
    STATE.active = pm is not None and bool(pm.get_plugins())
    core = _backend.native_module()
    if core is not None:  # the native paths read their own copy of the flag
        core.set_hooks_active(STATE.active)


# -- calling observers ---------------------------------------------------------------------
#
# An observer watches; it never steers. So the core does not go through pluggy's own
# call loop, where the first exception stops the remaining observers and reaches the
# caller (in the middle of a store, a load or a pool's destruction). Each observer is
# called on its own, and whatever it raises is logged once per hook and observer.

_reported: set[tuple[str, str]] = set()


def call(hook: str, **kwargs: Any) -> None:
    """Call every observer of ``hook``; an observer's exception is logged, never raised."""
    pm = STATE.pm
    if pm is None:
        return
    for impl in getattr(pm.hook, hook).get_hookimpls():
        if impl.hookwrapper or getattr(impl, "wrapper", False):
            # A wrapper would run around the core's own work; observers only watch.
            _report_once(hook, impl.plugin_name, "hook wrappers are not supported; ignored")
            continue
        try:
            impl.function(*[kwargs[name] for name in impl.argnames])
        except Exception as exc:
            _report_once(hook, impl.plugin_name, f"{type(exc).__name__}: {exc}")


def _report_once(hook: str, plugin: str, what: str) -> None:
    key = (hook, plugin)
    with _lock:
        if key in _reported:
            return
        _reported.add(key)
    log.warning(
        "observer %r raised in %s (ignored; reported once per hook and observer): %s",
        plugin,
        hook,
        what,
    )
