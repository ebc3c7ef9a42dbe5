"""``zswap lsmod``, ``modinfo``, ``params``, ``stats`` and --help in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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


@pytest.mark.parametrize(
    "cmd", ["", "run", "compare", "host", "lsmod", "modinfo", "params", "stats"]
)
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


# -- simulator-only knobs are marked; stats takes run's sources (issue 16) ---------------

MARK = "   (simulator only)"


def test_params_mark_what_no_kernel_has() -> None:
    r = zswap("params", "--cmdline", "zswap.compressor=zstd zstd.level=5")
    assert r.returncode == 0, r.stderr
    marked = {
        line.removesuffix(MARK).split(":")[0] for line in r.stdout.splitlines() if MARK in line
    }
    assert marked == {
        "/sys/module/zswap/parameters/checksums_enabled",
        "/sys/module/zswap/parameters/shared_zpool",
        "/sys/module/zstd/parameters/level",
        "/sys/module/zsmalloc/parameters/chain_size",
    }
    # kernel parameters (of some release) are not marked, and keep their plain form
    lines = r.stdout.splitlines()
    assert "/sys/module/zswap/parameters/compressor: zstd" in lines
    assert "/sys/module/zswap/parameters/exclusive_loads: N" in lines
    assert "/sys/module/zstd/parameters/level: 5" + MARK in lines
    # JSON keeps {module: {param: value}}
    js = json.loads(zswap("params", "--json").stdout)
    assert js["zswap"]["checksums_enabled"] == "N"


def test_stats_marks_counters_no_kernel_has() -> None:
    r = zswap("stats", "--pages", "64", "--cmdline", "zswap.zpool=zbud")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    counters = [line for line in lines if line.startswith("/sys/kernel/debug/zswap/")]
    assert [c for c in counters if c.endswith(MARK)] == [
        next(c for c in counters if c.startswith(f"/sys/kernel/debug/zswap/{name}:"))
        for name in ("pages_compacted", "shrinker_written_back_pages")
    ]
    assert "/sys/kernel/debug/zswap/stored_pages:" in r.stdout
    # the kernel's zbud has no debugfs directory
    assert any(line.startswith("/sys/kernel/debug/zbud/") and line.endswith(MARK) for line in lines)


def _stored(js: dict[str, object]) -> int:
    st = js["stats"]
    assert isinstance(st, dict)
    return int(st["stored_pages"]) + int(st["reject_compress_poor"])


def test_stats_takes_files_as_run_does(tmp_path: Path) -> None:
    """A 5-page file gives 5 pages, never padded to --pages with made-up ones."""
    f = tmp_path / "five.bin"
    f.write_bytes((b"hello zswap " * 4096)[: 4 * 4096 + 100])  # the last page partly
    assert -(-f.stat().st_size // 4096) == 5
    for args in ([str(f)], ["--file", str(f)], ["--source", "files", str(f)]):
        r = zswap("stats", "--json", "--pages", "100", *args)
        assert r.returncode == 0, r.stderr
        js = json.loads(r.stdout)
        assert js["pages"] == 5 and _stored(js) == 5, js
        assert js["source"].startswith("files: 5 pages")
    r = zswap("stats", "--pages", "100", str(f))
    assert r.returncode == 0 and "using 5 pages, not 100" in r.stderr
    js = json.loads(zswap("stats", "--json", "--pages", "3", str(f)).stdout)
    assert js["pages"] == 3 and _stored(js) == 3


def test_stats_takes_a_live_process() -> None:
    code = (
        "import mmap, sys\n"
        "m = mmap.mmap(-1, 64 * 4096)\n"
        "for i in range(64): m[i * 4096:(i + 1) * 4096] = bytes([i + 1]) * 2048 + b'x' * 2048\n"
        "print('ready', flush=True); sys.stdin.read()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        r = zswap("stats", "--json", "--pid", str(child.pid), "--pages", "50")
        if r.returncode != 0 and "permission" in r.stderr.lower():
            pytest.skip(r.stderr.strip())
        assert r.returncode == 0, r.stderr
        js = json.loads(r.stdout)
        assert js["pages"] == 50 and _stored(js) == 50
        assert str(child.pid) in js["source"]
    finally:
        child.kill()
        child.wait()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--source", "synthetic", "README.md"], "--source synthetic takes no files"),
        (["--source", "files"], "needs at least one PATH"),
        (["--source", "pid"], "--pid"),
        (["--pid", "1", "README.md"], "--pid takes no files"),
        (["/nonexistent/zswap-file"], "/nonexistent/zswap-file"),
    ],
)
def test_stats_bad_sources_are_one_line_errors(args: list[str], needle: str) -> None:
    r = zswap("stats", *args)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zswap: error: ") and needle in lines[0], lines
