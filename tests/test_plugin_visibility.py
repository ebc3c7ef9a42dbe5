"""Plugin failures are visible, and their fix hints are right (issue 13 §4).

1. A plugin that fails to load (here: a bad ``options`` line in a modprobe.d file) is
   shown as failed, with its one-line reason, by ``zswap lsmod`` and ``modinfo``; the
   warning of a Zswap that falls back to the default names it and its reason. A plugin
   not asked for yet is "available", and lsmod says it is not imported yet (it cannot
   know more without importing; ``lsmod --load`` imports each one to find out).
2. A blocked plugin's error says what blocked it, and how to undo exactly that:
   ``block_plugin()``, ``$ZSWAP_BLOCK_PLUGINS``, a ``blacklist`` line (with its file)
   or ``$ZSWAP_DISABLE_PLUGIN_AUTOLOAD`` for a third-party plugin.
3. Entry point names that can never load (``os:system``, ``../x``, over 64 characters)
   are listed as refused, with the reason, never as available.
4. ``--cmdline``: the string's plugin options are in force before the CLI loads any
   plugin the string names.

The CLI runs in-process through ``main()`` (what the ``zswap`` script runs), on a
registry of the test's own, so nothing here disturbs the process-wide one.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import FakeDists

import zswap_core
from zswap_core import Registry, Zswap, _registry
from zswap_core.cli import main

BROTLI = """
from zswap_core import Compressor, Param

class Brotli(Compressor):
    name = "brotli"
    description = "a fake brotli"
    parameters = (Param("level", "int", 5, minimum=0, maximum=11),)

    def compress(self, src):
        return bytes(src)

    def decompress(self, src, dlen):
        return bytes(src)
