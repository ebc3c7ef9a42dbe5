"""``zswap run`` in a subprocess: the report, the sources, --set and the error paths."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SMALL = ["--pages", "600", "--resident", "150", "--accesses", "4000"]


def zswap(
    *args: str, code: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZSWAP_")}
    cmd = [sys.executable, "-m", "zswap_core.cli", *args]
    if code is not None:  # run `code`, then the CLI with args, in one interpreter
        cmd = [
            sys.executable,
            "-c",
            code + f"\nfrom zswap_core.cli import main\nraise SystemExit(main({list(args)!r}))",
        ]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


def run_json(*args: str) -> dict[str, Any]:
    r = zswap("run", *args, "--json")
    assert r.returncode == 0, r.stderr
    out: dict[str, Any] = json.loads(r.stdout)
    return out


def assert_one_line_error(r: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("zswap: error: ")
    for n in needles:
        assert n in lines[0], lines[0]
    assert "Traceback" not in r.stderr


def test_default_run_json() -> None:
    r = run_json(*SMALL)
    assert r["pages_verified"] > 0
    assert r["vmstat"]["zswpout"] > 0 and r["vmstat"]["zswpin"] > 0
    for key in (
        "pool_limit_hit",
        "reject_compress_poor",
        "written_back_pages",
        "pool_total_size",
        "stored_pages",
        "same_filled_pages",
        "duplicate_entry",
    ):
        assert key in r["stats"]
    assert set(r["vmstat"]) >= {"pswpin", "pswpout", "zswpin", "zswpout", "zswpwb"}
    # the default RAM is sized so that the pool limit is hit and writeback runs
    assert r["stats"]["pool_limit_hit"] > 0
    assert r["stats"]["written_back_pages"] > 0 and r["vmstat"]["zswpwb"] > 0
    assert r["params"]["compressor"] == "lz4" and r["params"]["enabled"] == "Y"
    pool = r["pools"][0]
    assert pool["current"] and pool["entries"] > 0 and pool["density"] > 0
    assert r["compression_ratio"] > 0  # tiny pools: allocator overhead can exceed the gain
    lat = r["latency_us"]
    assert lat["store"]["count"] > 0 and 0 < lat["store"]["p50"] <= lat["store"]["p99"]
    assert lat["load"]["count"] > 0 and 0 < lat["load"]["p50"] <= lat["load"]["p99"]
    assert r["faults"]["writes"] > 0
    assert r["workload"]["compact_every"] == 0 and "pages_compacted" in r["stats"]


def test_run_is_deterministic_in_its_counts() -> None:
    args = [*SMALL, "--ram", "1G", "--seed", "3"]
    a, b = run_json(*args), run_json(*args)
    assert a["stats"] == b["stats"] and a["faults"] == b["faults"]


def test_human_report() -> None:
    r = zswap("run", *SMALL)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for head in (
        "/sys/module/zswap/parameters/",
        "/sys/kernel/debug/zswap/",
        "/proc/vmstat",
        "pools",
        "summary",
    ):
        assert f"\n{head}\n" in out
    assert "pages_verified" in out and "store_p99_us" in out
    assert "\x1b[" not in out  # no progress bar or colours when stdout is not a terminal


def test_cmdline(tmp_path: Path) -> None:
    r = run_json(*SMALL, "--cmdline", "zswap.compressor=lz4hc zswap.max_pool_percent=30")
    assert r["params"]["compressor"] == "lz4hc" and r["params"]["max_pool_percent"] == "30"
    assert r["pools"][0]["compressor"] == "lz4hc"


def test_file_source(tmp_path: Path) -> None:
    f = tmp_path / "data.txt"
    f.write_text("".join(f"line {i} of some text to swap\n" for i in range(20000)))
    r = run_json("--source", "files", str(f), *SMALL)
    assert r["workload"]["source"].startswith("files:")
    assert r["pages_verified"] > 0 and r["vmstat"]["zswpout"] > 0
    r2 = run_json("--file", str(f), *SMALL)  # --file implies --source files
    assert r2["workload"]["source"] == r["workload"]["source"]


PATTERN = b"zswap-cli-pid-pattern."


@pytest.fixture
def child_pid() -> Iterator[int]:
    code = (
        "import time\n"
        f"buf = bytearray({PATTERN!r} * ((2 << 20) // {len(PATTERN)}))\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc")
def test_pid_source(child_pid: int) -> None:
    r = run_json(
        "--pid", str(child_pid), "--pages", "2000", "--resident", "400", "--accesses", "6000"
    )
    assert r["workload"]["source"].startswith(f"process {child_pid}:")
    assert r["pages_verified"] > 0 and r["vmstat"]["zswpout"] > 0


def test_set_changes_compressor_mid_run() -> None:
    r = run_json(
        *SMALL,
        "--ram",
        "1G",
        "--set",
        "50%:compressor=lz4hc",
        "--set",
        "80%:zswap.max_pool_percent=25",
    )
    assert r["params"]["compressor"] == "lz4hc"
    assert r["params"]["max_pool_percent"] == "25"
    comps = {p["compressor"] for p in r["pools"]}
    assert comps == {"lz4", "lz4hc"}
    assert [p["compressor"] for p in r["pools"] if p["current"]] == ["lz4hc"]
    assert r["sets"][0]["at_access"] == 2000 and r["sets"][1]["at_access"] == 3200
    assert r["pages_verified"] > 0


def test_help_has_examples() -> None:
    r = zswap("run", "--help")
    assert r.returncode == 0
    assert "Examples:" in r.stdout and "zswap run --set 50%:compressor=zstd" in r.stdout


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--cmdline", "zswap.compressor=nosuch"], ["unknown compressor 'nosuch'"]),
        (["--cmdline", "zswap.zpool=nosuch"], ["unknown zpool 'nosuch'"]),
        (["--cmdline", "zswap.max_pool_percent=200"], ["max_pool_percent"]),
        (["--set", "50:compressor=lz4hc"], ["--set", "PERCENT%:PARAM=VALUE"]),
        (["--set", "150%:compressor=lz4hc"], ["percent must be 0..100"]),
        (["--set", "50%:nosuch=1"], ["no parameter 'nosuch'"]),
        (["--set", "50%:compressor=nosuch"], ["unknown compressor 'nosuch'"]),
        (["--set", "50%:enabled=maybe"], ["not a bool"]),
        (["--source", "files", "/nonexistent/file"], ["/nonexistent/file: No such file"]),
        (["--pid", str(2**22 + 4321)], [f"pid {2**22 + 4321}: no such process"]),
        (["--pages", "lots"], ["--pages"]),
        (["--ram", "lots"], ["bad size"]),
        (["--resident", "5000", "--pages", "100"], ["--resident"]),
    ],
)
def test_errors_are_one_line(args: list[str], needles: list[str]) -> None:
    assert_one_line_error(zswap("run", *args), *needles)


def test_unreadable_file_is_one_line(tmp_path: Path) -> None:
    f = tmp_path / "secret"
    f.write_bytes(b"x" * 100)
    f.chmod(0)
    # root reads anything: make open() refuse this one file, as it would for a user
    deny = (
        "import builtins\n"
        "_open = builtins.open\n"
        "def _deny(p, *a, **k):\n"
        f"    if str(p) == {str(f)!r}:\n"
        "        raise PermissionError(13, 'Permission denied', str(p))\n"
        "    return _open(p, *a, **k)\n"
        "builtins.open = _deny\n"
    )
    r = zswap("run", "--source", "files", str(f), code=deny if os.geteuid() == 0 else "")
    assert_one_line_error(r, "secret: Permission denied")


def test_pid_permission_denied_is_one_line(child_pid: int) -> None:
    if os.geteuid() != 0:
        r = zswap("run", "--pid", "1")
        if r.returncode == 0:
            pytest.skip("this user may ptrace pid 1")
        assert_one_line_error(r, "pid 1", "permission denied")
        return
    # as root ptrace is allowed: refuse /proc/PID/mem as the kernel would for a user
    deny = (
        "import os\n"
        "_open = os.open\n"
        "def _deny(p, *a, **k):\n"
        "    if str(p).endswith('/mem'):\n"
        "        raise PermissionError(13, 'Permission denied', p)\n"
        "    return _open(p, *a, **k)\n"
        "os.open = _deny\n"
    )
    r = zswap("run", "--pid", str(child_pid), code=deny)
    assert_one_line_error(r, f"pid {child_pid}", "permission denied")


def test_pid_permission_denied_for_real_user(child_pid: int) -> None:
    """As an unprivileged user, another user's process cannot be read."""
    if os.geteuid() != 0 or not hasattr(os, "setuid"):
        pytest.skip("needs root to switch to another user")

    def drop() -> None:
        os.setgid(65534)
        os.setuid(65534)

    env = {k: v for k, v in os.environ.items() if not k.startswith("ZSWAP_")}
    try:
        r = subprocess.run(
            [sys.executable, "-m", "zswap_core.cli", "run", "--pid", str(child_pid)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            preexec_fn=drop,
            cwd="/",
        )
    except PermissionError:
        pytest.skip("the interpreter is not executable by user nobody")
    if "zswap: error:" not in r.stderr:
        pytest.skip(f"the CLI cannot run as user nobody here: {r.stderr.strip()[-200:]}")
    assert_one_line_error(r, f"pid {child_pid}", "permission denied")
