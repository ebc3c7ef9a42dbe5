"""A process with MIB MiB of private anonymous memory, for the memory-bound test.

Run as ``python _bigtarget_child.py MIB SEED READY_FD``. Building that much out of
Python objects would take minutes, so it fills one large buffer (a private anonymous
mapping, as malloc makes for it) by tiling a 16 MiB block of mixed pages made from
``random.Random(SEED)``: text, tables of small integers, random bytes (incompressible)
and zero-filled pages, in proportions a server's heap could have. Then it writes
``ready rss_kib=N`` on READY_FD and blocks reading stdin until the parent closes it.
"""

from __future__ import annotations

import mmap
import random
import struct
import sys

PAGE = 4096
_BLOCK_PAGES = 4096  # 16 MiB
_WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "request",
    "response",
    "session",
    "user",
    "order",
    "item",
    "price",
    "total",
    "status",
    "ok",
    "error",
    "timeout",
    "cache",
    "hit",
    "miss",
    "key",
    "value",
    "index",
    "node",
    "page",
    "table",
    "row",
]


def _block(seed: int) -> bytes:
    rng = random.Random(seed)
    out = bytearray()
    for _ in range(_BLOCK_PAGES):
        kind = rng.random()
        if kind < 0.40:  # text: log lines, JSON-ish strings
            words: list[str] = []
            length = 0
            while length < PAGE:
                word = rng.choice(_WORDS)
                if rng.random() < 0.1:
                    word += f" {rng.randint(0, 1 << 32)}"
                words.append(word)
                length += len(word) + 1
            page = " ".join(words).encode()[:PAGE]
        elif kind < 0.75:  # records of small integers and pointers-like values
            vals = [
                rng.randint(0, 1000) if rng.random() < 0.7 else rng.getrandbits(48)
                for _ in range(PAGE // 8)
            ]
            page = struct.pack(f"<{PAGE // 8}Q", *vals)
        elif kind < 0.90:  # compressed or encrypted payloads
            page = rng.randbytes(PAGE)
        else:  # zeroed buffers
            page = bytes(PAGE)
        out += page
    return bytes(out)


def main() -> None:
    mib, seed, ready_fd = (int(a) for a in sys.argv[1:4])
    size = mib << 20
    buf = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    block = _block(seed)
    for off in range(0, size, len(block)):
        n = min(len(block), size - off)
        buf[off : off + n] = block[:n]
    del block
    with open("/proc/self/status") as fh:
        rss = next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))
    with open(ready_fd, "w", closefd=True) as ready:
        ready.write(f"ready rss_kib={rss}\n")
    sys.stdin.buffer.read()
    buf.close()


if __name__ == "__main__":
    main()
