"""Plugin discovery and lazy loading: crypto_has_comp / zpool_has_pool and friends."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
import threading
import types
from pathlib import Path

import pytest
from helpers import FakeDists, subprocess_env

import zswap_core
from zswap_core import ApiVersionError, DuplicatePluginError, ParamError, PluginError, Registry
from zswap_core._hooks import STATE
from zswap_core.testing._interleave import ContentionLog, watch_locks

GOOD = """
from zswap_core import Compressor, Param
class Good(Compressor):
    name = "{name}"
    parameters = (Param("level", "int", 3, minimum=1, maximum=9),)
    def compress(self, src):
        return bytes(src)
    def decompress(self, src, dlen):
        return bytes(src)
"""


def run_py(code: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


HEAVY = ("lz4", "zstandard", "lzo", "zlib_ng", "stevedore", "pluggy", "zswap_")


def test_import_zswap_core_imports_no_plugin_or_codec() -> None:
    got = run_py(
        "import sys, json, zswap_core\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({HEAVY!r})"
        " and not m.startswith('zswap_core'))))"
    )
    assert got == []


def test_first_request_imports_exactly_that_plugin() -> None:
    got = run_py(
        "import sys, json, zswap_core\n"
        "ok = zswap_core.crypto_has_comp('lz4')\n"
        "mods = sorted({m.partition('.')[0] for m in sys.modules if m.startswith('zswap_')}"
        " - {'zswap_core'})\n"
        "print(json.dumps({'ok': ok, 'mods': mods, 'zstd': 'zstandard' in sys.modules}))"
    )
    assert got == {"ok": True, "mods": ["zswap_lz4"], "zstd": False}


@pytest.mark.parametrize(
    "name", ["os:system", "../x", "os.path", "zswap_lz4:LZ4", "", "LZ4", "a" * 200, "x y"]
)
def test_non_plugin_names_are_unavailable_and_import_nothing(name: str) -> None:
    before = set(sys.modules)
    assert zswap_core.crypto_has_comp(name) is False
    assert zswap_core.zpool_has_pool(name) is False
    assert set(sys.modules) - before == set()


def test_listing_imports_nothing() -> None:
    got = run_py(
        "import sys, json, zswap_core\n"
        "rows = zswap_core.list_plugins()\n"
        "mods = [m for m in sys.modules if m.startswith(('zswap_lz4', 'lz4'))]\n"
        "print(json.dumps({'names': sorted(r.name for r in rows), 'mods': mods,"
        " 'states': sorted({r.state for r in rows})}))"
    )
    assert "lz4" in got["names"] and "lz4hc" in got["names"]  # type: ignore[operator]
    assert got["mods"] == []
    assert got["states"] == ["available"]


def test_two_threads_import_once(
    fake_dists: FakeDists, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two threads ask for a plugin at once: one imports it, the other waits for that.

    The overlap is forced, not hoped for: the plugin's import stops at a gate until the
    second request is blocked on a lock (or, in a registry without one, has begun a
    second load, which the assertions then catch); only then does the import finish.
    """
    counter = tmp_path / "imports.txt"
    gate = types.ModuleType("zswap_test_import_gate")
    gate.importing = threading.Event()  # type: ignore[attr-defined]
    gate.release = threading.Event()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, gate.__name__, gate)
    fake_dists.add(
        "fake-slow",
        "1.0",
        {"zswap.compressors": {"slow": "fake_slow:Good"}},
        {
            "fake_slow": f"import {gate.__name__} as gate\n"
            f"open({str(counter)!r}, 'a').write('x')\n"
            "gate.importing.set()\n"
            "assert gate.release.wait(60)\n" + GOOD.format(name="slow")
        },
    )
    results: dict[str, bool] = {}
    with watch_locks(), ContentionLog() as log:
        reg = Registry()

        def ask(who: str) -> None:
            results[who] = reg.request("compressor", "slow") is not None

        first = threading.Thread(target=ask, args=("first",))
        second = threading.Thread(target=ask, args=("second",))
        first.start()
        try:
            assert gate.importing.wait(60), "the first request never began the import"
            second.start()
            assert log.wait_for(second, until=lambda: reg.loads > 1, timeout=60), (
                "the second request neither waited on a lock nor began a second load"
            )
        finally:
            gate.release.set()
            first.join(60)
            if second.ident is not None:
                second.join(60)
    assert results == {"first": True, "second": True}
    assert counter.read_text() == "x"
    assert reg.loads == 1


