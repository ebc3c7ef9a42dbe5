"""The size-class table against the kernel's documented vectors and its own rules."""

from __future__ import annotations

import pytest
from zswap_zsmalloc import (
    ZS_HANDLE_SIZE,
    ZS_MIN_ALLOC_SIZE,
    class_table,
    fullness_group,
)


def _by_size(page_size: int, chain: int) -> dict[int, tuple[int, int]]:
    t = class_table(page_size, chain)
    return {c.size: (c.pages_per_zspage, c.objs_per_zspage) for c in t.classes}


@pytest.mark.parametrize("chain", [4, 8])
def test_documented_vectors_both_chains(chain: int) -> None:
    sizes = _by_size(4096, chain)
    assert sizes[1536] == (3, 8)  # class #94
    assert sizes[1632] == (2, 5)  # class #100
    t = class_table(4096, chain)
    assert t.slot_for(1536) == 94
    assert t.slot_for(1632) == 100


def test_chain8_vectors_and_merges() -> None:
    t = class_table(4096, 8)
    sizes = _by_size(4096, 8)
    assert sizes[1568] == (5, 13)
    # #95, #96, #97 are their own classes with an 8-page chain ...
    assert sizes[1552] == (8, 21)
    assert sizes[1584] == (7, 18)
    # ... and only #98, #99 merge into #100
    assert t.classes[t.lookup[98]].index == 100
    assert t.classes[t.lookup[99]].index == 100
    assert t.classes[t.lookup[97]].index == 97


def test_chain4_merges_95_to_99_into_100() -> None:
    t = class_table(4096, 4)
    for slot in range(95, 101):
        assert t.classes[t.lookup[slot]].index == 100
    assert t.classes[t.lookup[94]].index == 94


@pytest.mark.parametrize(("chain", "count"), [(4, 69), (8, 119)])
def test_number_of_real_classes(chain: int, count: int) -> None:
    t = class_table(4096, chain)
    assert t.nr_slots == 255
    assert len(t.classes) == count


@pytest.mark.parametrize(("chain", "first_huge", "threshold"), [(4, 3280, 3257), (8, 3648, 3625)])
def test_huge_class_start(chain: int, first_huge: int, threshold: int) -> None:
    t = class_table(4096, chain)
    # the first slot that lands in a one-page, one-object class
    slot = next(s for s in range(t.nr_slots) if t.classes[t.lookup[s]].huge)
    assert t.slot_size(slot) == first_huge
    # the kernel's zs_huge_class_size(): largest normal class less (handle - 1)
    assert t.huge_class_size == threshold
    assert t.class_for(threshold).huge
    assert not t.class_for(threshold - 1).huge
    # only one real huge class: everything from there up merges into the page-sized one
    huge = [c for c in t.classes if c.huge]
    assert [c.size for c in huge] == [4096]
    assert huge[0].first_index == slot


@pytest.mark.parametrize("page_size", [4096, 16384, 65536])
@pytest.mark.parametrize("chain", [4, 8, 16])
def test_table_rules(page_size: int, chain: int) -> None:
    t = class_table(page_size, chain)
    assert t.delta == page_size // 256
    assert t.classes[0].size == ZS_MIN_ALLOC_SIZE
    assert t.classes[-1].size == page_size
    assert t.classes[-1].huge
    prev = None
    for c in t.classes:
        assert c.size % 8 == 0
        assert 1 <= c.pages_per_zspage <= chain
        assert c.objs_per_zspage == c.pages_per_zspage * page_size // c.size
        waste = c.pages_per_zspage * page_size % c.size
        # least tail waste over every chain length (shortest on ties)
        for k in range(1, chain + 1):
            assert (k * page_size) % c.size >= waste or c.size & (c.size - 1) == 0
        if prev is not None:
            assert (prev.pages_per_zspage, prev.objs_per_zspage) != (
                c.pages_per_zspage,
                c.objs_per_zspage,
            )
            assert c.first_index == prev.index + 1
        prev = c
    # every slot maps to the real class at or above it
    for slot in range(t.nr_slots):
        owner = t.classes[t.lookup[slot]]
        assert owner.first_index <= slot <= owner.index
    # a malloc of n bytes fits its class with the handle in front
    for n in range(1, page_size + 1, 7):
        c = t.class_for(n)
        assert c.size >= min(n + ZS_HANDLE_SIZE, page_size)


def test_class_for_limits() -> None:
    t = class_table(4096, 8)
    assert t.class_for(1).size == 32
    assert t.class_for(24).size == 32
    assert t.class_for(25).size == 48
    assert t.class_for(4096).size == 4096
    with pytest.raises(ValueError):
        t.class_for(0)
    with pytest.raises(ValueError):
        t.class_for(4097)
    with pytest.raises(ValueError):
        class_table(4096, 3)
    with pytest.raises(ValueError):
        class_table(3000, 8)


def test_fullness_groups() -> None:
    assert fullness_group(0, 8) == 0
    assert fullness_group(8, 8) == 11
    assert fullness_group(1, 127) == 1  # under 1% still counts as "10%"
    assert fullness_group(1, 8) == 2  # 12%
    assert fullness_group(7, 8) == 9  # 87% -> "90%"
    assert fullness_group(99, 100) == 10  # 99% -> "99%"
    assert fullness_group(90, 100) == 10
    assert fullness_group(89, 100) == 9
    for cap in (1, 2, 5, 13, 127, 585):
        groups = [fullness_group(n, cap) for n in range(cap + 1)]
        assert groups == sorted(groups)
        assert groups[0] == 0 and groups[-1] == 11
        assert 0 not in groups[1:] and 11 not in groups[:-1]
