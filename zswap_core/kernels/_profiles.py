"""Kernel profiles: what zswap has in one Linux release, read from ``kernels.toml``.

The core is a superset of every kernel (zbud next to ``shrinker_enabled``, codec levels,
checksums); a profile says which of it a given release really has, so that ``zswap
advise --kernel 6.18`` offers only what a 6.18 machine can use. Every fact comes from the
one data file with its release and source; nothing here hard-codes a release.
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._host import HostState

__all__ = [
    "PROFILES",
    "SIMULATOR_ONLY",
    "Fact",
    "KernelProfile",
    "KernelProfileError",
    "ParamFact",
    "all_facts",
    "kernel_profile",
    "parse_release",
    "simulator_only_note",
]

Version = tuple[int, int]


class KernelProfileError(ValueError):
    """An unknown profile name, or a host whose kernel cannot be profiled (one line)."""


def parse_release(release: str) -> Version | None:
    """``"6.18.44-fc-v782"`` -> ``(6, 18)``; None when it does not start with N.N."""
    head = release.strip().split("-", 1)[0].split(".")
    if len(head) < 2:
        return None
    try:
        minor = "".join(ch for ch in head[1] if ch.isdigit()) if head[1] else ""
        return (int(head[0]), int(minor))
    except ValueError:
        return None


def _version(text: str, where: str) -> Version:
    v = parse_release(text)
    if v is None:
        raise KernelProfileError(f"kernels.toml: {where}: bad release {text!r}")
    return v


@dataclass(frozen=True)
class Fact:
    """One checkable fact: it holds in releases ``since <= release < until``."""

    kind: str  # "param" | "counter" | "zpool" | "procfs" | "behaviour"
    name: str
    since: str
    until: str | None
    source: str
    until_source: str | None = None
    value: Any = None  # param: its default; behaviour: its value; else None
    note: str = ""
    approx: bool = False  # release inferred from a posting date ("≈" in the reference)

    def holds(self, version: Version) -> bool:
        lo = _version(self.since, f"{self.kind} {self.name}")
        if version < lo:
            return False
        return self.until is None or version < _version(self.until, f"{self.kind} {self.name}")


@dataclass(frozen=True)
class ParamFact:
    """A zswap module parameter as a kernel has it: its default and where it comes from."""

    name: str
    default: str | None  # sysfs form ("Y", "20", "lzo"); None when not known (host only)
    since: str
    until: str | None
    source: str
    note: str = ""


@dataclass(frozen=True)
class _Data:
    profiles: tuple[str, ...]
    facts: tuple[Fact, ...]
    simulator_only: Mapping[tuple[str, str], str]  # (module or "*", name) -> note
    simulator_only_params: frozenset[str]


def _str(entry: Mapping[str, Any], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value:
        raise KernelProfileError(f"kernels.toml: {where}: {key!r} must be a non-empty string")
    return value


def _opt_str(entry: Mapping[str, Any], key: str) -> str | None:
    value = entry.get(key)
    return value if isinstance(value, str) and value else None


def _parse(doc: Mapping[str, Any]) -> _Data:
    facts: list[Fact] = []
    for kind in ("param", "counter", "zpool", "procfs", "behaviour"):
        for i, entry in enumerate(doc.get(kind, [])):
            name = _str(entry, "name", f"{kind} #{i}")
            where = f"{kind} {name}"
            fact = Fact(
                kind=kind,
                name=name,
                since=_str(entry, "since", where),
                until=_opt_str(entry, "until"),
                source=_str(entry, "source", where),
                until_source=_opt_str(entry, "until_source"),
                value=entry.get("default") if kind == "param" else entry.get("value"),
                note=str(entry.get("note", "")),
                approx=bool(entry.get("approx", False)),
            )
            _version(fact.since, where)
            if fact.until is not None:
                _version(fact.until, where)
                if fact.until_source is None and kind != "behaviour":
                    raise KernelProfileError(f"kernels.toml: {where}: 'until' needs 'until_source'")
            facts.append(fact)
            # A later default of a parameter is a fact of its own (kind "param_default").
            for j, change in enumerate(entry.get("defaults", [])):
                facts.append(
                    Fact(
                        kind="param_default",
                        name=name,
                        since=_str(change, "since", f"{where} defaults #{j}"),
                        until=_opt_str(change, "until"),
                        source=_str(change, "source", f"{where} defaults #{j}"),
                        value=_str(change, "value", f"{where} defaults #{j}"),
                        approx=bool(change.get("approx", False)),
                    )
                )
    sim = {
        (_str(e, "module", "simulator_only"), _str(e, "name", "simulator_only")): str(
            e.get("note", "")
        )
        for e in doc.get("simulator_only", [])
    }
    sim_params = frozenset(
        str(e["name"]) for e in doc.get("simulator_only", []) if e.get("kind") == "param"
    )
    profiles = tuple(str(p) for p in doc.get("profiles", []))
    for p in profiles:
        _version(p, "profiles")
    return _Data(profiles, tuple(facts), MappingProxyType(sim), sim_params)


@functools.cache
def _data() -> _Data:
    text = resources.files(__package__ or "zswap_core.kernels").joinpath("kernels.toml")
    return _parse(tomllib.loads(text.read_text(encoding="utf-8")))


def all_facts() -> tuple[Fact, ...]:
    """Every fact of kernels.toml (each with since/until/source)."""
    return _data().facts


PROFILES: tuple[str, ...] = _data().profiles

#: Parameters of zswap_core (of any of its modules) that no kernel has.
SIMULATOR_ONLY: frozenset[str] = _data().simulator_only_params


def simulator_only_note(module: str, name: str) -> str | None:
    """Why ``module``'s parameter or counter ``name`` exists in no kernel; None if some has it."""
    sim = _data().simulator_only
    note = sim.get((module, name))
    if note is None:
        note = sim.get(("*", name))
    return note


