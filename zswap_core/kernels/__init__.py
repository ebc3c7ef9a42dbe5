"""Kernel profiles: which zswap parameters, counters, allocators and behaviours a Linux
release has, from one data file (``kernels.toml``, every fact with its release and
source), and the running kernel's live state (:func:`read_host`).

>>> from zswap_core.kernels import kernel_profile
>>> p = kernel_profile("6.18")
>>> p.zpools, p.has_param("zpool"), p.incompressible
(('zsmalloc',), False, 'store-raw')

``kernel_profile("host")`` takes the facts of the running kernel's release and overlays
what its /sys and /proc say. The core itself stays a superset; :data:`SIMULATOR_ONLY`
names its knobs that no kernel has.
"""

from __future__ import annotations

from ._host import HostState, read_host
from ._profiles import (
    PROFILES,
    SIMULATOR_ONLY,
    Fact,
    KernelProfile,
    KernelProfileError,
    ParamFact,
    all_facts,
    kernel_profile,
    parse_release,
    simulator_only_note,
)

__all__ = [
    "PROFILES",
    "SIMULATOR_ONLY",
    "Fact",
    "HostState",
    "KernelProfile",
    "KernelProfileError",
    "ParamFact",
    "all_facts",
    "kernel_profile",
    "parse_release",
    "read_host",
    "simulator_only_note",
]
