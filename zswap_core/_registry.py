"""Finding and loading plugins: the kernel's ``request_module`` for entry points.

Drivers live in two entry point groups, ``zswap.compressors`` and ``zswap.zpools``.
Nothing is imported until a name is asked for; then exactly that entry point is
loaded, on a separate "modprobe" thread that the asker waits for (as the kernel
waits for modprobe), its API version is checked, and its module parameters are
applied from boot options and modprobe.d files under the module's own lock.

Why not stevedore's discovery: its entry point cache drops ``ep.dist`` (which error
messages and version checks need), can miss an in-place change for about two
minutes (float32 mtimes), and never refreshes within a process; and its duplicate
check imports both plugins first. So this module scans ``importlib.metadata`` itself,
lazily, once per process (and again on :func:`rescan_plugins` or on a miss), and
hands stevedore's ``DriverManager`` the one entry point to load. Neither the
on-disk cache nor ``ExtensionManager.ENTRY_POINT_CACHE`` is ever consulted.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import threading

from ._api import API_VERSION, SUPPORTED_API_VERSIONS
from ._errors import ApiVersionError, DuplicatePluginError, ParamError, PluginError
from ._log import log
from ._params import BUILTIN_PARAM_LOCK, ModuleParams, read_modprobe_dir, split_words
from ._records import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from importlib.metadata import EntryPoint
    from typing import Any, ClassVar, Literal

    Kind = Literal["compressor", "zpool"]
    State = Literal["loaded", "available", "failed", "blocked", "duplicate"]
else:  # importable at run time too (zswap_core.testing uses it), without typing
    Kind = State = str

__all__ = [
    "GROUPS",
    "Kind",
    "LoadedModule",
    "PluginInfo",
    "Registry",
    "block_plugin",
    "blocked_plugins",
    "crypto_has_comp",
    "default_registry",
    "list_plugins",
    "plugin_error",
    "rescan_plugins",
    "unblock_plugin",
    "zpool_has_pool",
]

GROUPS: dict[str, str] = {"compressor": "zswap.compressors", "zpool": "zswap.zpools"}

#: Distributions of the plugins this project ships, for "pip install ..." hints.
KNOWN_DISTRIBUTIONS: dict[str, str] = {
    "lz4": "zswap-lz4",
    "lz4hc": "zswap-lz4",
    "zstd": "zswap-zstd",
    "lzo": "zswap-lzo",
    "lzo-rle": "zswap-lzo",
    "deflate": "zswap-deflate",
    "zbud": "zswap-zbud",
    "z3fold": "zswap-z3fold",
    "zsmalloc": "zswap-zsmalloc",
}

#: Environment: names to block (comma or space separated; ``kind:name`` or ``name``).
ENV_BLOCK = "ZSWAP_BLOCK_PLUGINS"
#: Environment: when set to 1, only this project's own plugins load (pytest's
#: ``PYTEST_DISABLE_PLUGIN_AUTOLOAD`` for third-party drivers and observers).
ENV_DISABLE_AUTOLOAD = "ZSWAP_DISABLE_PLUGIN_AUTOLOAD"
#: Environment: a modprobe.d-style directory whose ``*.conf`` files configure plugins.
ENV_MODPROBE_DIR = "ZSWAP_MODPROBE_DIR"

_VALID_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class LoadedModule(Record):
    """A plugin that has been imported and accepted: its driver class and parameters.

    ``LoadedModule(kind, name, driver, params, distribution, version, use_count=0)``.
    """

    __slots__ = ("distribution", "driver", "kind", "name", "params", "use_count", "version")
    _fields = ("kind", "name", "driver", "params", "distribution", "version", "use_count")
    _defaults: ClassVar[dict[str, Any]] = {"use_count": 0}
    kind: Kind
    name: str
    driver: type[Any]
    params: ModuleParams
    distribution: str | None
    version: str | None
    use_count: int


class PluginInfo(Record):
    """One row of ``zswap lsmod``; building it imports nothing."""

    __slots__ = ("distribution", "error", "kind", "name", "state", "target", "use_count", "version")
    _fields = ("kind", "name", "distribution", "version", "target", "state", "use_count", "error")
    _defaults: ClassVar[dict[str, Any]] = {"error": None}
    _frozen = True
    kind: Kind
    name: str
    distribution: str | None
    version: str | None
    target: str
    state: State
    use_count: int
    error: str | None


class _Candidate:
    __slots__ = ("distribution", "ep", "version")

    def __init__(self, ep: EntryPoint, distribution: str | None, version: str | None) -> None:
        self.ep = ep
        self.distribution = distribution
        self.version = version


class _Scan:
    __slots__ = ("by_group", "hooks")

    def __init__(self, by_group: dict[str, dict[str, list[_Candidate]]]) -> None:
        self.by_group = by_group
        self.hooks: list[_Candidate] = []


def _dist_name(ep: EntryPoint) -> tuple[str | None, str | None]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None, None
    try:
        return dist.metadata["Name"], dist.version
    except Exception:  # a broken METADATA file must not break discovery
        return None, None


def _hint(name: str, distribution: str | None, *, repair: bool) -> str:
    dist = distribution or KNOWN_DISTRIBUTIONS.get(name) or f"<the distribution providing {name}>"
    return f"pip install --force-reinstall {dist}" if repair else f"pip install {dist}"


class Registry:
    """The plugin table of one process (the kernel's module list).

    ``global_param_lock=True`` makes every plugin share the built-in parameter lock,
    which is the pre-4.2 kernel design; it exists only so a test can show the deadlock
    that per-module locks prevent. ``modprobe_timeout`` bounds the wait for a loading
    thread (None: wait as long as it takes, like the kernel).
    """

    def __init__(
        self,
        *,
        global_param_lock: bool = False,
        modprobe_dir: str | os.PathLike[str] | None = None,
        modprobe_timeout: float | None = None,
    ) -> None:
        self.global_param_lock = global_param_lock
        self.modprobe_dir = modprobe_dir
        self.modprobe_timeout = modprobe_timeout
        self._lock = threading.RLock()
        self._scan: _Scan | None = None
        self._loaded: dict[tuple[str, str], LoadedModule] = {}
        self._failed: dict[tuple[str, str], PluginError] = {}
        self._load_locks: dict[tuple[str, str], threading.Lock] = {}
        self._blocked: set[str] = set()
        self._boot_options: dict[str, dict[str, str]] = {}
        self.loads = 0  # imports performed, for tests of "imported once"

    # -- discovery -------------------------------------------------------------------
    def _scanned(self) -> _Scan:
        with self._lock:
            if self._scan is None:
                self._scan = self._do_scan()
            return self._scan

    @staticmethod
    def _do_scan() -> _Scan:
        # Walk distributions ourselves rather than entry_points(): we keep ep.dist, and we
        # see every provider of a name so that duplicates are an error, not a silent pick.
        from importlib import metadata

        scan = _Scan(by_group={g: {} for g in GROUPS.values()})
        seen: set[tuple[str | None, str, str, str]] = set()
        for dist in metadata.distributions():
            try:
                eps = dist.entry_points
            except Exception:
                continue
            for ep in eps:
                if ep.group not in scan.by_group and ep.group != "zswap.hooks":
                    continue
                dname, version = _dist_name(ep)
                # The same distribution found twice on sys.path (editable + egg-info) is
                # one plugin, not a conflict.
                key = ((dname or "").lower().replace("_", "-"), ep.group, ep.name, ep.value)
                if key in seen:
                    continue
                seen.add(key)
                cand = _Candidate(ep, dname, version)
                if ep.group == "zswap.hooks":
                    scan.hooks.append(cand)
                else:
                    scan.by_group[ep.group].setdefault(ep.name, []).append(cand)
        return scan

    def rescan(self) -> None:
        """Forget the scan and past failures so newly installed plugins are found."""
        importlib.invalidate_caches()
        with self._lock:
            self._scan = None
            self._failed.clear()
        # stevedore keeps class-level and on-disk caches that can be stale for minutes;
        # we never read them, but clear the in-process one for code that does.
        mod = sys.modules.get("stevedore.extension")
        if mod is not None:
            mod.ExtensionManager.ENTRY_POINT_CACHE.clear()

    def _candidates(self, kind: Kind, name: str) -> list[_Candidate]:
        return self._scanned().by_group[GROUPS[kind]].get(name, [])

    # -- blocking --------------------------------------------------------------------
    def block(self, name: str) -> None:
        """Never import the plugin called ``name`` (``kind:name`` to block one kind)."""
        with self._lock:
            self._blocked.add(name)

    def unblock(self, name: str) -> None:
        with self._lock:
            self._blocked.discard(name)
            for key in [k for k in self._failed if name in (k[1], f"{k[0]}:{k[1]}")]:
                del self._failed[key]

    def blocked(self) -> set[str]:
        env = set(split_words(os.environ.get(ENV_BLOCK, "")))
        cfg = read_modprobe_dir(self._modprobe_dir())
        with self._lock:
            return set(self._blocked) | env | cfg.blacklist

    def is_blocked(self, kind: str, name: str, cand: _Candidate | None = None) -> bool:
        blocked = self.blocked()
        if name in blocked or f"{kind}:{name}" in blocked:
            return True
        if os.environ.get(ENV_DISABLE_AUTOLOAD, "") not in ("", "0") and cand is not None:
            return cand.distribution not in set(KNOWN_DISTRIBUTIONS.values())
        return False

    def _modprobe_dir(self) -> str | os.PathLike[str] | None:
        return (
            self.modprobe_dir if self.modprobe_dir is not None else os.environ.get(ENV_MODPROBE_DIR)
        )

    # -- boot options ------------------------------------------------------------------
    def set_boot_options(self, module: str, options: dict[str, str]) -> None:
        """Options from a boot string for a loadable module (applied when it loads)."""
        with self._lock:
            self._boot_options.setdefault(module, {}).update(options)
            loaded = [m for (k, n), m in self._loaded.items() if n == module]
        for mod in loaded:
            mod.params.update(options, boot=True)

    # -- loading ---------------------------------------------------------------------
    def request(self, kind: Kind, name: object) -> LoadedModule | None:
        """The loaded plugin ``name`` of ``kind``, loading it on first use; None if unavailable.

        The reason for a None is available from :meth:`error`.
        """
        if not isinstance(name, str) or not _VALID_NAME.match(name):
            return None  # "os:system", "../x", "a.b.c": not a plugin name, never imported
        key = (kind, name)
        with self._lock:
            mod = self._loaded.get(key)
            if mod is not None:
                return mod
            load_lock = self._load_locks.setdefault(key, threading.Lock())
        with load_lock:  # two threads asking at once: one imports, the other waits
            with self._lock:
                mod = self._loaded.get(key)
                if mod is not None:
                    return mod
                if key in self._failed:
                    return None
            try:
                mod = self._load(kind, name)
            except PluginError as exc:
                with self._lock:
                    self._failed[key] = exc
                log.info("%s", exc)
                return None
            with self._lock:
                self._loaded[key] = mod
            return mod

    def require(self, kind: Kind, name: str) -> LoadedModule:
        """Like :meth:`request` but raises the :class:`PluginError` saying why."""
        mod = self.request(kind, name)
        if mod is None:
            err = self.error(kind, name)
            raise err if err is not None else PluginError(f"{kind} {name!r} is not available")
        return mod

    def error(self, kind: Kind, name: object) -> PluginError | None:
        """Why ``name`` is not available (None if it is loaded or was never asked for)."""
        if not isinstance(name, str) or not _VALID_NAME.match(name):
            return PluginError(f"{name!r} is not a valid {kind} name", kind=kind, name=str(name))
        with self._lock:
            return self._failed.get((kind, name))

    def _load(self, kind: Kind, name: str) -> LoadedModule:
        cands = self._candidates(kind, name)
        if not cands:
            self.rescan()  # a miss rescans once, as request_module retries after modprobe
            cands = self._candidates(kind, name)
        if not cands:
            raise PluginError(
                f"no {kind} named {name!r} is installed (entry point group {GROUPS[kind]})",
                kind=kind,
                name=name,
                hint=_hint(name, None, repair=False),
            )
        if len(cands) > 1:
            who = ", ".join(
                f"{c.distribution or '?'} {c.version or '?'} ({c.ep.value})" for c in cands
            )
            raise DuplicatePluginError(
                f"{kind} {name!r} is provided by more than one distribution: {who}",
                kind=kind,
                name=name,
                hint="pip uninstall one of them",
            )
        cand = cands[0]
        if self.is_blocked(kind, name, cand):
            raise PluginError(
                f"{kind} {name!r} ({cand.distribution}) is blocked and was not imported",
                kind=kind,
                name=name,
                distribution=cand.distribution,
                version=cand.version,
                hint=f"zswap_core.unblock_plugin({name!r}) or remove it from ${ENV_BLOCK}",
            )
        # Load on a separate thread and wait for it: the kernel's request_module waits for
        # a modprobe process. A caller holding the built-in parameter lock must not
        # deadlock here; the loader only takes the new module's own lock.
        box: dict[str, Any] = {}

        def modprobe() -> None:
            try:
                box["mod"] = self._import_and_init(kind, name, cand)
            except BaseException as exc:
                box["exc"] = exc

        thread = threading.Thread(target=modprobe, name=f"modprobe-{name}", daemon=True)
        thread.start()
        thread.join(self.modprobe_timeout)
        if thread.is_alive():
            raise PluginError(
                f"loading {kind} {name!r} did not finish within {self.modprobe_timeout}s "
                "(deadlock on a parameter lock?)",
                kind=kind,
                name=name,
                distribution=cand.distribution,
                version=cand.version,
            )
        if "exc" in box:
            exc = box["exc"]
            if isinstance(exc, PluginError):
                raise exc
            raise PluginError(
                f"{kind} {name!r} from {cand.distribution or '?'} {cand.version or '?'} "
                f"failed to load: {type(exc).__name__}: {exc}",
                kind=kind,
                name=name,
                distribution=cand.distribution,
                version=cand.version,
                hint=_hint(name, cand.distribution, repair=True),
            ) from exc
        mod: LoadedModule = box["mod"]
        return mod

    def _import_and_init(self, kind: Kind, name: str, cand: _Candidate) -> LoadedModule:
        from stevedore import driver as sd_driver

        ep = cand.ep

        class _OneEntryPoint(sd_driver.DriverManager):  # type: ignore[type-arg]
            # Hand stevedore the entry point we found: no cache, and ep.dist intact.
            def list_entry_points(self) -> list[EntryPoint]:
                return [ep]

        with self._lock:
            self.loads += 1
        mgr = _OneEntryPoint(GROUPS[kind], name, invoke_on_load=False)
        cls = mgr.extensions[0].plugin  # never .driver: it returns the class for falsy objects
        self._check_driver(kind, name, cls, cand)
        lock = BUILTIN_PARAM_LOCK if self.global_param_lock else threading.RLock()
        params = ModuleParams(name, getattr(cls, "parameters", ()), lock=lock)
        # Apply configured values under the module's own lock, as load_module does.
        with params.lock:
            cfg = read_modprobe_dir(self._modprobe_dir())
            with self._lock:
                boot = dict(self._boot_options.get(name, {}))
            for source, opts in (("modprobe.d", cfg.options.get(name, {})), ("boot", boot)):
                known = {k: v for k, v in opts.items() if k in params}
                for unknown in sorted(set(opts) - set(known)):
                    log.warning("%s: unknown parameter '%s' ignored (%s)", name, unknown, source)
                try:
                    params.update(known, boot=True)
                except ParamError as exc:
                    raise PluginError(
                        f"{kind} {name!r}: bad {source} option: {exc}",
                        kind=kind,
                        name=name,
                        distribution=cand.distribution,
                        version=cand.version,
                        hint=f"fix the {source} options for {name}",
                    ) from exc
        return LoadedModule(kind, name, cls, params, cand.distribution, cand.version)

    @staticmethod
    def _check_driver(kind: Kind, name: str, cls: Any, cand: _Candidate) -> None:
        from ._compressor import Compressor
        from ._zpool import Zpool

        base: type[Any] = Compressor if kind == "compressor" else Zpool
        where = f"{cand.distribution or '?'} {cand.version or '?'}"
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise PluginError(
                f"{kind} {name!r} from {where}: entry point {cand.ep.value} is not a "
                f"subclass of zswap_core.{base.__name__}",
                kind=kind,
                name=name,
                distribution=cand.distribution,
                version=cand.version,
            )
        api = getattr(cls, "api_version", None)
        if api not in SUPPORTED_API_VERSIONS:
            raise ApiVersionError(
                f"{kind} {name!r} from {where} was written for zswap-core API {api}; "
                f"this core supports API {sorted(SUPPORTED_API_VERSIONS)} (current "
                f"{API_VERSION})",
                kind=kind,
                name=name,
                distribution=cand.distribution,
                version=cand.version,
                hint=f"pip install --upgrade {cand.distribution or name} zswap-core",
            )
        declared = getattr(cls, "name" if kind == "compressor" else "type", None)
        if declared != name:
            raise PluginError(
                f"{kind} {name!r} from {where}: its class declares the name {declared!r}",
                kind=kind,
                name=name,
                distribution=cand.distribution,
                version=cand.version,
            )

    # -- inspection ------------------------------------------------------------------
    def loaded(self, kind: Kind, name: str) -> LoadedModule | None:
        with self._lock:
            return self._loaded.get((kind, name))

    def plugins(self) -> list[PluginInfo]:
        """Every installed driver plugin, loaded or not; imports nothing."""
        scan = self._scanned()
        rows: list[PluginInfo] = []
        for kind, group in GROUPS.items():
            for name, cands in sorted(scan.by_group[group].items()):
                key = (kind, name)
                with self._lock:
                    mod = self._loaded.get(key)
                    err = self._failed.get(key)
                cand = cands[0]
                state: Any
                if mod is not None:
                    state = "loaded"
                elif len(cands) > 1:
                    state = "duplicate"
                elif self.is_blocked(kind, name, cand):
                    state = "blocked"
                elif err is not None:
                    state = "failed"
                else:
                    state = "available"
                rows.append(
                    PluginInfo(
                        kind,
                        name,
                        mod.distribution if mod else cand.distribution,
                        mod.version if mod else cand.version,
                        cand.ep.value,
                        state,
                        mod.use_count if mod else 0,
                        str(err) if err else None,
                    )
                )
        return rows

    def hook_entry_points(self) -> list[_Candidate]:
        return list(self._scanned().hooks)


_default: Registry | None = None
_default_lock = threading.Lock()


def default_registry() -> Registry:
    """The process-wide registry (created on first use)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Registry()
    return _default


def crypto_has_comp(name: str) -> bool:
    """True if compressor ``name`` is installed and loads; loads it on the first call."""
    return default_registry().request("compressor", name) is not None


def zpool_has_pool(name: str) -> bool:
    """True if allocator ``name`` is installed and loads; loads it on the first call."""
    return default_registry().request("zpool", name) is not None


def plugin_error(kind: Kind, name: str) -> PluginError | None:
    """Why a plugin is unavailable: names the plugin, its distribution and the fix."""
    return default_registry().error(kind, name)


def list_plugins() -> list[PluginInfo]:
    """Installed compressor and zpool plugins with their state; imports nothing."""
    return default_registry().plugins()


def rescan_plugins() -> None:
    """Find plugins installed since the last scan (no restart needed)."""
    default_registry().rescan()


def block_plugin(name: str) -> None:
    """Never import plugin ``name`` in this process (also: ``$ZSWAP_BLOCK_PLUGINS``)."""
    default_registry().block(name)


def unblock_plugin(name: str) -> None:
    default_registry().unblock(name)


def blocked_plugins() -> set[str]:
    return default_registry().blocked()
