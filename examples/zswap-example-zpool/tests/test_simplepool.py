"""simplepool's own behaviour: its module parameter, first-fit reuse, and use in Zswap."""

import errno

import pytest

import zswap_core
from zswap_core import PageAllocator, ParamError, Registry

pytestmark = pytest.mark.skipif(
    not zswap_core.zpool_has_pool("simplepool"),
    reason="simplepool is not installed: pip install ./examples/zswap-example-zpool",
)


def test_align_comes_from_modprobe_d(tmp_path):
    (tmp_path / "simplepool.conf").write_text("options simplepool align=64\n")
    mod = Registry(modprobe_dir=tmp_path).require("zpool", "simplepool")
    assert mod.params["align"] == 64
    pool = mod.driver("p", PageAllocator(), mod.params)
    handles = [pool.malloc(10) for _ in range(3)]
    assert [(h - 1) & 0xFFFF for h in handles] == [0, 64, 128]
    pool.destroy()


def test_align_must_be_a_power_of_two():
    mod = Registry().require("zpool", "simplepool")
    with pytest.raises(ParamError) as info:
        mod.params["align"] = 48
    assert info.value.errno == errno.EINVAL
    assert mod.params["align"] == 8


def test_freed_space_is_reused_first_fit():
    mod = Registry().require("zpool", "simplepool")
    pages = PageAllocator()
    pool = mod.driver("p", pages, mod.params)
    a, b, c = (pool.malloc(1000) for _ in range(3))
    pool.free(b)
    assert pool.malloc(900) == b  # the hole left by b is the first fit
    assert pages.nr_pages == pool.nr_pages == 1
    for h in (a, b, c):
        pool.free(h)
    assert pages.nr_pages == 0


def test_runs_inside_zswap():
    with zswap_core.Zswap(compressor="lz4", zpool="simplepool", ram_bytes=1 << 30) as z:
        z.init(0)
        page = bytes(range(256)) * 16
        assert z.store(0, 1, page)
        assert z.load(0, 1) == page
        assert z.pools[0].zpool == "simplepool"
