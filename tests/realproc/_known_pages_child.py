"""A process with one mapping of pages whose kind is known, to check the rules.

Run as ``python _known_pages_child.py Z N S R T U SEED READY_FD``. One private anonymous
mapping of Z+N+S+R+T+U pages, in this order: Z pages only read (they map the shared
zero page), N pages written with zeros (zero-filled, but real pages), S pages filled
with one repeated 8-byte word, R pages of random bytes (no codec makes them smaller
than a page), T pages of text (compressible), U pages never touched (not present).
Writes ``ready addr=0x... pages=N`` on READY_FD, then blocks reading stdin.
"""

from __future__ import annotations

import ctypes
import mmap
import random
import sys

PAGE = 4096


def main() -> None:
    z, n, s, r, t, u, seed, ready_fd = (int(a) for a in sys.argv[1:9])
    rng = random.Random(seed)
    random.seed(seed)
    total = z + n + s + r + t + u
    m = mmap.mmap(-1, total * PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    pos = 0
    for _ in range(z):
        _ = m[pos * PAGE]  # a read fault: the shared zero page is mapped
        pos += 1
    for _ in range(n):
        m[pos * PAGE : (pos + 1) * PAGE] = bytes(PAGE)  # a write: a page of its own
        pos += 1
    word = (0x0123456789ABCDEF).to_bytes(8, "little")
    for _ in range(s):
        m[pos * PAGE : (pos + 1) * PAGE] = word * (PAGE // 8)
        pos += 1
    for _ in range(r):
        m[pos * PAGE : (pos + 1) * PAGE] = rng.randbytes(PAGE)
        pos += 1
    words = [
        "the",
        "quick",
        "brown",
        "fox",
        "jumps",
        "over",
        "a",
        "lazy",
        "dog",
        "while",
        "zswap",
        "keeps",
        "pages",
    ]
    for _ in range(t):
        text = " ".join(rng.choice(words) for _ in range(900)).encode()[:PAGE]
        m[pos * PAGE : (pos + 1) * PAGE] = text
        pos += 1
    view = (ctypes.c_char * 1).from_buffer(m)
    addr = ctypes.addressof(view)
    del view
    with open(ready_fd, "w", closefd=True) as ready:
        ready.write(f"ready addr={addr:#x} pages={total}\n")
    sys.stdin.buffer.read()
    m.close()


if __name__ == "__main__":
    main()