"""


def invoke(*args: str) -> tuple[int, str, str]:
    """``main(args)`` in this process: (status, stdout, stderr)."""
    with CliRunner().isolation() as (out, err, _):
        rc = main(list(args))
    return rc, out.getvalue().decode(), err.getvalue().decode()


def lsmod_rows() -> dict[str, dict[str, object]]:
    rc, out, err = invoke("lsmod", "--json")
    assert rc == 0, err
    return {row["name"]: row for row in json.loads(out)}


def lsmod_line(name: str, *extra: str) -> str:
    """The text line of ``zswap lsmod`` for module ``name``."""
    rc, out, err = invoke("lsmod", *extra)
    assert rc == 0, err
    [line] = [ln for ln in out.splitlines() if ln.split()[0] == name]
    return line


@pytest.fixture
def reg(monkeypatch: pytest.MonkeyPatch) -> Registry:
    """A fresh process-wide registry, as a new ``zswap`` process has."""
    fresh = Registry()
    monkeypatch.setattr(_registry, "_default", fresh)
    return fresh


@pytest.fixture
def modprobe_d(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "modprobe.d"
    d.mkdir()
    monkeypatch.setenv("ZSWAP_MODPROBE_DIR", str(d))
    return d


@pytest.fixture
def brotli(fake_dists: FakeDists) -> None:
    fake_dists.add(
        "fake-brotli",
        "1.0",
        {"zswap.compressors": {"brotli": "fake_brotli:Brotli"}},
        {"fake_brotli": BROTLI},
    )


# -- 1. a plugin that failed to load ------------------------------------------------------------


@pytest.fixture
def bad_option(brotli: None, modprobe_d: Path) -> Path:
    conf = modprobe_d / "brotli.conf"
    conf.write_text("# too strong\noptions brotli level=99\n")
    return conf


def test_fallback_warning_names_the_failed_plugin_and_its_reason(
    reg: Registry, bad_option: Path
) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        z = Zswap(compressor="brotli", ram_bytes=1 << 30)
    with z:
        assert z.params["compressor"] == "lz4"
    [msg] = [str(w.message) for w in caught if "brotli" in str(w.message)]
    assert "using default 'lz4'" in msg
    assert "level" in msg and "99" in msg  # the reason...
    assert f"{bad_option}:2" in msg  # ...and the line to fix


def test_lsmod_and_modinfo_show_a_failed_plugin_with_its_reason(
    reg: Registry, bad_option: Path
) -> None:
    # Not asked for yet: lsmod cannot know that it will fail, and says what it knows.
    assert lsmod_rows()["brotli"]["state"] == "available"
    assert "not imported yet" in lsmod_line("brotli")
    assert reg.request("compressor", "brotli") is None
    line = lsmod_line("brotli")
    assert line.split()[4] == "failed"
    assert "level" in line and f"{bad_option}:2" in line
    row = lsmod_rows()["brotli"]
    assert row["state"] == "failed" and str(bad_option) in str(row["error"])
    rc, out, err = invoke("modinfo", "brotli")
    assert rc == 0, err
    assert "state:" in out and "failed" in out
    assert "error:" in out and f"{bad_option}:2" in out


def test_lsmod_load_imports_each_plugin_to_show_whether_it_loads(
    reg: Registry, bad_option: Path
) -> None:
    line = lsmod_line("brotli", "--load")
    assert line.split()[4] == "failed" and "level" in line
    assert lsmod_line("lz4").split()[4] == "loaded"
    assert "fake_brotli" in sys.modules  # it was imported: that is what --load is for


# -- 2. blocked: the hint names what blocked it -------------------------------------------------

EVIL = BROTLI.replace('"brotli"', '"evil"').replace("Brotli", "Evil")
HINTS = {
    "python": "zswap_core.unblock_plugin('evil')",
    "env": "$ZSWAP_BLOCK_PLUGINS",
    "blacklist": "blacklist evil",
    "autoload": "ZSWAP_DISABLE_PLUGIN_AUTOLOAD",
}


@pytest.fixture
def evil(fake_dists: FakeDists) -> None:
    fake_dists.add(
        "fake-evil", "1.0", {"zswap.compressors": {"evil": "fake_evil:Evil"}}, {"fake_evil": EVIL}
    )


@pytest.mark.parametrize("how", list(HINTS))
def test_a_blocked_plugin_says_what_blocked_it(
    how: str,
    evil: None,
    reg: Registry,
    modprobe_d: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if how == "python":
        zswap_core.block_plugin("evil")
    elif how == "env":
        monkeypatch.setenv("ZSWAP_BLOCK_PLUGINS", "lzo, compressor:evil")
    elif how == "blacklist":
        (modprobe_d / "10-local.conf").write_text("# no thanks\nblacklist evil\n")
    else:
        monkeypatch.setenv("ZSWAP_DISABLE_PLUGIN_AUTOLOAD", "1")
    rc, _, err = invoke("stats", "--pages", "1", "--cmdline", "zswap.compressor=evil")
    assert rc == 1
    assert "blocked" in err and HINTS[how] in err
    for other, hint in HINTS.items():  # and nothing that did not block it
        if other != how:
            assert hint not in err, (other, err)
    if how == "blacklist":
        assert f"{modprobe_d / '10-local.conf'}:2" in err
    if how == "env":
        assert "'compressor:evil'" in err  # the word to remove
    assert "fake_evil" not in sys.modules
    line = lsmod_line("evil")
    assert line.split()[4] == "blocked" and HINTS[how] in line


def test_every_block_at_once_names_every_fix(
    evil: None, reg: Registry, modprobe_d: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    zswap_core.block_plugin("compressor:evil")
    monkeypatch.setenv("ZSWAP_BLOCK_PLUGINS", "evil")
    monkeypatch.setenv("ZSWAP_DISABLE_PLUGIN_AUTOLOAD", "1")
    (modprobe_d / "a.conf").write_text("blacklist evil\n")
    assert not zswap_core.crypto_has_comp("evil")
    msg = str(zswap_core.plugin_error("compressor", "evil"))
    assert "zswap_core.unblock_plugin('compressor:evil')" in msg
    for hint in ("$ZSWAP_BLOCK_PLUGINS", "blacklist evil", "ZSWAP_DISABLE_PLUGIN_AUTOLOAD"):
        assert hint in msg


def test_a_registry_of_its_own_names_its_own_unblock(evil: None) -> None:
    own = Registry()
    own.block("evil")
    assert own.request("compressor", "evil") is None
    msg = str(own.error("compressor", "evil"))
    assert "Registry.unblock('evil')" in msg and "zswap_core.unblock_plugin" not in msg


# -- 3. names that can never load are refused, not available --------------------------------------

LONG = "a" * 65
REFUSED = ("os:system", "../x", LONG, "LZ4")


@pytest.fixture
def odd_names(fake_dists: FakeDists) -> None:
    fake_dists.add(
        "fake-odd",
        "1.0",
        {"zswap.compressors": {n: "fake_odd:Odd" for n in REFUSED}},
        {"fake_odd": BROTLI.replace('"brotli"', '"odd"').replace("Brotli", "Odd")},
    )


def test_names_that_can_never_load_are_listed_as_refused(reg: Registry, odd_names: None) -> None:
    rows = {p.name: p for p in zswap_core.list_plugins()}
    for name in REFUSED:
        assert rows[name].state == "refused", name
        assert "not a valid compressor name" in str(rows[name].error)
        assert "fake-odd" in str(rows[name].error)  # the distribution to fix
    assert "64" in str(rows[LONG].error)
    js = lsmod_rows()
    assert {js[n]["state"] for n in REFUSED} == {"refused"}
    line = lsmod_line("os:system")
    assert line.split()[4] == "refused" and "not a valid compressor name" in line
    assert "fake_odd" not in sys.modules


def test_compare_skips_refused_names(reg: Registry, odd_names: None) -> None:
    from zswap_core.cli import _compare

    assert not set(REFUSED) & set(_compare._names(None, "compressor"))


# -- 4. --cmdline options are in force before the CLI loads a plugin it names --------------------

INIT_POOL = """
from zswap_core import Param, default_registry
from zswap_zbud import Zbud

