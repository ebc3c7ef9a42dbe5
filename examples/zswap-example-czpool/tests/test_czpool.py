"""czpool's own behaviour: the C ops table inside Zswap, and what it answers through
the capsule, as zswap-core's native core calls it."""

import errno
import gc
import random
import threading

import pytest

import zswap_core
from zswap_core import PageAllocator, ZpoolError, Zswap

pytestmark = pytest.mark.skipif(
    not zswap_core.zpool_has_pool("czpool"),
    reason="czpool is not installed: pip install ./examples/zswap-example-czpool",
)
native = pytest.mark.skipif(
    not hasattr(PageAllocator(), "page_acct"),
    reason="czpool needs zswap-core's native backend (ZSWAP_BACKEND=python is set?)",
)

MAX_HANDLE = (1 << 37) - 1


def ops_error(call, *args) -> int:
    with pytest.raises(ZpoolError) as info:
        call(*args)
    return info.value.errno


@native
def test_zswap_calls_the_c_ops_table():
    rng = random.Random(1)
    pages = {i: rng.randbytes(1500) + bytes(4096 - 1500) for i in range(300)}
    with Zswap(compressor="lz4", zpool="czpool", ram_bytes=1 << 30, backend="native") as z:
        assert z.backend == "native"
        z.init(0)
        (pool,) = z._pools
        assert pool.zpool.type == "czpool"
        assert z._core.pool_backend(pool.id) == "native"  # not the Python methods
        for offset, page in pages.items():
            assert z.store(0, offset, page)
        assert pool.zpool.nr_pages == z.pages.nr_pages == len(pages)  # one page each
        assert z.pools[0].total_size == len(pages) * 4096
        for offset, page in pages.items():
            assert z.load(0, offset) == page
        for offset in list(pages)[::2]:
            z.invalidate_page(0, offset)
        assert pool.zpool.nr_pages == len(pages) // 2
        for offset in list(pages)[1::2]:
            assert z.load(0, offset) == pages[offset]
        z.invalidate_area(0)
        assert pool.zpool.nr_pages == z.pages.nr_pages == 0


@native
def test_the_python_methods_are_the_same_pool():
    from zswap_example_czpool import CZpool, _czpool

    pages = PageAllocator()
    pool = CZpool("p", pages)
    caps = pool.zpool_ops
    h = _czpool._ops_alloc_write(caps, b"through the table")
    assert pool.read(h, 17) == b"through the table"
    h2 = pool.alloc_write(b"through Python")
    assert _czpool._ops_read(caps, h2, 14) == b"through Python"
    assert pool.nr_pages == pages.nr_pages == 2
    pool.free(h)
    _czpool._ops_free(caps, h2)
    assert pool.nr_pages == pages.nr_pages == 0


@native
def test_stale_and_forged_handles_are_einval():
    from zswap_example_czpool import CZpool, _czpool

    pages = PageAllocator()
    pool = CZpool("p", pages)
    caps = pool.zpool_ops
    keep = _czpool._ops_alloc_write(caps, b"k" * 100)
    stale = _czpool._ops_alloc_write(caps, b"s" * 100)
    _czpool._ops_free(caps, stale)
    again = _czpool._ops_alloc_write(caps, b"a" * 100)  # the same slot, a new generation
    assert again & 0xFFFFFF == stale & 0xFFFFFF and again != stale
    forged = [
        stale,  # freed: its generation is gone
        keep ^ (1 << 24),  # a live slot, another generation
        keep + 1000,  # a slot never used
        0,
        MAX_HANDLE,
        MAX_HANDLE + 1 + keep,  # above 37 bits
        (1 << 64) - 1,
    ]
    for bad in forged:
        assert ops_error(_czpool._ops_read, caps, bad, 1) == errno.EINVAL, hex(bad)
        assert ops_error(_czpool._ops_free, caps, bad) == errno.EINVAL, hex(bad)
    assert ops_error(_czpool._ops_read, caps, keep, 101) == errno.EINVAL  # beyond it
    assert ops_error(_czpool._ops_alloc_write, caps, b"") == errno.EINVAL
    assert ops_error(_czpool._ops_alloc_write, caps, bytes(4097)) == errno.ENOSPC
    assert _czpool._ops_read(caps, keep, 100) == b"k" * 100  # nothing was harmed
    assert _czpool._ops_read(caps, again, 100) == b"a" * 100
    assert pool.nr_pages == pages.nr_pages == 2
    pool.destroy()
    assert pages.nr_pages == 0
    assert ops_error(_czpool._ops_read, caps, keep, 1) == errno.EINVAL
    assert ops_error(_czpool._ops_free, caps, keep) == errno.EINVAL
    assert ops_error(_czpool._ops_alloc_write, caps, b"x") == errno.EINVAL
    assert pages.nr_pages == 0


@native
def test_the_capsule_keeps_the_pool_alive():
    from zswap_example_czpool import CZpool, _czpool

    pages = PageAllocator()
    pool = CZpool("p", pages)
    caps = pool.zpool_ops
    h = _czpool._ops_alloc_write(caps, b"alive")
    del pool
    gc.collect()
    assert _czpool._ops_read(caps, h, 5) == b"alive"
    assert pages.nr_pages == 1
    del caps  # the last reference: the C pool is freed and gives its page back
    gc.collect()
    assert pages.nr_pages == 0


@native
def test_page_faults_through_the_table():
    from zswap_example_czpool import CZpool, _czpool

    pages = PageAllocator(limit=2)
    pool = CZpool("p", pages)
    caps = pool.zpool_ops
    pages.fail_next(1)
    assert ops_error(_czpool._ops_alloc_write, caps, b"x") == errno.ENOMEM
    a = _czpool._ops_alloc_write(caps, b"a")
    _czpool._ops_alloc_write(caps, b"b")
    assert ops_error(_czpool._ops_alloc_write, caps, b"c") == errno.ENOMEM  # the limit
    assert pool.nr_pages == pages.nr_pages == 2
    _czpool._ops_free(caps, a)

    def destroy_while_charging() -> bool:  # a fault hook runs Python inside charge()
        pool.destroy()
        return False

    pages.fail = destroy_while_charging
    assert ops_error(_czpool._ops_alloc_write, caps, b"d") == errno.EINVAL
    assert pool.nr_pages == pages.nr_pages == 0


@native
def test_threads_through_the_table():
    from zswap_example_czpool import CZpool, _czpool

    pages = PageAllocator()
    pool = CZpool("p", pages)
    caps = pool.zpool_ops
    errors = []

    def work(t: int) -> None:
        rng = random.Random(t)
        live = {}
        try:
            for _ in range(2000):
                if live and rng.random() < 0.45:
                    h = rng.choice(list(live))
                    assert _czpool._ops_read(caps, h, len(live[h])) == live.pop(h)
                    _czpool._ops_free(caps, h)
                else:
                    data = rng.randbytes(rng.randint(1, 4096))
                    live[_czpool._ops_alloc_write(caps, data)] = data
            for h, data in live.items():
                assert pool.read(h, len(data)) == data
                pool.free(h)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    assert pool.nr_pages == pages.nr_pages == 0


def test_python_backend_is_refused_clearly():
    from zswap_example_czpool import CZpool

    with pytest.raises(ZpoolError) as info:
        CZpool("p", PageAllocator(backend="python"))
    assert info.value.errno == errno.ENODEV
    assert "ZSWAP_BACKEND" in str(info.value)
