"""Groups: memory.zswap.max / current / writeback and memory.stat (issue 17, section 2).

The second half ports the behaviours the kernel's cgroup zswap selftests check
(``tools/testing/selftests/cgroup/test_zswap.c``): usage charged to the group,
``memory.zswap.max=0`` keeping pages out, zswpin on loads, writeback enabled against
disabled, one group's limit not shrinking another, and a parent's limit holding over
many small children. Written from what they check, on this library's swap layer.

Deterministic throughout: no worker thread (``shrink_worker=False``); every count is
computed from the pages stored. Both backends.
"""

from __future__ import annotations

import contextlib
import errno
import random
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import zswap_core
from zswap_core import Group, ParamError, WritebackDisabledError, Zswap
from zswap_core.swap import Swap, SwapEntry

# every test on both backends: conftest.BACKEND_MODULES

PS = 4096
RAM = 1 << 30


def page(i: int, seed: int = 0, noise: int = 400) -> bytes:
    """A page that compresses to about ``noise`` bytes; unique per (seed, i)."""
    rng = random.Random(seed * 1_000_003 + i)
    return rng.randbytes(noise) + i.to_bytes(4, "little") + bytes(PS - noise - 4)


@pytest.fixture
def make_zswap() -> Iterator[Callable[..., Zswap]]:
    if not zswap_core.zpool_has_pool("zsmalloc"):
        pytest.skip("the zsmalloc plugin is not installed")
    made: list[Zswap] = []

    def _make(**kw: object) -> Zswap:
        kw.setdefault("zpool", "zsmalloc")
        kw.setdefault("compressor", "lz4")
        kw.setdefault("ram_bytes", RAM)
        kw.setdefault("shrink_worker", False)
        z = Zswap(**kw)  # type: ignore[arg-type]
        made.append(z)
        return z

    yield _make
    for z in made:
        z.close()


@pytest.fixture
def swap(tmp_path: Path, make_zswap: Callable[..., Zswap]) -> Iterator[Swap]:
    z = make_zswap()
    with Swap(z, close_zswap=False) as s:
        s.swapon(tmp_path / "swap", 4096)
        yield s


def charged(z: Zswap, entries: list[SwapEntry]) -> int:
    """What zswap holds for these entries, from the entries themselves."""
    return sum(z.entry_length(e.type, e.offset) or 0 for e in entries)


def held(z: Zswap, entries: list[SwapEntry]) -> int:
    return sum(z.entry_length(e.type, e.offset) is not None for e in entries)


# --------------------------------------------------------------------------------------
# groups and their files
# --------------------------------------------------------------------------------------
def test_groups_hierarchy_and_defaults(make_zswap: Callable[..., Zswap]) -> None:
    z = make_zswap()
    a = z.group("a")
    b = z.group("b", parent=a)
    c = z.group("c", parent="a/b")
    assert (a.path, b.path, c.path) == ("a", "a/b", "a/b/c")
    assert c.parent is b and b.parent is a and a.parent is None
    assert list(z.groups) == ["a", "a/b", "a/b/c"]
    assert a.read("memory.zswap.max") == "max\n"
    assert a.read("memory.zswap.writeback") == "1\n"
    assert a.read("memory.zswap.current") == "0\n"
    assert a.read("memory.stat") == "zswap 0\nzswapped 0\nzswpin 0\nzswpout 0\nzswpwb 0\n"
    assert a.zswap_max is None and a.zswap_writeback is True and a.zswap_current == 0