@dataclass(frozen=True)
class KernelProfile:
    """What zswap has in one kernel release (or in the running kernel: ``name == "host"``)."""

    name: str  # "6.18" or "host"
    release: str  # "6.18"; host: the uname release, e.g. "6.18.44-fc-v782"
    version: Version
    base: str  # the profile (release of PROFILES) nearest at or below ``version``
    zpools: tuple[str, ...]
    compressors: tuple[str, ...] | None  # host: what its crypto API has; None = any
    params: Mapping[str, ParamFact]
    counters: tuple[str, ...]
    procfs: tuple[str, ...]  # zswap's /proc/meminfo and /proc/vmstat names
    exclusive_loads: str  # "none" | "param" | "always"
    same_filled: str  # "none" | "zswap" | "zswap-zero" | "swapcore-zero"
    incompressible: str  # "reject" | "store-raw"
    entry_bytes: int  # metadata per stored entry (estimate, see kernels.toml)
    pool_header: Mapping[str, int]  # zpool -> bytes zswap prepends to each object
    facts: tuple[Fact, ...]  # the facts that hold in this release
    codec_levels: bool = False  # no kernel's zswap has codec levels: simulator only
    from_host: bool = False
    notes: tuple[str, ...] = field(default=())  # what the host overlay found or missed

    def has_param(self, name: str) -> bool:
        return name in self.params

    def has_zpool(self, name: str) -> bool:
        return name in self.zpools

    def has_counter(self, name: str) -> bool:
        return name in self.counters

    def has_compressor(self, name: str) -> bool:
        return self.compressors is None or name in self.compressors

    def header_bytes(self, zpool: str) -> int:
        """Bytes zswap puts in front of each compressed object in ``zpool`` (0 from 6.5)."""
        return self.pool_header.get(zpool, 0)


def _behaviour(facts: tuple[Fact, ...], name: str, version: Version) -> Any:
    for f in facts:
        if f.kind == "behaviour" and f.name == name:
            return f.value
    raise KernelProfileError(f"kernels.toml has no {name!r} fact for {version[0]}.{version[1]}")


def _base(version: Version) -> str:
    below = [p for p in PROFILES if _version(p, "profiles") <= version]
    if not below:
        return PROFILES[0]
    return max(below, key=lambda p: _version(p, "profiles"))


