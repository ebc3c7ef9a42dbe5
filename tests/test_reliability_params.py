"""Refused parameter calls change nothing, and boot options reach the first pool.

Issue 12 §7 (``ModuleParams.update``, ``Registry.set_boot_options`` and
``Zswap.from_cmdline`` are all or nothing) and issue 13 §1 (every ``module.param=value``
of a boot string is in force before any plugin it names is loaded or instantiated).
"""

from __future__ import annotations

import errno
import warnings
from typing import Any

import pytest
from helpers import FakeDists

from zswap_core import ModuleParams, Param, ParamError, Registry, Zswap

# -- ModuleParams.update ------------------------------------------------------------------------


def test_update_applies_all_or_nothing_when_a_set_callback_refuses() -> None:
    def no_sevens(params: ModuleParams, name: str, value: Any) -> None:
        if value == 7:
            raise ParamError(errno.EINVAL, "seven refused")
        params.commit(name, value)

    changes: list[tuple[str, object, object]] = []
    p = ModuleParams(
        "mod",
        [Param("a", "int", 1), Param("b", "int", 2, on_set=no_sevens), Param("c", "int", 3)],
    )
    p.add_listener(lambda module, name, old, new: changes.append((name, old, new)))
    with pytest.raises(ParamError, match="seven refused"):
        p.update({"a": "10", "b": "7", "c": "30"})
    assert dict(p) == {"a": 1, "b": 2, "c": 3}
    # Listeners saw the change and its undo, so an observer is never left believing a=10.
    assert changes[-1] == ("a", 10, 1)
    p.update({"a": "10", "b": "8", "c": "30"})
    assert dict(p) == {"a": 10, "b": 8, "c": 30}


def test_update_refuses_an_unknown_name_before_writing_anything() -> None:
    p = ModuleParams("mod", [Param("a", "int", 1)])
    with pytest.raises(ParamError):
        p.update({"a": "5", "nosuch": "1"})
    assert p["a"] == 1


# -- Registry.set_boot_options / Zswap.from_cmdline: all or nothing ------------------------------


def test_set_boot_options_for_a_loaded_module_is_all_or_nothing() -> None:
    reg = Registry()
    zstd = reg.require("compressor", "zstd")
    with pytest.raises(ParamError):
        reg.set_boot_options("zstd", {"level": "7", "nosuch": "1"})
    assert zstd.params["level"] == 3
    assert reg.boot_options() == {}


def test_a_refused_cmdline_leaves_loaded_modules_and_the_registry_unchanged() -> None:
    reg = Registry()
    zstd = reg.require("compressor", "zstd")
    deflate = reg.require("compressor", "deflate")
    with pytest.raises(ParamError, match="deflate"):
        Zswap.from_cmdline(
            "lz4hc.level=5 zstd.level=7 deflate.level=99", registry=reg, ram_bytes=1 << 30
        )
    assert zstd.params["level"] == 3
    assert deflate.params["level"] == 6
    assert reg.boot_options() == {}
    # lz4hc was not loaded: its option must not have been kept for its load either.
    assert reg.require("compressor", "lz4hc").params["level"] == 9


def test_a_refused_cmdline_keeps_earlier_boot_options() -> None:
    reg = Registry()
    reg.set_boot_options("lz4hc", {"level": "4"})
    reg.require("compressor", "deflate")
    with pytest.raises(ParamError):
        Zswap.from_cmdline("lz4hc.level=5 deflate.level=99", registry=reg, ram_bytes=1 << 30)
    assert reg.boot_options() == {"lz4hc": {"level": "4"}}
    assert reg.require("compressor", "lz4hc").params["level"] == 4


# -- issue 13 §1: boot options are in force before the first pool is made -------------------------

INIT_POOL = """
from zswap_core import Param
from zswap_zbud import Zbud

class InitPool(Zbud):
    '''Reads its parameter once, when an instance is made (as many allocators do).'''
    type = "initpool"
    parameters = (Param("align", "uint", 8, minimum=1, maximum=4096),)

    def __init__(self, name, pages, params=None):
        super().__init__(name, pages, params)
        self.align = params["align"] if params is not None else 8

    def stats(self):
        return {"align": self.align}
"""


@pytest.fixture
def init_pool(fake_dists: FakeDists) -> None:
    fake_dists.add(
        "fake-initpool",
        "1.0",
        {"zswap.zpools": {"initpool": "fake_initpool:InitPool"}},
        {"fake_initpool": INIT_POOL},
    )


def first_pool_align(z: Zswap) -> object:
    [row] = z.zpool_stats()
    assert row["zpool"] == "initpool"
    return row["stats"]["align"]


@pytest.mark.parametrize(
    "cmdline",
    ["zswap.zpool=initpool initpool.align=64", "initpool.align=64 zswap.zpool=initpool"],
)
def test_plugin_boot_options_reach_the_first_pool(init_pool: None, cmdline: str) -> None:
    reg = Registry()
    with Zswap.from_cmdline(cmdline, registry=reg, ram_bytes=1 << 30) as z:
        assert first_pool_align(z) == 64
        assert reg.require("zpool", "initpool").params["align"] == 64


def test_plugin_boot_options_reach_the_first_pool_of_an_already_loaded_plugin(
    init_pool: None,
) -> None:
    reg = Registry()
    reg.require("zpool", "initpool")
    with Zswap.from_cmdline(
        "zswap.zpool=initpool initpool.align=32", registry=reg, ram_bytes=1 << 30
    ) as z:
        assert first_pool_align(z) == 32


def test_a_failing_constructor_leaves_no_boot_option_behind(init_pool: None) -> None:
    reg = Registry()
    with pytest.raises(ValueError):
        Zswap.from_cmdline("zswap.zpool=initpool initpool.align=64", registry=reg, page_size=1000)
    assert reg.boot_options() == {}
    assert reg.require("zpool", "initpool").params["align"] == 8


class FailsAfterItsFirstPool(Zswap):
    """A construction that fails after the plugins on the boot string were loaded."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        assert first_pool_align(self) == 64  # the options were in force for the pool
        self.close()
        raise RuntimeError("construction failed late")


def test_a_construction_failing_after_loading_undoes_the_plugin_options(init_pool: None) -> None:
    reg = Registry()
    reg.require("compressor", "zstd")
    with pytest.raises(RuntimeError, match="late"):
        FailsAfterItsFirstPool.from_cmdline(
            "zswap.zpool=initpool initpool.align=64 zstd.level=7",
            registry=reg,
            ram_bytes=1 << 30,
        )
    assert reg.boot_options() == {}
    # initpool was loaded during the failed call; its option is undone like zstd's.
    assert reg.require("zpool", "initpool").params["align"] == 8
    assert reg.require("compressor", "zstd").params["level"] == 3


def test_a_bad_option_for_a_plugin_loaded_by_the_cmdline_falls_back_as_before(
    init_pool: None,
) -> None:
    # Not loaded yet, so it cannot be checked up front: its load fails, as a kernel
    # module with a bad option does, and zswap falls back to the default allocator.
    reg = Registry()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        z = Zswap.from_cmdline(
            "zswap.zpool=initpool initpool.align=0", registry=reg, ram_bytes=1 << 30
        )
    with z:
        assert z.params["zpool"] == "zsmalloc"
    assert any("initpool" in str(w.message) for w in caught)
    assert "align" in str(reg.error("zpool", "initpool"))
