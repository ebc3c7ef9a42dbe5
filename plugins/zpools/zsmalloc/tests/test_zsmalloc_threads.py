"""The C pool without the GIL: its ops table from several threads at once.

``_zsmalloc._stress`` starts pthreads that call the ``zpool_ops`` table with the GIL
released, as zswap-core's store and load paths do: each thread allocates, reads back
and frees objects of many sizes (some classes its own, some shared with the others),
comparing every byte it reads, while one more thread compacts the pool and checks
every structure against every other (``Pool._check``). The assertions are exact
counts, whatever the interleaving: no timing, no luck.
"""

from __future__ import annotations

import ctypes
import errno
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from zswap_zsmalloc import Zsmalloc
from zswap_zsmalloc._cpool import NativeZsmalloc

from zswap_core import MapMode, ModuleParams, PageAllocator, ZpoolError

NOGIL = 0x1  # ZSWAP_ZPOOL_NOGIL in zswap_ops.h


@pytest.fixture(autouse=True)
def backend(require_native: None) -> Iterator[str]:
    """Overrides conftest.backend: only the C pool has an ops table."""
    yield "native"


def native_pool(
    page_size: int = 4096, chain: int | None = None
) -> tuple[NativeZsmalloc, PageAllocator]:
    params = None
    if chain is not None:
        params = ModuleParams("zsmalloc", Zsmalloc.parameters)
        params.set("chain_size", chain, boot=True)
    pa = PageAllocator(page_size, backend="native")
    z = Zsmalloc("native", pa, params)
    assert isinstance(z, NativeZsmalloc)
    return z, pa


def stress(z: NativeZsmalloc, nthreads: int, nops: int, seed: int, **kw: bool) -> dict[str, Any]:
    from zswap_zsmalloc import _zsmalloc

    result = _zsmalloc._stress(z.zpool_ops, nthreads, nops, seed, **kw)
    assert result["threads"] == nthreads
    assert result["mismatches"] == 0, result
    assert result["errors"] == 0, result
    assert result["inconsistent"] == 0, result.get("inconsistency")
    return result


def assert_empty(z: NativeZsmalloc, pa: PageAllocator, baseline: dict[str, int]) -> None:
    """Everything freed: no page, object, handle or table left, the books agree."""
    assert z._pool._check() == {"objects": 0, "zspages": 0, "pages": 0, "handles": 0}
    assert pa.nr_pages == z.nr_pages == 0
    stats = z.stats()
    assert stats["nr_handles"] == 0
    assert stats["total"]["obj_used"] == stats["total"]["pages_used"] == 0
    assert z.native_memory() == baseline


def assert_books_agree(z: NativeZsmalloc, pa: PageAllocator, objects: int) -> None:
    check = z._pool._check()
    stats = z.stats()
    assert check["objects"] == check["handles"] == objects
    assert stats["total"]["obj_used"] == stats["nr_handles"] == objects
    assert check["pages"] == stats["total"]["pages_used"] == z.nr_pages == pa.nr_pages


# -- the ops table -------------------------------------------------------------------------


class _Ops(ctypes.Structure):
    _fields_ = [
        ("version", ctypes.c_uint32),
        ("size", ctypes.c_uint32),
        ("alloc_write", ctypes.c_void_p),
        ("read", ctypes.c_void_p),
        ("free", ctypes.c_void_p),
        ("flags", ctypes.c_uint32),
    ]


def test_ops_table_is_version_2_without_the_gil() -> None:
    from zswap_zsmalloc import _zsmalloc

    z, _ = native_pool()
    cap = z.zpool_ops
    get_pointer = ctypes.pythonapi["PyCapsule_GetPointer"]  # a fresh function object
    get_pointer.restype = ctypes.c_void_p
    get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    ops = _Ops.from_address(get_pointer(cap, b"zswap.zpool_ops"))
    assert ops.version == _zsmalloc.ZPOOL_OPS_VERSION == 2
    assert ops.size >= _Ops.flags.offset + ctypes.sizeof(ctypes.c_uint32)
    assert ops.flags == _zsmalloc.ZPOOL_OPS_FLAGS == NOGIL


# -- pthreads without the GIL --------------------------------------------------------------


@pytest.mark.parametrize("nthreads", [2, 4])
def test_stress_threads(nthreads: int) -> None:
    z, pa = native_pool()
    baseline = z.native_memory()
    r = stress(z, nthreads, 15000, seed=nthreads)
    # every thread's prelude (4 page-sized objects) and steps, and its final frees
    assert r["ops"] >= nthreads * 15004
    assert r["allocs"] == r["frees"] > nthreads * 4
    assert r["enomem"] == 0
    assert r["compactions"] >= 1
    assert z.pages_compacted == r["pages_compacted"]
    assert_empty(z, pa, baseline)


