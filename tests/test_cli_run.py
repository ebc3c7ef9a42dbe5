"""``zswap run`` in a subprocess: the report, the sources, --set and the error paths."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import random
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import CLI_ENTRY as ENTRY

SMALL = ["--pages", "600", "--resident", "150", "--accesses", "4000"]


def zswap(
    *args: str, code: str | None = None, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ZSWAP_")}, **(env or {})}
    cmd = [sys.executable, "-m", "zswap_core.cli", *args]
    if code is not None:  # run `code`, then the CLI with args, in one interpreter
        cmd = [
            sys.executable,
            "-c",
            code + f"\nfrom zswap_core.cli import main\nraise SystemExit(main({list(args)!r}))",
        ]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


def run_json(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    r = zswap("run", *args, "--json", env=env)
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
    assert pool["current"] and pool["entries"] > 0 and pool["pool_density"] > 0
    assert "compression_ratio" not in r  # one vocabulary: codec ratio, pool density, saved
    assert r["codec_ratio"] > 1 and r["pool_density"] > 0
    # tiny pools: allocator overhead can exceed the gain, so saved may be negative
    assert isinstance(r["saved_bytes"], int) and isinstance(r["saved_percent"], float)
    assert r["metadata_bytes_per_entry"] > 0
    assert r["workload"]["writeback"] == "sync" and r["interrupted"] is False
    assert r["workload"]["accesses_done"] == r["workload"]["accesses"] == 4000
    lat = r["latency_us"]
    assert lat["store"]["count"] > 0 and 0 < lat["store"]["p50"] <= lat["store"]["p99"]
    assert lat["load"]["count"] > 0 and 0 < lat["load"]["p50"] <= lat["load"]["p99"]
    assert r["faults"]["writes"] > 0
    assert r["workload"]["compact_every"] == 0 and "pages_compacted" in r["stats"]


COUNTS = ("stats", "vmstat", "faults", "pools", "codec_ratio", "pool_density", "saved_bytes")


@pytest.mark.parametrize("backend", ["native", "python"])
def test_the_same_seed_gives_the_same_counters(backend: str) -> None:
    """With the pool limit hit and writeback running: the writeback is synchronous in the
    command (between two accesses), so nothing depends on when a thread runs."""
    args = [*SMALL, "--seed", "3"]
    env = {"ZSWAP_BACKEND": backend}
    a, b = run_json(*args, env=env), run_json(*args, env=env)
    assert a["stats"]["written_back_pages"] > 0 and a["stats"]["pool_limit_hit"] > 0
    for key in COUNTS:
        a_value = [{**p, "name": ""} for p in a[key]] if key == "pools" else a[key]
        b_value = [{**p, "name": ""} for p in b[key]] if key == "pools" else b[key]
        assert a_value == b_value, key
    assert a["vmstat"]["zswpwb"] == a["stats"]["written_back_pages"]
    # another seed, other counters: the comparison above can fail
    c = run_json(*SMALL, "--seed", "4", env=env)
    assert c["stats"] != a["stats"]


def test_async_writeback_is_a_flag() -> None:
    r = run_json(*SMALL, "--seed", "3", "--async-writeback")
    assert r["workload"]["writeback"] == "async"
    assert r["stats"]["pool_limit_hit"] > 0 and r["vmstat"]["zswpwb"] > 0
    assert r["pages_verified"] > 0
    assert "--async-writeback" in zswap("run", "--help").stdout


def test_human_report() -> None:
    r = zswap("run", *SMALL)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for head in (
        "/sys/module/zswap/parameters/",
        "/sys/kernel/debug/zswap/",
        "/proc/vmstat",
        "pools",
        "summary (the pages zswap holds)",
    ):
        assert f"\n{head}\n" in out
    assert "pages_verified" in out and "store_p99_us" in out
    assert "codec_ratio" in out and "pool_density" in out and "saved " in out
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
        (["--group", "a b"], ["--group 'a b'", "group name"]),
        (["--group", "web:max=lots"], ["bad size"]),
        (["--group", "web:limit=1M"], ["NAME[:max=SIZE][:writeback=0|1]"]),
        (["--group", "web:writeback=2"], ["writeback must be 0 or 1"]),
        (["--group", "web", "--group", "web"], ["named twice"]),
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


# -- edge cases: figures that are undefined are n/a (null), never a division by zero -------


def page_file(tmp_path: Path, kind: str, pages: int) -> Path:
    f = tmp_path / f"{kind}.bin"
    data = random.Random(7).randbytes(pages * 4096) if kind == "random" else bytes(pages * 4096)
    f.write_bytes(data)
    return f


EDGE = ["--pages", "64", "--resident", "16", "--accesses", "640", "--writes", "0"]


def summary_lines(out: str) -> dict[str, str]:
    """The human report's summary section, name -> value text."""
    tail = out.split("\nsummary", 1)[1].splitlines()[1:]
    return {line.split()[0]: line.split(None, 1)[1] for line in tail if line.startswith("  ")}


