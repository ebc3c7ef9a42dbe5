#!/usr/bin/env python3
"""What a group costs on the hot path (issue 17, section 2).

    python benchmarks/groups.py [--pages 20000] [--repeats 5] [--backend native|python]

Stores ``--pages`` pages of the seeded synthetic mix (lz4 + zsmalloc, no pool limit)
and loads them back, three ways, interleaved in every repeat so that the machine's
noise falls on all three alike:

* ``none``: ``store(type, offset, page)``, the path of every page without a group;
* ``group``: ``store(..., group=g)`` into a group with no limit (charge, LRU by group);
* ``nested``: the same into a group three levels down (charges walk the ancestors).

Prints CPU µs per page (median over the repeats, with the spread) and each against
``none`` as a ratio of the medians, plus the core's memory for the group ids (native).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from zswap_core import Group, Zswap
from zswap_core.workload import SyntheticSource


def one_round(backend: str, pages: list[bytes], how: str) -> tuple[float, float, int]:
    """(store µs, load µs per page, the core's group memory in bytes)."""
    z = Zswap(
        compressor="lz4", zpool="zsmalloc", ram_bytes=1 << 40, backend=backend, shrink_worker=False
    )
    try:
        z.init(0)
        group: Group | None = None
        if how == "group":
            group = z.group("g")
        elif how == "nested":
            group = z.group("c", parent=z.group("b", parent=z.group("a")))
        store: Callable[..., bool] = z.store
        load = z.load
        clock = time.thread_time_ns
        t0 = clock()
        if group is None:
            for off, page in enumerate(pages):
                store(0, off, page)
        else:
            for off, page in enumerate(pages):
                store(0, off, page, group=group)
        t1 = clock()
        for off in range(len(pages)):
            load(0, off)
        t2 = clock()
        memory = z.native_memory().get("core.memcg", 0)
        return (t1 - t0) / 1e3 / len(pages), (t2 - t1) / 1e3 / len(pages), memory
    finally:
        z.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pages", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--backend", default="native", choices=["native", "python"])
    args = ap.parse_args()
    src = SyntheticSource(1)
    pages = [src.page(i) for i in range(args.pages)]
    ways = ("none", "group", "nested")
    stores: dict[str, list[float]] = {w: [] for w in ways}
    loads: dict[str, list[float]] = {w: [] for w in ways}
    memory: dict[str, int] = {}
    for _ in range(args.repeats):
        for how in ways:
            s, ld, mem = one_round(args.backend, pages, how)
            stores[how].append(s)
            loads[how].append(ld)
            memory[how] = mem
    print(
        f"{args.pages} pages of the synthetic mix, lz4 + zsmalloc, {args.backend} backend, "
        f"CPU µs per page, median of {args.repeats} interleaved repeats (min-max):"
    )
    base_s = statistics.median(stores["none"])
    base_l = statistics.median(loads["none"])
    print(f"  {'':8} {'store µs':>20} {'load µs':>20} {'vs none':>14} {'group ids, B':>13}")
    for how in ways:
        s, ld = statistics.median(stores[how]), statistics.median(loads[how])
        print(
            f"  {how:8} {s:8.2f} ({min(stores[how]):.2f}-{max(stores[how]):.2f})"
            f" {ld:8.2f} ({min(loads[how]):.2f}-{max(loads[how]):.2f})"
            f" {s / base_s:6.2f}x/{ld / base_l:.2f}x {memory[how]:13,}"
        )


if __name__ == "__main__":
    main()
