"""Tests of the zbud allocator: layout, limits, accounting, errors, contract, threads."""

from __future__ import annotations

import errno
import random
import threading
from collections import Counter

import pytest
from zswap_zbud import NCHUNKS, Zbud

from zswap_core import MapMode, PageAllocator, Zpool, ZpoolError

PAGE_SIZES = [4096, 16384, 65536]


def make(page_size: int = 4096, limit: int | None = None) -> tuple[Zbud, PageAllocator]:
    pa = PageAllocator(page_size, limit=limit)
    return Zbud("test", pa), pa


def pattern(seed: int, size: int) -> bytes:
    """Distinct bytes for each seed: a random 61-byte block (prime length), repeated."""
    block = random.Random(seed).randbytes(61)
    return (block * (size // 61 + 1))[:size]


def test_is_a_zpool() -> None:
    z, _ = make()
    assert isinstance(z, Zpool)
    assert Zbud.type == "zbud"
    assert z.can_compact is False


@pytest.mark.parametrize("ps", PAGE_SIZES)
def test_first_then_last_layout(ps: int) -> None:
    z, pa = make(ps)
    cs = ps // 64
    assert z.chunk_size == cs
    a = z.malloc(100)
    la = z.layout(a)
    assert la.buddy == "first"
    assert la.offset == cs  # right after the header chunk
    assert la.chunks == -(-100 // cs)
    b = z.malloc(3 * cs)
    lb = z.layout(b)
    assert lb.page == la.page
    assert lb.buddy == "last"
    assert lb.chunks == 3
    assert lb.offset == ps - 3 * cs  # right-justified
    assert lb.offset + lb.chunks * cs == ps
    assert z.nr_pages == pa.nr_pages == 1
    # third object: the page is full (two buddies), a new page is used
    c = z.malloc(1)
    assert z.layout(c).page != la.page
    assert z.nr_pages == pa.nr_pages == 2
    # freeing FIRST leaves the LAST in place; the next fit goes to FIRST again
    z.free(a)
    d = z.malloc(cs)
    ld = z.layout(d)
    assert (ld.page, ld.offset, ld.buddy) == (la.page, cs, "first")
    assert z.layout(b) == lb
    z.check()


def test_map_views_are_regions() -> None:
    z, _ = make()
    a = z.malloc(1000)
    b = z.malloc(2000)
    va = z.map(a, MapMode.WO)
    vb = z.map(b, MapMode.WO)
    assert len(va) == 16 * 64 and len(vb) == 32 * 64
    assert not va.readonly and not vb.readonly
    va[:] = b"\xaa" * len(va)
    vb[:] = b"\xbb" * len(vb)
    z.unmap(a)
    z.unmap(b)
    assert z.read(a, 1000) == b"\xaa" * 1000
    assert z.read(b, 2000) == b"\xbb" * 2000
    # the view of FIRST starts after the header and the two regions do not touch
    la, lb = z.layout(a), z.layout(b)
    assert la.offset + la.chunks * 64 <= lb.offset
    z.write(a, b"hello")
    assert z.read(a, 6) == b"hello\xaa"


def test_unbuddied_search_takes_smallest_fit() -> None:
    z, _ = make()
    big = z.malloc(60 * 64)  # page A: 3 free chunks
    small = z.malloc(10 * 64)  # page B: too big for A's 3 free chunks -> new page
    pa_, pb = z.layout(big).page, z.layout(small).page
    assert pa_ != pb
    st = z.stats()
    assert st["unbuddied_by_free_chunks"] == {3: 1, 53: 1}
    x = z.malloc(3 * 64)  # fits A exactly (list 3) - preferred over B (list 53)
    assert z.layout(x).page == pa_
    y = z.malloc(20 * 64)
    assert z.layout(y).page == pb
    st = z.stats()
    assert st["buddied"] == 2 and st["unbuddied"] == 0 and st["objects"] == 4
    z.check()


@pytest.mark.parametrize("ps", PAGE_SIZES)
def test_size_limits(ps: int) -> None:
    z, pa = make(ps)
    cs = ps // 64
    assert z.max_size == ps - 2 * cs
    if ps == 4096:
        assert z.max_size == 3968
    h = z.malloc(z.max_size)
    assert z.layout(h).chunks == NCHUNKS - 1
    with pytest.raises(ZpoolError) as ei:
        z.malloc(z.max_size + 1)
    assert ei.value.errno == errno.ENOSPC
    with pytest.raises(ZpoolError) as ei:
        z.malloc(ps * 2)
    assert ei.value.errno == errno.ENOSPC
    for bad in (0, -1, -4096, 1.5, "10", None, True):
        with pytest.raises(ZpoolError) as ei:
            z.malloc(bad)  # type: ignore[arg-type]
        assert ei.value.errno == errno.EINVAL
    assert z.nr_pages == pa.nr_pages == 1
    # a 1-chunk object still fits beside the max-size one
    h2 = z.malloc(1)
    assert z.layout(h2).page == z.layout(h).page
    z.check()


@pytest.mark.parametrize("ps", PAGE_SIZES)
def test_two_per_page_and_exact_page_count(ps: int) -> None:
    z, pa = make(ps)
    handles = [z.malloc(1) for _ in range(101)]
    per_page = Counter(z.layout(h).page for h in handles)
    assert max(per_page.values()) == 2
    assert z.nr_pages == pa.nr_pages == 51
    assert z.total_size() == 51 * ps
    assert len(set(handles)) == 101
    assert all(0 < h < 2**37 for h in handles)
    for h in handles[::2]:
        z.free(h)
    assert z.nr_pages == pa.nr_pages
    z.check()
    for h in handles[1::2]:
        z.free(h)
    assert z.nr_pages == pa.nr_pages == 0
    assert z.stats()["objects"] == 0
    z.check()


def test_destroy_returns_all_pages() -> None:
    z, pa = make()
    for i in range(200):
        z.malloc(1 + (i * 37) % z.max_size)
    assert pa.nr_pages == z.nr_pages > 0
    z.destroy()
    assert pa.nr_pages == 0 and z.nr_pages == 0
    z.destroy()  # idempotent
    assert pa.nr_pages == 0
    with pytest.raises(ZpoolError):
        z.malloc(10)


def test_enomem_leaves_pool_consistent() -> None:
    z, pa = make()
    a = z.malloc(3000)
    z.write(a, pattern(a, 3000))
    pa.fail_next(1)
    with pytest.raises(ZpoolError) as ei:
        z.malloc(2000)  # does not fit beside a: needs a new page
    assert ei.value.errno == errno.ENOMEM
    assert z.nr_pages == pa.nr_pages == 1
    assert z.stats()["objects"] == 1
    z.check()
    assert z.read(a, 3000) == pattern(a, 3000)
    # a fit in an existing page needs no new page, so it succeeds while failing
    pa.fail_next(5)
    b = z.malloc(500)
    assert z.layout(b).page == z.layout(a).page
    pa.stop_failing()
    c = z.malloc(2000)
    assert z.nr_pages == pa.nr_pages == 2
    for h in (a, b, c):
        z.free(h)
    assert pa.nr_pages == 0
    z.check()


def test_page_limit_enomem() -> None:
    z, pa = make(limit=3)
    hs = [z.malloc(3000) for _ in range(3)]
    with pytest.raises(ZpoolError) as ei:
        z.malloc(3000)
    assert ei.value.errno == errno.ENOMEM
    z.check()
    for h in hs:
        z.free(h)
    assert pa.nr_pages == 0


def test_double_free_and_bad_handles() -> None:
    z, pa = make()
    a = z.malloc(100)
    b = z.malloc(100)
    z.free(a)
    with pytest.raises(ZpoolError) as ei:
        z.free(a)
    assert ei.value.errno == errno.EINVAL
    assert z.nr_pages == pa.nr_pages == 1
    assert z.stats()["objects"] == 1
    z.check()
    for bad in (0, -1, 10**9, 2**40, "x", 1.0, None):
        for op in (z.free, z.map, z.unmap, z.layout):
            with pytest.raises(ZpoolError) as ei:
                op(bad)  # type: ignore[operator]
            assert ei.value.errno == errno.EINVAL
    with pytest.raises(ZpoolError):
        z.map(a)
    z.free(b)
    with pytest.raises(ZpoolError):
        z.free(b)
    assert pa.nr_pages == 0
    z.check()


def test_freed_page_index_is_reused() -> None:
    z, _ = make()
    a = z.malloc(3000)
    b = z.malloc(3000)
    pb = z.layout(b).page
    z.free(b)
    c = z.malloc(3000)
    assert z.layout(c).page == pb
    z.free(a)
    z.free(c)


@pytest.mark.parametrize("ps", PAGE_SIZES)
@pytest.mark.parametrize("seed", [1, 2])
def test_random_contract(ps: int, seed: int) -> None:
    rng = random.Random(seed * 1000 + ps)
    z, pa = make(ps)
    live: dict[int, bytes] = {}
    limit = z.max_size
    for step in range(700):
        if live and (len(live) > 60 or rng.random() < 0.45):
            h = rng.choice(list(live))
            z.free(h)
            del live[h]
        else:
            r = rng.random()
            size = rng.randint(1, limit) if r < 0.5 else rng.randint(1, limit // 8)
            if r > 0.95:
                size = limit
            h = z.malloc(size)
            assert h not in live
            assert 0 < h < 2**37
            data = pattern(h ^ step, size)
            v = z.map(h, MapMode.WO)
            assert len(v) >= size
            v[:size] = data
            z.unmap(h)
            live[h] = data
        # every live object still holds its bytes
        for h, data in live.items():
            v = z.map(h, MapMode.RO)
            assert v[: len(data)] == data
            z.unmap(h)
        assert z.nr_pages == pa.nr_pages
        assert z.nr_pages <= len(live)  # never more pages than objects
        assert z.nr_pages >= (len(live) + 1) // 2  # never more than 2 per page
        if step % 50 == 0:
            z.check()
    per_page = Counter(z.layout(h).page for h in live)
    assert not per_page or max(per_page.values()) <= 2
    z.check()
    for h in list(live):
        z.free(h)
    assert pa.nr_pages == 0 and z.nr_pages == 0
    z.check()


def test_threads() -> None:
    z, pa = make()
    errors: list[BaseException] = []

    def worker(tid: int) -> None:
        try:
            rng = random.Random(tid)
            mine: dict[int, bytes] = {}
            for i in range(1500):
                if mine and (len(mine) > 40 or rng.random() < 0.45):
                    h = rng.choice(list(mine))
                    assert z.read(h, len(mine[h])) == mine[h]
                    z.free(h)
                    del mine[h]
                else:
                    size = rng.randint(1, z.max_size)
                    h = z.malloc(size)
                    data = pattern(h + tid * 7 + i, size)
                    v = z.map(h)
                    v[:size] = data
                    z.unmap(h)
                    mine[h] = data
            for h, data in mine.items():
                assert z.read(h, len(data)) == data
                z.free(h)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert z.nr_pages == pa.nr_pages == 0
    z.check()
