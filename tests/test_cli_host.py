"""``zswap host``: this machine's real zswap state, read here independently and compared."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from zswap_core.cli import _host, cli
from zswap_core.kernels import HostState

PARAMS = "/sys/module/zswap/parameters"
needs_zswap = pytest.mark.skipif(not os.path.isdir(PARAMS), reason="this kernel has no zswap")


def zswap(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZSWAP_")}
    return subprocess.run(
        [sys.executable, "-m", "zswap_core.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


# -- independent readings (no zswap_core code) -------------------------------------------


def sysfs_params() -> dict[str, str]:
    return {n: Path(PARAMS, n).read_text().strip() for n in sorted(os.listdir(PARAMS))}


def crypto_compressors() -> list[str]:
    names, name = set(), None
    for line in Path("/proc/crypto").read_text().splitlines():
        if line.startswith("name"):
            name = line.split(":", 1)[1].strip()
        elif line.startswith("type") and line.split(":", 1)[1].strip() in (
            "compression",
            "scomp",
            "acomp",
        ):
            names.add(name)
    return sorted(n for n in names if n)


def meminfo_bytes() -> dict[str, int]:
    out = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("MemTotal", "Zswap", "Zswapped"):
            out[key] = int(rest.split()[0]) * 1024
    return out


def vmstat() -> dict[str, int]:
    out = {}
    for line in Path("/proc/vmstat").read_text().splitlines():
        k, v = line.split()
        if k in ("zswpin", "zswpout", "zswpwb", "pswpin", "pswpout"):
            out[k] = int(v)
    return out


@needs_zswap
def test_host_json_shows_this_kernels_real_values() -> None:
    before_mem, before_vm = meminfo_bytes(), vmstat()
    r = zswap("host", "--json")
    after_mem, after_vm = meminfo_bytes(), vmstat()
    assert r.returncode == 0, r.stderr
    js = json.loads(r.stdout)
    assert js["release"] == os.uname().release
    assert js["params"] == sysfs_params()
    assert js["compressors"] == crypto_compressors()
    assert js["meminfo"]["MemTotal"] == before_mem["MemTotal"]
    for k, v in js["meminfo"].items():
        if before_mem[k] == after_mem[k]:  # a gauge that did not move meanwhile
            assert v == before_mem[k], k
    assert set(js["vmstat"]) == set(before_vm)
    for k, v in js["vmstat"].items():  # event counters only grow
        assert before_vm[k] <= v <= after_vm[k], k
    if not os.access("/sys/kernel/debug/zswap", os.R_OK):
        assert js["debugfs"] is None and "/sys/kernel/debug/zswap" in js["debugfs_why"]
    prof = js["profile"]
    assert prof["params"] == sorted(sysfs_params())
    assert prof["codec_levels"] is False
    if "zpool" not in sysfs_params():  # 6.18+: zsmalloc only, as the kernel
        assert prof["zpools"] == ["zsmalloc"]


@needs_zswap
def test_host_text_uses_the_kernels_paths() -> None:
    r = zswap("host")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"kernel: {os.uname().release}"
    for name, value in sysfs_params().items():
        assert f"{PARAMS}/{name}: {value}" in lines
    for k in ("zswpin", "zswpout"):
        assert any(line.startswith(f"/proc/vmstat {k} ") for line in lines)
    assert any(line.startswith("/proc/meminfo Zswap: ") for line in lines)
    assert f"/proc/crypto compression algorithms: {' '.join(crypto_compressors())}" in lines


def test_watch_prints_rates_on_this_machine() -> None:
    r = zswap("host", "--watch", "0.2", "--count", "2")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 3, lines  # the header and two lines of rates
    head = lines[0].split()
    assert head[0] == "seconds" and "zswpin/s" in head and "zswpout/s" in head
    for line in lines[1:]:
        values = [float(x) for x in line.split()]
        assert len(values) == len(head)  # one number under each column
        assert values[0] > 0  # seconds since the start
    r = zswap("host", "--watch", "0.2", "--count", "2", "--json")
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(rows) == 2 and "zswpout" in rows[0]["rates_per_s"]


def _state(t: float, vm: dict[str, int], mem: dict[str, int]) -> HostState:
    return HostState(
        root="/",
        release="6.18.0",
        version=(6, 18),
        params={},
        compressors=(),
        loadable_compressors=(),
        meminfo=mem,
        vmstat=vm,
        debugfs=None,
        debugfs_why="x",
        monotonic=t,
    )


def test_watch_rates_are_per_second_deltas(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scripted readings two seconds apart: the rates are exact."""
    readings = [
        _state(10.0, {"zswpin": 0, "zswpout": 100}, {"Zswap": 4096, "Zswapped": 16384}),
        _state(12.0, {"zswpin": 10, "zswpout": 500}, {"Zswap": 8192, "Zswapped": 16384}),
        _state(14.0, {"zswpin": 10, "zswpout": 900}, {"Zswap": 0, "Zswapped": 0}),
    ]
    it = iter(readings)
    import zswap_core.kernels as kernels

    monkeypatch.setattr(kernels, "read_host", lambda root="/": next(it))
    monkeypatch.setattr(_host.time, "sleep", lambda s: None)
    r = CliRunner().invoke(cli, ["host", "--watch", "2", "--count", "2", "--json"])
    assert r.exit_code == 0, r.output
    rows: list[dict[str, Any]] = [json.loads(line) for line in r.output.splitlines()]
    assert [row["rates_per_s"] for row in rows] == [
        {"zswpin": 5.0, "zswpout": 200.0},
        {"zswpin": 0.0, "zswpout": 200.0},
    ]
    assert [row["meminfo_delta_bytes_per_s"] for row in rows] == [
        {"Zswap": 2048.0, "Zswapped": 0.0},
        {"Zswap": -4096.0, "Zswapped": -8192.0},
    ]
    assert rows[1]["meminfo_bytes"] == {"Zswap": 0, "Zswapped": 0}
    it = iter(readings)
    r = CliRunner().invoke(cli, ["host", "--watch", "2", "--count", "1"])
    assert r.exit_code == 0, r.output
    head, row = r.output.splitlines()
    cells = dict(zip(head.split(), row.split(), strict=False))
    assert float(cells["zswpin/s"]) == 5.0 and float(cells["zswpout/s"]) == 200.0
    assert float(cells["Zswap_KiB"]) == 8 and float(cells["dZswap_KiB/s"]) == 2.0


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--count", "2"], "--count needs --watch"),
        (["--watch", "0"], "--watch"),
        (["--watch", "nan"], "--watch"),
        (["--watch", "1", "--count", "0"], "--count"),
    ],
)
def test_bad_host_options_are_one_line_errors(args: list[str], needle: str) -> None:
    r = zswap("host", *args)
    assert r.returncode in (1, 2)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zswap: error: ") and needle in lines[0]


def test_host_help_has_examples() -> None:
    r = zswap("host", "--help")
    assert r.returncode == 0 and "Examples:" in r.stdout and "zswap host --watch" in r.stdout