def test_broken_plugin_is_false_with_reason_and_others_still_load(fake_dists: FakeDists) -> None:
    fake_dists.add(
        "fake-broken",
        "2.3",
        {"zswap.compressors": {"broken": "fake_broken:Good"}},
        {"fake_broken": "raise RuntimeError('codec library exploded')\n"},
    )
    fake_dists.add(
        "fake-fine",
        "1.0",
        {"zswap.compressors": {"fine": "fake_fine:Good"}},
        {"fake_fine": GOOD.format(name="fine")},
    )
    reg = Registry()
    assert reg.request("compressor", "broken") is None
    err = reg.error("compressor", "broken")
    assert err is not None
    text = str(err)
    assert "broken" in text and "fake-broken" in text and "2.3" in text
    assert "codec library exploded" in text
    assert "pip install --force-reinstall fake-broken" in text
    assert reg.request("compressor", "fine") is not None


def test_missing_known_plugin_names_the_pip_command(registry: Registry) -> None:
    # a name we ship, asked for in a group where it does not exist
    assert registry.request("zpool", "lz4hc") is None
    assert "pip install zswap-lz4" in str(registry.error("zpool", "lz4hc"))


def test_duplicate_names_are_an_error_naming_both(fake_dists: FakeDists) -> None:
    for dist in ("fake-dup-a", "fake-dup-b"):
        mod = dist.replace("-", "_")
        fake_dists.add(
            dist,
            "1.0",
            {"zswap.compressors": {"dup": f"{mod}:Good"}},
            {mod: GOOD.format(name="dup")},
        )
    reg = Registry()
    assert reg.request("compressor", "dup") is None
    err = reg.error("compressor", "dup")
    assert isinstance(err, DuplicatePluginError)
    assert "fake-dup-a" in str(err) and "fake-dup-b" in str(err)
    assert "fake_dup_a" not in sys.modules and "fake_dup_b" not in sys.modules
    states = {r.name: r.state for r in reg.plugins()}
    assert states["dup"] == "duplicate"


def test_incompatible_api_version_is_refused(fake_dists: FakeDists) -> None:
    fake_dists.add(
        "fake-future",
        "9.0",
        {"zswap.compressors": {"future": "fake_future:Good"}},
        {"fake_future": GOOD.format(name="future") + "Good.api_version = 99\n"},
    )
    reg = Registry()
    assert reg.request("compressor", "future") is None
    err = reg.error("compressor", "future")
    assert isinstance(err, ApiVersionError)
    assert "API 99" in str(err) and "fake-future" in str(err)


def test_entry_point_must_be_a_driver_class(fake_dists: FakeDists) -> None:
    fake_dists.add(
        "fake-notdriver",
        "1.0",
        {"zswap.zpools": {"notdriver": "fake_notdriver:thing"}},
        {"fake_notdriver": "thing = 42\n"},
    )
    reg = Registry()
    assert reg.request("zpool", "notdriver") is None
    assert "not a subclass of zswap_core.Zpool" in str(reg.error("zpool", "notdriver"))


