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

Loading has a deadline (:data:`ENV_LOAD_TIMEOUT`, default :data:`DEFAULT_LOAD_TIMEOUT`
seconds). A plugin whose import hangs is reported as failed when it passes, and its
one loader thread is kept: an explicit :func:`rescan_plugins` retry waits for that
same thread again instead of starting another one that would hang as well.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import math
import os
import re
import sys
import threading
import warnings
from collections.abc import Callable, Mapping

from ._api import API_VERSION, SUPPORTED_API_VERSIONS
from ._errors import ApiVersionError, DuplicatePluginError, ParamError, PluginError
from ._log import log
from ._params import (
    BUILTIN_PARAM_LOCK,
    MAX_VALUE_LEN,
    ModprobeConfig,
    ModuleParams,
    _read_conf,
    check_module_name,
    check_param_name,
    read_modprobe_dir,
    split_words,
)
from ._records import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from importlib.metadata import EntryPoint
    from typing import Any, ClassVar, Literal

    Kind = Literal["compressor", "zpool"]
    State = Literal["loaded", "available", "failed", "blocked", "duplicate", "refused"]
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
#: Environment: seconds a plugin or observer import may take before it counts as failed.
ENV_LOAD_TIMEOUT = "ZSWAP_PLUGIN_LOAD_TIMEOUT"
#: The load deadline when neither the argument nor the environment sets one. Far above
#: what a codec import takes (tens of ms), far below "the program looks hung".
DEFAULT_LOAD_TIMEOUT = 5.0

_VALID_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")  # always fullmatch(): "$" allows "\n"
MAX_NAME_LEN = 64
KNOWN_DIST_NAMES = frozenset(KNOWN_DISTRIBUTIONS.values())


def _name_problem(kind: str, name: object) -> str | None:
    """Why ``name`` can never be a plugin's name (None if it can be one)."""
    if isinstance(name, str) and _VALID_NAME.fullmatch(name):
        return None
    if not isinstance(name, str):
        return f"{name!r} is not a valid {kind} name (not a string)"
    shown = repr(name) if len(name) <= MAX_NAME_LEN else f"{name[:MAX_NAME_LEN]!r}..."
    if len(name) > MAX_NAME_LEN:
        why = f"{len(name)} characters, at most {MAX_NAME_LEN}"
    else:
        why = "only lowercase letters, digits, '-' and '_', starting with a letter or digit"
    return f"{shown} is not a valid {kind} name ({why})"


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

    def error(
        self,
        kind: str,
        name: str,
        message: str,
        *,
        hint: str | None = None,
        cls: type[PluginError] = PluginError,
    ) -> PluginError:
        """An error about this candidate: it names its distribution and version."""
        return cls(
            message,
            kind=kind,
            name=name,
            distribution=self.distribution,
            version=self.version,
            hint=hint,
        )


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


class _Loader:
    """One import of one plugin on its own thread, shared by everyone who waits for it."""

    __slots__ = ("cand", "done", "kind", "name", "thread")

    def __init__(self, kind: Kind, name: str, cand: _Candidate) -> None:
        self.kind = kind
        self.name = name
        self.cand = cand
        self.done = threading.Event()  # set once the result is published
        self.thread: threading.Thread | None = None


def _check_timeout(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"a load timeout must be a positive number of seconds, got {value!r}")
    return float(value)


def _timeout_from_env() -> float:
    raw = os.environ.get(ENV_LOAD_TIMEOUT, "").strip()
    if not raw:
        return DEFAULT_LOAD_TIMEOUT
    try:
        return _check_timeout(float(raw))
    except ValueError:
        # A typo in the environment must not stop the program; say so and carry on.
        warnings.warn(
            f"${ENV_LOAD_TIMEOUT}={raw!r} is not a positive number of seconds; "
            f"using {DEFAULT_LOAD_TIMEOUT:g}s",
            RuntimeWarning,
            stacklevel=4,
        )
        return DEFAULT_LOAD_TIMEOUT


def _wait_seconds(timeout: float) -> float | None:
    # Event.wait(inf) overflows; None is "as long as it takes".
    return None if math.isinf(timeout) else timeout


def _hint(name: str, distribution: str | None, *, repair: bool) -> str:
    dist = distribution or KNOWN_DISTRIBUTIONS.get(name) or f"<the distribution providing {name}>"
    return f"pip install --force-reinstall {dist}" if repair else f"pip install {dist}"


