"""``zswap advise``: files and a live child process as targets, JSON against storing the
pages for real, intervals, kernel profiles, errors, CSV, the plot, completion, progress
on a terminal, Ctrl-C (a SIGINT at a forced point) and SIGTERM."""

from __future__ import annotations

import csv
import fcntl
import io
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
from zswap_core import Zswap, default_registry
from zswap_core.advise._report import _place_labels
from zswap_core.cli import main
from zswap_core.kernels import kernel_profile
from zswap_core.workload import is_same_filled

P = 4096


def advise(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``zswap advise ARGS`` in this process: (status, stdout, stderr)."""
    code = main(["advise", *args])
    out, err = capsys.readouterr()
    return code, out, err


def advise_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    code, out, err = advise(capsys, *args, "--json")
    assert code == 0, err
    report: dict[str, Any] = json.loads(out)
    return report


def mixed_pages(n: int, seed: int) -> list[bytes]:
    """Zero, same-filled, random, and partly random pages, in runs (memory's locality)."""
    pages = []
    for i in range(n):
        run = random.Random(seed * 31 + i // 16)
        kind = run.random()
        typical = run.randrange(100, 3900)
        r = random.Random(seed * 1_000_003 + i)
        if kind < 0.1:
            pages.append(bytes(P))
        elif kind < 0.13:
            pages.append(r.randbytes(8) * (P // 8))
        elif kind < 0.2:
            pages.append(r.randbytes(P))
        else:
            k = max(1, min(P, int(r.gauss(typical, 200))))
            pages.append((r.randbytes(k) + bytes(P))[:P])
    return pages


def write_pages(path: Path, pages: list[bytes]) -> Path:
    path.write_bytes(b"".join(pages))
    return path


KEYS = {
    "kernel",
    "targets",
    "skipped",
    "population",
    "sample",
    "results",
    "recommendation",
    "what_if",
    "cold",
    "interrupted",
    "elapsed_s",
}
RESULT_KEYS = {
    "compressor",
    "zpool",
    "codec_backend",
    "codec_ratio",
    "pool_density",
    "saved_bytes",
    "saved_percent",
    "compress_s_per_gib",
    "decompress_s_per_gib",
    "rejected_pages",
    "same_filled_pages",
}


def test_whole_file_matches_storing_its_pages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--sample all on a file: codec ratio as compressing each page directly, pool bytes
    and stored pages as storing every page in a Zswap, saved from those, points only."""
    pages = mixed_pages(600, seed=3)
    f = write_pages(tmp_path / "mix.bin", pages)
    r = advise_json(
        capsys, str(f), "--kernel", "6.8", "--sample", "all", "--compressors", "lz4,zstd"
    )
    assert set(r) >= KEYS
    assert r["kernel"] == {"profile": "6.8", "release": "6.8", "from_host": False}
    assert r["population"]["pages"] == 600 and r["population"]["bytes"] == 600 * P
    assert r["sample"]["mode"] == "all" and r["sample"]["pages"] == 600
    assert r["sample"]["bytes_read"] == 600 * P and r["sample"]["vanished"] == 0
    assert r["targets"][0]["kind"] == "file" and r["targets"][0]["candidates"] == 600
    assert r["interrupted"] is False
    entry = kernel_profile("6.8").entry_bytes
    pairs = {(x["compressor"], x["zpool"]) for x in r["results"]}
    assert pairs == {(c, z) for c in ("lz4", "zstd") for z in ("zbud", "z3fold", "zsmalloc")}
    reg = default_registry()
    for x in r["results"]:
        assert set(x) >= RESULT_KEYS
        c, zp = x["compressor"], x["zpool"]
        mod = reg.require("compressor", c)
        comp = mod.driver(mod.params)
        backend = "python" if getattr(comp, "codec_ops", None) is None else "c"
        orig = packed = 0
        for p in pages:
            if not is_same_filled(p):
                n = len(comp.compress(p))
                if n < P:
                    orig, packed = orig + P, packed + n
        comp.close()
        assert x["codec_ratio"]["value"] == round(orig / packed, 3)
        z = Zswap(compressor=c, zpool=zp, ram_bytes=1 << 40)
        z.init(0)
        for i, p in enumerate(pages):
            z.store(0, i, p)
        st = z.stats
        z.close()
        assert x["pool_bytes"]["value"] == st["pool_total_size"]
        assert x["stored_pages"] == st["stored_pages"]
        assert x["same_filled_pages"] == st["same_filled_pages"]
        saved = (st["stored_pages"] * P) - st["pool_total_size"] - entry * st["stored_pages"]
        assert x["saved_bytes"]["value"] == saved
        assert x["saved_percent"]["value"] == round(100 * saved / (600 * P), 2)
        compressed = st["stored_pages"] - st["same_filled_pages"]
        assert x["pool_density"]["value"] == round(compressed * P / st["pool_total_size"], 3)
        for key in ("codec_ratio", "pool_density", "saved_bytes", "saved_percent"):
            assert x[key]["low"] == x[key]["value"] == x[key]["high"]
        for key in ("compress_s_per_gib", "decompress_s_per_gib"):
            t = x[key]
            assert 0 < t["p10"] <= t["median"] <= t["p90"]
        assert x["codec_backend"] == backend


def test_sampled_intervals_contain_the_whole_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = write_pages(tmp_path / "big.bin", mixed_pages(6000, seed=5))
    common = [str(f), "--kernel", "6.1", "--compressors", "lz4,zstd", "--jobs", "2"]
    whole = advise_json(capsys, *common, "--sample", "all")
    part = advise_json(capsys, *common, "--sample", "4M", "--seed", "7")
    assert part["sample"]["mode"] == "sample" and part["sample"]["pages"] == 1024
    assert part["sample"]["bytes_read"] == 4 << 20 and part["population"]["pages"] == 6000
    exact = {(x["compressor"], x["zpool"]): x for x in whole["results"]}
    for x in part["results"]:
        w = exact[(x["compressor"], x["zpool"])]
        for key in ("codec_ratio", "pool_density", "saved_bytes", "saved_percent"):
            assert x[key]["low"] <= w[key]["value"] <= x[key]["high"], (key, x, w)
            assert x[key]["low"] < x[key]["high"]  # a real interval


CHILD = r"""
import os, random, sys, time
n = int(sys.argv[1])
r = random.Random(1)
# n pages: a quarter random, the rest half random half zeros; every page written
blocks = []
for i in range(n):
    blocks.append(r.randbytes(4096) if i % 4 == 0 else r.randbytes(2048) + bytes(2048))
data = bytearray(b"".join(blocks))
del blocks
print("ready", flush=True)
time.sleep(600)
"""


@pytest.fixture(scope="module")
def child() -> Any:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, "4096"], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    yield proc
    proc.kill()
    proc.wait()


def test_live_process(child: subprocess.Popen[str], capsys: pytest.CaptureFixture[str]) -> None:
    r = advise_json(capsys, "--pid", str(child.pid), "--kernel", "6.18", "--compressors", "lz4")
    t = r["targets"][0]
    assert t["kind"] == "pid" and t["pid"] == child.pid and t["name"].startswith("python")
    assert t["candidates"] >= 4096  # its 16 MiB and the interpreter's own heap
    # under 64 MiB: read whole
    assert r["sample"]["mode"] == "all" and r["sample"]["pages"] == r["population"]["pages"]
    (x,) = r["results"]
    assert x["zpool"] == "zsmalloc"
    # three quarters of the pages compress to about half
    assert 1.3 < x["codec_ratio"]["value"] < 2.2
    part = advise_json(
        capsys, "--pid", str(child.pid), "--kernel", "6.18", "--compressors", "lz4",
        "--sample", "4M",
    )  # fmt: skip
    assert part["sample"]["mode"] == "sample" and part["sample"]["pages"] == 1024
    y = part["results"][0]
    assert y["codec_ratio"]["low"] <= x["codec_ratio"]["value"] <= y["codec_ratio"]["high"]


def test_kernel_618_offers_zsmalloc_only_and_no_levels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = write_pages(tmp_path / "m.bin", mixed_pages(64, seed=1))
    r = advise_json(capsys, str(f), "--kernel", "6.18")
    assert {x["zpool"] for x in r["results"]} == {"zsmalloc"}
    assert "level" not in json.dumps(r)
    code, _, err = advise(capsys, str(f), "--kernel", "6.18", "--zpools", "zbud")
    assert code == 1 and err.strip() == (
        "zswap: error: zpool 'zbud' is not in kernel 6.18 (it has: zsmalloc)"
    )


def test_host_kernel_offers_what_this_kernel_has(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = write_pages(tmp_path / "m.bin", mixed_pages(64, seed=1))
    host = kernel_profile("host")
    installed = {
        p.name for p in zswap_core.list_plugins() if p.kind == "compressor" and p.state != "failed"
    }
    wanted = installed if host.compressors is None else installed & set(host.compressors)
    if not wanted:
        pytest.skip("no installed compressor is in this kernel")
    r = advise_json(capsys, str(f))
    assert r["kernel"]["from_host"] is True and r["kernel"]["release"] == os.uname().release
    assert {x["compressor"] for x in r["results"]} == wanted
    assert {x["zpool"] for x in r["results"]} <= set(host.zpools)


def test_all_random_pages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = write_pages(tmp_path / "r.bin", [random.Random(i).randbytes(P) for i in range(50)])
    r = advise_json(capsys, str(f), "--kernel", "6.12", "--compressors", "lz4")
    for x in r["results"]:
        assert x["codec_ratio"] is None and x["pool_density"] is None
        assert x["saved_bytes"]["value"] == 0 and x["rejected_pages"] == 50
    code, out, _ = advise(capsys, str(f), "--kernel", "6.12", "--compressors", "lz4")
    assert code == 0
    row = next(line for line in out.splitlines() if line.startswith("lz4") and "zsmalloc" in line)
    assert row.split()[2:4] == ["n/a", "n/a"]
    assert "0.00" not in row


@pytest.mark.parametrize(("kernel", "percent"), [("6.12", 100.0), ("4.19", 100 * (P - 56) / P)])
def test_all_zero_pages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kernel: str, percent: float
) -> None:
    f = write_pages(tmp_path / "z.bin", [bytes(P)] * 40)
    r = advise_json(capsys, str(f), "--kernel", kernel, "--compressors", "lz4")
    for x in r["results"]:
        assert x["saved_percent"]["value"] == round(percent, 2)
        assert x["codec_ratio"] is None and x["pool_density"] is None


def test_what_if_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = write_pages(tmp_path / "m.bin", mixed_pages(3000, seed=2))
    r = advise_json(
        capsys, str(f), "--kernel", "6.6", "--compressors", "lz4", "--zpools", "zsmalloc",
        "--ram", "64M", "--max-pool-percent", "0.5", "--max-pool-percent", "50",
    )  # fmt: skip
    wi = r["what_if"]
    assert wi["mem_total_bytes"] == 64 << 20 and wi["mem_total_source"] == "--ram"
    small, big = wi["rows"]
    x = r["results"][0]
    assert x["saved_bytes"]["value"] > 0
    assert small["pool_limit_bytes"] == int((64 << 20) * 0.005)
    assert big["pool_limit_bytes"] == 32 << 20
    assert big["fits_percent"] == 100 and big["saved_bytes"] == x["saved_bytes"]["value"]
    assert small["pool_limit_bytes"] < x["pool_bytes"]["value"]
    assert 0 < small["fits_percent"] < 100 and small["saved_bytes"] < big["saved_bytes"]
    assert small["compressor"] == r["recommendation"]["compressor"] == "lz4"


def test_what_if_in_a_cgroup(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--group: a group is charged the compressed length of its pages (computed here
    with the lz4 library directly); past memory.zswap.max the share that fits saves
    in proportion and the rest goes to the file, or stays in RAM with writeback=0."""
    import lz4.block

    pages = mixed_pages(2000, seed=3)
    f = write_pages(tmp_path / "m.bin", pages)
    r = advise_json(
        capsys, str(f), "--kernel", "6.6", "--compressors", "lz4", "--zpools", "zsmalloc",
        "--sample", "all", "--group", "all", "--group", "half:max=64K:writeback=0",
        "--group", "web:max=64K", "--group", "none:max=0",
    )  # fmt: skip
    x = r["results"][0]
    rows = {g["group"]: g for g in r["what_if"]["groups"]}
    assert list(rows) == ["all", "half", "web", "none"]
    same = [p for p in pages if p == p[:8] * (P // 8)]
    lengths = [len(lz4.block.compress(p, store_size=False)) for p in pages if p not in same]
    want = sum(n for n in lengths if n < P)  # this kernel refuses the others
    assert rows["all"]["charged_bytes"] == pytest.approx(want, rel=0.01)
    assert rows["all"]["fits_percent"] == 100 and rows["all"]["rest"] is None
    assert rows["all"]["saved_bytes"] == x["saved_bytes"]["value"]
    assert rows["half"]["zswap_max_bytes"] == 65536 == rows["half"]["charged_bytes"]
    assert 0 < rows["half"]["fits_percent"] < 100 and rows["half"]["rest"] == "stays in RAM"
    assert rows["web"]["rest"] == "swap file"
    assert rows["web"]["saved_bytes"] == rows["half"]["saved_bytes"] < rows["all"]["saved_bytes"]
    assert rows["none"] == {
        **rows["none"],
        "charged_bytes": 0, "fits_percent": 0, "saved_bytes": 0, "rest": "swap file",
    }  # fmt: skip
    code, out, _err = advise(capsys, str(f), "--kernel", "6.6", "--group", "web:max=64K")
    assert code == 0 and "what if in a cgroup (memory.zswap.max)" in out


def test_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = write_pages(tmp_path / "m.bin", mixed_pages(100, seed=2))
    code, out, err = advise(capsys, str(f), "--kernel", "6.1", "--compressors", "lz4,zstd", "--csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 6
    assert sum(int(row["recommended"]) for row in rows) == 1
    assert all(float(row["codec_ratio"]) > 1 for row in rows)
    assert all(row["population_pages"] == "100" for row in rows)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kernel", "6.8"], "nothing to advise on: give --pid, --cgroup, --host or a PATH"),
        (["EMPTY"], "nothing to advise on: the targets have no candidate pages"),
        (["FILE", "--json", "--csv"], "--json and --csv: choose one"),
        (["FILE", "--plot", "out.gif"], "--plot out.gif: the extension must be .png, .svg or .pdf"),
        (["FILE", "--compressors", "nope"], "unknown compressor 'nope' (installed: "),
        (["FILE", "--compressors", ","], "--compressors: no names given"),
        (["FILE", "--kernel", "5.0"], "--kernel '5.0': one of host, 4.19"),
        (["--pid", "999999999"], "nothing to advise on: pid 999999999"),
        (["FILE", "--sample", "0"], "Invalid value for '--sample'"),
        (["FILE", "--confidence", "1.5"], "Invalid value for '--confidence'"),
        (["FILE", "--group", "a:max=big"], "bad size"),
        (["FILE", "--group", "a", "--group", "a"], "named twice"),
    ],
)
def test_bad_input_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    (tmp_path / "e.bin").write_bytes(b"")
    write_pages(tmp_path / "f.bin", [bytes(P)])
    args = [
        {"EMPTY": str(tmp_path / "e.bin"), "FILE": str(tmp_path / "f.bin")}.get(a, a) for a in args
    ]
    code, out, err = advise(capsys, *args)
    assert code in (1, 2) and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("zswap: error: "), err
    assert message in err
    assert not (tmp_path / "out.gif").exists()


# -- the plot ------------------------------------------------------------------------------


def test_plot_svg(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    f = write_pages(tmp_path / "m.bin", mixed_pages(300, seed=2))
    out = tmp_path / "advice.svg"
    r = advise_json(
        capsys, str(f), "--kernel", "6.1", "--compressors", "lz4,zstd", "--plot", str(out)
    )
    assert r["plot"] == str(out)
    svg = out.read_text()
    assert svg.startswith("<?xml")
    for text in ("saved MiB", "s/GiB", "lz4/zbud", "zstd/zsmalloc", "z3fold", "300 pages"):
        assert text in svg, text
    png = tmp_path / "advice.png"
    code, _, err = advise(
        capsys, str(f), "--kernel", "6.1", "--compressors", "lz4", "--plot", str(png)
    )
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_labels_do_not_overlap() -> None:
    # twelve points on top of each other and in a row: every label box apart
    pts = [(100.0, 100.0)] * 6 + [(100.0 + 3 * i, 100.0) for i in range(6)]
    sizes = [(60.0, 9.0)] * len(pts)
    offs = _place_labels(pts, sizes)
    boxes = []
    for (x, y), (dx, dy), (w, h) in zip(pts, offs, sizes, strict=True):
        left = x + dx if dx >= 0 else x + dx - w
        boxes.append((left, y + dy, left + w, y + dy + h))
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert min(a[2], b[2]) <= max(a[0], b[0]) or min(a[3], b[3]) <= max(a[1], b[1])


# -- completion, terminal, signals -------------------------------------------------------------


def _env(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("ZSWAP_")}, **extra}


def test_completion_of_names() -> None:
    env = _env(
        _ZSWAP_COMPLETE="bash_complete",
        COMP_WORDS="zswap advise --compressors lz4,zs",
        COMP_CWORD="3",
    )
    r = subprocess.run(
        [sys.executable, "-m", "zswap_core.cli"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["plain,lz4,zstd"]
    env["COMP_WORDS"] = "zswap advise --zpools zs"
    r = subprocess.run(
        [sys.executable, "-m", "zswap_core.cli"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert r.stdout.split() == ["plain,zsmalloc"]


def on_terminal(args: list[str], **env: str) -> tuple[int, bytes, str]:
    """Run with stderr on a pseudo-terminal: (status, stdout, what the terminal showed)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 150, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-c", ENTRY, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        env=_env(TERM="xterm-256color", **env),
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

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        reader.join(5)
        os.close(master)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", bytes(seen).decode(errors="replace"))
    # no worker outlives the command (they are in its session)
    deadline = time.monotonic() + 10
    while _session_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _session_members(proc.pid)
    return proc.returncode, out, text


def _session_members(sid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.getsid(int(d)) == sid:
                    out.append(int(d))
            except OSError:
                pass
    return out


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_ctrl_c_keeps_the_finished_batches(tmp_path: Path, jobs: str) -> None:
    """A SIGINT after the 3rd finished batch (forced by the test hook): the figures of
    the batches done, marked interrupted, exit 130; the bar with its ETA was shown."""
    f = write_pages(tmp_path / "m.bin", mixed_pages(4096, seed=4))  # 16 batches
    args = ["advise", str(f), "--sample", "all", "--kernel", "6.8", "--compressors", "lz4,zstd"]
    code, out, term = on_terminal(
        [*args, "--jobs", jobs, "--json"], ZSWAP_ADVISE_INTERRUPT_AFTER="3"
    )
    assert code == 130
    assert term.replace("\r", "\n").strip().splitlines()[-1].strip() == "zswap: interrupted"
    assert "ETA" in term and "reading and compressing pages" in term
    r = json.loads(out)
    assert r["interrupted"] is True
    assert r["sample"]["batches"] == 16 and 3 <= r["sample"]["batches_done"] < 16
    assert r["sample"]["pages"] == 256 * r["sample"]["batches_done"]
    assert r["population"]["pages"] == 4096
    # the finished batches are strided across the file: a fair sample, with intervals
    x = r["results"][0]
    assert x["codec_ratio"]["low"] < x["codec_ratio"]["value"] < x["codec_ratio"]["high"]


def test_sigterm_ends_cleanly(tmp_path: Path) -> None:
    f = write_pages(tmp_path / "m.bin", mixed_pages(4096, seed=4))
    args = ["advise", str(f), "--sample", "all", "--compressors", "lz4", "--kernel", "6.8"]
    code, out, term = on_terminal([*args, "--jobs", "2"], ZSWAP_ADVISE_INTERRUPT_AFTER="2:TERM")
    assert code == 128 + signal.SIGTERM
    assert out == b""
    assert term.replace("\r", "\n").strip().splitlines()[-1].strip() == (
        "zswap: terminated (SIGTERM)"
    )
    assert "Traceback" not in term


def test_cold_part(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With idle information (here: every third page of the file marked cold, as a
    census with page_idle would say), the advice is repeated for the cold part alone,
    from the sampled cold pages, scaled to all the cold ones."""
    import dataclasses

    from zswap_core.advise import _scan

    real = _scan.census

    def census(targets: Any, **kw: Any) -> Any:
        assert kw.get("idle") is not None  # --mark-idle asked for it
        assert kw.get("idle_interval") == 0.1
        c = real(targets, idle=None, on_marked=kw.get("on_marked"))
        cold = [bytearray(1 if i % 3 == 0 else 0 for i in range(len(p))) for p in c.pages]
        return dataclasses.replace(c, cold=cold, idle_method="page_idle", idle_note=None)

    monkeypatch.setattr(_scan, "census", census)
    pages = mixed_pages(3000, seed=6)
    # the cold pages (every third) are all zero: the cold part saves ~everything
    pages = [bytes(P) if i % 3 == 0 else p for i, p in enumerate(pages)]
    f = write_pages(tmp_path / "m.bin", pages)
    common = [str(f), "--kernel", "6.12", "--compressors", "lz4", "--mark-idle"]
    for sample in ("all", "4M"):
        r = advise_json(capsys, *common, "--idle-interval", "0.1", "--sample", sample)
        cold = r["cold"]
        assert cold["method"] == "page_idle" and cold["cold_pages"] == 1000
        assert cold["cold_percent"] == round(100 * 1000 / 3000, 2)
        assert cold["sampled_cold_pages"] == (
            1000 if sample == "all" else pytest.approx(341, abs=40)
        )
        for x in cold["results"]:
            assert x["saved_percent"]["value"] == 100.0  # zero pages: the swap core keeps them
            assert x["saved_bytes"]["value"] == 1000 * P
        assert cold["recommendation"]["compressor"] == "lz4"
    code, out, _ = advise(capsys, *common, "--idle-interval", "0.1")
    assert code == 0 and "cold (page_idle, 0.1 s): 1000 pages, 33.3% of the candidates" in out


def test_ctrl_c_while_estimating_keeps_the_pairs_done(tmp_path: Path) -> None:
    f = write_pages(tmp_path / "m.bin", mixed_pages(600, seed=4))
    args = ["advise", str(f), "--kernel", "6.8", "--compressors", "lz4,zstd", "--json"]
    code, out, term = on_terminal(args, ZSWAP_ADVISE_INTERRUPT_AFTER="pairs:2")
    assert code == 130
    assert term.replace("\r", "\n").strip().splitlines()[-1].strip() == "zswap: interrupted"
    r = json.loads(out)
    assert r["interrupted"] is True and r["sample"]["batches_done"] == r["sample"]["batches"]
    assert len(r["results"]) == 2 and r["cold"] is None


def test_workers_give_the_figures_of_one_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Same seed: --jobs 1 and --jobs 2 read the same pages and give the same figures
    (only the timings differ)."""
    f = write_pages(tmp_path / "m.bin", mixed_pages(2000, seed=8))
    common = [str(f), "--kernel", "6.6", "--compressors", "lz4,zstd", "--sample", "2M"]
    one = advise_json(capsys, *common, "--seed", "3", "--jobs", "1")
    two = advise_json(capsys, *common, "--seed", "3", "--jobs", "2")
    other = advise_json(capsys, *common, "--seed", "4", "--jobs", "2")

    def figures(r: dict[str, Any]) -> list[dict[str, Any]]:
        timing = ("compress_s_per_gib", "decompress_s_per_gib", "cpu_s_per_gib")
        return [{k: v for k, v in x.items() if k not in timing} for x in r["results"]]

    assert one["sample"]["jobs"] == 1 and two["sample"]["jobs"] == 2
    assert figures(one) == figures(two)
    assert figures(other) != figures(two)  # another seed, another sample


def test_the_host_profile_says_which_installed_plugins_it_leaves_out(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Installed compressors this kernel does not list are named in a note, with the way
    to include them; nothing is left out silently."""
    f = write_pages(tmp_path / "pages", mixed_pages(64, 3))
    report = advise_json(capsys, str(f), "--kernel", "host")
    offered = kernel_profile("host").compressors
    installed = [p.name for p in zswap_core.list_plugins() if p.kind == "compressor"]
    left = [n for n in installed if offered is not None and n not in offered]
    notes = [n for n in report["notes"] if n.startswith("installed compressors not offered")]
    measured = {r["compressor"] for r in report["results"]}
    assert measured == set(installed) - set(left)
    if left:
        assert len(notes) == 1 and "--kernel RELEASE includes them" in notes[0]
        assert all(name in notes[0] for name in left)
    else:
        assert notes == []
