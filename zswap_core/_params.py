"""Module parameters: typed values with sysfs string forms, boot strings, modprobe files.

The kernel's ``module_param`` in miniature. A *module* (the built-in ``zswap``, or one
loaded plugin such as ``zstd``) declares :class:`Param` s; :class:`ModuleParams` holds
their values. Every read and write happens under the module's parameter lock:

* built-in modules share :data:`BUILTIN_PARAM_LOCK`;
* every loadable module gets a lock of its own.

That split is the point of the kernel's "module: add per-module param_lock" (4.2): a
``zswap.compressor`` write holds the built-in lock while it waits for a plugin to load,
and the plugin applies its own configured parameters under *its* lock, so the two never
wait for each other.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping

from ._errors import ParamError
from ._log import log
from ._records import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, ClassVar, Literal

    ParamKind = Literal["bool", "int", "uint", "charp"]
    #: A set callback receives the parsed value and must commit it with
    #: :meth:`ModuleParams.commit` (or raise :class:`ParamError` to refuse it).
    SetCallback = Callable[["ModuleParams", str, Any], None]

__all__ = [
    "BUILTIN_PARAM_LOCK",
    "MAX_VALUE_LEN",
    "ModprobeConfig",
    "ModuleParams",
    "Param",
    "check_module_name",
    "check_param_name",
    "parse_cmdline",
    "parse_modprobe",
]

#: The one lock of all built-in modules (the kernel's ``param_lock`` for built-in code).
#: Re-entrant so that a set callback may read its module's other parameters.
BUILTIN_PARAM_LOCK = threading.RLock()

#: Longest value accepted, as the kernel's ``charp`` limit (1024 bytes).
MAX_VALUE_LEN = 1024

#: Largest modprobe.d file read; a bigger one is skipped with a warning (real ones
#: are a few lines, and reading must stay cheap: it happens on every plugin load).
MAX_CONF_BYTES = 1 << 20

_TRUE = frozenset({"y", "Y", "1", "on", "true", "yes"})
_FALSE = frozenset({"n", "N", "0", "off", "false", "no"})
_MODULE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_INT = re.compile(r"\A([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)\Z", re.ASCII)


class Param(Record):
    """Declaration of one parameter of a module (read-only once made).

    ``Param(name, kind, default, description="", writable=True, minimum=None,
    maximum=None, on_set=None)``; ``kind`` is ``"bool"``, ``"int"``, ``"uint"`` or
    ``"charp"``. ``writable`` is the sysfs permission: False means boot-time (and
    modprobe) only. ``on_set`` replaces the plain store, as a kernel
    ``kernel_param_ops.set``.
    """

    __slots__ = (
        "default",
        "description",
        "kind",
        "maximum",
        "minimum",
        "name",
        "on_set",
        "writable",
    )
    _fields = ("name", "kind", "default", "description", "writable", "minimum", "maximum", "on_set")
    _defaults: ClassVar[dict[str, Any]] = {
        "description": "",
        "writable": True,
        "minimum": None,
        "maximum": None,
        "on_set": None,
    }
    _frozen = True
    name: str
    kind: ParamKind
    default: Any
    description: str
    writable: bool
    minimum: int | None
    maximum: int | None
    on_set: SetCallback | None

    def parse(self, value: object) -> Any:
        """Turn a typed value or its string form into this parameter's type."""
        if isinstance(value, str):
            return self._parse_str(value)
        if self.kind == "bool":
            if isinstance(value, bool):
                return value
            raise ParamError(errno.EINVAL, f"{self.name}: expected a bool, got {value!r}")
        if self.kind in ("int", "uint"):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ParamError(errno.EINVAL, f"{self.name}: expected an integer, got {value!r}")
            return self._check_range(value)
        raise ParamError(errno.EINVAL, f"{self.name}: expected a string, got {value!r}")

    def _parse_str(self, text: str) -> Any:
        if len(text) > MAX_VALUE_LEN:
            raise ParamError(errno.EINVAL, f"{self.name}: value longer than {MAX_VALUE_LEN}")
        if "\0" in text:
            raise ParamError(errno.EINVAL, f"{self.name}: value contains a NUL byte")
        # sysfs writes usually end in a newline ("echo zstd > ..."); the kernel strips it.
        stripped = text.strip(" \t\n\r\v\f")  # ASCII whitespace only, as the kernel
        if self.kind == "bool":
            if stripped in _TRUE:
                return True
            if stripped in _FALSE:
                return False
            raise ParamError(errno.EINVAL, f"{self.name}: {text!r} is not a bool (Y/N/1/0)")
        if self.kind in ("int", "uint"):
            # The kernel's kstrtoint with base 0: decimal, 0x hex, leading-0 octal,
            # ASCII only (int() alone would take "1_0" and non-ASCII digits).
            m = _INT.match(stripped)
            if m is None:
                raise ParamError(errno.EINVAL, f"{self.name}: {text!r} is not an integer")
            sign, digits = m.group(1), m.group(2)
            if digits[:2] in ("0x", "0X"):
                number = int(digits[2:], 16)
            elif len(digits) > 1 and digits[0] == "0":
                number = int(digits[1:], 8)
            else:
                number = int(digits)
            return self._check_range(-number if sign == "-" else number)
        if _CONTROL.search(stripped):
            raise ParamError(errno.EINVAL, f"{self.name}: value contains a control character")
        return stripped

    def _check_range(self, number: int) -> int:
        if self.kind == "uint" and not 0 <= number < 2**32:
            raise ParamError(errno.EINVAL, f"{self.name}: {number} is not an unsigned int")
        if self.kind == "int" and not -(2**31) <= number < 2**31:
            raise ParamError(errno.EINVAL, f"{self.name}: {number} is out of int range")
        if self.minimum is not None and number < self.minimum:
            raise ParamError(errno.EINVAL, f"{self.name}: {number} is below {self.minimum}")
        if self.maximum is not None and number > self.maximum:
            raise ParamError(errno.EINVAL, f"{self.name}: {number} is above {self.maximum}")
        return number

    def format(self, value: Any) -> str:
        """The sysfs string form: bools as ``Y``/``N``, a missing string as ``(null)``."""
        if self.kind == "bool":
            return "Y" if value else "N"
        if value is None:
            return "(null)"
        return str(value)