def test_bad_groups_are_refused(make_zswap: Callable[..., Zswap]) -> None:
    z = make_zswap()
    other = make_zswap()
    a = z.group("a")
    with pytest.raises(ParamError) as exc:
        z.group("a")
    assert exc.value.errno == errno.EEXIST
    z.group("a", parent=a)  # the same name under another parent is another group
    for bad in ("", "x/y", "a b", "é", 3, None, "x" * 65):
        with pytest.raises(ParamError) as exc:
            z.group(bad)  # type: ignore[arg-type]
        assert exc.value.errno == errno.EINVAL
    with pytest.raises(ParamError) as exc:
        z.group("n", parent="nope")
    assert exc.value.errno == errno.ENOENT
    foreign = other.group("f")
    with pytest.raises(ValueError, match="another Zswap"):
        z.group("g", parent=foreign)
    z.init(0)
    with pytest.raises(ValueError, match="another Zswap"):
        z.store(0, 1, page(1), group=foreign)
    with pytest.raises(TypeError, match="Group"):
        z.store(0, 1, page(1), group="a")  # type: ignore[arg-type]
    assert z.entry_length(0, 1) is None  # nothing stored by a refused call
    assert list(z.groups) == ["a", "a/a"]


def test_file_writes_parse_as_the_kernel_and_bad_ones_change_nothing(
    make_zswap: Callable[..., Zswap],
) -> None:
    z = make_zswap()
    g = z.group("g")
    for text, want in (
        ("10K", 8192),  # whole pages, rounded down
        ("1M", 1 << 20),
        ("4097", 4096),
        ("0", 0),
        (" 2g\n", 2 << 30),
        (12288, 12288),
    ):
        g.write("memory.zswap.max", text)
        assert g.zswap_max == want
        assert g.read("memory.zswap.max") == f"{want}\n"
    g.zswap_max = "max"
    assert g.zswap_max is None
    g.zswap_max = 8192
    g.zswap_max = None  # the typed setter's "max"
    assert g.zswap_max is None
    g.zswap_max = "64K"
    for bad in ("-1", "1.5M", "lots", "", "10Q", True, -4096, 1.0):
        with pytest.raises(ParamError) as exc:
            g.write("memory.zswap.max", bad)
        assert exc.value.errno == errno.EINVAL
        assert g.zswap_max == 65536  # unchanged
    g.write("memory.zswap.writeback", "0")
    assert g.read("memory.zswap.writeback") == "0\n" and g.zswap_writeback is False
    for bad in ("yes", "", "0.5"):
        with pytest.raises(ParamError):
            g.write("memory.zswap.writeback", bad)
        assert g.zswap_writeback is False
    g.zswap_writeback = 1
    assert g.zswap_writeback is True
    for ro in ("memory.zswap.current", "memory.stat"):
        with pytest.raises(ParamError) as exc:
            g.write(ro, "0")
        assert exc.value.errno == errno.EACCES
    for nope in ("memory.max", "memory.zswap.min"):
        with pytest.raises(ParamError) as exc:
            g.read(nope)
        assert exc.value.errno == errno.ENOENT