# What was configured when the plugin was imported: the CLI must not load a plugin
# named on --cmdline before that string's options for it are registered.
OPTIONS_AT_IMPORT = default_registry().boot_options().get("initpool")

class InitPool(Zbud):
    '''Reads its parameter once, when an instance is made.'''
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


@pytest.mark.parametrize(
    "cmdline",
    ["zswap.zpool=initpool initpool.align=64", "initpool.align=64 zswap.zpool=initpool"],
)
def test_cmdline_options_are_in_force_before_the_cli_loads_the_plugin(
    reg: Registry, init_pool: None, cmdline: str
) -> None:
    rc, out, err = invoke("stats", "--pages", "2", "--json", "--cmdline", cmdline)
    assert rc == 0, err
    [pool] = json.loads(out)["pools"]
    assert pool["zpool"] == "initpool" and pool["stats"] == {"align": 64}
    assert sys.modules["fake_initpool"].OPTIONS_AT_IMPORT == {"align": "64"}


def test_cmdline_params_shows_the_value_the_plugin_loaded_with(
    reg: Registry, init_pool: None
) -> None:
    rc, out, err = invoke("params", "--json", "--cmdline", "initpool.align=32 zswap.zpool=initpool")
    assert rc == 0, err
    assert json.loads(out)["initpool"] == {"align": "32"}
    assert sys.modules["fake_initpool"].OPTIONS_AT_IMPORT == {"align": "32"}


@pytest.mark.parametrize(
    ("cmdline", "expected"),
    [
        # A value the plugin refuses: its load fails, and the CLI says why (not "unknown").
        ("zswap.zpool=initpool initpool.align=0", "zpool 'initpool'"),
        # A name it does not declare: an error too, as for a plugin loaded earlier.
        ("zswap.zpool=initpool initpool.colour=blue", "initpool.colour"),
    ],
)
def test_a_refused_cmdline_option_of_a_named_plugin_is_an_error(
    reg: Registry, init_pool: None, cmdline: str, expected: str
) -> None:
    rc, out, err = invoke("stats", "--pages", "1", "--cmdline", cmdline)
    assert rc == 1 and out == ""
    [line] = err.splitlines()
    assert line.startswith("zswap: error: ") and expected in line, line
    assert "unknown zpool" not in line


def test_params_refuses_an_undeclared_option_whichever_plugin_it_names(
    reg: Registry, init_pool: None
) -> None:
    # initpool is not the zpool here; params loads it to show it, and only then can
    # the typo be seen. Before, the load's "ignored" log line was all the user got.
    rc, out, err = invoke("params", "--cmdline", "zswap.zpool=zbud initpool.colour=blue")
    assert rc == 1 and out == ""
    [line] = err.splitlines()
    assert line.startswith("zswap: error: --cmdline: initpool.colour=blue"), line