class ModuleParams(Mapping[str, object]):
    """The parameter values of one module, behind that module's lock.

    Reads are typed (``params["enabled"] is True``); :meth:`sysfs` gives the string
    form. Writes accept the typed value or a string. A refused write raises
    :class:`ParamError` and leaves the old value.
    """

    def __init__(
        self,
        module: str,
        params: Iterable[Param],
        *,
        lock: threading.RLock | None = None,
        builtin: bool = False,
    ) -> None:
        if not _MODULE_NAME.match(module):
            raise ValueError(f"bad module name {module!r}")
        self.module = module
        self.builtin = builtin
        self.lock: threading.RLock = (
            lock if lock is not None else (BUILTIN_PARAM_LOCK if builtin else threading.RLock())
        )
        self._decl: dict[str, Param] = {}
        for p in params:
            if not _PARAM_NAME.match(p.name):
                raise ValueError(f"bad parameter name {p.name!r}")
            self._decl[p.name] = p
        self._values: dict[str, Any] = {p.name: p.default for p in self._decl.values()}
        self._listeners: list[Callable[[str, str, Any, Any], None]] = []
        #: Called as ``prepare(name, value)`` with a parsed value before a write takes
        #: the lock: work that may wait (loading a plugin, with its deadline) happens
        #: there, so the lock is never held while it waits. Errors are the set's.
        self.prepare: Callable[[str, Any], None] | None = None

    # -- reading ---------------------------------------------------------------------
    def __getitem__(self, name: str) -> Any:
        with self.lock:
            return self._values[self._param(name).name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._decl)

    def __contains__(self, name: object) -> bool:
        return name in self._decl

    def __len__(self) -> int:
        return len(self._decl)

    def declaration(self, name: str) -> Param:
        return self._param(name)

    def sysfs(self, name: str) -> str:
        """Read ``/sys/module/<module>/parameters/<name>``."""
        p = self._param(name)
        with self.lock:
            return p.format(self._values[name])

    def as_sysfs(self) -> dict[str, str]:
        with self.lock:
            return {n: p.format(self._values[n]) for n, p in self._decl.items()}

    # -- writing ---------------------------------------------------------------------
    def __setitem__(self, name: str, value: object) -> None:
        self.set(name, value)

    def set(self, name: str, value: object, *, boot: bool = False) -> None:
        """Write a parameter at run time (``boot=True``: as at load, read-only ones too)."""
        p = self._param(name)
        if not p.writable and not boot:
            raise ParamError(errno.EPERM, f"{self.module}.{name} is read-only at run time")
        parsed = p.parse(value)
        if self.prepare is not None:
            self.prepare(p.name, parsed)
        with self.lock:
            self._store(p, parsed)

    def update(self, values: Mapping[str, object], *, boot: bool = False) -> None:
        """Set several values, all or nothing.

        Every value is validated before any is written. The writes then happen under
        the module's lock; if a set callback refuses one, those already written are
        set back (listeners see the change and its undo) and the refusal is raised.
        """
        parsed: dict[str, Any] = {}
        for name, value in values.items():
            p = self._param(name)
            if not p.writable and not boot:
                raise ParamError(errno.EPERM, f"{self.module}.{name} is read-only at run time")
            parsed[p.name] = p.parse(value)
        if self.prepare is not None:
            for name, value in parsed.items():
                self.prepare(name, value)
        with self.lock:
            old = {name: self._values[name] for name in parsed}
            written: list[str] = []
            try:
                for name, value in parsed.items():
                    self._store(self._decl[name], value)
                    written.append(name)
            except BaseException:
                for name in reversed(written):
                    try:
                        self._store(self._decl[name], old[name])
                    except Exception as exc:  # the refusal being raised matters more
                        log.warning("%s.%s: could not be set back: %s", self.module, name, exc)
                raise

    def _store(self, p: Param, parsed: Any) -> None:
        # Lock held by the caller; the write itself, as set() does it.
        if p.on_set is not None:
            p.on_set(self, p.name, parsed)
        else:
            self.commit(p.name, parsed)

    def commit(self, name: str, value: Any) -> None:
        """Store an already validated value; for set callbacks (lock must be held)."""
        with self.lock:
            old = self._values[name]
            self._values[name] = value
        if old != value:
            for listener in list(self._listeners):
                listener(self.module, name, old, value)

    def add_listener(self, fn: Callable[[str, str, Any, Any], None]) -> None:
        """Call ``fn(module, name, old, new)`` after each committed change."""
        self._listeners.append(fn)

    def remove_listener(self, fn: Callable[[str, str, Any, Any], None]) -> None:
        """Stop calling ``fn``; nothing happens when it is not (or no longer) registered."""
        with contextlib.suppress(ValueError):
            self._listeners.remove(fn)

    def _param(self, name: str) -> Param:
        try:
            return self._decl[name]
        except (KeyError, TypeError):
            raise ParamError(
                errno.EINVAL, f"module {self.module} has no parameter {name!r}"
            ) from None

    def __repr__(self) -> str:
        return f"<ModuleParams {self.module} {self.as_sysfs()}>"


