"""What is zsmalloc's own: classes, handles with generations, spanning objects,
fullness groups, compaction, zspage chains, statistics.

The allocator contract (random operations with held mappings and compact(), handles,
error codes, ENOMEM, page accounting, destroy, threads, page sizes, Zswap) is checked
by the conformance kit in test_zsmalloc_conformance.py.
"""

from __future__ import annotations

import errno
import math
import os
import random

import pytest
from zswap_zsmalloc import ZS_HANDLE_SIZE, PyZsmalloc, Zsmalloc, format_classes
from zswap_zsmalloc._cpool import NativeZsmalloc

import zswap_core
from zswap_core import MapMode, ModuleParams, PageAllocator, ParamError, ZpoolError

SLOT_MASK = (1 << 28) - 1


def make(page_size: int = 4096, chain: int | None = None) -> tuple[Zsmalloc, PageAllocator]:
    pa = PageAllocator(page_size)
    params = None
    if chain is not None:
        params = ModuleParams("zsmalloc", Zsmalloc.parameters)
        params.set("chain_size", chain, boot=True)
    z = Zsmalloc("test", pa, params)
    assert z.backend == os.environ["ZSWAP_BACKEND"]  # set by conftest.backend
    return z, pa


def where(z: Zsmalloc, handle: int) -> tuple[int, int]:
    """(zspage key, object index) of a live handle (white-box): equal keys, same zspage."""
    if isinstance(z, NativeZsmalloc):
        return z._pool._where(handle)
    assert isinstance(z, PyZsmalloc)
    slot = handle & SLOT_MASK
    zs = z._hzs[slot]
    assert zs is not None
    return id(zs), z._hobj[slot]


def fill(z: Zsmalloc, handle: int, data: bytes, mode: MapMode = MapMode.WO) -> None:
    view = z.map(handle, mode)
    try:
        assert len(view) >= len(data)
        view[: len(data)] = data
    finally:
        z.unmap(handle)


def check(z: Zsmalloc, handle: int, data: bytes) -> None:
    view = z.map(handle, MapMode.RO)
    try:
        assert bytes(view[: len(data)]) == data
    finally:
        z.unmap(handle)


def pattern(key: int, n: int) -> bytes:
    return random.Random(key).randbytes(n)


def consistent(z: Zsmalloc, pa: PageAllocator) -> None:
    s = z.stats()
    assert sum(r["pages_used"] for r in s["classes"]) == z.nr_pages == s["total"]["pages_used"]
    assert pa.nr_pages == z.nr_pages
    for r in s["classes"]:
        zspages = sum(r[g] for g in ("10%", "20%", "30%", "40%", "50%"))
        zspages += sum(r[g] for g in ("60%", "70%", "80%", "90%", "99%", "100%"))
        assert r["pages_used"] == zspages * r["pages_per_zspage"]
        assert r["obj_used"] <= r["obj_allocated"]
        per = r["obj_allocated"] // max(zspages, 1)
        if zspages:
            assert (
                r["freeable"] == (r["obj_allocated"] - r["obj_used"]) // per * r["pages_per_zspage"]
            )


# -- errors and handles ----------------------------------------------------------------


def test_plugin_identity() -> None:
    assert Zsmalloc.type == "zsmalloc"
    assert Zsmalloc.can_compact is True
    (p,) = Zsmalloc.parameters
    assert p.name == "chain_size" and p.default == 8 and not p.writable
    assert (p.minimum, p.maximum) == (4, 16)


def test_stale_handle_after_slot_reuse() -> None:
    z, _ = make()
    h = z.malloc(100)
    z.free(h)
    h2 = z.malloc(100)
    assert h2 != h  # slot reused with a new generation
    assert h2 & SLOT_MASK == h & SLOT_MASK
    for op in (z.free, z.map):  # the stale handle does not name the new object
        with pytest.raises(ZpoolError) as e:
            op(h)
        assert e.value.errno == errno.EINVAL
    with pytest.raises(ZpoolError):
        z.unmap(h2)  # not mapped
    z.free(h2)


