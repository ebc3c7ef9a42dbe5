"""``zswap compare`` in a subprocess: every pair, --json, --plot, errors."""

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
from pathlib import Path
from typing import Any

import pytest
from helpers import CLI_ENTRY as ENTRY

import zswap_core


def zswap(*args: str, code: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZSWAP_")}
    prog = code + f"\nfrom zswap_core.cli import main\nraise SystemExit(main({list(args)!r}))"
    cmd = [sys.executable, "-c", prog] if code else [sys.executable, "-m", "zswap_core.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)


def installed(kind: str) -> list[str]:
    return [p.name for p in zswap_core.list_plugins() if p.kind == kind and p.state != "failed"]


def test_compare_json_has_every_pair() -> None:
    r = zswap("compare", "--pages", "64", "--repeats", "1", "--json")
    assert r.returncode == 0, r.stderr
    out: dict[str, Any] = json.loads(r.stdout)
    pairs = {(x["compressor"], x["zpool"]) for x in out["results"]}
    want = {(c, z) for c in installed("compressor") for z in installed("zpool")}
    assert pairs == want and len(out["results"]) == len(want)
    assert out["interrupted"] is False and out["pairs"] == len(want)
    assert out["metadata_bytes_per_entry"] > 0
    for x in out["results"]:
        assert x["stored_pages"] > 0 and x["pool_total_size"] > 0
        assert "ratio" not in x and "density" not in x  # one vocabulary, as run's
        assert x["codec_ratio"] > 1 and x["pool_density"] > 0
        assert isinstance(x["saved_bytes"], int) and isinstance(x["saved_percent"], float)
        assert x["store_us"] > 0 and x["load_us"] > 0
        assert x["rejects"] >= 0


def test_compare_selected_pairs_table() -> None:
    zpools = installed("zpool")[:2]
    r = zswap(
        "compare",
        "--compressors",
        "lz4,lz4hc",
        "--zpools",
        ",".join(zpools),
        "--pages",
        "200",
        "--repeats",
        "2",
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    header = next(line for line in lines if line.startswith("compressor"))
    for col in (
        "codec_ratio",
        "pool_density",
        "saved",
        "saved_%",
        "pool_size",
        "store_us",
        "load_us",
        "rejects",
    ):
        assert col in header
    rows = [line for line in lines if line.startswith(("lz4 ", "lz4hc "))]
    assert len(rows) == 2 * len(zpools)


def test_compare_file_source(tmp_path: Path) -> None:
    f = tmp_path / "f.txt"
    f.write_text("hello zswap\n" * 10000)
    r = zswap(
        "compare", "--compressors", "lz4", "--pages", "16", "--repeats", "1", "--json", str(f)
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["source"].startswith("files:") and out["pages"] == 16
    assert all(x["codec_ratio"] > 5 for x in out["results"])


def test_compare_plot_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "cmp.png"
    r = zswap(
        "compare",
        "--compressors",
        "lz4,lz4hc",
        "--pages",
        "32",
        "--repeats",
        "1",
        "--plot",
        str(png),
    )
    assert r.returncode == 0, r.stderr
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1024
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image

    img = matplotlib.image.imread(str(png))
    assert img.shape[0] > 100 and img.shape[1] > 100


def test_compare_plot_without_matplotlib(tmp_path: Path) -> None:
    hide = "import sys\nsys.modules['matplotlib'] = None  # import matplotlib -> ImportError"
    r = zswap("compare", "--pages", "8", "--plot", str(tmp_path / "x.png"), code=hide)
    assert r.returncode == 1
    assert r.stderr.strip() == (
        "zswap: error: matplotlib is needed for --plot: pip install 'zswap-core[plot]'"
    )
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--compressors", "lz4,nosuch"], "unknown compressor 'nosuch'"),
        (["--zpools", "nosuch"], "unknown zpool 'nosuch'"),
        (["--compressors", ","], "no names given"),
        (["/nonexistent/path"], "/nonexistent/path: No such file"),
        (["--pid", str(2**22 + 99)], "no such process"),
        (["--repeats", "0"], "--repeats"),
    ],
)
def test_compare_errors_are_one_line(args: list[str], needle: str) -> None:
    r = zswap("compare", "--pages", "8", *args)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zswap: error: ") and needle in lines[0], lines


@pytest.mark.skipif(not zswap_core.crypto_has_comp("lzo-rle"), reason="needs the lzo plugin")
def test_an_alias_is_labelled_not_presented_as_another_codec() -> None:
    """lzo-rle writes lzo's streams: compare says so in its table, JSON and plot labels."""
    args = ("compare", "--compressors", "lzo,lzo-rle", "--zpools", "zbud", "--pages", "64")
    r = zswap(*args, "--repeats", "1", "--json")
    assert r.returncode == 0, r.stderr
    rows = {x["compressor"]: x for x in json.loads(r.stdout)["results"]}
    assert rows["lzo-rle"]["alias_of"] == "lzo" and rows["lzo"]["alias_of"] is None
    assert rows["lzo-rle"]["codec_ratio"] == rows["lzo"]["codec_ratio"]  # the same streams
    table = zswap(*args, "--repeats", "1").stdout.splitlines()
    assert any(line.startswith("lzo-rle (= lzo) ") for line in table)
    assert not any(line.startswith("lzo-rle  ") for line in table)
    assert "(= X): an alias of compressor X" in "\n".join(table)
    from zswap_core.cli._compare import _label

    assert _label(rows["lzo-rle"]) == "lzo-rle (= lzo)"  # what the plot's labels use
    assert _label(rows["lzo"]) == "lzo"


# -- --jobs: pairs measured side by side in worker processes -------------------------------

TIMINGS = ("store_us", "load_us")


def without_timings(out: dict[str, Any]) -> dict[str, Any]:
    rows = [{k: v for k, v in x.items() if k not in TIMINGS} for x in out["results"]]
    return {**out, "results": rows}


def test_parallel_gives_the_serial_results() -> None:
    """--jobs 2 and --jobs 1: every figure but the timings is the same, in the same order."""
    args = ("compare", "--pages", "300", "--repeats", "2", "--seed", "7", "--json")
    serial = zswap(*args, "--jobs", "1")
    parallel = zswap(*args, "--jobs", "2")
    assert serial.returncode == 0, serial.stderr
    assert parallel.returncode == 0, parallel.stderr
    a, b = json.loads(serial.stdout), json.loads(parallel.stdout)
    assert without_timings(a) == without_timings(b)
    pairs = [(x["compressor"], x["zpool"]) for x in b["results"]]
    assert pairs == [(c, z) for c in installed("compressor") for z in installed("zpool")]
    assert all(x["store_us"] > 0 and x["load_us"] > 0 for x in b["results"])


RUN_BOTH_WAYS = """
import json, sys, threading, time
from zswap_core.cli._compare import run_compare
from zswap_core.workload import SyntheticSource

if sys.argv[1] == "thread":  # another thread alive: the workers are spawned, not forked
    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
src = SyntheticSource(3)
pages = [src.page(i) for i in range(200)]
rows = {}
for jobs in (1, 3):
    got = run_compare(["lz4", "zstd"], ["zbud", "zsmalloc"], pages, 2, jobs=jobs)
    for r in got:
        del r["store_us"], r["load_us"]
        for p in r["pools"]:
            # zswapN names: a counter of the process that measured the pair
            del p["name"], p["zpool_instance"]
    rows[jobs] = got
print(json.dumps(rows[1] == rows[3]), json.dumps([(r["compressor"], r["zpool"]) for r in rows[3]]))
"""


@pytest.mark.parametrize("how", ["fork", "thread"])
def test_run_compare_rows_are_the_same_either_way(how: str) -> None:
    """Also the rows' pools (what the JSON leaves out), forked or spawned workers."""
    r = subprocess.run(
        [sys.executable, "-c", RUN_BOTH_WAYS, how], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    same, pairs = r.stdout.split(" ", 1)
    assert same == "true"
    assert json.loads(pairs) == [
        ["lz4", "zbud"],
        ["lz4", "zsmalloc"],
        ["zstd", "zbud"],
        ["zstd", "zsmalloc"],
    ]


FAIL_IN_WORKER = """
import os
from zswap_core.cli import _compare
from zswap_core.cli._common import VerifyError

measure = _compare.measure_pair


def failing(c, zp, pages, repeats):
    if zp == "zbud":
        if {kill}:
            os.kill(os.getpid(), 9)
        raise VerifyError(f"{{c}}/{{zp}}: page 5 read back wrong")
    return measure(c, zp, pages, repeats)


_compare.measure_pair = failing  # the forked workers inherit it
"""


@pytest.mark.parametrize("kill", [False, True])
def test_a_failure_in_a_worker_is_one_line(kill: bool) -> None:
    args = ("compare", "--compressors", "lz4", "--zpools", "zbud,zsmalloc", "--pages", "64")
    r = zswap(*args, "--jobs", "2", code=FAIL_IN_WORKER.format(kill=kill))
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    if kill:
        assert r.returncode == 1
        assert lines[0] == (
            "zswap: error: lz4/zbud: the worker process measuring it ended with signal SIGKILL"
        )
    else:
        assert r.returncode == 3  # VerifyError's status, as when measured in this process
        assert lines[0] == "zswap: error: lz4/zbud: page 5 read back wrong"


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as fh:
        return [int(x) for x in fh.read().split()]


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rpartition(")")[2].split()[0] in ("Z", "X")  # dead, not reaped
    except FileNotFoundError:
        return True


@pytest.mark.skipif(
    not os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children"),
    reason="needs /proc/PID/task/TID/children",
)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_ends_the_workers_too(signum: int) -> None:
    """Ctrl-C (to the whole process group, as a terminal sends it) or SIGTERM to zswap."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZSWAP_")}
    # ENTRY: SIGINT at its default even where this test runs with it ignored (a shell
    # starts a background job so, and the command would rightly ignore Ctrl-C then)
    cmd = [sys.executable, "-c", ENTRY, "compare", "--pages", "20000", "--jobs", "2"]
    p = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        workers: list[int] = []
        while len(workers) < 2 and time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.05)
            workers = _children(p.pid)
        assert len(workers) == 2, "the workers did not start"
        time.sleep(0.3)  # into their first tasks
        if signum == signal.SIGINT:
            os.killpg(p.pid, signum)
        else:
            p.send_signal(signum)
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert p.returncode == 128 + signum
    want = "zswap: interrupted" if signum == signal.SIGINT else "zswap: terminated (SIGTERM)"
    assert err.strip() == want
    if signum == signal.SIGINT:  # the pairs done so far (none yet, 0.3 s in)
        assert "(interrupted: 0 of " in out and "pairs measured)" in out
    else:
        assert out == ""
    assert all(_gone(w) for w in workers)


def test_jobs_is_documented_and_checked() -> None:
    r = zswap("compare", "--help")
    assert "--jobs N" in r.stdout
    for bad in ("0", "-1", "x"):
        r = zswap("compare", "--pages", "8", "--jobs", bad)
        assert r.returncode == 2
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "--jobs" in lines[0], r.stderr


def test_default_jobs_keeps_a_tiny_run_here_and_spreads_a_big_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without --jobs: a run of a few pages stays in this process; a long one uses the CPUs,
    with the tasks handed out longest first."""
    from zswap_core.cli import _compare
    from zswap_core.workload import SyntheticSource

    calls: list[tuple[list[tuple[str, str]], int]] = []

    def fake_parallel(
        tasks: Any, pages: Any, repeats: Any, workers: int, show: Any, done: Any
    ) -> None:
        calls.append((list(tasks), workers))
        done.update({t: _compare._run_task(t, pages[:4], 1) for t in tasks})

    monkeypatch.setattr(_compare, "_run_parallel", fake_parallel)
    monkeypatch.setattr(_compare, "usable_cpus", lambda: 4)
    src = SyntheticSource(1)
    few = [src.page(i) for i in range(8)]
    rows = _compare.run_compare(["lz4"], ["zbud"], few, 1)
    assert not calls and len(rows) == 1 and rows[0]["stored_pages"] > 0
    # an estimate is all that decides: pretend each page costs a tenth of a second
    monkeypatch.setattr(
        _compare,
        "_estimated_costs",
        lambda cs, zs, pages, repeats: {
            (c, z): (3e5 if c == "zstd" else 2e5) * len(pages) for c in cs for z in zs
        },
    )
    rows = _compare.run_compare(["lz4", "zstd"], ["zbud", "zsmalloc"], few, 1)
    assert len(calls) == 1
    tasks, workers = calls[0]
    assert workers == 4
    assert tasks == [("zstd", "zbud"), ("zstd", "zsmalloc"), ("lz4", "zbud"), ("lz4", "zsmalloc")]
    assert [(r["compressor"], r["zpool"]) for r in rows] == [
        ("lz4", "zbud"),
        ("lz4", "zsmalloc"),
        ("zstd", "zbud"),
        ("zstd", "zsmalloc"),
    ]
    calls.clear()
    _compare.run_compare(["lz4"], ["zbud"], few, 1, jobs=1)
    assert not calls  # --jobs 1: always here


# -- edge cases: n/a, never a division by zero -----------------------------------------------


def pages_file(tmp_path: Path, content: bytes) -> Path:
    f = tmp_path / "pages.bin"
    f.write_bytes(content)
    return f


def test_random_pages_give_na(tmp_path: Path) -> None:
    f = pages_file(tmp_path, random.Random(3).randbytes(32 * 4096))
    args = ("compare", "--compressors", "lz4,zstd", "--pages", "32", "--repeats", "1", str(f))
    r = zswap(*args, "--json")
    assert r.returncode == 0, r.stderr
    for x in json.loads(r.stdout)["results"]:
        assert x["stored_pages"] == 0 and x["rejects"] == 32
        assert x["codec_ratio"] is None and x["pool_density"] is None and x["load_us"] is None
        assert x["saved_bytes"] == 0 and x["saved_percent"] == 0.0  # 32 pages, none saved
    table = zswap(*args).stdout
    row = next(line for line in table.splitlines() if line.startswith("lz4 "))
    assert row.split()[2:4] == ["n/a", "n/a"] and row.split()[-3] == "n/a"  # load_us


def test_zero_pages_save_everything(tmp_path: Path) -> None:
    f = pages_file(tmp_path, bytes(32 * 4096))
    r = zswap(
        "compare", "--compressors", "lz4", "--pages", "32", "--repeats", "1", "--json", str(f)
    )
    assert r.returncode == 0, r.stderr
    for x in json.loads(r.stdout)["results"]:
        assert x["same_filled_pages"] == x["stored_pages"] == 32 and x["pool_total_size"] == 0
        assert x["codec_ratio"] is None and x["pool_density"] is None
        assert x["saved_percent"] == 100.0 and x["saved_bytes"] == 32 * 4096


def test_codec_ratio_is_the_codecs_on_the_pages_zswap_keeps() -> None:
    """codec_ratio from zswap's entries = an independent lz4 on the same pages."""
    lz4_frame = pytest.importorskip("lz4.block")
    from zswap_core.workload import SyntheticSource, is_same_filled

    r = zswap(
        "compare", "--compressors", "lz4", "--zpools", "zsmalloc", "--pages", "200",
        "--repeats", "1", "--seed", "9", "--json",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    (row,) = json.loads(r.stdout)["results"]
    src = SyntheticSource(9)
    orig = packed = 0
    for i in range(200):
        page = src.page(i)
        if is_same_filled(page):
            continue
        n = len(lz4_frame.compress(page, store_size=False))
        if n < 4096:
            orig, packed = orig + 4096, packed + n
    assert row["codec_ratio"] == round(orig / packed, 3)


# -- --plot ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("ext", "magic"), [("svg", b"<?xml"), ("pdf", b"%PDF-")])
def test_plot_format_comes_from_the_extension(tmp_path: Path, ext: str, magic: bytes) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / f"cmp.{ext.upper()}"  # the case of the extension does not matter
    r = zswap(
        "compare", "--compressors", "lz4", "--pages", "16", "--repeats", "1", "--plot", str(out)
    )
    assert r.returncode == 0, r.stderr
    assert out.read_bytes().startswith(magic)


@pytest.mark.parametrize("name", ["cmp.jpg", "cmp", "cmp.png.txt"])
def test_an_unknown_plot_extension_is_an_error_before_any_work(tmp_path: Path, name: str) -> None:
    # the --pid names no process: had any work begun, that would be the error
    r = zswap("compare", "--pid", str(2**22 + 77), "--plot", str(tmp_path / name))
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"zswap: error: --plot {tmp_path / name}: ")
    assert ".png, .svg or .pdf" in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_plot_labels_do_not_overlap() -> None:
    from zswap_core.cli._compare import place_labels

    # twelve points on top of one another, as pairs with the same figures are
    points = [(100.0, 100.0)] * 6 + [(104.0, 101.0)] * 6
    sizes = [(60.0, 11.0)] * 12
    offsets = place_labels(points, sizes)
    boxes = [
        (x + ox, y + oy, x + ox + w, y + oy + h)
        for (x, y), (ox, oy), (w, h) in zip(points, offsets, sizes, strict=True)
    ]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert min(a[2], b[2]) <= max(a[0], b[0]) or min(a[3], b[3]) <= max(a[1], b[1])
    assert place_labels(points, sizes) == offsets  # deterministic


# -- shell completion ----------------------------------------------------------------------


def completions(args: list[str], incomplete: str) -> list[str]:
    from click.shell_completion import ShellComplete

    from zswap_core.cli import cli

    comp = ShellComplete(cli, {}, "zswap", "_ZSWAP_COMPLETE")
    return [c.value for c in comp.get_completions(args, incomplete)]


def test_compressor_and_zpool_names_complete() -> None:
    comps = sorted(installed("compressor"))
    assert completions(["compare", "--compressors"], "") == comps
    assert completions(["compare", "--compressors"], "lz") == [
        c for c in comps if c.startswith("lz")
    ]
    # the last name of a list; names already given are not offered again
    assert completions(["compare", "--compressors"], "lz4,z") == ["lz4,zstd"]
    assert "lz4,lz4" not in completions(["compare", "--compressors"], "lz4,")
    assert completions(["compare", "--zpools"], "zs") == ["zsmalloc"]


def test_completion_end_to_end_through_the_environment_variable() -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ZSWAP_")},
        "_ZSWAP_COMPLETE": "bash_complete",
        "COMP_WORDS": "zswap compare --zpools zb",
        "COMP_CWORD": "3",
    }
    r = subprocess.run(
        [sys.executable, "-m", "zswap_core.cli"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["plain,zbud"]
    assert "_ZSWAP_COMPLETE=bash_source zswap" in zswap("compare", "--help").stdout


# -- progress and Ctrl-C on a terminal ---------------------------------------------------------


def on_terminal(args: list[str]) -> tuple[subprocess.Popen[bytes], int, bytearray]:
    """The command with stderr on a pseudo-terminal (read into the bytearray by a thread)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 150, 0, 0))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZSWAP_")}
    proc = subprocess.Popen(
        [sys.executable, "-c", ENTRY, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        env={**env, "TERM": "xterm-256color"},
        start_new_session=True,
    )
    os.close(slave)
    seen = bytearray()

    def read() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:
                return
            if not data:
                return
            seen.extend(data)

    threading.Thread(target=read, daemon=True).start()
    return proc, master, seen


def wait_for(proc: subprocess.Popen[bytes], seen: bytearray, pattern: str) -> re.Match[str]:
    deadline = time.monotonic() + 90
    while True:
        m = re.search(pattern, bytes(seen).decode(errors="replace"))
        if m:
            return m
        assert proc.poll() is None, bytes(seen)[-400:]
        assert time.monotonic() < deadline, bytes(seen)[-400:]
        time.sleep(0.02)


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_ctrl_c_prints_the_pairs_done(jobs: str) -> None:
    pairs = len(installed("compressor")) * len(installed("zpool"))
    args = ["compare", "--pages", "3000", "--repeats", "2", "--jobs", jobs, "--json"]
    proc, master, seen = on_terminal(args)
    try:
        # the bar, with its ETA, once a pair is done: then Ctrl-C, as a person would
        wait_for(proc, seen, rf"zswap compare.*?[1-9]\d*/{pairs} pairs.*?ETA")
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        time.sleep(0.1)
        os.close(master)
    assert proc.returncode == 130
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", bytes(seen).decode(errors="replace"))
    assert text.replace("\r", "\n").strip().splitlines()[-1].strip() == "zswap: interrupted"
    r = json.loads(out)
    assert r["interrupted"] is True and r["pairs"] == pairs
    assert 1 <= len(r["results"]) < pairs
    order = [(c, z) for c in installed("compressor") for z in installed("zpool")]
    got = [(x["compressor"], x["zpool"]) for x in r["results"]]
    assert got == [p for p in order if p in got]  # in the table's order
    for x in r["results"]:  # every row whole
        assert x["codec_ratio"] > 1 and x["stored_pages"] > 0 and x["store_us"] > 0


def test_a_short_file_is_never_padded(tmp_path: Path) -> None:
    """A 5-page file is 5 pages, whatever --pages asks: no page is made up."""
    f = tmp_path / "short.bin"
    rng = random.Random(5)
    f.write_bytes(b"".join(rng.randbytes(2048) + bytes(2048) for _ in range(5)))
    r = zswap("compare", "--compressors", "lz4", "--zpools", "zsmalloc", "--json", str(f))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["pages"], out["pages_asked"]) == (5, 2048)
    assert out["results"][0]["stored_pages"] == 5
    assert "using 5 pages, not 2048" in r.stderr


def _block_sigterm_then_wait(ready: Any) -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    ready.set()
    while True:
        time.sleep(1)


def _wait_forever(ready: Any) -> None:
    ready.set()
    while True:
        time.sleep(1)


def test_ending_the_workers_never_waits_on_one_that_blocks_sigterm() -> None:
    """A worker that still has SIGTERM blocked (as one does until it has set its own
    handlers) is killed after the grace period; the others end with SIGTERM."""
    import multiprocessing

    from zswap_core.cli import _signals

    ctx = multiprocessing.get_context("fork")
    stubborn_ready, plain_ready = ctx.Event(), ctx.Event()
    stubborn = ctx.Process(target=_block_sigterm_then_wait, args=(stubborn_ready,), daemon=True)
    plain = ctx.Process(target=_wait_forever, args=(plain_ready,), daemon=True)
    stubborn.start()
    plain.start()
    try:
        assert stubborn_ready.wait(60) and plain_ready.wait(60)
        _signals.end_workers([stubborn, plain])
        assert plain.exitcode == -signal.SIGTERM
        assert stubborn.exitcode == -signal.SIGKILL
    finally:
        for p in (stubborn, plain):
            if p.is_alive():
                p.kill()
                p.join()