class Registry:
    """The plugin table of one process (the kernel's module list).

    ``global_param_lock=True`` makes every plugin share the built-in parameter lock,
    which is the pre-4.2 kernel design; it exists only so a test can show the deadlock
    that per-module locks prevent. ``modprobe_timeout`` is the deadline, in seconds, of
    a plugin's import and initialisation (None: ``$ZSWAP_PLUGIN_LOAD_TIMEOUT``, else
    :data:`DEFAULT_LOAD_TIMEOUT`; ``math.inf``: wait as long as it takes, like the
    kernel). It is :attr:`load_timeout` once resolved.
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
        self.load_timeout: float = (
            _timeout_from_env() if modprobe_timeout is None else _check_timeout(modprobe_timeout)
        )
        self._lock = threading.RLock()
        self._scan: _Scan | None = None
        self._loaded: dict[tuple[str, str], LoadedModule] = {}
        self._failed: dict[tuple[str, str], PluginError] = {}
        # Imports still running, hung ones included: a retry waits for the same thread.
        self._inflight: dict[tuple[str, str], _Loader] = {}
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
        """Forget the scan and past failures so newly installed plugins are found.

        This is the one explicit retry of failed and timed-out plugins. An import that
        is still running is not started again: the next request waits for it anew.
        """
        with self._lock:
            self._failed.clear()
        self._forget_scan()

    def _forget_scan(self) -> None:
        # The rescan a miss does: new distributions become visible, but failures stay
        # remembered, so asking for unknown names never retries a broken plugin.
        importlib.invalidate_caches()
        with self._lock:
            self._scan = None
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
        return bool(self._block_reasons(kind, name, cand))

    def _block_reasons(
        self, kind: str, name: str, cand: _Candidate | None, cfg: ModprobeConfig | None = None
    ) -> list[tuple[str, str]]:
        """What blocks plugin ``name``, as (why, how to undo it) pairs; [] if nothing.

        Each source is named on its own, so that an error tells the user to undo the
        block they made, never one they did not (a single hint once named
        $ZSWAP_BLOCK_PLUGINS for every kind of block). ``cfg``: the modprobe.d files,
        when already read.
        """
        words = (name, f"{kind}:{name}")
        out: list[tuple[str, str]] = []
        with self._lock:
            ours = sorted(w for w in self._blocked if w in words)
        for word in ours:
            if self is _default:
                out.append(
                    (
                        f"block_plugin({word!r}) blocked it in this process",
                        f"zswap_core.unblock_plugin({word!r})",
                    )
                )
            else:
                out.append(
                    (
                        f"Registry.block({word!r}) blocked it in this registry",
                        f"Registry.unblock({word!r})",
                    )
                )
        raw = os.environ.get(ENV_BLOCK, "")
        for word in (w for w in split_words(raw) if w in words):
            out.append(
                (f"${ENV_BLOCK} lists {word!r}", f"remove {word!r} from ${ENV_BLOCK} (now {raw!r})")
            )
        if cfg is None:
            cfg = read_modprobe_dir(self._modprobe_dir())
        if name in cfg.blacklist:
            where = ", ".join(self._modprobe_lines(("blacklist", name))) or (
                f"a *.conf file in {os.fspath(self._modprobe_dir() or '?')}"
            )
            line = f"'blacklist {name}'"
            out.append((f"{line} in {where}", f"delete the {line} line"))
        autoload = os.environ.get(ENV_DISABLE_AUTOLOAD, "")
        if (
            autoload not in ("", "0")
            and cand is not None
            and cand.distribution not in KNOWN_DIST_NAMES
        ):
            out.append(
                (
                    f"${ENV_DISABLE_AUTOLOAD}={autoload} loads only this project's own "
                    f"plugins, and {cand.distribution or 'its distribution'} is not one",
                    f"unset {ENV_DISABLE_AUTOLOAD}",
                )
            )
        return out

    def _blocked_error(
        self, kind: str, name: str, cand: _Candidate, reasons: list[tuple[str, str]]
    ) -> PluginError:
        return cand.error(
            kind,
            name,
            f"{kind} {name!r} ({cand.distribution or '?'}) is blocked and was not imported: "
            + "; and ".join(why for why, _ in reasons),
            hint=", and ".join(fix for _, fix in reasons),
        )

    def _modprobe_lines(self, prefix: tuple[str, ...], key: str | None = None) -> list[str]:
        """``file:line`` of each modprobe.d line whose words begin with ``prefix``.

        With ``key``, only lines that set it (``key=...`` or a bare ``key``). For
        messages only: the files are read again, as read_modprobe_dir read them.
        """
        directory = self._modprobe_dir()
        if directory is None or not os.path.isdir(directory):
            return []
        try:
            entries = sorted(os.listdir(directory))
        except OSError:
            return []  # read_modprobe_dir has warned
        found: list[str] = []
        for entry in entries:
            if not entry.endswith(".conf"):
                continue
            path = os.path.join(directory, entry)
            text = _read_conf(path)
            for lineno, raw in enumerate((text or "").splitlines(), 1):
                words = raw.split("#", 1)[0].split()
                if tuple(words[: len(prefix)]) != prefix:
                    continue
                rest = words[len(prefix) :]
                if key is None or any(w.partition("=")[0] == key for w in rest):
                    found.append(f"{path}:{lineno}")
        return found

    def _modprobe_dir(self) -> str | os.PathLike[str] | None:
        return (
            self.modprobe_dir if self.modprobe_dir is not None else os.environ.get(ENV_MODPROBE_DIR)
        )

    # -- boot options ------------------------------------------------------------------
    def set_boot_options(self, module: str, options: Mapping[str, str]) -> None:
        """Options from a boot string for a loadable module (applied when it loads).

        Applied at once to the module if it is loaded. All or nothing: a refused value
        raises :class:`ParamError` and neither the module nor the registry changes.
        """
        self.apply_boot_options({module: options})

    def boot_options(self) -> dict[str, dict[str, str]]:
        """The boot options kept for modules, ``{module: {param: value}}`` (a copy)."""
        with self._lock:
            return {m: dict(o) for m, o in self._boot_options.items()}

    def apply_boot_options(self, options: Mapping[str, Mapping[str, str]]) -> Callable[[], None]:
        """Hand several modules' boot options over at once, all or nothing.

        Everything is checked first: names and values as far as a boot string allows,
        and against the declarations of modules that are loaded. Then the options are
        kept for modules not loaded yet and applied to loaded ones. If anything is
        refused, :class:`ParamError` is raised and nothing has changed.

        Returns ``undo()``, which takes the options back (for a caller whose next step
        failed): kept options return to what they were, and modules loaded or changed
        in between get back the values they would have without these options.
        """
        clean = self._check_boot_options(options)
        with self._lock:
            before = {m: dict(self._boot_options[m]) for m in clean if m in self._boot_options}
            loaded = {m: self._loaded_named(m) for m in clean}
        for module, opts in clean.items():  # against the declarations, before any write
            for mod in loaded[module]:
                for name, value in opts.items():
                    try:
                        mod.params.declaration(name).parse(value)
                    except ParamError as exc:
                        raise ParamError(
                            exc.errno or errno.EINVAL, f"{module}.{name}={value}: {exc.strerror}"
                        ) from None
        with self._lock:
            for module, opts in clean.items():
                self._boot_options.setdefault(module, {}).update(opts)
            # Read again under the lock that loaders publish under: a module loaded
            # since the check either saw the new options already or is listed here.
            loaded = {m: self._loaded_named(m) for m in clean}
        changed: list[tuple[ModuleParams, dict[str, object]]] = []

        def restore_kept() -> None:
            with self._lock:
                for module in clean:
                    if module in before:
                        self._boot_options[module] = dict(before[module])
                    else:
                        self._boot_options.pop(module, None)

        def restore_values(undo_loaded_since: bool) -> None:
            for params, old in reversed(changed):
                _restore_params(params, old)
            if not undo_loaded_since:
                return
            seen = {id(p) for p, _ in changed}
            for module, opts in clean.items():
                for mod in self._loaded_named(module):
                    if id(mod.params) not in seen:  # loaded after the options were kept
                        _restore_params(mod.params, self._values_without(mod, opts, before))

        try:
            for module, opts in clean.items():
                for mod in loaded[module]:
                    with mod.params.lock:  # old values and the write as one step
                        old = {name: mod.params[name] for name in opts if name in mod.params}
                        mod.params.update(opts, boot=True)
                    changed.append((mod.params, old))
        except BaseException:
            restore_values(False)
            restore_kept()
            raise

        def undo() -> None:
            restore_kept()
            restore_values(True)

        return undo

    @staticmethod
    def _check_boot_options(
        options: Mapping[str, Mapping[str, str]],
    ) -> dict[str, dict[str, str]]:
        # What can be checked without the module's declarations (it may not be loaded).
        clean: dict[str, dict[str, str]] = {}
        for module, opts in options.items():
            check_module_name(module)
            clean[module] = {}
            for name, value in opts.items():
                check_param_name(name)
                where = f"{module}.{name}"
                if not isinstance(value, str):
                    raise ParamError(errno.EINVAL, f"{where}: boot option values are strings")
                if len(value) > MAX_VALUE_LEN or "\0" in value:
                    raise ParamError(errno.EINVAL, f"{where}: value too long or has a NUL byte")
                clean[module][name] = value
        return clean

    def _loaded_named(self, module: str) -> list[LoadedModule]:
        with self._lock:
            return [m for (_, n), m in self._loaded.items() if n == module]

    def _values_without(
        self, mod: LoadedModule, opts: Mapping[str, str], before: Mapping[str, Mapping[str, str]]
    ) -> dict[str, object]:
        """What ``opts``' parameters of ``mod`` would be had it loaded without them."""
        try:
            configured = read_modprobe_dir(self._modprobe_dir()).options.get(mod.name, {})
        except ParamError:
            configured = {}  # its load would have failed; defaults are the safe choice
        earlier = before.get(mod.name, {})
        out: dict[str, object] = {}
        for name in opts:
            if name not in mod.params:
                continue
            decl = mod.params.declaration(name)
            out[name] = decl.default
            for source in (configured, earlier):  # boot options win, as at load
                if name in source:
                    with contextlib.suppress(ParamError):  # a bad one failed that load
                        out[name] = decl.parse(source[name])
        return out

    # -- loading ---------------------------------------------------------------------
    def request(self, kind: Kind, name: object) -> LoadedModule | None:
        """The loaded plugin ``name`` of ``kind``, loading it on first use; None if unavailable.

        The reason for a None is available from :meth:`error`.
        """
        if not isinstance(name, str) or _name_problem(kind, name) is not None:
            return None  # "os:system", "../x", "a.b.c": not a plugin name, never imported
        key = (kind, name)
        with self._lock:
            mod = self._loaded.get(key)
            if mod is not None:
                return mod
            if key in self._failed:
                return None  # remembered until rescan(): never retried on every request
            loader = self._inflight.get(key)
        if loader is None:
            try:
                cand = self._find(kind, name)
            except PluginError as exc:
                with self._lock:
                    self._failed.setdefault(key, exc)
                log.info("%s", exc)
                return None
            start = False
            with self._lock:
                mod = self._loaded.get(key)
                if mod is not None:
                    return mod
                loader = self._inflight.get(key)
                if loader is None:  # two threads asking at once: one imports
                    loader = self._inflight[key] = _Loader(kind, name, cand)
                    start = True
            if start:
                self._start(loader)
        return self._wait(loader)

    def require(self, kind: Kind, name: str) -> LoadedModule:
        """Like :meth:`request` but raises the :class:`PluginError` saying why."""
        mod = self.request(kind, name)
        if mod is None:
            err = self.error(kind, name)
            raise err if err is not None else PluginError(f"{kind} {name!r} is not available")
        return mod

    def error(self, kind: Kind, name: object) -> PluginError | None:
        """Why ``name`` is not available (None if it is loaded or was never asked for)."""
        problem = _name_problem(kind, name)
        if problem is not None or not isinstance(name, str):
            return PluginError(problem or "", kind=kind, name=str(name))
        with self._lock:
            return self._failed.get((kind, name))

    def _find(self, kind: Kind, name: str) -> _Candidate:
        """The one entry point to import, or the PluginError saying why there is none.

        Runs in the asker's thread: it reads only metadata and configuration (regular
        files, never blocking), and a malformed configuration file raises its
        ParamError to the asker without being remembered as the plugin's failure.
        """
        cands = self._candidates(kind, name)
        if not cands:
            self._forget_scan()  # a miss rescans once, as request_module retries after modprobe
            cands = self._candidates(kind, name)
        if not cands:
            raise PluginError(
                f"no {kind} named {name!r} is installed (entry point group {GROUPS[kind]})",
                kind=kind,
                name=name,
                hint=_hint(name, None, repair=False),
            )
        if len(cands) > 1:
            raise self._duplicate_error(kind, name, cands)
        cand = cands[0]
        reasons = self._block_reasons(kind, name, cand)
        if reasons:
            raise self._blocked_error(kind, name, cand, reasons)
        return cand

    def _start(self, loader: _Loader) -> None:
        # Load on a separate thread and wait for it: the kernel's request_module waits
        # for a modprobe process. A caller holding the built-in parameter lock must not
        # deadlock here; the loader only takes the new module's own lock. The thread is
        # a daemon so that an import that never returns cannot keep the program alive.
        thread = threading.Thread(
            target=self._run_loader, args=(loader,), name=f"modprobe-{loader.name}", daemon=True
        )
        loader.thread = thread
        thread.start()

    def _run_loader(self, loader: _Loader) -> None:
        kind, name, cand = loader.kind, loader.name, loader.cand
        key = (kind, name)
        mod: LoadedModule | None = None
        err: PluginError | None = None
        try:
            try:
                mod = self._import_and_init(kind, name, cand)
            except PluginError as exc:
                err = exc
            except BaseException as exc:  # SystemExit in a plugin's import included
                err = cand.error(
                    kind,
                    name,
                    f"{kind} {name!r} from {cand.distribution or '?'} {cand.version or '?'} "
                    f"failed to load: {type(exc).__name__}: {exc}",
                    hint=_hint(name, cand.distribution, repair=True),
                )
                err.__cause__ = exc
            # Published here, not by the waiters: an import that finishes after its
            # deadline replaces the timeout error with its real result (a late success
            # is used from then on; that is not a retry, nothing is imported again).
            with self._lock:
                if self._inflight.get(key) is loader:
                    del self._inflight[key]
                if mod is not None:
                    self._loaded[key] = mod
                    self._failed.pop(key, None)
                else:
                    assert err is not None
                    self._failed[key] = err
            if err is not None:
                log.info("%s", err)
        finally:
            loader.done.set()  # whatever happened, nobody waits for this thread again

    def _wait(self, loader: _Loader) -> LoadedModule | None:
        key = (loader.kind, loader.name)
        finished = loader.done.wait(_wait_seconds(self.load_timeout))
        with self._lock:
            mod = self._loaded.get(key)
            if mod is not None or finished:
                return mod  # on failure the loader has recorded why
            if self._inflight.get(key) is not loader or key in self._failed:
                return None  # it published just now, or another waiter timed out first
            # The loader thread stays in _inflight: a retry after rescan() waits for it
            # rather than starting a second import that would hang as well.
            err = self._failed[key] = self._timeout_error(loader)
        log.warning("%s", err)
        return None

    def _timeout_error(self, loader: _Loader) -> PluginError:
        cand = loader.cand
        return PluginError(
            f"loading {loader.kind} {loader.name!r} from {cand.distribution or '?'} "
            f"{cand.version or '?'} did not finish within {self.load_timeout:g}s (a hung "
            "import, or a deadlock on a parameter lock?); it is not retried until "
            "rescan_plugins()",
            kind=loader.kind,
            name=loader.name,
            distribution=cand.distribution,
            version=cand.version,
            hint=f"fix the plugin, or allow more time with ${ENV_LOAD_TIMEOUT}",
        )

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
            try:
                cfg = read_modprobe_dir(self._modprobe_dir())
            except ParamError as exc:  # a file that changed since _find read it
                raise cand.error(
                    kind,
                    name,
                    f"{kind} {name!r}: {exc}",
                    hint="fix the modprobe.d file",
                ) from exc
            with self._lock:
                boot = dict(self._boot_options.get(name, {}))
            for source, opts in (("modprobe.d", cfg.options.get(name, {})), ("boot", boot)):
                known = {k: v for k, v in opts.items() if k in params}
                for unknown in sorted(set(opts) - set(known)):
                    log.warning("%s: unknown parameter '%s' ignored (%s)", name, unknown, source)
                try:
                    params.update(known, boot=True)
                except ParamError as exc:
                    raise cand.error(
                        kind,
                        name,
                        f"{kind} {name!r}: bad {source} option: {exc}",
                        hint=self._option_fix(name, params, known, source),
                    ) from exc
        return LoadedModule(kind, name, cls, params, cand.distribution, cand.version)

    def _option_fix(
        self, module: str, params: ModuleParams, opts: Mapping[str, str], source: str
    ) -> str:
        """How to fix the refused option of ``opts``: which one, and where it is set."""
        bad = None
        for key, value in opts.items():
            try:
                params.declaration(key).parse(value)
            except ParamError:
                bad = key
                break
        if bad is None:  # refused by a set callback, not by the value's check
            return f"correct the {source} options for {module}"
        setting = f"{bad}={opts[bad]}"
        if source == "boot":
            return f"correct the boot option {module}.{setting}"
        # Later files win, as read_modprobe_dir merges them: the last line is in force.
        lines = self._modprobe_lines(("options", module), bad)
        where = f" at {lines[-1]}" if lines else ""
        return f"correct 'options {module} {setting}'{where} (a modprobe.d file)"

    @staticmethod
    def _check_driver(kind: Kind, name: str, cls: Any, cand: _Candidate) -> None:
        from ._compressor import Compressor
        from ._zpool import Zpool

        base: type[Any] = Compressor if kind == "compressor" else Zpool
        where = f"{cand.distribution or '?'} {cand.version or '?'}"
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise cand.error(
                kind,
                name,
                f"{kind} {name!r} from {where}: entry point {cand.ep.value} is not a "
                f"subclass of zswap_core.{base.__name__}",
            )
        api = getattr(cls, "api_version", None)
        if api not in SUPPORTED_API_VERSIONS:
            raise cand.error(
                kind,
                name,
                f"{kind} {name!r} from {where} was written for zswap-core API {api}; "
                f"this core supports API {sorted(SUPPORTED_API_VERSIONS)} (current "
                f"{API_VERSION})",
                hint=f"pip install --upgrade {cand.distribution or name} zswap-core",
                cls=ApiVersionError,
            )
        declared = getattr(cls, "name" if kind == "compressor" else "type", None)
        if declared != name:
            raise cand.error(
                kind,
                name,
                f"{kind} {name!r} from {where}: its class declares the name {declared!r}",
            )

    # -- inspection ------------------------------------------------------------------
    def loaded(self, kind: Kind, name: str) -> LoadedModule | None:
        with self._lock:
            return self._loaded.get((kind, name))

    def plugins(self) -> list[PluginInfo]:
        """Every installed driver plugin, loaded or not; imports nothing.

        A row's state is what this process knows: ``loaded``; ``failed`` (asked for,
        and its import or setup failed); ``available`` (installed, not imported yet,
        so whether it loads is not known); ``blocked``; ``duplicate`` (two distributions
        provide the name); ``refused`` (the name can never be a plugin's). ``error``
        says why, for every state but the first and third.
        """
        scan = self._scanned()
        cfg = read_modprobe_dir(self._modprobe_dir())  # once, not once per row
        rows: list[PluginInfo] = []
        for kind, group in GROUPS.items():
            for name, cands in sorted(scan.by_group[group].items()):
                key = (kind, name)
                with self._lock:
                    mod = self._loaded.get(key)
                    failed = self._failed.get(key)
                cand = cands[0]
                state: Any
                err: PluginError | None = None
                problem = _name_problem(kind, name)
                if problem is not None:
                    state, err = "refused", self._refused_error(kind, name, problem, cands)
                elif mod is not None:
                    state = "loaded"
                elif len(cands) > 1:
                    state, err = "duplicate", failed or self._duplicate_error(kind, name, cands)
                elif reasons := self._block_reasons(kind, name, cand, cfg):
                    state, err = "blocked", self._blocked_error(kind, name, cand, reasons)
                elif failed is not None:
                    state, err = "failed", failed
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
                        " ".join(str(err).split()) if err else None,  # one line
                    )
                )
        return rows

    @staticmethod
    def _refused_error(kind: str, name: str, problem: str, cands: list[_Candidate]) -> PluginError:
        who = ", ".join(f"{c.distribution or '?'} {c.version or '?'} ({c.ep.value})" for c in cands)
        return PluginError(
            f"{problem}: the {GROUPS[kind]} entry point of {who} is never loaded",
            kind=kind,
            name=name,
            distribution=cands[0].distribution,
            version=cands[0].version,
            hint=f"rename the entry point in {cands[0].distribution or 'its distribution'}",
        )

    @staticmethod
    def _duplicate_error(kind: str, name: str, cands: list[_Candidate]) -> PluginError:
        who = ", ".join(f"{c.distribution or '?'} {c.version or '?'} ({c.ep.value})" for c in cands)
        return DuplicatePluginError(
            f"{kind} {name!r} is provided by more than one distribution: {who}",
            kind=kind,
            name=name,
            hint="pip uninstall one of them",
        )

    def hook_entry_points(self) -> list[_Candidate]:
        return list(self._scanned().hooks)


def _restore_params(params: ModuleParams, values: Mapping[str, object]) -> None:
    """Put values back on an undo; an undo that fails is logged, never raised."""
    try:
        params.update(values, boot=True)
    except Exception as exc:
        log.warning("%s: could not restore %s: %s", params.module, dict(values), exc)


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