@pytest.mark.parametrize(("page_size", "chain"), [(512, 16), (16384, 4)])
def test_stress_page_sizes(page_size: int, chain: int) -> None:
    z, pa = native_pool(page_size, chain)
    baseline = z.native_memory()
    stress(z, 4, 5000, seed=page_size)
    assert_empty(z, pa, baseline)


def test_stress_keeps_objects_readable() -> None:
    """keep=True: the threads leave their objects; the Python methods read every one
    back and free it, and the counts agree at each step."""
    from zswap_zsmalloc import _zsmalloc

    z, pa = native_pool()
    baseline = z.native_memory()
    r = stress(z, 4, 10000, seed=99, keep=True)
    live = r["live"]
    assert len(live) == r["allocs"] - r["frees"] > 0
    assert len({h for h, _, _ in live}) == len(live)
    assert_books_agree(z, pa, len(live))
    for i, (handle, length, tag) in enumerate(live):
        assert z.read(handle, length) == _zsmalloc._stress_pattern(99, tag, length)
        if i == len(live) // 2:
            z.compact()
            assert_books_agree(z, pa, len(live) - i)
        z.free(handle)
    assert_empty(z, pa, baseline)


def test_stress_twice_on_one_pool_keeps_old_objects() -> None:
    """A second run on a pool that still holds the first run's objects."""
    from zswap_zsmalloc import _zsmalloc

    z, pa = native_pool()
    baseline = z.native_memory()
    first = stress(z, 2, 5000, seed=1, keep=True)["live"]
    stress(z, 4, 5000, seed=2)
    assert_books_agree(z, pa, len(first))
    for handle, length, tag in first:
        assert z.read(handle, length) == _zsmalloc._stress_pattern(1, tag, length)
        z.free(handle)
    assert_empty(z, pa, baseline)


def test_stress_with_pages_refused() -> None:
    """fail_next(5): exactly five charges are refused (-ENOMEM) among the threads;
    each prelude makes sure of at least 4 charges per thread."""
    z, pa = native_pool()
    baseline = z.native_memory()
    before = pa.failures
    pa.fail_next(5)
    r = stress(z, 4, 8000, seed=5)
    assert r["enomem"] == pa.failures - before == 5
    assert r["allocs"] == r["frees"]
    assert_empty(z, pa, baseline)


def test_stress_with_a_python_fault_hook() -> None:
    """A Python hook in charge(): the pthreads take the GIL for it (_stress runs them
    with the GIL released), with no pool lock held; each refusal is one -ENOMEM."""
    z, pa = native_pool()
    baseline = z.native_memory()
    main = threading.get_ident()
    calls = {"all": 0, "refused": 0}
    threads: set[int] = set()

    def hook() -> bool:
        calls["all"] += 1
        threads.add(threading.get_ident())
        if calls["all"] % 5 == 0:
            calls["refused"] += 1
            return True
        return False

    before = pa.failures
    pa.fail = hook
    try:
        r = stress(z, 4, 4000, seed=6)
    finally:
        pa.stop_failing()
    assert calls["refused"] > 0
    assert r["enomem"] == calls["refused"] == pa.failures - before
    assert main not in threads  # the hook ran on the stress threads
    assert_empty(z, pa, baseline)


@pytest.mark.parametrize("how", ["hook", "limit"])
def test_stress_refused_into_an_emptied_pool_keeps_no_table(how: str) -> None:
    """The flake of the test above, forced: the pool is emptied, then every charge is
    refused (a Python hook: the threads take the GIL; a limit: no GIL), so each
    thread's mallocs grow the dropped handle table and are refused, concurrently.
    Whatever the interleaving, no table is left: the C memory is back at its
    baseline, not just the pages."""
    z, pa = native_pool()
    baseline = z.native_memory()
    stress(z, 4, 2000, seed=6)
    assert_empty(z, pa, baseline)
    before = pa.failures
    if how == "hook":
        pa.fail = lambda: True
    else:
        pa.limit = 0
    try:
        r = stress(z, 4, 300, seed=61)
    finally:
        pa.stop_failing()
        pa.limit = None
    assert r["allocs"] == r["frees"] == 0
    assert r["enomem"] == pa.failures - before >= 4 * 300
    assert_empty(z, pa, baseline)
    stress(z, 2, 1000, seed=62)  # and the pool works on, from an empty table
    assert_empty(z, pa, baseline)


def test_stress_hook_that_uses_the_pool() -> None:
    """The hook calls into the pool (Python methods) from a stress thread: no lock of
    the pool is held across charge()."""
    z, pa = native_pool()
    baseline = z.native_memory()
    calls = [0]

    def hook() -> bool:
        calls[0] += 1
        if calls[0] % 7 == 0:
            h = z.alloc_write(b"from the hook")
            assert z.read(h, 13) == b"from the hook"
            z.free(h)
            z.stats()
        return False

    pa.fail = hook
    try:
        r = stress(z, 2, 4000, seed=7)
    finally:
        pa.stop_failing()
    assert r["enomem"] == 0 and calls[0] >= 7
    assert_empty(z, pa, baseline)


