"""``zswap lsmod``, ``modinfo``, ``params``, ``stats`` and --help in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import zswap_core


def zswap(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZSWAP_")}
    env.update(extra)
    return subprocess.run(
        [sys.executable, "-m", "zswap_core.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_lsmod_lists_every_installed_plugin() -> None:
    r = zswap("lsmod")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:5] == ["Module", "Kind", "Distribution", "Version", "State"]
    names = {line.split()[0] for line in lines[1:]}
    assert names == {p.name for p in zswap_core.list_plugins()} | {"zswap"}
    js = json.loads(zswap("lsmod", "--json").stdout)
    lz4 = next(p for p in js if p["name"] == "lz4")
    assert lz4["kind"] == "compressor" and lz4["distribution"] == "zswap-lz4"
    assert lz4["state"] == "available" and lz4["used_by"] == 0  # nothing loaded: fresh process
    assert lz4["backend"] == "?"  # not imported yet: not known


@pytest.mark.parametrize("backend", ["native", "python"])
def test_lsmod_and_modinfo_show_each_parts_backend(backend: str) -> None:
    """The built-in module's backend, and each plugin's once it is loaded."""
    from zswap_core._backend import NATIVE_ERROR

    if backend == "native" and NATIVE_ERROR is not None:
        pytest.skip(NATIVE_ERROR)
    env = {"ZSWAP_BACKEND": backend}
    js = {p["name"]: p for p in json.loads(zswap("lsmod", "--json", **env).stdout)}
    assert js["zswap"]["kind"] == "built-in" and js["zswap"]["backend"] == backend
    assert js["zsmalloc"]["backend"] == "?"  # not imported yet: not known
    js = {p["name"]: p for p in json.loads(zswap("lsmod", "--load", "--json", **env).stdout)}
    assert js["zsmalloc"]["backend"] == backend  # the C zsmalloc exports its ops table
    assert js["zbud"]["backend"] == "python"  # a Python allocator
    # codecs: their C ops on the native core (the lz4 plugin's are built here)
    assert js["lz4"]["backend"] == backend
    table = zswap("lsmod", "--load", **env).stdout.splitlines()
    assert table[0].split()[7] == "Backend"  # after "Used by"
    row = next(line.split() for line in table if line.startswith("zsmalloc "))
    assert row[6] == backend
    info = json.loads(zswap("modinfo", "zsmalloc", "--json", **env).stdout)
    assert info["backend"] == backend
    built_in = json.loads(zswap("modinfo", "zswap", "--json", **env).stdout)
    assert built_in["backend"].startswith(backend)


def test_modinfo_plugin() -> None:
    r = zswap("modinfo", "lz4hc")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for field in (
        "name:",
        "kind:",
        "distribution:",
        "version:",
        "api_version:",
        "description:",
        "state:",
        "used_by:",
        "parm:",
    ):
        assert field in out
    assert "level:" in out and "(int) = 9" in out
    info = json.loads(zswap("modinfo", "lz4hc", "--json").stdout)
    assert info["state"] == "loaded" and info["parameters"][0]["name"] == "level"


def test_modinfo_builtin_zswap() -> None:
    r = zswap("modinfo", "zswap", "--json")
    assert r.returncode == 0, r.stderr
    names = [p["name"] for p in json.loads(r.stdout)["parameters"]]
    assert {"enabled", "compressor", "zpool", "max_pool_percent"} <= set(names)


def test_params_sysfs_form() -> None:
    r = zswap(
        "params",
        "--cmdline",
        "zswap.compressor=lz4hc zswap.max_pool_percent=33 "
        "zswap.same_filled_pages_enabled=N lz4hc.level=4",
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "/sys/module/zswap/parameters/compressor: lz4hc" in lines
    assert "/sys/module/zswap/parameters/max_pool_percent: 33" in lines
    assert "/sys/module/zswap/parameters/same_filled_pages_enabled: N" in lines
    assert "/sys/module/zswap/parameters/enabled: Y" in lines
    # codec levels are ours: no kernel has them, and the line says so
    assert "/sys/module/lz4hc/parameters/level: 4   (simulator only)" in lines
    default = zswap("params", "--json")
    assert json.loads(default.stdout)["zswap"]["compressor"] == "lz4"


def test_stats_debugfs_and_zsmalloc_classes() -> None:
    if "zsmalloc" not in {p.name for p in zswap_core.list_plugins()}:
        pytest.skip("zsmalloc is not installed")
    r = zswap("stats", "--pages", "500", "--cmdline", "zswap.zpool=zsmalloc")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "/sys/kernel/debug/zswap/stored_pages:" in out
    assert "/sys/kernel/debug/zswap/same_filled_pages:" in out
    assert "/sys/kernel/debug/zsmalloc/zswap" in out and "/classes" in out
    header = next(line for line in out.splitlines() if line.split()[:2] == ["class", "size"])
    for col in ("obj_allocated", "obj_used", "pages_used", "pages_per_zspage", "freeable"):
        assert col in header
    assert any(line.split()[0] == "Total" for line in out.splitlines() if line.strip())
    js = json.loads(zswap("stats", "--pages", "300", "--json").stdout)
    assert js["stats"]["stored_pages"] > 0


@pytest.mark.parametrize("cmd", ["", "run", "compare", "lsmod", "modinfo", "params", "stats"])
def test_help_with_examples(cmd: str) -> None:
    r = zswap(*([cmd] if cmd else []), "--help")
    assert r.returncode == 0, r.stderr
    assert "Usage:" in r.stdout and "Examples:" in r.stdout
    assert f"zswap {cmd}" in r.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["modinfo", "nosuch"], "module 'nosuch' not found"),
        (["modinfo"], "Missing argument"),
        (["params", "--cmdline", "zswap.nosuch=1"], "no parameter 'nosuch'"),
        (["params", "--cmdline", 'zswap.compressor="unterminated'], "--cmdline"),
        (["params", "--cmdline", "zswap.compressor=nosuch"], "unknown compressor 'nosuch'"),
        (["stats", "--cmdline", "zswap.zpool=nosuch"], "unknown zpool 'nosuch'"),
        (["nosuchcommand"], "No such command"),
    ],
)
def test_errors_are_one_line(args: list[str], needle: str) -> None:
    r = zswap(*args)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zswap: error: ") and needle in lines[0], lines


def test_version() -> None:
    r = zswap("--version")
    assert r.returncode == 0 and r.stdout.startswith("zswap, version ")


@pytest.mark.skipif(not zswap_core.crypto_has_comp("lzo-rle"), reason="needs the lzo plugin")
def test_lsmod_and_modinfo_label_an_alias() -> None:
    js = {p["name"]: p for p in json.loads(zswap("lsmod", "--load", "--json").stdout)}
    assert js["lzo-rle"]["alias_of"] == "lzo" and js["lzo"]["alias_of"] is None
    row = next(line for line in zswap("lsmod", "--load").stdout.splitlines() if "lzo-rle" in line)
    assert "alias of lzo" in row
    info = json.loads(zswap("modinfo", "lzo-rle", "--json").stdout)
    assert info["alias_of"].startswith("lzo ")
    assert "alias_of" not in json.loads(zswap("modinfo", "lzo", "--json").stdout)
