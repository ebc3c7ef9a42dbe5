"""Threads on the native core under true parallelism, checked against a model.

With C codec ops and the C zsmalloc, store and load run without the GIL, so these
threads really run at once on the two cores. Each check is one that holds under
every interleaving, so the verdict never depends on timing:

- owners: every thread owns its offsets and keeps a model of them; every answer of
  the core must be the model's (0 lost, 0 wrong), while a flipper thread changes the
  compressor, the allocator and other parameters at fixed phase barriers and keeps
  toggling cheap ones in between;
- sharers: all threads store to the same offsets; a load may return any page ever
  stored at that offset, but never another offset's page and never a torn one.
"""

from __future__ import annotations

import random
import struct
import threading
import zlib

import pytest
from helpers import mixed_pages

from zswap_core import Zswap
from zswap_core._backend import NATIVE_ERROR

pytestmark = pytest.mark.skipif(NATIVE_ERROR is not None, reason=str(NATIVE_ERROR))

PS = 4096
HANG = 120.0
PHASES = 6
#: (compressor, zpool) at each phase barrier; pools of every pair stay loadable.
FLIPS = [
    ("zstd", "zsmalloc"),
    ("deflate", "zsmalloc"),
    ("lz4", "zbud"),
    ("lzo", "zsmalloc"),
    ("lz4hc", "zsmalloc"),
    ("lz4", "zsmalloc"),
]


def run_all(threads: list[threading.Thread]) -> None:
    for t in threads:
        t.start()
    for t in threads:
        t.join(HANG)
        assert not t.is_alive(), "a thread did not finish: a deadlock"


def available(z: Zswap, compressor: str, zpool: str) -> bool:
    return (
        z.registry.request("compressor", compressor) is not None
        and z.registry.request("zpool", zpool) is not None
    )


@pytest.mark.parametrize("nthreads", [2, 4])
def test_owners_against_a_model_while_parameters_flip(nthreads: int) -> None:
    z = Zswap(ram_bytes=1 << 30, backend="native", compressor="lz4", zpool="zsmalloc")
    z.init(0)
    z.init(1)
    pages = mixed_pages(96, PS, seed=nthreads)
    ops_per_phase = 600
    barrier = threading.Barrier(nthreads + 1)
    done = threading.Event()
    errors: list[str] = []
    models: list[dict[int, bytes]] = [{} for _ in range(nthreads)]

    def worker(t: int) -> None:
        rng = random.Random(1000 + t)
        model = models[t]
        typ, base = t % 2, t * 1_000_000
        try:
            for _ in range(PHASES):
                barrier.wait(HANG)
                barrier.wait(HANG)  # the flipper changed the parameters in between
                for _ in range(ops_per_phase):
                    off = base + rng.randrange(400)
                    r = rng.random()
                    if r < 0.5:
                        pg = pages[rng.randrange(len(pages))]
                        if z.store(typ, off, pg):
                            model[off] = pg
                        else:
                            model.pop(off, None)  # a refused store drops the old copy
                    elif r < 0.9:
                        excl = rng.random() < 0.25
                        got = z.load(typ, off, exclusive=excl)
                        if got != model.get(off):
                            errors.append(f"thread {t}: offset {off} wrong or lost")
                        if excl:
                            model.pop(off, None)
                    else:
                        z.invalidate_page(typ, off)
                        model.pop(off, None)
        except BaseException as exc:  # reported below
            errors.append(f"thread {t}: {exc!r}")
            barrier.abort()

    def flipper() -> None:
        rng = random.Random(7)
        try:
            for phase in range(PHASES):
                barrier.wait(HANG)
                comp, zpool = FLIPS[phase]
                if available(z, comp, zpool):
                    z.params.update({"compressor": comp, "zpool": zpool})
                barrier.wait(HANG)
                # cheap flips while the phase runs
                for _ in range(20):
                    z.params["same_filled_pages_enabled"] = rng.random() < 0.7
                    z.params["max_pool_percent"] = rng.choice([20, 50, 100])
            done.set()
        except BaseException as exc:
            errors.append(f"flipper: {exc!r}")
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(nthreads)]
    threads.append(threading.Thread(target=flipper))
    run_all(threads)
    assert not errors, errors[:5]
    assert done.is_set()
    # Every page the models hold is there, once; nothing else is.
    for t, model in enumerate(models):
        for off, pg in model.items():
            assert z.load(t % 2, off) == pg
    assert z.stats["stored_pages"] == sum(len(m) for m in models)
    for t, model in enumerate(models):
        for off in model:
            z.invalidate_page(t % 2, off)
    assert z.stats["stored_pages"] == 0
    assert z.pages.nr_pages == 0, "every allocator page went back"
    assert len(z._pools) == 1, "old pools went with their last entry"
    z.close()


def tagged(off: int, writer: int, seq: int, rng: random.Random) -> bytes:
    """A page that says where it belongs, with a checksum over all of it."""
    body = struct.pack("<III", off, writer, seq) + rng.randbytes(200) + bytes(PS - 216)
    return body + struct.pack("<I", zlib.crc32(body))


@pytest.mark.parametrize("nthreads", [2, 4])
def test_sharers_never_see_a_torn_or_foreign_page(nthreads: int) -> None:
    z = Zswap(ram_bytes=1 << 30, backend="native", compressor="lz4", zpool="zsmalloc")
    z.init(0)
    start = threading.Barrier(nthreads)
    errors: list[str] = []
    stored: list[set[bytes]] = [set() for _ in range(64)]
    lock = threading.Lock()

    def worker(t: int) -> None:
        rng = random.Random(t)
        try:
            start.wait(HANG)
            for seq in range(1500):
                off = rng.randrange(64)
                r = rng.random()
                if r < 0.45:
                    pg = tagged(off, t, seq, rng)
                    with lock:
                        stored[off].add(pg)
                    z.store(0, off, pg)
                elif r < 0.95:
                    got = z.load(0, off, exclusive=rng.random() < 0.2)
                    if got is None:
                        continue
                    body, crc = got[:-4], struct.unpack("<I", got[-4:])[0]
                    if zlib.crc32(body) != crc or struct.unpack("<I", got[:4])[0] != off:
                        errors.append(f"offset {off}: a torn or foreign page")
                    with lock:
                        if got not in stored[off]:
                            errors.append(f"offset {off}: a page never stored there")
                else:
                    z.invalidate_page(0, off)
        except BaseException as exc:
            errors.append(f"thread {t}: {exc!r}")

    run_all([threading.Thread(target=worker, args=(t,)) for t in range(nthreads)])
    assert not errors, errors[:5]
    for off in range(64):
        z.invalidate_page(0, off)
    assert z.stats["stored_pages"] == 0 and z.pages.nr_pages == 0
    z.close()
