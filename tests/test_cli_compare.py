"""``zswap compare`` in a subprocess: every pair, --json, --plot, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

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
    for x in out["results"]:
        assert x["stored_pages"] > 0 and x["pool_total_size"] > 0
        assert x["ratio"] > 1 and x["density"] > 0
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
    for col in ("ratio", "density", "pool_size", "store_us", "load_us", "rejects"):
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
    assert all(x["ratio"] > 5 for x in out["results"])


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
    assert rows["lzo-rle"]["ratio"] == rows["lzo"]["ratio"]  # the same streams
    table = zswap(*args, "--repeats", "1").stdout.splitlines()
    assert any(line.startswith("lzo-rle (= lzo) ") for line in table)
    assert not any(line.startswith("lzo-rle  ") for line in table)
    assert "(= X): an alias of compressor X" in "\n".join(table)
    from zswap_core.cli._compare import _label

    assert _label(rows["lzo-rle"]) == "lzo-rle (= lzo)"  # what the plot's labels use
    assert _label(rows["lzo"]) == "lzo"