def test_freed_handle_values_do_not_come_back() -> None:
    z, _ = make()
    rng = random.Random(3)
    live: set[int] = set()
    ever: list[int] = []
    for _ in range(5000):
        if live and rng.random() < 0.45:
            h = live.pop()
            z.free(h)
        else:
            h = z.malloc(rng.randint(1, 4096))
            live.add(h)
            ever.append(h)
    # generations keep recently freed handle values from coming back at once
    assert len(set(ever)) == len(ever)
    for h in live:
        z.free(h)
    assert z.nr_pages == 0


# -- data ------------------------------------------------------------------------------


def test_spanning_object_round_trip() -> None:
    z, pa = make()
    # 1528 + 8-byte handle = class 1536: 8 objects over 3 pages; object 2 sits at
    # 3072..4608 and straddles pages 0 and 1.
    hs = [z.malloc(1528) for _ in range(8)]
    assert z.nr_pages == 3
    spanning = []
    for h in hs:
        _zs, obj = where(z, h)
        start = obj * 1536 + ZS_HANDLE_SIZE
        if start // 4096 != (start + 1528 - 1) // 4096:
            spanning.append(h)
    assert spanning, "expected objects crossing a page boundary"
    for i, h in enumerate(hs):
        fill(z, h, pattern(i, 1528))
    for i, h in enumerate(hs):
        check(z, h, pattern(i, 1528))
        assert z.read(h, 1528) == pattern(i, 1528)
    h = spanning[0]
    # RO: changes to the copy are not written back
    v = z.map(h, MapMode.RO)
    v[:4] = b"XXXX"
    z.unmap(h)
    assert z.read(h, 4) == pattern(hs.index(h), 4)
    # RW: copied in and out
    v = z.map(h, MapMode.RW)
    assert bytes(v[:8]) == pattern(hs.index(h), 8)
    v[-4:] = b"TAIL"
    z.unmap(h)
    assert z.read(h, 1528)[-4:] == b"TAIL"
    # write() fast path across the boundary
    z.write(h, b"w" * 1528)
    assert z.read(h, 1528) == b"w" * 1528
    # nested mappings of two spanning objects on one thread get separate buffers
    a, b = spanning[0], spanning[-1]
    if a != b:
        va = z.map(a, MapMode.RW)
        vb = z.map(b, MapMode.RW)
        va[:3] = b"AAA"
        vb[:3] = b"BBB"
        z.unmap(b)
        z.unmap(a)
        assert z.read(a, 3) == b"AAA" and z.read(b, 3) == b"BBB"
    for h in hs:
        z.free(h)
    assert pa.nr_pages == 0


def test_empty_zspage_freed_at_once() -> None:
    z, pa = make()
    hs = [z.malloc(1528) for _ in range(9)]  # two 3-page zspages
    assert z.nr_pages == 6
    z.free(hs.pop())  # the second zspage empties
    assert z.nr_pages == pa.nr_pages == 3
    for h in hs:
        z.free(h)
    assert pa.nr_pages == 0


# -- fullness groups -------------------------------------------------------------------


def test_allocation_prefers_fullest_zspage() -> None:
    z, _ = make()
    hs = [z.malloc(1528) for _ in range(24)]  # three full 8-object zspages
    zspages = []
    for h in hs:
        zs, _obj = where(z, h)
        if zs not in zspages:
            zspages.append(zs)
    assert len(zspages) == 3
    by_zs = {zs: [h for h in hs if where(z, h)[0] == zs] for zs in zspages}
    a, b, c = zspages
    for h in by_zs[a][:5]:  # a: 3/8 -> "40%"
        z.free(h)
    for h in by_zs[b][:1]:  # b: 7/8 -> "90%"
        z.free(h)
    for h in by_zs[c][:3]:  # c: 5/8 -> "70%"
        z.free(h)
    row = next(r for r in z.stats()["classes"] if r["size"] == 1536)
    assert (row["40%"], row["70%"], row["90%"], row["100%"]) == (1, 1, 1, 0)
    h = z.malloc(1500)
    assert where(z, h)[0] == b  # fullest non-full first
    h2 = z.malloc(1500)
    assert where(z, h2)[0] == c  # b is full now; c is next fullest
    row = next(r for r in z.stats()["classes"] if r["size"] == 1536)
    assert (row["40%"], row["80%"], row["100%"]) == (1, 1, 1)