# --------------------------------------------------------------------------------------
# charging, exactly
# --------------------------------------------------------------------------------------
def test_charges_follow_every_entry_exactly(make_zswap: Callable[..., Zswap]) -> None:
    z = make_zswap(exclusive_loads=False)
    z.init(0)
    z.init(1)
    parent = z.group("p")
    child = z.group("c", parent=parent)
    for off in range(40):
        assert z.store(0, off, page(off), group=child)
    for off in range(40, 50):
        assert z.store(0, off, bytes(PS), group=child)  # same-filled: no bytes charged
    for off in range(10):
        assert z.store(1, off, page(off, seed=1), group=parent)
    own = sum(z.entry_length(0, off) or 0 for off in range(40))
    mine = sum(z.entry_length(1, off) or 0 for off in range(10))
    assert own > 0 and z.entry_length(0, 45) == 0
    assert child.zswap_current == own
    assert parent.zswap_current == own + mine  # hierarchical
    st = child.stat()
    assert st == {"zswap": own, "zswapped": 50 * PS, "zswpin": 0, "zswpout": 50, "zswpwb": 0}
    assert parent.stat()["zswpout"] == 60

    # invalidate, exclusive load, a duplicate moving the offset to another group,
    # and a refused store (enabled=0) dropping the old copy: each uncharges exactly
    gone = z.entry_length(0, 0) or 0
    z.invalidate_page(0, 0)
    assert child.zswap_current == own - gone
    own -= gone
    gone = z.entry_length(0, 1) or 0
    assert z.load(0, 1, exclusive=True) == page(1)
    own -= gone
    assert child.zswap_current == own and child.stat()["zswpin"] == 1
    gone = z.entry_length(0, 2) or 0
    assert z.store(0, 2, page(2, seed=9), group=None)
    own -= gone
    assert child.zswap_current == own and parent.zswap_current == own + mine
    z.params["enabled"] = False
    gone = z.entry_length(0, 3) or 0
    assert not z.store(0, 3, page(3), group=child)
    own -= gone
    assert child.zswap_current == own
    assert child.stat()["zswapped"] == 46 * PS
    z.params["enabled"] = True

    # loads count zswpin, same-filled included, and leave the charge alone
    for off in (4, 5, 45):
        assert z.load(0, off) is not None
    assert child.stat()["zswpin"] == 4 and child.zswap_current == own
    assert z.load(0, 999) is None and child.stat()["zswpin"] == 4

    z.invalidate_area(0)
    assert child.zswap_current == 0 and child.stat()["zswapped"] == 0
    assert parent.zswap_current == mine and parent.stat()["zswapped"] == 10 * PS


def test_charge_survives_an_exclusive_swap_in(
    tmp_path: Path, make_zswap: Callable[..., Zswap]
) -> None:
    """The swap layer stores a page read with an exclusive load again: into its group."""
    z = make_zswap(exclusive_loads=True)
    g = z.group("g")
    with Swap(z, close_zswap=False) as s:
        s.swapon(tmp_path / "swap", 64)
        entries = [s.swap_out(page(i), group=g) for i in range(8)]
        before = g.zswap_current
        assert [s.swap_in(e) for e in entries] == [page(i) for i in range(8)]
        assert g.zswap_current == before == charged(z, entries)
        assert g.stat()["zswpin"] == 8 and g.stat()["zswpout"] == 16
        for e in entries:
            s.swap_free(e)
        assert g.zswap_current == 0


# --------------------------------------------------------------------------------------
# the kernel's cgroup zswap selftests, ported
# --------------------------------------------------------------------------------------
def test_zswap_usage(swap: Swap) -> None:
    """test_zswap_usage: pages pushed out of a group reach zswap and are charged to it."""
    z = swap.zswap
    assert z is not None
    g = z.group("no_shrink_test")
    assert g.stat()["zswpout"] == 0
    entries = [swap.swap_out(page(i), group=g) for i in range(256)]
    assert g.stat()["zswpout"] == 256
    assert g.zswap_current == charged(z, entries) > 0
    assert g.stat()["zswapped"] == 256 * PS


def test_swapin_nozswap(swap: Swap) -> None:
    """test_swapin_nozswap: with memory.zswap.max=0 the pages go to the swap file and
    come back from it; zswap holds and charges nothing."""
    z = swap.zswap
    assert z is not None
    g = z.group("no_zswap_test")
    g.write("memory.zswap.max", "0")
    pages = [page(i) for i in range(64)]
    entries = [swap.swap_out(p, group=g) for p in pages]
    assert held(z, entries) == 0
    assert [swap.swap_in(e) for e in entries] == pages
    assert swap.vmstat["pswpout"] == 64 and swap.vmstat["pswpin"] == 64
    assert g.stat() == {"zswap": 0, "zswapped": 0, "zswpin": 0, "zswpout": 0, "zswpwb": 0}
    assert z.stats["stored_pages"] == 0


def test_zswapin(swap: Swap) -> None:
    """test_zswapin: reading the pages back counts zswpin in the group."""
    z = swap.zswap
    assert z is not None
    g = z.group("zswapin_test")
    pages = [page(i) for i in range(100)]
    entries = [swap.swap_out(p, group=g) for p in pages]
    assert [swap.swap_in(e) for e in entries] == pages
    assert g.stat()["zswpin"] == 100 == swap.vmstat["zswpin"]


