"""Tests of what is zbud's own: its layout, size limit and page choice.

The allocator contract (random operations, handles, error codes, ENOMEM, page
accounting, destroy, threads, page sizes, Zswap) is checked by the conformance kit in
test_zbud_conformance.py.
"""

from __future__ import annotations

import errno
from collections import Counter

import pytest
from zswap_zbud import NCHUNKS, Zbud

from zswap_core import MapMode, PageAllocator, ZpoolError

PAGE_SIZES = [4096, 16384, 65536]


def make(page_size: int = 4096) -> tuple[Zbud, PageAllocator]:
    pa = PageAllocator(page_size)
    return Zbud("test", pa), pa


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
    assert z.can_compact is False and z.compact() == 0  # zbud never moves an object
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
    assert z.nr_pages == pa.nr_pages == 1
    # a 1-chunk object still fits beside the max-size one
    h2 = z.malloc(1)
    assert z.layout(h2).page == z.layout(h).page
    z.check()


@pytest.mark.parametrize("ps", PAGE_SIZES)
def test_two_per_page_and_exact_page_count(ps: int) -> None:
    """101 one-byte objects: FIRST and LAST of 50 pages, and the FIRST of one more."""
    z, pa = make(ps)
    handles = [z.malloc(1) for _ in range(101)]
    places = {(z.layout(h).page, z.layout(h).buddy) for h in handles}
    assert len(places) == 101
    assert Counter(buddy for _page, buddy in places) == {"first": 51, "last": 50}
    assert (z.nr_pages, pa.nr_pages, z.total_size()) == (51, 51, 51 * ps)
    for h in handles[::2]:  # every FIRST: only the page without a LAST empties
        z.free(h)
    assert z.nr_pages == pa.nr_pages == 50
    z.check()
    for h in handles[1::2]:
        z.free(h)
    assert z.nr_pages == pa.nr_pages == 0
    assert z.stats()["objects"] == 0
    z.check()


def test_fit_beside_a_buddy_needs_no_page() -> None:
    z, pa = make()
    a = z.malloc(3000)
    pa.fail_next(1)
    with pytest.raises(ZpoolError) as ei:
        z.malloc(2000)  # does not fit beside a: needs a new page
    assert ei.value.errno == errno.ENOMEM
    pa.fail_next(5)  # fits beside a: no new page needed, so it succeeds while failing
    lb = z.layout(z.malloc(500))
    assert (lb.page, lb.buddy) == (z.layout(a).page, "last")
    assert z.nr_pages == pa.nr_pages == 1


def test_freed_page_index_is_reused() -> None:
    z, _ = make()
    a = z.malloc(3000)
    b = z.malloc(3000)
    pb = z.layout(b).page
    z.free(b)
    for bad in (b, 0, -1, 10**9, 2**40, "x", 1.0, None):  # layout() checks handles too
        with pytest.raises(ZpoolError) as ei:
            z.layout(bad)  # type: ignore[arg-type]
        assert ei.value.errno == errno.EINVAL
    c = z.malloc(3000)
    assert z.layout(c).page == pb
    z.free(a)
    z.free(c)