def test_all_pages_random_gives_na_not_a_division_by_zero(tmp_path: Path) -> None:
    f = page_file(tmp_path, "random", 64)
    r = run_json("--file", str(f), *EDGE)
    assert r["stats"]["stored_pages"] == 0 and r["stats"]["reject_compress_poor"] > 0
    assert r["vmstat"]["zswpin"] == 0 and r["vmstat"]["pswpin"] > 0 and r["pages_verified"] > 0
    assert r["codec_ratio"] is None and r["pool_density"] is None
    assert r["saved_bytes"] == 0 and r["saved_percent"] is None
    assert r["latency_us"]["load"] == {"count": 0, "p50": None, "p99": None}
    assert r["latency_us"]["store"] == {"count": 0, "p50": None, "p99": None}
    human = zswap("run", "--file", str(f), *EDGE)
    assert human.returncode == 0, human.stderr
    s = summary_lines(human.stdout)
    assert s["codec_ratio"] == s["pool_density"] == s["load_p50_us"] == s["load_p99_us"] == "n/a"
    assert s["saved"] == "0 B (n/a)"


def test_all_pages_zero_saves_everything(tmp_path: Path) -> None:
    f = page_file(tmp_path, "zero", 64)
    r = run_json("--file", str(f), *EDGE)
    st = r["stats"]
    assert st["stored_pages"] == st["same_filled_pages"] > 0 and st["pool_total_size"] == 0
    assert r["codec_ratio"] is None and r["pool_density"] is None  # nothing was compressed
    # the newest kernel keeps zero pages in the swap core (no zswap entry): 100% saved
    assert r["zero_pages_cost_metadata"] is False
    assert r["saved_bytes"] == st["stored_pages"] * 4096 and r["saved_percent"] == 100.0
    s = summary_lines(zswap("run", "--file", str(f), *EDGE).stdout)
    assert s["saved"].endswith("(100.0%)") and s["codec_ratio"] == "n/a"


def test_same_filled_pages_that_are_not_zero_pay_their_metadata(tmp_path: Path) -> None:
    f = tmp_path / "ones.bin"
    f.write_bytes(b"\x01" * 64 * 4096)
    r = run_json("--file", str(f), *EDGE)
    stored = r["stats"]["same_filled_pages"]
    assert stored > 0 and r["stats"]["stored_pages"] == stored
    meta = r["metadata_bytes_per_entry"]
    assert r["saved_bytes"] == stored * (4096 - meta)
    assert r["saved_percent"] == round(100 * (4096 - meta) / 4096, 2)


