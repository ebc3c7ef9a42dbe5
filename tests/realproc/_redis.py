"""A redis-server of our own on 127.0.0.1, loaded with redis-benchmark.

Debian's redis-server and redis-tools (``python3 dev.py setup`` installs them). The
server keeps nothing on disk (no RDB snapshots, no AOF) and works in a temporary
directory; it is loaded with ``redis-benchmark -t set,lpush,hset`` from one client
with pipelining, fixed flags throughout.

redis-benchmark has no seed option: it calls ``srandom(time(NULL) ^ getpid())``, so
which of the ``-r`` keys SET and HSET hit, and in which order, would change from run
to run, and with them the whole layout of the server's memory. A tiny preloaded
library (compiled here with the system's C compiler) pins that seed, so the same
flags write the same keys in the same order every time. What stays random: redis
seeds its dict hash function from /dev/urandom (which bucket each key lands in) and
stamps objects with its LRU clock; the page layout and the kind of every page stay
the same, and the tests compare the tool with an independent computation on the
same process, never with numbers from another run. Without a C compiler the load is
unseeded (``RedisServer.seeded`` is False).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from typing import BinaryIO

from ._spawn import Child, ChildError, child_env

__all__ = ["RedisLoad", "RedisServer", "redis_command", "redis_programs"]


def redis_programs() -> tuple[str, str] | None:
    """(redis-server, redis-benchmark) paths, or None when one is missing."""
    server, bench = shutil.which("redis-server"), shutil.which("redis-benchmark")
    if server is None or bench is None:
        return None
    return server, bench


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _read_reply(f: BinaryIO) -> object:
    # a minimal RESP2 reader: enough for PING, DBSIZE, LLEN, HLEN, INFO
    line = f.readline()
    if not line:
        raise ConnectionError("redis closed the connection")
    kind, rest = line[:1], line[1:].rstrip(b"\r\n")
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError(f"redis: {rest.decode()}")
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:n].decode()
    if kind == b"*":
        return [_read_reply(f) for _ in range(int(rest))]
    raise RuntimeError(f"redis: unexpected reply {line[:40]!r}")


def redis_command(port: int, *args: str, timeout: float = 10.0) -> object:
    """Send one command to the server on 127.0.0.1:port and return its reply."""
    payload = f"*{len(args)}\r\n".encode()
    for a in args:
        b = a.encode()
        payload += b"$%d\r\n%s\r\n" % (len(b), b)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload)
        with s.makefile("rb") as f:
            return _read_reply(f)


@dataclass(frozen=True)
class RedisLoad:
    """redis-benchmark's flags: ``-t set,lpush,hset -n requests -r keyspace -d size``.

    Each of the three tests sends ``requests`` commands: SET on keys ``key:<rand>``,
    LPUSH onto one list ``mylist`` and HSET of fields ``element:<rand>`` in one hash
    ``myhash``, every value ``size`` bytes. The defaults make ~290 MiB of RSS.
    """

    requests: int = 1_000_000
    keyspace: int = 1_000_000
    size: int = 64
    pipeline: int = 250
    seed: int = 1  # srandom's, pinned by a preloaded shim (see the module docstring)

    def argv(self, bench: str, port: int) -> list[str]:
        return [
            bench,
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-c",
            "1",  # one client: the commands arrive in one order
            "-P",
            str(self.pipeline),
            "-t",
            "set,lpush,hset",
            "-n",
            str(self.requests),
            "-r",
            str(self.keyspace),
            "-d",
            str(self.size),
            "-q",
        ]

    def sent(self) -> int:
        """Commands each test sends: redis-benchmark sends whole pipelines, so
        ``requests`` rounded up to a multiple of ``pipeline``."""
        return -(-self.requests // self.pipeline) * self.pipeline

    def expected_keys(self) -> tuple[float, float]:
        """Mean and standard deviation of the number of distinct ``-r`` keys hit by
        ``sent()`` uniform draws (the occupancy problem)."""
        r, n = self.keyspace, self.sent()
        q1 = (1 - 1 / r) ** n
        q2 = (1 - 2 / r) ** n
        mean = r * (1 - q1)
        var = r * (r - 1) * q2 + r * q1 - (r * q1) ** 2
        return mean, max(var, 0.0) ** 0.5


_SEED_SHIM = r"""
/* Preloaded into redis-benchmark: srandom() always seeds with $REALPROC_SRANDOM_SEED. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>

void srandom(unsigned int seed)
{
    void (*real)(unsigned int) = (void (*)(unsigned int))dlsym(RTLD_NEXT, "srandom");
    const char *fixed = getenv("REALPROC_SRANDOM_SEED");
    if (fixed != NULL)
        seed = (unsigned int)strtoul(fixed, NULL, 10);
    real(seed);
}
"""


def _seed_shim(workdir: str) -> str | None:
    """Compile the srandom shim into ``workdir``; its path, or None without a compiler."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    src, lib = os.path.join(workdir, "seed.c"), os.path.join(workdir, "seed.so")
    with open(src, "w") as fh:
        fh.write(_SEED_SHIM)
    proc = subprocess.run(
        [cc, "-shared", "-fPIC", "-O1", "-o", lib, src, "-ldl"], capture_output=True
    )
    return lib if proc.returncode == 0 else None


class RedisServer:
    """``redis-server`` on 127.0.0.1 at a free port, loaded, then left idle.

    Active rehashing is off so that no dict moves while the tests read the memory;
    a background-free, snapshot-free server is idle apart from its 10 Hz timer.
    """

    def __init__(self, load: RedisLoad | None = None, *, timeout: float = 120.0) -> None:
        progs = redis_programs()
        if progs is None:
            raise ChildError("redis-server or redis-benchmark is not installed")
        server, bench = progs
        self.load = load or RedisLoad()
        self._dir = tempfile.mkdtemp(prefix="zswap-redis-")
        self.child: Child | None = None
        try:
            self._start(server, timeout)
            self._fill(bench, timeout)
        except BaseException:
            self.close()
            raise

    def _start(self, server: str, timeout: float) -> None:
        for _attempt in range(3):  # the free port may be taken before redis binds it
            self.port = _free_port()
            argv = [
                server,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--protected-mode",
                "yes",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
                self._dir,
                "--logfile",
                "",
                "--loglevel",
                "warning",
                "--activerehashing",
                "no",
                "--jemalloc-bg-thread",
                "no",
            ]
            # jemalloc gives freed pages back on a timer (10 s decay): which ones are
            # still present would depend on when they are counted. Never purging keeps
            # the freed pages resident, the same ones every run.
            env = child_env(MALLOC_CONF="dirty_decay_ms:-1,muzzy_decay_ms:-1")
            self.child = Child(argv, env=env, cwd=self._dir, ready_pipe=False)
            deadline = time.monotonic() + min(timeout, 20.0)
            while time.monotonic() < deadline and self.child.alive():
                with contextlib.suppress(OSError, ConnectionError):
                    if redis_command(self.port, "PING", timeout=1.0) == "PONG":
                        self.pid = self.child.pid
                        return
                time.sleep(0.05)
            self.child.close()
        raise ChildError("redis-server did not start (3 attempts)")

    def _fill(self, bench: str, timeout: float) -> None:
        shim = _seed_shim(self._dir)
        self.seeded = shim is not None
        env = child_env()
        if shim is not None:
            env.update(LD_PRELOAD=shim, REALPROC_SRANDOM_SEED=str(self.load.seed))
        proc = subprocess.run(
            self.load.argv(bench, self.port),
            env=env,
            cwd=self._dir,
            capture_output=True,
            timeout=timeout,
        )
        if proc.returncode != 0:
            tail = proc.stderr.decode(errors="replace")[-500:]
            raise ChildError(f"redis-benchmark failed (exit {proc.returncode}): {tail}")

    def info(self, section: str = "memory") -> dict[str, str]:
        text = redis_command(self.port, "INFO", section)
        assert isinstance(text, str)
        out = {}
        for line in text.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                out[key] = value
        return out

    def command(self, *args: str) -> object:
        return redis_command(self.port, *args)

    def close(self) -> None:
        if self.child is not None:
            self.child.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
