"""CONTRIBUTING.md cannot rot: every fenced code block in it is run or checked here.

Blocks carry an info string: ``python file=PATH`` / ``toml file=PATH`` are files of the
walk-through's plugin, ``toml append=PATH`` is added to one; they are put together in
a temporary ``zswap-zlib`` folder, built with ``python -m build`` as the guide says,
installed (``pip install --target``), and tested with the kit. Plain ``python`` blocks
run in a subprocess that sees the installed plugin; ``bash`` lines must each be a
command this file knows how to check; ``text`` blocks list files that must exist.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "CONTRIBUTING.md"
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```\s*$", re.S | re.M)


@dataclass(frozen=True)
class Block:
    lang: str
    attrs: dict[str, str]
    body: str
    line: int

    def __str__(self) -> str:
        return f"CONTRIBUTING.md:{self.line} ({self.lang} {self.attrs})"


def blocks() -> list[Block]:
    text = DOC.read_text()
    out = []
    for m in FENCE.finditer(text):
        words = m.group(2).split()
        attrs = dict(w.split("=", 1) if "=" in w else (w, "") for w in words)
        out.append(Block(m.group(1), attrs, m.group(3), text.count("\n", 0, m.start()) + 1))
    return out


def by(lang: str, **attrs: str) -> list[Block]:
    return [
        b
        for b in blocks()
        if b.lang == lang and all(b.attrs.get(k, None) == v for k, v in attrs.items())
    ]


def env(site: Path | None = None) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith(("ZSWAP_", "PYTEST_"))}
    if site is not None:
        out["PYTHONPATH"] = str(site)
    return out


def run(cmd: list[str], cwd: Path, site: Path | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env(site), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{shlex.join(cmd)}\n{proc.stdout[-4000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_every_block_has_a_known_kind() -> None:
    known = {
        ("python", "file"),
        ("toml", "file"),
        ("toml", "append"),
        ("python", ""),
        ("bash", ""),
        ("text", "files"),
        ("text", "layout"),
    }
    found = blocks()
    assert len(found) >= 15
    for b in found:
        kind = next(iter(b.attrs), "")
        assert (b.lang, kind) in known, f"{b}: no check for this kind of block"


@dataclass
class Walkthrough:
    project: Path
    site: Path
    dist: Path


@pytest.fixture(scope="module")
def walkthrough(tmp_path_factory: pytest.TempPathFactory) -> Walkthrough:
    """The guide's plugin, assembled from its blocks, built and installed as it says."""
    project = tmp_path_factory.mktemp("guide") / "zswap-zlib"  # as `mkdir zswap-zlib`
    project.mkdir()
    for b in by("python") + by("toml"):
        if "file" in b.attrs:
            path = project / b.attrs["file"]
            assert not path.exists(), f"{b}: {path.name} written twice"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(b.body)
    for b in by("toml"):
        if "append" in b.attrs:
            with open(project / b.attrs["append"], "a") as fh:
                fh.write("\n" + b.body)
    run([sys.executable, "-m", "build"], project)  # `python -m build`
    dist = project / "dist"
    assert sorted(p.suffix for p in dist.iterdir()) == [".gz", ".whl"]
    site = project.parent / "site"
    (wheel,) = dist.glob("*.whl")
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(site),
            str(wheel),
        ],
        project,
    )
    return Walkthrough(project, site, dist)


def test_pyproject_declares_the_entry_points(walkthrough: Walkthrough) -> None:
    data = tomllib.loads((walkthrough.project / "pyproject.toml").read_text())
    assert data["project"]["name"] == walkthrough.project.name
    eps = data["project"]["entry-points"]
    assert eps["zswap.compressors"] == {"zlib": "zswap_zlib:Zlib"}
    assert eps["zswap.hooks"] == {"zlib-stats": "zswap_zlib.stats"}
    assert any(d.startswith("zswap-core") for d in data["project"]["dependencies"])
    for b in by("toml"):  # every toml block parses on its own, too
        tomllib.loads(b.body)