def test_blocked_plugin_is_never_imported(
    fake_dists: FakeDists, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_dists.add(
        "fake-blk",
        "1.0",
        {"zswap.compressors": {"blk": "fake_blk:Good", "blk2": "fake_blk2:Good"}},
        {"fake_blk": GOOD.format(name="blk"), "fake_blk2": GOOD.format(name="blk2")},
    )
    reg = Registry()
    reg.block("blk")
    monkeypatch.setenv("ZSWAP_BLOCK_PLUGINS", "compressor:blk2")
    assert reg.request("compressor", "blk") is None
    assert reg.request("compressor", "blk2") is None
    assert "blocked" in str(reg.error("compressor", "blk"))
    assert "fake_blk" not in sys.modules and "fake_blk2" not in sys.modules
    assert {r.name: r.state for r in reg.plugins()}["blk"] == "blocked"
    reg.unblock("blk")
    assert reg.request("compressor", "blk") is not None


def test_disable_autoload_keeps_only_bundled_plugins(
    fake_dists: FakeDists, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_dists.add(
        "fake-third",
        "1.0",
        {"zswap.compressors": {"third": "fake_third:Good"}},
        {"fake_third": GOOD.format(name="third")},
    )
    monkeypatch.setenv("ZSWAP_DISABLE_PLUGIN_AUTOLOAD", "1")
    reg = Registry()
    assert reg.request("compressor", "third") is None
    assert "fake_third" not in sys.modules
    assert reg.request("compressor", "lz4") is not None


def test_modprobe_and_boot_options_are_applied_at_load(
    fake_dists: FakeDists, tmp_path: Path
) -> None:
    fake_dists.add(
        "fake-opt",
        "1.0",
        {"zswap.compressors": {"opt": "fake_opt:Good", "opt2": "fake_opt2:Good"}},
        {"fake_opt": GOOD.format(name="opt"), "fake_opt2": GOOD.format(name="opt2")},
    )
    conf = tmp_path / "modprobe.d"
    conf.mkdir()
    (conf / "zswap.conf").write_text("options opt level=5 unknown=1\noptions opt2 level=99\n")
    reg = Registry(modprobe_dir=conf)
    mod = reg.require("compressor", "opt")
    assert mod.params["level"] == 5
    # a bad configured value makes the load fail with a message saying where it came from
    assert reg.request("compressor", "opt2") is None
    assert "modprobe.d" in str(reg.error("compressor", "opt2"))
    reg2 = Registry()
    reg2.set_boot_options("opt", {"level": "7"})
    assert reg2.require("compressor", "opt").params["level"] == 7
    reg2.set_boot_options("opt", {"level": "8"})  # already loaded: applied now
    assert reg2.require("compressor", "opt").params["level"] == 8


def test_rescan_finds_plugins_installed_while_running(fake_dists: FakeDists) -> None:
    reg = Registry()
    assert reg.request("compressor", "late") is None
    fake_dists.add(
        "fake-late",
        "1.0",
        {"zswap.compressors": {"late": "fake_late:Good", "late2": "fake_late2:Good"}},
        {"fake_late": GOOD.format(name="late"), "fake_late2": GOOD.format(name="late2")},
    )
    assert reg.request("compressor", "late") is None  # the failure is remembered...
    reg.rescan()  # ...until an explicit rescan
    assert reg.request("compressor", "late") is not None
    # a name never asked for is found by the rescan-on-miss alone
    reg2 = Registry()
    reg2.plugins()  # scanned before late2 existed? no: scan now includes it; force a stale scan
    reg2._scan = reg2._do_scan()
    assert reg2.request("compressor", "late2") is not None


def test_rescan_on_miss_sees_a_new_distribution(fake_dists: FakeDists) -> None:
    reg = Registry()
    reg.plugins()  # the scan is taken now, before the plugin exists
    fake_dists.add(
        "fake-miss",
        "1.0",
        {"zswap.compressors": {"miss": "fake_miss:Good"}},
        {"fake_miss": GOOD.format(name="miss")},
    )
    assert reg.request("compressor", "miss") is not None


def test_observer_hooks_see_events() -> None:
    from zswap_core import Zswap, hookimpl, register_observer, unregister_observer

    events: list[tuple[str, object]] = []

    class Observer:
        @hookimpl
        def zswap_param_changed(self, module: str, name: str, old: object, new: object) -> None:
            events.append(("param", (module, name, old, new)))

    assert STATE.active is False
    obs = Observer()
    register_observer(obs)
    try:
        assert STATE.active is True
        with pytest.warns(RuntimeWarning, match="not available"):
            z = Zswap(compressor="lz4", zpool="nonexistent-zpool-for-test", ram_bytes=1 << 30)
        z.params["max_pool_percent"] = 33
    finally:
        unregister_observer(obs)
    assert STATE.active is False
    assert ("param", ("zswap", "max_pool_percent", 20, 33)) in events


def test_param_error_is_oserror_with_errno() -> None:
    e = ParamError(errno.ENOENT, "x")
    assert isinstance(e, OSError) and e.errno == errno.ENOENT
    assert isinstance(PluginError("x"), zswap_core.ZswapError)


def test_no_observer_means_no_hook_call_on_the_hot_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """With nothing registered, store/load/invalidate never reach pluggy at all."""
    from zswap_core import Zswap, _hooks

    z = Zswap(compressor="lz4", zpool="zbud", ram_bytes=1 << 30)
    z.init(0)
    assert STATE.active is False

    def boom() -> None:
        raise AssertionError("the hook machinery was called with no observer")

    monkeypatch.setattr(_hooks, "plugin_manager", boom)
    page = bytes(range(256)) * 16
    for off in range(50):
        assert z.store(0, off, page)
        assert z.load(0, off) == page
        z.invalidate_page(0, off)
    z.params["enabled"] = False
    assert not z.store(0, 1, page)  # the refusal path too