# -- compaction ------------------------------------------------------------------------


def test_compaction_after_random_frees() -> None:
    z, pa = make()
    rng = random.Random(7)
    live: dict[int, bytes] = {}
    for i in range(6000):
        n = rng.randint(1, 3000)
        h = z.malloc(n)
        z.write(h, pattern(i, n))
        live[h] = pattern(i, n)
    before = z.nr_pages
    for h in rng.sample(sorted(live), k=len(live) * 3 // 4):
        z.free(h)
        del live[h]
    s = z.stats()
    freeable = s["total"]["freeable"]
    assert freeable > 0
    after_free = z.nr_pages
    freed = z.compact()
    assert freed == after_free - z.nr_pages == freeable
    assert z.pages_compacted == freed
    assert z.stats()["pages_compacted"] == freed
    assert z.nr_pages < before
    # every class is now as small as its live objects allow
    need = 0
    for r in z.stats()["classes"]:
        per = r["obj_allocated"] // max(1, r["pages_used"] // r["pages_per_zspage"])
        if r["obj_used"]:
            zsp = math.ceil(r["obj_used"] / per)
            assert r["pages_used"] == zsp * r["pages_per_zspage"]
            need += zsp * r["pages_per_zspage"]
        assert r["freeable"] == 0
    assert z.nr_pages <= need * 1.03
    consistent(z, pa)
    for h, d in live.items():
        assert z.read(h, len(d)) == d
    assert z.compact() == 0
    for h in live:
        z.free(h)
    assert pa.nr_pages == 0


def test_compaction_never_moves_mapped_objects() -> None:
    z, pa = make()
    hs = [z.malloc(500) for _ in range(400)]  # class 512: 8 per page
    for i, h in enumerate(hs):
        z.write(h, pattern(i, 500))
    rng = random.Random(2)
    keep = sorted(rng.sample(range(400), 60))
    for i in range(400):
        if i not in keep:
            z.free(hs[i])
    mapped = keep[::3]
    views = {i: z.map(hs[i], MapMode.RW) for i in mapped}
    places = {i: where(z, hs[i]) for i in mapped}
    freed = z.compact()
    assert freed > 0
    for i in mapped:
        assert where(z, hs[i]) == places[i]
        assert bytes(views[i][:500]) == pattern(i, 500)
        views[i][:5] = b"HELLO"
        z.unmap(hs[i])
        assert z.read(hs[i], 5) == b"HELLO"
    for i in keep:
        if i not in mapped:
            assert z.read(hs[i], 500) == pattern(i, 500)
    consistent(z, pa)
    # with nothing mapped any more, compaction can finish the job
    z.compact()
    assert z.stats()["total"]["freeable"] == 0
    for i in keep:
        z.free(hs[i])
    assert pa.nr_pages == 0


def test_free_while_mapped() -> None:
    z, pa = make()
    h = z.malloc(1528)
    v = z.map(h, MapMode.RO)
    z.free(h)  # allowed (the core may invalidate during a lockless load)
    with pytest.raises(ZpoolError):
        z.unmap(h)
    del v
    assert pa.nr_pages == 0


# -- failures --------------------------------------------------------------------------


def test_enomem_inside_a_zspage_chain() -> None:
    z, pa = make()
    h = z.malloc(100)
    pages = z.nr_pages
    # 1528 bytes need a new 3-page zspage: fail its second page, the first must go back
    calls = [0]

    def second() -> bool:
        calls[0] += 1
        return calls[0] == 2

    pa.fail = second
    with pytest.raises(ZpoolError):
        z.malloc(1528)
    assert z.nr_pages == pa.nr_pages == pages
    pa.stop_failing()
    h2 = z.malloc(1528)
    z.write(h2, b"ok")
    assert z.read(h2, 2) == b"ok"
    consistent(z, pa)
    # a malloc served by an existing zspage needs no page at all
    pa.fail_next(5)
    h3 = z.malloc(1528)
    pa.stop_failing()
    for x in (h, h2, h3):
        z.free(x)
    assert pa.nr_pages == 0


def test_stats_and_format() -> None:
    z, pa = make(chain=4)
    assert len(z.stats()["classes"]) == 69
    assert z.huge_class_size == 3257
    hs = [z.malloc(n) for n in range(1, 4097, 5)]
    consistent(z, pa)
    text = format_classes(z.stats())
    assert text.splitlines()[0].split()[:3] == ["class", "size", "10%"]
    assert text.splitlines()[-1].startswith("Total")
    for h in hs:
        z.free(h)
    s = z.stats()
    assert s["total"]["pages_used"] == 0 and s["nr_handles"] == 0


def test_chain_size_is_boot_only() -> None:
    params = ModuleParams("zsmalloc", Zsmalloc.parameters)
    with pytest.raises(ParamError):
        params.set("chain_size", 4)
    with pytest.raises(ParamError):
        params.set("chain_size", 17, boot=True)
    params.set("chain_size", "16", boot=True)
    z = Zsmalloc("p", PageAllocator(), params)
    assert z.chain_size == 16
    assert len(z.stats()["classes"]) == len(z.table.classes)


# -- through the core ------------------------------------------------------------------


def test_core_round_trip() -> None:
    z = zswap_core.Zswap(compressor="lz4", zpool="zsmalloc", ram_bytes=1 << 30)
    z.init(0)
    rng = random.Random(5)
    pages = {}
    for off in range(1, 200):
        kind = off % 4
        if kind == 0:
            page = os.urandom(4096)
        elif kind == 1:
            page = rng.randbytes(1024) * 4
        else:
            page = rng.randbytes(rng.randint(100, 3000)).ljust(4096, b"\0")
        stored = z.store(0, off, page)
        # incompressible pages grow past a page: zsmalloc says ENOSPC, zswap rejects
        assert stored == (kind != 0)
        if stored:
            pages[off] = page
    for off, page in pages.items():
        assert z.load(0, off) == page
    assert z.load(0, 4) is None
    z.compact()
    for off, page in pages.items():
        assert z.load(0, off) == page


def test_generation_wraps_below_2_37() -> None:
    z, _ = make()
    keep = z.malloc(10)  # keeps the zspage alive
    seen = []
    for _ in range(1200):
        h = z.malloc(10)
        assert 0 < h < 2**37
        seen.append(h)
        z.free(h)
    assert len({h & SLOT_MASK for h in seen}) == 1
    assert len(set(seen)) == 511  # generations 1..511, then round again
    z.free(keep)


def test_stats_lists_real_classes_only() -> None:
    z, _ = make()
    rows = {r["class"]: r for r in z.stats()["classes"]}
    assert len(rows) == 119
    assert {94, 95, 96, 97, 100, 254} <= set(rows)
    assert 98 not in rows and 99 not in rows
    assert (rows[96]["size"], rows[96]["pages_per_zspage"]) == (1568, 5)
    h = z.malloc(1560)  # 1568-byte class
    r = next(r for r in z.stats()["classes"] if r["class"] == 96)
    assert (r["obj_allocated"], r["obj_used"], r["pages_used"], r["10%"]) == (13, 1, 5, 1)
    assert r["freeable"] == 0
    z.free(h)
