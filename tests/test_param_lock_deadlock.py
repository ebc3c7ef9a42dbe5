"""The seed's "module: add per-module param_lock" deadlock, shown and prevented.

A built-in parameter's set callback loads a plugin (as ``zswap.compressor`` does
through ``crypto_has_comp``). Loading runs on another thread that the setter waits
for (the kernel waits for modprobe), and the plugin applies its own configured
parameters while it loads. With one global lock the loader waits for the setter and
the setter for the loader; with per-module locks both finish.
"""

from __future__ import annotations

import errno
import threading
from pathlib import Path

from helpers import FakeDists

from zswap_core import ModuleParams, Param, ParamError, Registry

PLUGIN = """
from zswap_core import Compressor, Param
class Slowcomp(Compressor):
    name = "dlcomp"
    parameters = (Param("level", "int", 1, minimum=1, maximum=9),)
    def compress(self, src):
        return bytes(src)
    def decompress(self, src, dlen):
        return bytes(src)
"""


def setup_plugin(fake_dists: FakeDists, tmp_path: Path) -> Path:
    fake_dists.add(
        "fake-dl",
        "1.0",
        {"zswap.compressors": {"dlcomp": "fake_dl:Slowcomp"}},
        {"fake_dl": PLUGIN},
    )
    conf = tmp_path / "modprobe.d"
    conf.mkdir()
    (conf / "dl.conf").write_text("options dlcomp level=4\n")
    return conf


def builtin_module(reg: Registry) -> ModuleParams:
    def set_compressor(params: ModuleParams, name: str, value: str) -> None:
        if reg.request("compressor", value) is None:
            raise ParamError(
                errno.ENOENT, f"compressor {value} not available: {reg.error('compressor', value)}"
            )
        params.commit(name, value)

    return ModuleParams(
        "zswaplike", [Param("compressor", "charp", "none", on_set=set_compressor)], builtin=True
    )


def set_in_thread(params: ModuleParams, value: str, timeout: float) -> tuple[bool, object]:
    box: dict[str, object] = {}

    def setter() -> None:
        try:
            params["compressor"] = value
            box["ok"] = True
        except Exception as exc:
            box["exc"] = exc

    t = threading.Thread(target=setter, daemon=True)
    t.start()
    t.join(timeout)
    return (not t.is_alive()), box


def test_per_module_locks_do_not_deadlock(fake_dists: FakeDists, tmp_path: Path) -> None:
    conf = setup_plugin(fake_dists, tmp_path)
    reg = Registry(modprobe_dir=conf)
    params = builtin_module(reg)
    finished, box = set_in_thread(params, "dlcomp", timeout=20)
    assert finished, "setting the parameter deadlocked"
    assert box == {"ok": True}
    assert params["compressor"] == "dlcomp"
    mod = reg.require("compressor", "dlcomp")
    assert mod.params["level"] == 4  # its configured value was applied while loading
    assert mod.params.lock is not params.lock


def test_a_single_global_lock_deadlocks(fake_dists: FakeDists, tmp_path: Path) -> None:
    conf = setup_plugin(fake_dists, tmp_path)
    # The pre-4.2 design: every module shares the built-in lock. The loader's wait is
    # bounded only so the test can observe the deadlock and then recover.
    reg = Registry(modprobe_dir=conf, global_param_lock=True, modprobe_timeout=1.0)
    params = builtin_module(reg)
    finished, box = set_in_thread(params, "dlcomp", timeout=20)
    assert finished
    exc = box.get("exc")
    assert isinstance(exc, ParamError) and exc.errno == errno.ENOENT
    assert "did not finish" in str(exc) and "deadlock" in str(exc)
    assert params["compressor"] == "none"  # the failed write left the old value