def profile_for_version(version: Version, *, name: str, release: str) -> KernelProfile:
    """The profile of any release from the facts alone (no host overlay)."""
    facts = tuple(f for f in _data().facts if f.holds(version))
    defaults = {f.name: str(f.value) for f in facts if f.kind == "param_default"}
    params = {
        f.name: ParamFact(
            name=f.name,
            default=defaults.get(f.name, None if f.value is None else str(f.value)),
            since=f.since,
            until=f.until,
            source=f.source,
            note=f.note,
        )
        for f in facts
        if f.kind == "param"
    }
    header = _behaviour(facts, "pool_header_bytes", version)
    return KernelProfile(
        name=name,
        release=release,
        version=version,
        base=_base(version),
        zpools=tuple(f.name for f in facts if f.kind == "zpool"),
        compressors=None,
        params=MappingProxyType(params),
        counters=tuple(f.name for f in facts if f.kind == "counter"),
        procfs=tuple(f.name for f in facts if f.kind == "procfs"),
        exclusive_loads=str(_behaviour(facts, "exclusive_loads", version)),
        same_filled=str(_behaviour(facts, "same_filled", version)),
        incompressible=str(_behaviour(facts, "incompressible", version)),
        entry_bytes=int(_behaviour(facts, "entry_bytes", version)),
        pool_header=MappingProxyType({str(k): int(v) for k, v in dict(header).items()}),
        facts=facts,
    )


def kernel_profile(name: str, *, host: HostState | None = None) -> KernelProfile:
    """The profile ``name`` (one of :data:`PROFILES`, or ``"host"``).

    ``"host"`` reads the running kernel (or uses ``host``, a :class:`HostState` read
    before): the facts of its exact release, then what its /sys and /proc say on top.
    """
    name = name.strip()
    if name != "host":
        if name not in PROFILES:
            raise KernelProfileError(
                f"unknown kernel profile {name!r} (choose from host, {', '.join(PROFILES)})"
            )
        v = _version(name, "profiles")
        return profile_for_version(v, name=name, release=name)
    from ._host import read_host

    state = host if host is not None else read_host()
    return _host_profile(state)


def _host_profile(state: HostState) -> KernelProfile:
    import dataclasses

    v = state.version
    if v is None:
        raise KernelProfileError(
            f"cannot profile the running kernel: release {state.release!r} is not N.N"
        )
    if v < (3, 11):
        raise KernelProfileError(f"kernel {state.release} predates zswap (3.11)")
    p = profile_for_version(v, name="host", release=state.release)
    notes: list[str] = []
    params: Mapping[str, ParamFact] = p.params
    if state.params is not None:
        # The host's sysfs is the truth: a backported or distro-added parameter is there,
        # one that the facts list but this kernel lacks is not.
        known = dict(p.params)
        all_params = {f.name: f for f in _data().facts if f.kind == "param"}
        host_params: dict[str, ParamFact] = {}
        for pname in sorted(state.params):
            if pname in known:
                host_params[pname] = known[pname]
            else:
                f = all_params.get(pname)
                host_params[pname] = ParamFact(
                    name=pname,
                    default=None if f is None else str(f.value),
                    since="host",
                    until=None,
                    source="read from /sys/module/zswap/parameters on this host",
                    note="not in kernels.toml for this release (backported or out of tree)",
                )
                notes.append(f"parameter {pname} is on this host but not in its release's facts")
        for pname in known:
            if pname not in state.params:
                notes.append(f"parameter {pname} is in the facts but not on this host")
        params = MappingProxyType(host_params)
    else:
        notes.append("no /sys/module/zswap/parameters: facts of the release only")
    compressors: tuple[str, ...] | None = None
    if state.compressors is not None:
        names = set(state.compressors) | set(state.loadable_compressors)
        current = (state.params or {}).get("compressor")
        if current:
            names.add(current)  # the current pool's compressor is certainly there
        compressors = tuple(sorted(names))
        if not state.loadable_compressors:
            notes.append(
                "compressors: those /proc/crypto lists (loaded ones; a module not loaded "
                "yet is not seen)"
            )
    zpools = p.zpools
    current_zpool = (state.params or {}).get("zpool")
    if current_zpool and current_zpool not in zpools:
        zpools = (*zpools, current_zpool)
    counters = p.counters
    if state.debugfs is not None:
        counters = tuple(sorted(state.debugfs))
    return dataclasses.replace(
        p,
        params=params,
        compressors=compressors,
        zpools=zpools,
        counters=counters,
        from_host=True,
        notes=tuple(notes),
    )