# -- boot strings and modprobe.d ------------------------------------------------------------


def check_module_name(module: object) -> str:
    """``module`` if it is a valid module name (as in ``zstd.level``), else ParamError."""
    if not isinstance(module, str) or not _MODULE_NAME.match(module):
        raise ParamError(errno.EINVAL, f"bad module name {module!r}")
    return module


def check_param_name(name: object) -> str:
    """``name`` if it is a valid parameter name, else ParamError."""
    if not isinstance(name, str) or not _PARAM_NAME.match(name):
        raise ParamError(errno.EINVAL, f"bad parameter name {name!r}")
    return name


def parse_cmdline(cmdline: str) -> dict[str, dict[str, str]]:
    """Parse a kernel-command-line style string into ``{module: {param: value}}``.

    ``zswap.compressor=zstd zstd.level=5`` gives
    ``{"zswap": {"compressor": "zstd"}, "zstd": {"level": "5"}}``. Double quotes
    protect spaces, as on a real command line. Words without a dot belong to the
    kernel proper and are ignored; a ``module.param`` without ``=`` means ``Y``, as
    the kernel does for bools. Anything malformed raises :class:`ParamError`.
    """
    if not isinstance(cmdline, str):
        raise ParamError(errno.EINVAL, f"boot string must be str, got {type(cmdline).__name__}")
    if "\0" in cmdline:
        raise ParamError(errno.EINVAL, "boot string contains a NUL byte")
    import shlex  # only boot strings need it

    try:
        words = shlex.split(cmdline, comments=False, posix=True)
    except ValueError as exc:
        raise ParamError(errno.EINVAL, f"malformed boot string: {exc}") from None
    out: dict[str, dict[str, str]] = {}
    for word in words:
        key, eq, value = word.partition("=")
        if "." not in key:
            continue
        module, _, param = key.partition(".")
        if not _MODULE_NAME.match(module) or not _PARAM_NAME.match(param):
            raise ParamError(errno.EINVAL, f"malformed boot parameter {word!r}")
        out.setdefault(module, {})[param] = value if eq else "Y"
    return out


class ModprobeConfig:
    """What modprobe.d files say: per-module options and blacklisted modules."""

    __slots__ = ("blacklist", "options")

    def __init__(self) -> None:
        self.options: dict[str, dict[str, str]] = {}
        self.blacklist: set[str] = set()