@pytest.mark.parametrize(
    ("writeback", "parent_writeback"),
    [(True, True), (False, True), (True, False)],
    ids=["enabled", "disabled", "disabled-by-parent"],
)
def test_zswap_writeback(swap: Swap, writeback: bool, parent_writeback: bool) -> None:
    """test_zswap_writeback_{enabled,disabled}: a group at its limit writes its own
    entries back only when memory.zswap.writeback allows, its own and every
    ancestor's (a child's 1 under a parent's 0 is still disabled); disabled, nothing
    is written back and a refused page stays in memory (not written to the file)."""
    z = swap.zswap
    assert z is not None
    parent = z.group("zswap_writeback_test")
    parent.write("memory.zswap.writeback", int(parent_writeback))
    g = z.group("child", parent=parent)
    g.write("memory.zswap.writeback", int(writeback))
    writeback = writeback and parent_writeback
    pages = [page(i) for i in range(60)]
    entries = [swap.swap_out(p, group=g) for p in pages[:20]]
    g.write("memory.zswap.max", str(g.zswap_current // 2))
    kept = []
    for p in pages[20:]:
        try:
            entries.append(swap.swap_out(p, group=g))
        except WritebackDisabledError as exc:
            assert exc.errno == errno.EAGAIN
            kept.append(p)
    if writeback:
        assert g.stat()["zswpwb"] > 0 and not kept
        assert swap.vmstat["pswpout"] == g.stat()["zswpwb"] == z.stats["written_back_pages"]
        assert [swap.swap_in(e) for e in entries] == pages
    else:
        assert g.stat()["zswpwb"] == 0 and len(kept) == 40
        assert swap.vmstat["pswpout"] == 0 and z.stats["written_back_pages"] == 0
        assert held(z, entries) == 20 == len(entries)
        # global writeback (memory.reclaim, the pool-limit worker) leaves them too
        assert z.writeback(100) == 0 and held(z, entries) == 20
        assert [swap.swap_in(e) for e in entries] == pages[:20]
    assert swap.vmstat["zswpwb"] == g.stat()["zswpwb"]


def test_no_invasive_cgroup_shrink(swap: Swap) -> None:
    """test_no_invasive_cgroup_shrink: one group's limit writes back its own entries
    and never another group's."""
    z = swap.zswap
    assert z is not None
    wb_group = z.group("per_memcg_wb_test1")
    control = z.group("per_memcg_wb_test2")
    wb_group.write("memory.zswap.max", "10K")
    control_pages = [page(i, seed=2) for i in range(100)]
    control_entries = [swap.swap_out(p, group=control) for p in control_pages]
    control_bytes = control.zswap_current
    assert control.stat()["zswapped"] == 100 * PS
    wb_pages = [page(i, seed=3) for i in range(200)]
    wb_entries = [swap.swap_out(p, group=wb_group) for p in wb_pages]
    assert wb_group.stat()["zswpwb"] > 0
    assert control.stat()["zswpwb"] == 0
    assert control.zswap_current == control_bytes
    assert held(z, control_entries) == 100
    assert wb_group.zswap_current < 10 * 1024
    assert [swap.swap_in(e) for e in wb_entries] == wb_pages
    assert [swap.swap_in(e) for e in control_entries] == control_pages


def test_limit_holds_for_many_small_groups_under_one_parent(swap: Swap) -> None:
    """The parent's limit holds with 50 children storing into it: the check comes
    before the page is compressed (as the kernel's), so the parent may pass its limit
    by one entry at most; each child writes back only its own entries."""
    z = swap.zswap
    assert z is not None
    parent = z.group("kmem_bypass_test")
    parent.write("memory.zswap.max", "64K")
    children = [z.group(f"child{i}", parent=parent) for i in range(50)]
    largest = 0
    entries: dict[Group, list[SwapEntry]] = {c: [] for c in children}
    pages = {}
    for k in range(1000):
        child = children[k % 50]
        p = page(k, seed=4, noise=300 + 10 * (k % 17))
        e = swap.swap_out(p, group=child)
        entries[child].append(e)
        pages[e] = p
        largest = max(largest, z.entry_length(e.type, e.offset) or 0)
        assert parent.zswap_current < 65536 + largest
    assert parent.zswap_current == sum(c.zswap_current for c in children)
    assert parent.zswap_current == sum(charged(z, es) for es in entries.values())
    assert parent.stat()["zswpwb"] == sum(c.stat()["zswpwb"] for c in children) > 0
    for e, p in pages.items():
        assert swap.swap_in(e) == p


# --------------------------------------------------------------------------------------
# global writeback with groups
# --------------------------------------------------------------------------------------
def test_global_writeback_visits_groups_in_turn(swap: Swap) -> None:
    """Global writeback takes the groups in turn (the root first, then a walk of the
    hierarchy: the kernel's mem_cgroup_iter), each giving its oldest entry, and
    passes over groups whose writeback is disabled."""
    z = swap.zswap
    assert z is not None
    a = z.group("a")
    a1 = z.group("a1", parent=a)
    b = z.group("b")
    off = z.group("off")
    off.write("memory.zswap.writeback", "0")
    order: list[tuple[Group | None, SwapEntry]] = []
    for i in range(10):
        for k, g in enumerate((None, a, a1, b, off)):
            order.append((g, swap.swap_out(page(i, seed=k), group=g)))
    assert z.writeback(8) == 8
    gone = [(g, e) for g, e in order if z.entry_length(e.type, e.offset) is None]
    # two rounds of root, a, a/a1, b: each gave its two oldest
    assert [g.path if g else "/" for g, _e in gone] == ["/", "a", "a/a1", "b"] * 2
    assert a.stat()["zswpwb"] == 4 and a1.stat()["zswpwb"] == 2 and b.stat()["zswpwb"] == 2
    assert z.writeback(1000) == 32  # everything else but the disabled group's ten
    assert off.stat()["zswpwb"] == 0 and held(z, [e for g, e in order if g is off]) == 10


def test_shrinker_does_not_count_entries_it_may_not_write(swap: Swap) -> None:
    z = swap.zswap
    assert z is not None
    z.params["shrinker_enabled"] = True
    off = z.group("off")
    on = z.group("on")
    for i in range(40):
        swap.swap_out(page(i), group=on)
    counted = z.shrinker.count_objects()
    for i in range(40):
        swap.swap_out(page(i, seed=1), group=off)
    assert z.shrinker.count_objects() > counted
    off.write("memory.zswap.writeback", "0")
    lru, _prot, stored = z._lru_state()
    assert (lru, stored) == (40, 80)
    for _ in range(40):  # the first passes only clear referenced bits
        swap.reclaim(1000)
    assert off.stat()["zswpwb"] == 0 and off.stat()["zswapped"] == 40 * PS
    assert on.stat()["zswpwb"] > 0


def test_pool_limit_writeback_skips_a_group_with_writeback_disabled(
    tmp_path: Path, make_zswap: Callable[..., Zswap]
) -> None:
    z = make_zswap(ram_bytes=400 * PS, max_pool_percent=10)  # a 40-page pool
    off = z.group("off")
    off.write("memory.zswap.writeback", "0")
    with Swap(z, close_zswap=False) as s:
        s.swapon(tmp_path / "swap", 2048)
        kept = [s.swap_out(page(i, noise=2000), group=off) for i in range(30)]
        others = []
        for i in range(300):
            others.append(s.swap_out(page(i, seed=5, noise=2000)))
            z.shrink()
        assert z.stats["pool_limit_hit"] > 0 and z.stats["written_back_pages"] > 0
        assert held(z, kept) == 30 and off.stat()["zswpwb"] == 0
        assert [s.swap_in(e) for e in kept] == [page(i, noise=2000) for i in range(30)]


# --------------------------------------------------------------------------------------
# threads
# --------------------------------------------------------------------------------------
def test_threads_keep_charges_exact(swap: Swap) -> None:
    """Four threads store, load and free pages of eight groups while the limits and
    writeback settings change under them. Whatever the interleaving, every page
    comes back intact and each group's charge equals what its entries hold."""
    z = swap.zswap
    assert z is not None
    parent = z.group("p")
    groups = [z.group(f"g{i}", parent=parent) for i in range(8)]
    errors: list[BaseException] = []
    live: dict[int, dict[SwapEntry, bytes]] = {k: {} for k in range(4)}
    stop = threading.Event()
    start = threading.Barrier(5)

    def worker(k: int) -> None:
        rng = random.Random(k)
        start.wait()
        try:
            for n in range(400):
                g = groups[(k * 2 + n) % 8]
                p = page(n, seed=10 + k)
                try:
                    e = swap.swap_out(p, group=g)
                except WritebackDisabledError:
                    continue
                live[k][e] = p
                if rng.random() < 0.3:
                    e2 = rng.choice(list(live[k]))
                    assert swap.swap_in(e2) == live[k].pop(e2)
                    swap.swap_free(e2)
        except BaseException as exc:
            errors.append(exc)

    def knobs() -> None:
        rng = random.Random(99)
        start.wait()
        while not stop.is_set():
            g = rng.choice(groups)
            g.write("memory.zswap.max", rng.choice(["8K", "64K", "max", "0"]))
            g.write("memory.zswap.writeback", rng.choice([0, 1, 1]))
            parent.write("memory.zswap.max", rng.choice(["128K", "max"]))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    tk = threading.Thread(target=knobs)
    for t in (*threads, tk):
        t.start()
    for t in threads:
        t.join()
    stop.set()
    tk.join()
    assert not errors, errors
    everything = [e for d in live.values() for e in d]
    assert parent.zswap_current == sum(g.zswap_current for g in groups)
    assert parent.stat()["zswapped"] == held(z, everything) * PS
    assert parent.zswap_current == charged(z, everything)
    for d in live.values():
        for e, p in d.items():
            assert swap.swap_in(e) == p
            swap.swap_free(e)
    assert parent.zswap_current == 0 and parent.stat()["zswapped"] == 0


def test_native_and_python_count_the_same(tmp_path: Path, zswap_backend: str) -> None:
    """The same operations with groups give the same counters on both backends."""
    from zswap_core._backend import NATIVE_ERROR

    if zswap_backend == "python":
        pytest.skip("compares both backends: runs once, under the native parameter")
    if NATIVE_ERROR is not None or not zswap_core.zpool_has_pool("zsmalloc"):
        pytest.skip("needs the native backend and zsmalloc")
    results = []
    for backend in ("native", "python"):
        z = Zswap(
            backend=backend, compressor="lz4", zpool="zsmalloc", ram_bytes=RAM, shrink_worker=False
        )
        a = z.group("a")
        b = z.group("b", parent=a)
        c = z.group("c")
        b.write("memory.zswap.max", "32K")
        c.write("memory.zswap.writeback", "0")
        rng = random.Random(7)
        with Swap(z) as s:
            s.swapon(tmp_path / f"swap-{backend}", 1024)
            live: list[SwapEntry] = []
            for n in range(600):
                g = rng.choice([None, a, b, c])
                noise = rng.randrange(50, 3000)
                with contextlib.suppress(WritebackDisabledError):
                    live.append(s.swap_out(page(n, seed=1, noise=noise), group=g))
                r = rng.random()
                if live and r < 0.2:
                    s.swap_in(rng.choice(live))
                elif live and r < 0.3:
                    s.swap_free(live.pop(rng.randrange(len(live))))
                elif r < 0.32:
                    z.writeback(5)
            results.append(
                (
                    [g.stat() for g in (a, b, c)],
                    s.vmstat,
                    {k: v for k, v in z.stats.items() if k != "pool_total_size"},
                )
            )
    assert results[0] == results[1]


def test_group_metadata_costs_nothing_without_groups(make_zswap: Callable[..., Zswap]) -> None:
    """Entries without a group keep no group id; with one, two bytes a slot of the
    chunks that hold group entries."""
    z = make_zswap()
    z.init(0)
    for off in range(512):
        z.store(0, off, page(off))
    base = z.native_memory()
    if z.backend == "native":
        assert base.get("core.memcg", 0) == 0
        g = z.group("g")
        z.store(0, 600, page(600), group=g)
        assert z.native_memory()["core.memcg"] >= 2 * 512
    else:
        tree = z._trees[0]
        assert tree is not None and not tree.memcgs
        g = z.group("g")
        z.store(0, 600, page(600), group=g)
        assert list(tree.memcgs) == [1] and tree.memcgs[1].itemsize == 2


# --------------------------------------------------------------------------------------
# forced interleavings (the reference backend, where the kit sees every line)
# --------------------------------------------------------------------------------------
def test_group_ops_at_every_line_of_a_group_store(zswap_backend: str) -> None:
    """At every line of a store into a group at its limit (so that it writes its own
    entries back first), another thread stores over the same offset for another group,
    invalidates it, writes back, or changes the limit and the writeback setting
    (forced: the store waits at that line while the other runs). Whatever the line,
    each group's counters equal what the entries recorded as its own hold, and every
    offset holds one of the two pages written to it, or nothing."""
    if zswap_backend != "python":
        pytest.skip("the interleaver steps through Python lines: the reference backend")
    import zswap_core._zswap
    from zswap_core.testing._interleave import Walk, code_filter, watch_locks

    with watch_locks():
        z = Zswap(compressor="lz4", zpool="zsmalloc", ram_bytes=RAM, shrink_worker=False)
        try:
            z.init(0)
            z.set_writeback_handler(lambda t, off, p: None)
            a, b = z.group("a"), z.group("b")
            a.write("memory.zswap.max", "4K")
            w = Walk(code_filter([zswap_core._zswap.__file__]))

            def check(last: int) -> None:
                tree = z._trees[0]
                assert tree is not None
                charged = {1: 0, 2: 0}
                count = {1: 0, 2: 0}
                with tree.lock:
                    for off, e, _stamp in tree.entries():
                        gid = tree.gid(off >> 9, off & 511)
                        if gid:
                            charged[gid] += (e >> 10) & 0x1FFFF  # the packed length
                            count[gid] += 1
                for g in (a, b):
                    assert g.zswap_current == charged[g._gid]
                    assert g.stat()["zswapped"] == count[g._gid] * PS
                for k in range(last + 1):
                    got = z.load(0, 100 + k)
                    assert got in (None, page_at(k), page_at(k, seed=1)), f"offset {100 + k}"

            def step(j: int) -> None:
                off = 100 + j

                def action() -> None:
                    kind = j % 4
                    if kind == 0:
                        z.store(0, off, page_at(j, seed=1), group=b)
                    elif kind == 1:
                        z.invalidate_page(0, off)
                    elif kind == 2:
                        z.writeback(1)
                    else:
                        a.write("memory.zswap.max", "8K" if j % 8 == 3 else "4K")
                        a.zswap_writeback = j % 8 != 7

                w.at(j, action)
                z.store(0, off, page_at(j), group=a)
                w.done()
                with w.quiet():
                    check(j)

            w.run(step, 160)
            assert w.fired >= 20  # the actions ran inside the stores, at each of their lines
            z.invalidate_area(0)
            assert a.zswap_current == b.zswap_current == 0
            assert a.stat()["zswapped"] == b.stat()["zswapped"] == 0
        finally:
            z.close()


def page_at(j: int, seed: int = 0) -> bytes:
    return page(j, seed=seed, noise=1200)
