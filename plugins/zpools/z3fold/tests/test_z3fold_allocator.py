"""Tests of what is z3fold's own: layout, headless pages, slot choice and compaction.

The allocator contract (random operations with held mappings and compact(), handles,
error codes, ENOMEM, page accounting, destroy, threads, page sizes, Zswap) is checked
by the conformance kit in test_z3fold_conformance.py.
"""

from __future__ import annotations

import errno
import math
import random
from collections import Counter

import pytest
from zswap_z3fold import BIG_CHUNK_GAP, NCHUNKS, Z3fold

from zswap_core import MapMode, PageAllocator, ZpoolError

PAGE_SIZES = [4096, 16384, 65536]


def make(page_size: int = 4096) -> tuple[Z3fold, PageAllocator]:
    pa = PageAllocator(page_size)
    return Z3fold("test", pa), pa


def pattern(seed: int, size: int) -> bytes:
    """Distinct bytes for each seed: a random 61-byte block (prime length), repeated."""
    block = random.Random(seed).randbytes(61)
    return (block * (size // 61 + 1))[:size]


def put(z: Z3fold, chunks: int, seed: int) -> tuple[int, bytes]:
    """Allocate ``chunks`` whole chunks and fill them with a pattern."""
    size = chunks * z.chunk_size
    h = z.malloc(size)
    data = pattern(seed, size)
    z.write(h, data)
    return h, data


def three(z: Z3fold, f: int, la: int, m: int) -> tuple[int, int, int, dict[int, bytes]]:
    """One page with FIRST, LAST and MIDDLE of the given chunk counts."""
    a, da = put(z, f, 1)
    b, db = put(z, la, 2)
    c, dc = put(z, m, 3)
    assert z.layout(a).buddy == "first"
    assert z.layout(b).buddy == "last"
    assert z.layout(c).buddy == "middle"
    assert len({z.layout(h).page for h in (a, b, c)}) == 1
    return a, b, c, {a: da, b: db, c: dc}


def intact(z: Z3fold, data: dict[int, bytes]) -> None:
    for h, d in data.items():
        assert z.read(h, len(d)) == d


@pytest.mark.parametrize("ps", PAGE_SIZES)
def test_first_last_middle_layout(ps: int) -> None:
    z, pa = make(ps)
    cs = ps // 64
    assert z.chunk_size == cs
    a, b, c, data = three(z, 10, 10, 10)
    assert z.layout(a).offset == cs  # after the header chunk
    assert z.layout(b).offset == ps - 10 * cs  # right-justified
    assert z.layout(c).offset == 11 * cs  # right after FIRST
    assert z.layout(c).chunks == 10
    d = z.malloc(1)  # page is full (three objects): new page
    assert z.layout(d).page != z.layout(a).page
    assert z.nr_pages == pa.nr_pages == 2
    intact(z, data)
    z.check()


def test_middle_moves_toward_last_after_first_freed() -> None:
    z, _ = make()
    a, _b, c, data = three(z, 10, 10, 10)
    z.free(a)
    del data[a]
    lc = z.layout(c)
    # gap after the middle object was 64 - (11 + 10) - 10 = 33 >= BIG_CHUNK_GAP
    assert (lc.buddy, lc.offset) == ("middle", (64 - 10 - 10) * 64)
    assert z.stats()["moves"] == 1
    intact(z, data)
    # FIRST is taken only when it fits before the middle object ...
    d, dd = put(z, 43, 4)
    assert (z.layout(d).buddy, z.layout(d).page) == ("first", lc.page)
    data[d] = dd
    intact(z, data)
    z.check()


def test_first_goes_to_last_when_it_does_not_fit_before_middle() -> None:
    z, _ = make()
    a, b, c, data = three(z, 10, 10, 10)
    z.free(b)  # FIRST + MIDDLE, no gap between them: nothing moves
    del data[b]
    assert z.layout(c).offset == 11 * 64
    assert z.stats()["moves"] == 0
    e, de = put(z, 20, 5)
    assert (z.layout(e).buddy, z.layout(e).offset) == ("last", 4096 - 20 * 64)
    data[e] = de
    z.free(a)  # MIDDLE + LAST: gap after middle = 64 - 21 - 20 = 23 -> moves next to LAST
    del data[a]
    assert z.layout(c).offset == (64 - 20 - 10) * 64
    # free space is now the 33 chunks before the middle one; 34 chunks do not fit
    f, df = put(z, 34, 6)
    assert z.layout(f).page != z.layout(c).page
    g, dg = put(z, 33, 7)
    assert (z.layout(g).page, z.layout(g).buddy) == (z.layout(c).page, "first")
    data.update({f: df, g: dg})
    intact(z, data)
    z.check()


def test_lone_middle_becomes_first_same_handle() -> None:
    z, pa = make()
    a, b, c, data = three(z, 10, 10, 10)
    z.free(a)
    z.free(b)
    for bad in (a, b, 0, -1, 10**9, 2**40, "x", 1.0, None):  # layout() checks handles too
        with pytest.raises(ZpoolError) as ei:
            z.layout(bad)  # type: ignore[arg-type]
        assert ei.value.errno == errno.EINVAL
    lc = z.layout(c)
    assert (lc.buddy, lc.offset, lc.chunks) == ("first", 64, 10)
    assert z.read(c, 640) == data[c]
    assert z.nr_pages == pa.nr_pages == 1
    # the middle slot is free again: two more objects fit in this page
    x = z.malloc(100)
    y = z.malloc(100)
    assert {z.layout(x).page, z.layout(y).page} == {lc.page}
    z.check()


def test_move_middle_toward_first() -> None:
    z, _ = make()
    a, b, c, data = three(z, 10, 10, 10)
    z.free(a)
    del data[a]
    assert z.layout(c).offset == 44 * 64
    d, dd = put(z, 5, 8)  # FIRST, chunks 1..6
    data[d] = dd
    assert z.layout(d).buddy == "first"
    z.free(b)  # FIRST + MIDDLE with a gap 44 - 6 = 38 -> middle moves next to FIRST
    del data[b]
    assert z.layout(c).offset == 6 * 64
    intact(z, data)
    z.check()


@pytest.mark.parametrize(("middle", "moves"), [(41, False), (40, True)])
def test_big_chunk_gap_threshold(middle: int, moves: bool) -> None:
    z, _ = make()
    a, _b, c, data = three(z, 10, 10, middle)
    z.free(a)
    del data[a]
    gap = 64 - 10 - (11 + middle)
    assert (gap >= BIG_CHUNK_GAP) is moves
    expected = (64 - 10 - middle) if moves else 11
    assert z.layout(c).offset == expected * 64
    intact(z, data)
    z.check()


def test_no_move_while_mapped_then_on_unmap() -> None:
    z, _ = make()
    a, _b, c, data = three(z, 10, 10, 10)
    view = z.map(c, MapMode.RW)
    z.free(a)
    del data[a]
    page = z.layout(c).page
    assert z.layout(c).offset == 11 * 64  # not moved
    assert page in z.pending()
    assert bytes(view) == data[c]
    view[:4] = b"NEW!"  # writes through the mapping still land in the object
    data[c] = b"NEW!" + data[c][4:]
    assert z.compact() == 0  # still mapped: nothing may move
    assert z.layout(c).offset == 11 * 64
    z.check()
    z.unmap(c)
    assert page not in z.pending()
    assert z.layout(c).offset == 44 * 64  # the postponed compaction ran
    intact(z, data)
    z.check()


def test_mapping_other_object_of_page_blocks_moves() -> None:
    z, _ = make()
    a, b, c, data = three(z, 10, 10, 10)
    vb = z.map(b, MapMode.RO)
    vb2 = z.map(b, MapMode.RO)  # mapped twice
    z.free(a)
    del data[a]
    assert z.layout(c).offset == 11 * 64
    z.unmap(b)
    assert z.layout(c).offset == 11 * 64
    z.unmap(b)
    assert z.layout(c).offset == 44 * 64
    assert bytes(vb) == bytes(vb2) == data[b]
    with pytest.raises(ZpoolError) as ei:
        z.unmap(b)  # not mapped any more
    assert ei.value.errno == errno.EINVAL
    intact(z, data)


def test_compact_empties_single_object_pages() -> None:
    z, pa = make()
    assert z.can_compact is True
    n = 20
    data: dict[int, bytes] = {}
    triples = [three(z, 1, 1, 1) for _ in range(n)]
    assert z.nr_pages == n
    for a, b, c, d in triples:
        z.free(a)
        z.free(b)
        data[c] = d[c]
        assert z.layout(c).buddy == "first"  # the lone middle object moved to FIRST
    assert z.nr_pages == pa.nr_pages == n
    freed = z.compact()
    assert freed == n - math.ceil(n / 3)
    assert z.nr_pages == pa.nr_pages == math.ceil(n / 3)
    per_page = Counter(z.layout(h).page for h in data)
    assert max(per_page.values()) == 3
    intact(z, data)
    z.check()
    assert z.compact() == 0


def test_compact_leaves_mapped_pages() -> None:
    z, pa = make()
    a, da = put(z, 30, 1)
    b, _ = put(z, 30, 2)
    c, dc = put(z, 20, 3)  # only 3 chunks left beside a and b: second page
    p0, p1 = z.layout(a).page, z.layout(c).page
    assert p0 != p1 and z.layout(b).page == p0
    z.free(b)  # a alone in p0 (33 free), c alone in p1 (43 free)
    la, lc = z.layout(a), z.layout(c)
    va = z.map(a)
    vc = z.map(c, MapMode.RO)
    assert z.compact() == 0  # both single objects are mapped
    assert (z.layout(a), z.layout(c)) == (la, lc)
    z.unmap(a)
    assert z.compact() == 1  # a moves into c's page; c (mapped) stays put
    assert z.layout(c) == lc
    new = z.layout(a)
    assert (new.page, new.buddy, new.offset) == (p1, "last", 4096 - 30 * 64)
    assert bytes(vc[: len(dc)]) == dc
    z.unmap(c)
    del va, vc
    intact(z, {a: da, c: dc})
    assert z.nr_pages == pa.nr_pages == 1
    z.check()


@pytest.mark.parametrize("ps", PAGE_SIZES)
def test_size_limits_and_headless(ps: int) -> None:
    z, pa = make(ps)
    h = z.malloc(z.max_buddy_size)  # the largest buddy: all chunks but the header
    lh = z.layout(h)
    assert (lh.buddy, lh.chunks, z.max_buddy_size) == ("first", NCHUNKS - 1, ps - ps // 32)
    big = z.malloc(z.max_buddy_size + 1)
    lb = z.layout(big)
    assert (lb.buddy, lb.offset, lb.chunks) == ("headless", 0, 64)
    full = z.malloc(ps)
    assert z.layout(full).buddy == "headless"
    assert len(z.map(full)) == ps
    z.unmap(full)
    z.write(full, pattern(9, ps))
    assert z.read(full, ps) == pattern(9, ps)
    assert z.nr_pages == pa.nr_pages == 3
    st = z.stats()
    assert st["headless"] == 2 and st["objects"] == 3
    # headless pages take nothing else
    small = z.malloc(1)
    assert z.layout(small).page == z.layout(h).page
    z.free(big)
    z.free(full)
    assert z.nr_pages == pa.nr_pages == 1
    z.check()


@pytest.mark.parametrize("ps", PAGE_SIZES)
def test_three_per_page_and_exact_page_count(ps: int) -> None:
    """100 one-byte objects fill 33 pages (FIRST, LAST, MIDDLE) and start a 34th."""
    z, pa = make(ps)
    handles = [z.malloc(1) for _ in range(100)]
    buddies = [z.layout(h).buddy for h in handles]
    assert buddies == ["first", "last", "middle"] * 33 + ["first"]
    assert len({z.layout(h).page for h in handles}) == z.nr_pages == pa.nr_pages == 34
    firsts = set(handles[::3])
    for h in firsts:  # only the last page, which holds nothing else, empties
        z.free(h)
    assert z.nr_pages == pa.nr_pages == 33
    z.check()
    for h in set(handles) - firsts:
        z.free(h)
    assert z.nr_pages == pa.nr_pages == 0
    z.check()


def test_fit_in_a_page_needs_no_page() -> None:
    z, pa = make()
    a, da = put(z, 50, 1)
    for size in (30 * 64, 4000):  # too big beside a; headless, always a page of its own
        pa.fail_next(1)
        with pytest.raises(ZpoolError) as ei:
            z.malloc(size)
        assert ei.value.errno == errno.ENOMEM
    pa.fail_next(3)
    b, db = put(z, 5, 2)  # fits in the existing page: no allocation needed
    pa.stop_failing()
    assert z.layout(b).page == z.layout(a).page
    assert z.nr_pages == pa.nr_pages == 1
    intact(z, {a: da, b: db})
    z.check()