def parse_modprobe(text: str, *, source: str = "<string>") -> ModprobeConfig:
    """Parse one modprobe.d file (``options zstd level=5``, ``blacklist lzo``, ``#``)."""
    if not isinstance(text, str):
        raise ParamError(errno.EINVAL, f"{source}: expected text, got {type(text).__name__}")
    cfg = ModprobeConfig()
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if "\0" in line:
            raise ParamError(errno.EINVAL, f"{source}:{lineno}: NUL byte")
        words = line.split()
        verb = words[0]
        where = f"{source}:{lineno}"
        if verb == "options":
            if len(words) < 3:
                raise ParamError(errno.EINVAL, f"{where}: 'options' needs a module and key=value")
            module = words[1]
            if not _MODULE_NAME.match(module):
                raise ParamError(errno.EINVAL, f"{where}: bad module name {module!r}")
            for pair in words[2:]:
                key, eq, value = pair.partition("=")
                if not _PARAM_NAME.match(key):
                    raise ParamError(errno.EINVAL, f"{where}: bad option {pair!r}")
                cfg.options.setdefault(module, {})[key] = value if eq else "Y"
        elif verb == "blacklist":
            if len(words) != 2 or not _MODULE_NAME.match(words[1]):
                raise ParamError(errno.EINVAL, f"{where}: 'blacklist' takes one module name")
            cfg.blacklist.add(words[1])
        elif verb in ("alias", "softdep", "install", "remove", "include"):
            continue  # meaningful to modprobe, not to us
        else:
            raise ParamError(errno.EINVAL, f"{where}: unknown directive {verb!r}")
    return cfg


def read_modprobe_dir(directory: str | os.PathLike[str] | None) -> ModprobeConfig:
    """Merge every ``*.conf`` of a modprobe.d directory, in name order (later wins).

    Only regular files are read, and nothing here can block: a FIFO, a device, a
    directory or a dangling symbolic link named ``*.conf``, or a directory that cannot
    be listed, is skipped with a :class:`RuntimeWarning` naming it. A malformed file
    raises :class:`ParamError` naming the file and line.
    """
    merged = ModprobeConfig()
    if directory is None:
        return merged
    path = os.fspath(directory)
    if not os.path.isdir(path):
        return merged
    try:
        entries = sorted(os.listdir(path))
    except OSError as exc:
        _warn_once(f"modprobe.d directory {path} skipped: {exc.strerror or exc}")
        return merged
    for entry in entries:
        if not entry.endswith(".conf"):
            continue
        conf = os.path.join(path, entry)
        text = _read_conf(conf)
        if text is None:
            continue
        cfg = parse_modprobe(text, source=conf)
        for module, opts in cfg.options.items():
            merged.options.setdefault(module, {}).update(opts)
        merged.blacklist |= cfg.blacklist
    return merged


_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)  # a FIFO's open must not wait for a writer
    | getattr(os, "O_NOCTTY", 0)  # a terminal must not become ours
    | getattr(os, "O_CLOEXEC", 0)
)


def _read_conf(conf: str) -> str | None:
    """The text of one regular file, or None (warned) for anything else."""
    try:
        # stat first so that a device or FIFO is not even opened...
        if not stat.S_ISREG(os.stat(conf).st_mode):
            _warn_once(f"modprobe.d: {conf} skipped: {_what(os.stat(conf).st_mode)}")
            return None
        fd = os.open(conf, _OPEN_FLAGS)
    except OSError as exc:
        if os.path.islink(conf) and not os.path.exists(conf):
            reason = "a dangling symbolic link"
        else:
            reason = exc.strerror or str(exc)
        _warn_once(f"modprobe.d: {conf} skipped: {reason}")
        return None
    try:
        # ...and the opened descriptor decides: the name may have been replaced since.
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            _warn_once(f"modprobe.d: {conf} skipped: {_what(st.st_mode)}")
            return None
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_CONF_BYTES:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        _warn_once(f"modprobe.d: {conf} skipped: {exc.strerror or exc}")
        return None
    finally:
        os.close(fd)
    if size > MAX_CONF_BYTES:
        _warn_once(f"modprobe.d: {conf} skipped: larger than {MAX_CONF_BYTES} bytes")
        return None
    return b"".join(chunks).decode("utf-8", errors="replace")


def _what(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return f"not a regular file ({name})"
    return "not a regular file"


_warned: set[str] = set()
_warned_lock = threading.Lock()


def _warn_once(message: str) -> None:
    # The directory is read on every plugin load and listing; one warning per problem
    # and process is enough (the CLI shows every warning, so repeats would flood it).
    with _warned_lock:
        if message in _warned:
            return
        _warned.add(message)
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def split_words(text: str) -> list[str]:
    """Helper for callers that accept space-separated lists (``ZSWAP_BLOCK_PLUGINS``)."""
    return [w for w in re.split(r"[\s,]+", text) if w]