def test_zswap_disabled_gives_na() -> None:
    r = run_json(*SMALL, "--cmdline", "zswap.enabled=0")
    assert r["params"]["enabled"] == "N"
    assert r["stats"]["stored_pages"] == 0 and r["vmstat"]["zswpout"] == 0
    assert r["codec_ratio"] is None and r["pool_density"] is None
    assert r["saved_bytes"] == 0 and r["saved_percent"] is None
    assert r["latency_us"]["load"]["p50"] is None
    s = summary_lines(zswap("run", *SMALL, "--cmdline", "zswap.enabled=0").stdout)
    assert s["codec_ratio"] == "n/a" and s["saved"] == "0 B (n/a)"


def test_saved_is_what_the_pool_and_the_entries_cost() -> None:
    """saved = stored pages' bytes - pool - metadata of the entries (zero pages free)."""
    r = run_json(*SMALL, "--ram", "1G", "--seed", "5")
    st, meta = r["stats"], r["metadata_bytes_per_entry"]
    cost = st["pool_total_size"] + st["stored_pages"] * meta
    held = st["stored_pages"] * 4096
    # zero pages (a tenth of the synthetic mix) cost no entry: saved is at least this
    assert held - cost <= r["saved_bytes"] <= held - st["pool_total_size"]
    assert r["saved_percent"] == round(100 * r["saved_bytes"] / held, 2)
    assert r["pool_density"] == round(
        (st["stored_pages"] - st["same_filled_pages"]) / (st["pool_total_size"] // 4096), 3
    )
    assert 1.5 < r["codec_ratio"] < 5


# -- --cmdline: every name and value is checked ----------------------------------------------


@pytest.mark.parametrize(
    ("cmdline", "needles"),
    [
        ("zwsap.compressor=zstd", ["zwsap.compressor=zstd", "no module named 'zwsap'", "'zswap'"]),
        ("zswap.compresor=lz4", ["no parameter 'compresor'"]),
        ("lz4.levle=3", ["lz4.levle=3", "no parameter 'levle'"]),
        ("zstd.lvel=3", ["zstd.lvel=3", "no parameter 'lvel'", "(did you mean zstd.level?)"]),
        # zstd is not the compressor here: nothing would load it, yet its value is checked
        ("zstd.level=abc", ["zstd.level=abc", "not an integer"]),
        ("zstd.level=99", ["zstd.level=99", "above 22"]),
        ("zstd.levle=3", ["zstd.levle=3", "no parameter 'levle'"]),
        ("zbud.nosuch=1", ["zbud.nosuch=1", "no parameter 'nosuch'"]),
    ],
)
def test_cmdline_names_and_values_are_checked(cmdline: str, needles: list[str]) -> None:
    r = zswap("run", "--pages", "16", "--accesses", "16", "--cmdline", cmdline)
    assert_one_line_error(r, "--cmdline", *needles)
    assert r.stdout == ""


def test_cmdline_words_of_the_kernel_proper_are_ignored_and_good_values_apply() -> None:
    r = run_json(*SMALL, "--cmdline", "quiet root=/dev/sda1 zstd.level=5 zswap.compressor=zstd")
    assert r["params"]["compressor"] == "zstd"
    r = zswap("params", "--cmdline", "zstd.level=7", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["zstd"]["level"] == "7"  # loaded with the option in force


# -- progress, Ctrl-C and SIGTERM, on a real terminal ------------------------------------------


class OnTerminal:
    """The command with its stderr on a pseudo-terminal and its stdout on a pipe."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 150, 0, 0))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", ENTRY, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=slave,
            env={**env, "TERM": "xterm-256color"},
            start_new_session=True,  # its own process group, which Ctrl-C signals
        )
        os.close(slave)
        self.master = master
        self.seen = bytearray()
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 4096)
            except OSError:  # EIO: the last writer closed the terminal
                return
            if not data:
                return
            with self.lock:
                self.seen += data

    def text(self) -> str:
        with self.lock:
            return self.seen.decode(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            m = re.search(pattern, self.text())
            if m:
                return m
            assert self.proc.poll() is None, f"ended early: {self.text()[-400:]!r}"
            assert time.monotonic() < deadline, f"no {pattern!r} in {self.text()[-400:]!r}"
            time.sleep(0.02)

    def finish(self, timeout: float = 60) -> tuple[int, str, str]:
        out, _ = self.proc.communicate(timeout=timeout)
        self.reader.join(timeout=10)
        os.close(self.master)
        return self.proc.returncode, out.decode(), self.text()

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZSWAP_")}
    return {**env, "TMPDIR": str(tmp_path)}


def last_line(terminal_text: str) -> str:
    """The last line written to the terminal, without rich's cursor and erase codes."""
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", terminal_text).replace("\r", "\n")
    return [line for line in plain.splitlines() if line.strip()][-1].strip()


def test_progress_with_eta_on_a_terminal_also_with_json(tmp_path: Path) -> None:
    term = OnTerminal(
        ["run", "--pages", "4000", "--accesses", "200000", "--json"], clean_env(tmp_path)
    )
    try:
        m = term.wait_for(r"zswap run.*?(\d+)/200000 accesses.*?ETA")
        assert int(m.group(1)) >= 1024
        rc, out, _ = term.finish(timeout=120)
    finally:
        term.kill()
    assert rc == 0
    r = json.loads(out)  # stdout is the report alone: the bar went to the terminal
    assert r["interrupted"] is False and r["workload"]["accesses_done"] == 200000


def test_no_progress_when_stderr_is_not_a_terminal() -> None:
    r = zswap("run", *SMALL)
    assert r.returncode == 0 and r.stderr == ""


def test_ctrl_c_prints_the_report_so_far(tmp_path: Path) -> None:
    # 2**40 accesses: the run is still going whenever the signal comes; it comes once the
    # bar shows accesses done, as a person would press Ctrl-C while watching it
    term = OnTerminal(
        ["run", "--pages", "512", "--accesses", str(1 << 40), "--json"], clean_env(tmp_path)
    )
    try:
        term.wait_for(r"[1-9]\d*/\d+ accesses")
        os.killpg(term.proc.pid, signal.SIGINT)
        rc, out, err = term.finish()
    finally:
        term.kill()
    assert rc == 130
    assert last_line(err) == "zswap: interrupted"
    assert "Traceback" not in err
    r = json.loads(out)
    assert r["interrupted"] is True
    done = r["workload"]["accesses_done"]
    assert 1024 <= done < 1 << 40 and r["workload"]["accesses"] == 1 << 40
    assert r["faults"]["faults"] > 0 and r["pages_verified"] > 0
    assert r["vmstat"]["zswpout"] > 0 and r["stats"]["stored_pages"] >= 0
    assert r["final_check_pages"] is None  # not done: the user asked to stop
    assert list(tmp_path.iterdir()) == []  # the swap file is gone


def test_ctrl_c_human_report_says_interrupted(tmp_path: Path) -> None:
    term = OnTerminal(["run", "--pages", "512", "--accesses", str(1 << 40)], clean_env(tmp_path))
    try:
        term.wait_for(r"[1-9]\d*/\d+ accesses")
        os.killpg(term.proc.pid, signal.SIGINT)
        rc, out, _ = term.finish()
    finally:
        term.kill()
    assert rc == 130
    assert f"{1 << 40} accesses (interrupted after " in out
    assert "(interrupted: the figures are those of the run so far)" in out
    assert "\nsummary" in out and list(tmp_path.iterdir()) == []


def test_sigterm_on_a_terminal_removes_the_swap_file_and_prints_no_report(tmp_path: Path) -> None:
    term = OnTerminal(["run", "--pages", "512", "--accesses", str(1 << 40)], clean_env(tmp_path))
    try:
        term.wait_for(r"[1-9]\d*/\d+ accesses")
        assert list(tmp_path.glob("zswap-run-*/swapfile"))
        term.proc.send_signal(signal.SIGTERM)
        rc, out, err = term.finish()
    finally:
        term.kill()
    assert rc == 128 + signal.SIGTERM
    assert last_line(err) == "zswap: terminated (SIGTERM)"
    assert out == "" and list(tmp_path.iterdir()) == []


def test_the_report_marks_what_no_kernel_has() -> None:
    """Under the kernel's paths, exactly the simulator's own knobs and counters are marked."""
    r = zswap("run", "--pages", "256")
    assert r.returncode == 0, r.stderr
    marked = sorted(
        line.split()[0] for line in r.stdout.splitlines() if line.endswith("(simulator only)")
    )
    assert marked == [
        "checksums_enabled",
        "pages_compacted",
        "shared_zpool",
        "shrinker_written_back_pages",
    ]


def test_pools_sharing_a_zpool_are_shown_as_one_zpool() -> None:
    """shared_zpool=Y: the compressors in use share one zpool instance; its size is
    counted once and the density is the shared zpool's."""
    args = ["--pages", "2048", "--cmdline", "zswap.shared_zpool=Y"]
    args += ["--set", "30%:compressor=zstd", "--set", "60%:compressor=deflate"]
    r = run_json(*args)
    pools = r["pools"]
    assert len(pools) >= 2 and len({p["zpool_instance"] for p in pools}) == 1
    assert sum(p["size"] for p in pools) == r["stats"]["pool_total_size"]
    pages = r["stats"]["pool_total_size"] // 4096
    density = round(sum(p["entries"] for p in pools) / pages, 3)
    assert all(p["pool_density"] == density for p in pools)
    text = zswap("run", *args).stdout
    assert "zpool_instance" in text
    assert "zpool_instance" not in zswap("run", "--pages", "2048").stdout


@pytest.mark.parametrize("backend", ["native", "python"])
def test_groups_model_a_hosts_cgroups(backend: str) -> None:
    """--group: pages shared among the leaves, each group's memory.stat in the report.
    Every store and load is some leaf's, so the leaves' events add up to /proc/vmstat;
    a parent is the sum of its children; max=0 keeps a group out; writeback=0 writes
    none of its pages back and keeps refused ones in RAM; the same seed gives the same
    groups' counters."""
    args = [
        *SMALL,
        "--seed", "5",
        "--group", "web:max=64K",
        "--group", "batch:writeback=0",
        "--group", "sys/a",
        "--group", "sys/b:max=0",
    ]  # fmt: skip
    env = {"ZSWAP_BACKEND": backend}
    r = run_json(*args, env=env)
    groups = {g["group"]: g for g in r["groups"]}
    assert list(groups) == ["web", "batch", "sys", "sys/a", "sys/b"]
    leaves = [groups[n] for n in ("web", "batch", "sys/a", "sys/b")]
    vm = r["vmstat"]
    for key in ("zswpout", "zswpin", "zswpwb"):
        assert sum(g[key] for g in leaves) == vm[key] > 0, key
    for key in ("zswap", "zswapped", "zswpin", "zswpout", "zswpwb", "current"):
        assert groups["sys"][key] == groups["sys/a"][key] + groups["sys/b"][key], key
    assert groups["sys/b"]["zswpout"] == 0 and groups["sys/b"]["max"] == 0
    assert groups["batch"]["zswpwb"] == 0 and groups["batch"]["writeback"] == 0
    assert groups["web"]["max"] == 65536 and groups["web"]["zswpwb"] > 0
    assert groups["web"]["current"] < 65536 + 4096
    assert r["final_check_pages"] > 0
    again = run_json(*args, env=env)
    assert again["groups"] == r["groups"] and again["vmstat"] == vm
    human = zswap("run", *args, env=env)
    assert human.returncode == 0, human.stderr
    assert "groups (memory.zswap.*, memory.stat)" in human.stdout
