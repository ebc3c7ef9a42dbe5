#!/usr/bin/env python3
"""Instructions per page, by valgrind's callgrind: where the time of a store and a load goes.

    python benchmarks/callgrind.py [--pages N]

Counts are exact and repeatable (instructions, not seconds), so they say what a timing
on a noisy machine cannot: how much of a store or a load is the codec, the core, and
the allocator. Each figure is the instruction count of a run over N pages minus that
of the same run over no pages (interpreter start, imports, set-up), divided by N:

* the floor: ``lz4.block`` into a ``dict`` and back;
* ``Zswap`` (native backend) with lz4 and the C zsmalloc, and with lz4 and zbud (an
  allocator written in Python, called per page through its methods);
* zbud alone: its ``alloc_write`` and ``read`` on the same compressed pages.

Needs valgrind (Debian: ``apt-get install valgrind``). Takes about a minute.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_SETUP = """
import sys
sys.path.insert(0, {root!r})
from benchmarks import _bench
import lz4.block
from zswap_core import Zswap
pages = _bench.make_pages({n}, seed=1)
comp = [lz4.block.compress(p, store_size=False) for p in pages]
"""

#: name -> (set-up, store code, load code); each runs over ``pages`` after _SETUP.
WORKLOADS = {
    "floor (dict + lz4)": (
        "d = {}",
        "for i, p in enumerate(pages):\n    d[i] = lz4.block.compress(p, store_size=False)",
        "for i in range(len(pages)):\n    lz4.block.decompress(d[i], uncompressed_size=4096)",
    ),
    "Zswap lz4+zsmalloc (native)": (
        "z = Zswap(compressor='lz4', zpool='zsmalloc', ram_bytes=1 << 34, backend='native')\n"
        "z.init(0)",
        "for i, p in enumerate(pages):\n    z.store(0, i, p)",
        "for i in range(len(pages)):\n    z.load(0, i)",
    ),
    "Zswap lz4+zbud (native core)": (
        "z = Zswap(compressor='lz4', zpool='zbud', ram_bytes=1 << 34, backend='native')\nz.init(0)",
        "for i, p in enumerate(pages):\n    z.store(0, i, p)",
        "for i in range(len(pages)):\n    z.load(0, i)",
    ),
    "zbud alone (alloc_write / read)": (
        "z = Zswap(compressor='lz4', zpool='zbud', ram_bytes=1 << 34, backend='native')\n"
        "zp = z._pools[0].zpool\nfits = []\nfor c in comp:  # what zbud can hold\n"
        "    try:\n        zp.free(zp.alloc_write(c))\n        fits.append(c)\n"
        "    except Exception:\n        pass\nhs = []",
        "for c in fits:\n    hs.append((zp.alloc_write(c), len(c)))",
        "for h, n in hs:\n    zp.read(h, n)",
    ),
}


def _instructions(valgrind: str, code: str, workdir: Path) -> int:
    out = workdir / "callgrind.out"
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    subprocess.run(
        [valgrind, "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-c", code],
        check=True,
        capture_output=True,
        env=env,
    )
    m = re.search(r"^(?:summary|totals):\s+(\d+)", out.read_text(), re.M)
    assert m is not None, "no totals in the callgrind output"
    return int(m.group(1))


def measure(pages: int) -> dict[str, tuple[float, float]]:
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    out: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, (prepare, store, load) in WORKLOADS.items():
            counts = []
            # the same set-up every time (pages made and compressed once): only the
            # bodies differ, so their difference is the stores', then the loads'
            setup = textwrap.dedent(_SETUP.format(root=str(ROOT), n=pages)) + prepare
            for body in ("", store, f"{store}\n{load}"):
                code = setup + "\n" + body + "\n"
                counts.append(_instructions(valgrind, code, work))
            base, stored, loaded = counts
            out[name] = ((stored - base) / pages, (loaded - stored) / pages)
            print(f"  {name}: store {out[name][0]:,.0f}, load {out[name][1]:,.0f}", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--pages", type=int, default=1000, help="pages per run (1000)")
    args = ap.parse_args()
    print(f"instructions per page (callgrind), {args.pages} pages of the synthetic mix:")
    res = measure(args.pages)
    floor = res["floor (dict + lz4)"]
    print()
    print(f"  {'':34} {'store':>9} {'load':>9}   vs floor (instructions)")
    for name, (s, ld) in res.items():
        vs = "" if "alone" in name else f"{floor[0] / s:.2f}x / {floor[1] / ld:.2f}x"
        print(f"  {name:34} {s:9,.0f} {ld:9,.0f}   {vs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