def test_the_wheel_carries_the_entry_points(walkthrough: Walkthrough) -> None:
    """What `twine upload dist/*` would publish."""
    (wheel,) = walkthrough.dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        (ep_file,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        text = zf.read(ep_file).decode()
    assert "zswap_zlib/__init__.py" in names and "zswap_zlib/stats.py" in names
    assert "[zswap.compressors]\nzlib = zswap_zlib:Zlib" in text
    assert "[zswap.hooks]\nzlib-stats = zswap_zlib.stats" in text


def test_files_listing_matches_the_file_blocks() -> None:
    (listing,) = by("text", files="")
    listed = {line.split()[0] for line in listing.body.splitlines() if line.strip()}
    files = {b.attrs["file"] for b in blocks() if "file" in b.attrs}
    assert listed == files


def test_layout_paths_exist() -> None:
    (layout,) = by("text", layout="")
    for line in layout.body.splitlines():
        if not line.strip():
            continue
        path = line.split()[0]
        matches = list(ROOT.glob(path.replace("<name>", "*")))
        assert matches, f"CONTRIBUTING.md layout names {path}, which does not exist"


@pytest.mark.parametrize(
    "block", [b for b in blocks() if b.lang == "python" and not b.attrs], ids=str
)
def test_python_block_runs(walkthrough: Walkthrough, block: Block) -> None:
    run([sys.executable, "-c", block.body], walkthrough.project, walkthrough.site)


def bundled_distributions() -> set[str]:
    return {
        tomllib.loads(p.read_text())["project"]["name"]
        for p in [ROOT / "pyproject.toml", *ROOT.glob("plugins/*/*/pyproject.toml")]
    }


def bash_lines() -> list[tuple[Block, str]]:
    return [
        (b, line.strip())
        for b in by("bash")
        for line in b.body.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


@pytest.mark.parametrize(("block", "line"), bash_lines(), ids=lambda x: str(x))
def test_bash_line_is_checked(walkthrough: Walkthrough, block: Block, line: str) -> None:
    words = shlex.split(line)
    proj = walkthrough.project
    if words[0] in ("mkdir", "cd"):
        assert words[1:] == [proj.name], "the walk-through's folder is named after the dist"
    elif words[:2] == ["pip", "install"] and words[2].startswith("dist/"):
        # The wheels of `dev.py wheels` (built and installed for real into a fresh venv
        # by test_third_party_plugin.py): each pattern names one of its distributions.
        for pattern in words[2:]:
            dist = pattern.removeprefix("dist/").split("-")[0].replace("_", "-")
            assert pattern == f"dist/{dist.replace('-', '_')}-*.whl", pattern
            assert dist in bundled_distributions(), pattern
    elif words[:2] == ["pip", "install"]:
        # Done by the fixture (a --target install of the built wheel, not editable).
        assert words[2:] == ["-e", ".[test]"]
    elif words[:3] == ["python3", "dev.py", "wheels"]:
        source = (ROOT / "dev.py").read_text()
        assert 'if cmd == "wheels":' in source and words[3:] == []
        assert (
            "test"
            in tomllib.loads((proj / "pyproject.toml").read_text())["project"][
                "optional-dependencies"
            ]
        )
    elif words[:3] == ["python", "-m", "pytest"]:
        out = run(
            [sys.executable, *words[1:], "-p", "no:cacheprovider", "-rs"], proj, walkthrough.site
        )
        summary = out.strip().splitlines()[-1]
        assert "passed" in summary and "skipped" not in summary and "failed" not in summary
    elif words[:3] == ["python", "-m", "build"]:
        assert words == ["python", "-m", "build"]  # run by the fixture, exactly so
    elif words[:4] == ["python", "-m", "twine", "upload"]:
        # Not run; what it uploads is checked by test_the_wheel_carries_the_entry_points.
        assert words[-1] == "dist/*" and walkthrough.dist.is_dir()
    elif words[:3] == ["python3", "dev.py", "test"]:
        source = (ROOT / "dev.py").read_text()
        assert '"test"' in source and '"pytest", "-q", *rest' in source
        if words[3:]:  # the options reach pytest and select something
            cmd = [sys.executable, "-m", "pytest", "--collect-only", "-q", *words[3:]]
            out = run([*cmd, "tests/test_conformance_kit.py"], ROOT)
            assert "error" not in out.lower() and " collected" in out, out
    else:
        pytest.fail(f"{block}: no check for the command {line!r}; add one here")
