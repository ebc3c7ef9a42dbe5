"""The running kernel's zswap state, read from /sys and /proc (never raises for a file).

Everything is read relative to ``root`` (``"/"`` normally) so that a test can hand over a
fake tree of an older kernel. A file that is missing or unreadable is reported in
``problems`` (one line each), never raised: ``zswap host`` on a machine without zswap, or
without root for debugfs, still shows what it can.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from ._profiles import Version, parse_release

__all__ = ["CRYPTO_COMPRESSION_TYPES", "HostState", "read_host"]

PARAMS_DIR = "sys/module/zswap/parameters"
DEBUGFS_DIR = "sys/kernel/debug/zswap"
MEMINFO_KEYS = ("MemTotal", "Zswap", "Zswapped")
VMSTAT_KEYS = ("zswpin", "zswpout", "zswpwb", "pswpin", "pswpout")

#: /proc/crypto types of compression algorithms: the legacy synchronous "compression",
#: the synchronous "scomp" and the asynchronous "acomp" (zswap uses the acomp API, which
#: wraps scomp algorithms).
CRYPTO_COMPRESSION_TYPES = frozenset({"compression", "scomp", "acomp"})

#: Codec modules under /lib/modules/RELEASE/kernel/crypto that zswap can use (module file
#: name -> algorithm name); a module not loaded yet is missing from /proc/crypto.
_CODEC_MODULES = {
    "lzo": "lzo",
    "lzo-rle": "lzo-rle",
    "lz4": "lz4",
    "lz4hc": "lz4hc",
    "zstd": "zstd",
    "deflate": "deflate",
    "842": "842",
}


@dataclass(frozen=True)
class HostState:
    """One reading of the host's zswap state; sizes in bytes, counters as read."""

    root: str
    release: str  # uname release, e.g. "6.18.44-fc-v782"
    version: Version | None  # (6, 18); None when the release is not N.N...
    params: dict[str, str] | None  # /sys/module/zswap/parameters; None: no such dir
    compressors: tuple[str, ...] | None  # /proc/crypto compression algorithms
    loadable_compressors: tuple[str, ...]  # codec modules installed, maybe not loaded
    meminfo: dict[str, int]  # MemTotal, Zswap, Zswapped (bytes), those present
    vmstat: dict[str, int]  # zswpin, zswpout, zswpwb, pswpin, pswpout, those present
    debugfs: dict[str, int] | None  # /sys/kernel/debug/zswap/*; None: see debugfs_why
    debugfs_why: str | None
    problems: tuple[str, ...] = field(default=())  # one line per file missing or unreadable
    monotonic: float = 0.0  # time.monotonic() when read, for rates

    def path(self, rel: str) -> str:
        """The kernel-style absolute path of ``rel`` (``/proc/vmstat``), as shown."""
        return "/" + rel.lstrip("/")


def _join(root: str, rel: str) -> str:
    return os.path.join(root, rel.lstrip("/"))


def _why(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _read(root: str, rel: str, problems: list[str]) -> str | None:
    try:
        with open(_join(root, rel), encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError as exc:
        problems.append(f"/{rel.lstrip('/')}: {_why(exc)}")
        return None


def _release(root: str, problems: list[str]) -> str:
    text = None
    try:
        with open(_join(root, "proc/sys/kernel/osrelease"), encoding="utf-8") as f:
            text = f.read().strip()
    except OSError:
        pass
    if text:
        return text
    if root in ("/", ""):
        return os.uname().release
    problems.append("/proc/sys/kernel/osrelease: missing")
    return ""


def _params(root: str, problems: list[str]) -> dict[str, str] | None:
    d = _join(root, PARAMS_DIR)
    try:
        names = sorted(os.listdir(d))
    except OSError as exc:
        problems.append(f"/{PARAMS_DIR}: {_why(exc)} (zswap not built into this kernel?)")
        return None
    out: dict[str, str] = {}
    for name in names:
        text = _read(root, f"{PARAMS_DIR}/{name}", problems)
        if text is not None:
            out[name] = text.strip()
    return out


def _crypto(root: str, problems: list[str]) -> tuple[str, ...] | None:
    text = _read(root, "proc/crypto", problems)
    if text is None:
        return None
    names: set[str] = set()
    for block in text.split("\n\n"):
        fields = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip()] = value.strip()
        if fields.get("type") in CRYPTO_COMPRESSION_TYPES and fields.get("name"):
            names.add(fields["name"])
    return tuple(sorted(names))


def _loadable(root: str, release: str) -> tuple[str, ...]:
    d = _join(root, f"lib/modules/{release}/kernel/crypto")
    try:
        files = os.listdir(d)
    except OSError:
        return ()
    found = set()
    for f in files:
        stem = f.split(".ko", 1)[0]
        if ".ko" in f and stem in _CODEC_MODULES:
            found.add(_CODEC_MODULES[stem])
    return tuple(sorted(found))


def _meminfo(root: str, problems: list[str]) -> dict[str, int]:
    text = _read(root, "proc/meminfo", problems)
    out: dict[str, int] = {}
    for line in (text or "").splitlines():
        key, sep, value = line.partition(":")
        if sep and key in MEMINFO_KEYS:
            parts = value.split()
            try:
                n = int(parts[0])
            except (IndexError, ValueError):
                continue
            unit = parts[1] if len(parts) > 1 else ""
            out[key] = n * 1024 if unit == "kB" else n
    return out


def _vmstat(root: str, problems: list[str]) -> dict[str, int]:
    text = _read(root, "proc/vmstat", problems)
    out: dict[str, int] = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in VMSTAT_KEYS:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                continue
    return out


def _debugfs(root: str) -> tuple[dict[str, int] | None, str | None]:
    d = _join(root, DEBUGFS_DIR)
    try:
        names = sorted(os.listdir(d))
    except PermissionError:
        return None, f"/{DEBUGFS_DIR}: permission denied (debugfs needs root)"
    except FileNotFoundError:
        parent = os.path.dirname(d)
        try:
            mounted = bool(os.listdir(parent))
        except PermissionError:
            return None, f"/{DEBUGFS_DIR}: permission denied (debugfs needs root)"
        except OSError:
            mounted = False
        if not mounted:
            return None, f"/{DEBUGFS_DIR}: absent (debugfs is not mounted)"
        return None, f"/{DEBUGFS_DIR}: absent (zswap has not set up its debugfs directory)"
    except OSError as exc:
        return None, f"/{DEBUGFS_DIR}: {_why(exc)}"
    out: dict[str, int] = {}
    for name in names:
        try:
            with open(os.path.join(d, name), encoding="utf-8") as f:
                out[name] = int(f.read().strip())
        except (OSError, ValueError):
            continue  # a counter that vanished or is not a number: not shown
    return out, None


def read_host(root: str = "/") -> HostState:
    """Read the running kernel's zswap state (under ``root``, for tests)."""
    problems: list[str] = []
    release = _release(root, problems)
    params = _params(root, problems)
    compressors = _crypto(root, problems)
    meminfo = _meminfo(root, problems)
    vmstat = _vmstat(root, problems)
    debugfs, why = _debugfs(root)
    return HostState(
        root=root,
        release=release,
        version=parse_release(release) if release else None,
        params=params,
        compressors=compressors,
        loadable_compressors=_loadable(root, release) if release else (),
        meminfo=meminfo,
        vmstat=vmstat,
        debugfs=debugfs,
        debugfs_why=why,
        problems=tuple(problems),
        monotonic=time.monotonic(),
    )
