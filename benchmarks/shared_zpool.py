#!/usr/bin/env python3
"""Pool memory with and without ``shared_zpool`` after compressor switches (issue 17, 1).

    python benchmarks/shared_zpool.py [--pages 20000] [--switches 5] [--seed 0]
                                      [--zpools zbud,z3fold,zsmalloc]
                                      [--compressors lz4,zstd,lzo,deflate] [--json FILE]

For each allocator and each design (``shared_zpool=N``: the 2015 series, a new zpool at
every compressor change; ``Y``: Seth Jennings's, one zpool, the compressor recorded per
entry) it stores ``--pages`` pages of the seeded synthetic mix, switching compressor
``--switches`` times at even intervals (cycling ``--compressors``), then invalidates a
random half (seeded) of the stored pages. It prints the pool's pages and density
(compressed bytes / pool bytes) after the stores, after the invalidation, and after
``compact()``; the zpool instances and pools (compressor slots) still live; and the
core's metadata per stored page (native backend), which is the same under both designs.
Deterministic for a seed: same pages, same switches, same half.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

from zswap_core import Zswap, crypto_has_comp, zpool_has_pool
from zswap_core.workload import SyntheticSource

PAGE = 4096


def _figures(z: Zswap, live: list[int]) -> dict[str, Any]:
    stored = sum(z.entry_length(0, off) or 0 for off in live)
    pool_bytes = z.stats["pool_total_size"]
    return {
        "pool_pages": pool_bytes // PAGE,
        "compressed_bytes": stored,
        "density": stored / pool_bytes if pool_bytes else 0.0,
    }


def run_one(
    zpool: str, shared: bool, pages: int, switches: int, seed: int, compressors: list[str]
) -> dict[str, Any]:
    src = SyntheticSource(seed)
    z = Zswap(
        compressor=compressors[0],
        zpool=zpool,
        shared_zpool=shared,
        ram_bytes=1 << 40,  # no pool limit: the designs' memory, not writeback's
        shrink_worker=False,
    )
    z.init(0)
    every = pages // (switches + 1)
    live: list[int] = []
    for i in range(pages):
        if i and i % every == 0 and i // every <= switches:
            z.params["compressor"] = compressors[(i // every) % len(compressors)]
        if z.store(0, i, src.page(i)):
            live.append(i)
    out: dict[str, Any] = {"zpool": zpool, "shared_zpool": "Y" if shared else "N"}
    out["stored"] = _figures(z, live)
    out["stored_pages"] = len(live)
    meta = z.native_memory()
    core = sum(v for k, v in meta.items() if k.startswith("core."))
    out["core_bytes_per_page"] = round(core / len(live), 2) if core else None
    rng = random.Random(seed)
    gone = set(rng.sample(live, len(live) // 2))
    for off in sorted(gone):
        z.invalidate_page(0, off)
    live = [off for off in live if off not in gone]
    out["after_invalidate"] = _figures(z, live)
    pools = z.pools
    out["zpools"] = len({p.shared for p in pools})
    out["pools"] = len(pools)
    out["compressors"] = sorted({p.compressor for p in pools})
    z.compact()
    out["after_compact"] = _figures(z, live)
    for off in live:  # every page still there, byte for byte
        if z.load(0, off) != src.page(off):
            raise SystemExit(f"page {off} came back wrong")
    z.close()
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=20000)
    parser.add_argument("--switches", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--zpools", default="zbud,z3fold,zsmalloc")
    parser.add_argument("--compressors", default="lz4,zstd,lzo,deflate")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    zpools = [p for p in args.zpools.split(",") if zpool_has_pool(p)]
    comps = [c for c in args.compressors.split(",") if crypto_has_comp(c)]
    if not zpools or not comps:
        print("no allocator or compressor available", file=sys.stderr)
        return 1
    print(
        f"{args.pages} pages (synthetic, seed {args.seed}), {args.switches} compressor "
        f"switches cycling {','.join(comps)}, then a random half invalidated"
    )
    head = (
        f"{'zpool':9} {'shared':6} {'stored':>7} {'pages':>7} {'dens':>5} | "
        f"{'half':>6} {'pages':>7} {'dens':>5} | {'compact':>7} {'dens':>5} | "
        f"{'zpools':>6} {'pools':>5} {'meta/pg':>7}"
    )
    print(head)
    print("-" * len(head))
    rows = []
    for zp in zpools:
        for shared in (False, True):
            r = run_one(zp, shared, args.pages, args.switches, args.seed, comps)
            rows.append(r)
            s, h, c = r["stored"], r["after_invalidate"], r["after_compact"]
            meta = r["core_bytes_per_page"]
            print(
                f"{zp:9} {r['shared_zpool']:6} {r['stored_pages']:7d} {s['pool_pages']:7d} "
                f"{s['density']:5.3f} | {r['stored_pages'] - r['stored_pages'] // 2:6d} "
                f"{h['pool_pages']:7d} {h['density']:5.3f} | {c['pool_pages']:7d} "
                f"{c['density']:5.3f} | {r['zpools']:6d} {r['pools']:5d} "
                f"{'-' if meta is None else f'{meta:.1f}':>7}"
            )
        n, y = rows[-2]["after_invalidate"], rows[-1]["after_invalidate"]
        saved = n["pool_pages"] - y["pool_pages"]
        pct = 100 * saved / n["pool_pages"] if n["pool_pages"] else 0.0
        print(f"{'':9} Y saves {saved} pool pages after the invalidation ({pct:.1f}%)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
