"""Real processes for the advise tests, and an independent computation to check it.

- ``PythonHeap``: a Python process holding a few hundred MiB of application objects;
- ``RedisServer``: Debian's redis-server on 127.0.0.1, loaded with redis-benchmark;
- ``BigTarget``: a process with 1 GiB of private anonymous memory;
- ``KnownPages``: a mapping of pages of known kinds (zero page, zero-filled,
  same-filled, incompressible, text, untouched), to check the rules exactly;
- ``independent``: the pages and their compressed sizes, found with no zswap code.

Every child starts with ASLR off and from fixed seeds, and is killed and reaped on
``close()`` (they are context managers), whatever the test did.
"""

from __future__ import annotations

from ._children import BigTarget, KnownPages, PythonHeap
from ._memory import Measured, PeakMemory, run_measured, tree_pids
from ._redis import RedisLoad, RedisServer, redis_command, redis_programs
from ._spawn import Child, ChildError, child_env, disable_aslr

__all__ = [
    "BigTarget",
    "Child",
    "ChildError",
    "KnownPages",
    "Measured",
    "PeakMemory",
    "PythonHeap",
    "RedisLoad",
    "RedisServer",
    "child_env",
    "disable_aslr",
    "redis_command",
    "redis_programs",
    "run_measured",
    "tree_pids",
]