def test_stress_unmaps_the_arenas_mapped_in_vain() -> None:
    """Two mallocs that find no free page both map an arena (with no lock held); the
    one that comes second uses the other's and must unmap its own. A malloc that
    succeeded used to forget it (mapped for good, counted nowhere). 64 KiB pages:
    64 to a 4 MiB arena, so the threads keep mapping new ones, often together.

    Counted by the pool's own mmap and munmap calls, not by looking for 4 MiB
    mappings in /proc/self/maps: a sanitizer's allocator maps such spans too."""
    for seed in range(5):
        z, pa = native_pool(65536)
        mapped0, unmapped0 = z._pool._arena_counts()
        live = stress(z, 8, 3000, seed=seed, keep=True)["live"]
        assert z.native_memory()["arenas"] >= 2
        for handle, _, _ in live:
            z.free(handle)
        assert pa.nr_pages == z.nr_pages == z.native_memory()["arenas"] == 0
        mapped, unmapped = z._pool._arena_counts()
        assert mapped - mapped0 == unmapped - unmapped0 > 0, (seed, mapped, unmapped)


def test_stress_alongside_python_methods() -> None:
    """_stress in one Python thread (GIL released) while this thread uses the Python
    methods (map, unmap, write, read, stats, compact, _check) on objects of its own."""
    from zswap_zsmalloc import _zsmalloc

    z, pa = native_pool()
    baseline = z.native_memory()
    result: dict[str, Any] = {}
    worker = threading.Thread(
        target=lambda: result.update(_zsmalloc._stress(z.zpool_ops, 3, 20000, 8))
    )
    worker.start()
    mine: dict[int, bytes] = {}
    i = 0
    while i < 300 or worker.is_alive():  # overlaps the whole run
        i += 1
        data = bytes([i % 251]) * (1 + (i * 37) % 3000)
        h = z.alloc_write(data)
        mine[h] = data
        view = z.map(h, MapMode.RW)
        view[:1] = b"!"
        z.unmap(h)
        mine[h] = b"!" + data[1:]
        if i % 3 == 0:
            old = min(mine)
            assert z.read(old, len(mine[old])) == mine.pop(old)
            z.free(old)
        if i % 50 == 0:
            z.stats()
            z.compact()
            z._pool._check()
    worker.join()
    for h, data in mine.items():
        assert z.read(h, len(data)) == data
        z.free(h)
    assert result["mismatches"] == result["errors"] == result["inconsistent"] == 0
    assert_empty(z, pa, baseline)


def test_destroy_while_threads_run() -> None:
    """destroy() waits for the operations in progress; every later one is -EINVAL (an
    error of the run, never a wrong byte) and every page goes back."""
    from zswap_zsmalloc import _zsmalloc

    z, pa = native_pool()
    cap = z.zpool_ops
    result: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: result.update(_zsmalloc._stress(cap, 3, 20000, 9)))
    worker.start()
    z.alloc_write(b"x" * 100)
    while worker.is_alive() and z.nr_pages < 8:  # the threads are under way
        pass
    z.destroy()
    worker.join()
    assert result["mismatches"] == 0
    assert pa.nr_pages == z.nr_pages == 0
    assert z._pool._check() == {"objects": 0, "zspages": 0, "pages": 0, "handles": 0}
    with pytest.raises(ZpoolError) as info:
        z.alloc_write(b"y")
    assert info.value.errno == errno.EINVAL


# -- mappings and the GIL-free free -------------------------------------------------------


def test_free_through_ops_of_a_mapped_object() -> None:
    """ops->free cannot release a Python buffer (no GIL): the mapping is orphaned, and
    the next Python method that reaps releases it; the view stays readable."""
    from zswap_zsmalloc import _zsmalloc

    z, pa = native_pool()
    cap = z.zpool_ops
    h = _zsmalloc._ops_alloc_write(cap, b"mapped" * 10)
    keep = z.alloc_write(b"k")
    view = z.map(h, MapMode.RO)
    buf = view.obj
    refs = sys.getrefcount(buf)
    _zsmalloc._ops_free(cap, h)
    assert sys.getrefcount(buf) == refs  # orphaned, not released without the GIL
    with pytest.raises(ZpoolError):
        z.unmap(h)  # the mapping died with the object; this call reaps it
    assert sys.getrefcount(buf) == refs - 1
    assert bytes(view[:6]) == b"mapped"
    z.free(keep)
    assert pa.nr_pages == z.nr_pages == 0
    assert z.native_memory()["mapping_records"] == 0
