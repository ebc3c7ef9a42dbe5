"""CONTRIBUTING.md cannot rot: every fenced code block in it is run or checked here.

Blocks carry an info string: ``python file=PATH`` / ``toml file=PATH`` are files of a
walk-through's plugin (``project=NAME`` says which; ``zswap-zlib`` if not given),
``toml append=PATH`` is added to one; each project is put together in a temporary
folder of its name, built with ``python -m build`` as the guide says, installed
(``pip install --target``, all into one folder), and tested with the kit. Plain
``python`` blocks run in a subprocess that sees the installed plugins; ``bash`` lines
must each be a command this file knows how to check, and run in the folder that the
guide's ``cd`` lines lead to; ``text files`` blocks list a project's files,
``text layout`` paths of this repository, and ``text kit`` the settings of the kit's
classes with their defaults. A block of any language with ``excerpt=PATH`` (C code,
say) shows part of a file of this repository: it must appear in it verbatim.
"""

from __future__ import annotations

import ast
import inspect
import os
import re
import shlex
import shutil
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
#: The project of a block without ``project=``: the compressor walk-through's.
DEFAULT_PROJECT = "zswap-zlib"


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


def project_of(block: Block) -> str:
    return block.attrs.get("project", DEFAULT_PROJECT)


def projects() -> list[str]:
    """The walk-throughs' projects, in the order the guide brings them in."""
    names = [project_of(b) for b in blocks() if "file" in b.attrs]
    return list(dict.fromkeys(names))


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
        ("text", "kit"),
    }
    found = blocks()
    assert len(found) >= 15
    for b in found:
        kind = next(iter(b.attrs), "")
        if kind == "excerpt":  # any language: checked by test_excerpt_is_in_its_file
            assert list(b.attrs) == ["excerpt"], f"{b}: an excerpt takes no other settings"
            continue
        assert (b.lang, kind) in known, f"{b}: no check for this kind of block"


@pytest.mark.parametrize("block", [b for b in blocks() if "excerpt" in b.attrs], ids=str)
def test_excerpt_is_in_its_file(block: Block) -> None:
    """An ``excerpt=PATH`` block is a verbatim part of that file of this repository."""
    path = ROOT / block.attrs["excerpt"]
    assert path.is_file() and ROOT in path.resolve().parents, f"{block}: no file {path}"
    assert block.body.strip(), f"{block}: empty excerpt"
    assert block.body in path.read_text(), (
        f"{block}: not found verbatim in {block.attrs['excerpt']} (copy it again from there)"
    )


@dataclass
class Walkthrough:
    root: Path  # the folder the walk-throughs start in (`mkdir zswap-zlib` runs here)
    site: Path  # every project's wheel, installed with --target

    @property
    def project(self) -> Path:
        return self.root / DEFAULT_PROJECT

    def dist(self, name: str = DEFAULT_PROJECT) -> Path:
        return self.root / name / "dist"


@pytest.fixture(scope="module")
def walkthrough(tmp_path_factory: pytest.TempPathFactory) -> Walkthrough:
    """The guide's plugins, assembled from their blocks, built and installed as it says."""
    root = tmp_path_factory.mktemp("guide")
    site = root.parent / f"{root.name}-site"
    for name in projects():
        project = root / name  # as `mkdir zswap-zlib`
        project.mkdir()
        for b in by("python") + by("toml"):
            if "file" in b.attrs and project_of(b) == name:
                path = project / b.attrs["file"]
                assert not path.exists(), f"{b}: {path.name} written twice"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(b.body)
        for b in by("toml"):
            if "append" in b.attrs and project_of(b) == name:
                with open(project / b.attrs["append"], "a") as fh:
                    fh.write("\n" + b.body)
        run([sys.executable, "-m", "build"], project)  # `python -m build`
        dist = project / "dist"
        assert sorted(p.suffix for p in dist.iterdir()) == [".gz", ".whl"]
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
    return Walkthrough(root, site)


def entry_points_of(walkthrough: Walkthrough, name: str) -> dict[str, dict[str, str]]:
    """A project's entry points, once its pyproject.toml is seen to be what the guide says:
    named after its folder, on the core's API series, with a test extra."""
    data = tomllib.loads((walkthrough.root / name / "pyproject.toml").read_text())
    assert data["project"]["name"] == name
    assert any(d.startswith("zswap-core") for d in data["project"]["dependencies"])
    assert "test" in data["project"]["optional-dependencies"]
    eps: dict[str, dict[str, str]] = data["project"]["entry-points"]
    return eps


def test_pyproject_declares_the_entry_points(walkthrough: Walkthrough) -> None:
    assert projects() == ["zswap-zlib", "zswap-pairpool"]
    eps = entry_points_of(walkthrough, "zswap-zlib")
    assert eps["zswap.compressors"] == {"zlib": "zswap_zlib:Zlib"}
    assert eps["zswap.hooks"] == {"zlib-stats": "zswap_zlib.stats"}
    eps = entry_points_of(walkthrough, "zswap-pairpool")
    assert eps == {"zswap.zpools": {"pairpool": "zswap_pairpool:PairPool"}}
    for b in by("toml"):  # every toml block parses on its own, too
        tomllib.loads(b.body)


def wheel_contents(walkthrough: Walkthrough, name: str) -> tuple[list[str], str]:
    (wheel,) = walkthrough.dist(name).glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        (ep_file,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        return names, zf.read(ep_file).decode()


def test_the_wheel_carries_the_entry_points(walkthrough: Walkthrough) -> None:
    """What `twine upload dist/*` would publish."""
    names, text = wheel_contents(walkthrough, "zswap-zlib")
    assert "zswap_zlib/__init__.py" in names and "zswap_zlib/stats.py" in names
    assert "[zswap.compressors]\nzlib = zswap_zlib:Zlib" in text
    assert "[zswap.hooks]\nzlib-stats = zswap_zlib.stats" in text
    names, text = wheel_contents(walkthrough, "zswap-pairpool")
    assert "zswap_pairpool/__init__.py" in names
    assert "[zswap.zpools]\npairpool = zswap_pairpool:PairPool" in text


@pytest.mark.parametrize("name", projects())
def test_files_listing_matches_the_file_blocks(name: str) -> None:
    (listing,) = [b for b in by("text") if "files" in b.attrs and project_of(b) == name]
    listed = {line.split()[0] for line in listing.body.splitlines() if line.strip()}
    files = {b.attrs["file"] for b in blocks() if "file" in b.attrs and project_of(b) == name}
    assert listed == files


#: ``Class.name = default  description`` or ``Class.method(args)  description``; no
#: default: the class declares the name and the subclass must set it.
KIT_LINE = re.compile(r"^(\w+)\.(\w+)(\([^)]*\))?(?: = (.*?))?\s{2,}\S")


def test_kit_settings_match_the_kit() -> None:
    """The ``text kit`` block names every setting of the kit's classes, with its default."""
    import zswap_core.testing as kit

    (block,) = by("text", kit="")
    listed: dict[str, set[str]] = {}
    for line in block.body.splitlines():
        m = KIT_LINE.match(line)
        assert m, f"{block}: {line!r} is not `Class.name = default  description`"
        cls_name, attr, args, default = m.groups()
        cls = getattr(kit, cls_name)
        listed.setdefault(cls_name, set()).add(attr)
        if args is not None:
            params = list(inspect.signature(getattr(cls, attr)).parameters)[1:]
            assert args == f"({', '.join(params)})", f"{cls_name}.{attr}{args}: takes {params}"
        elif default is None:
            assert attr in cls.__annotations__ and not hasattr(cls, attr), (
                f"{cls_name}.{attr} is listed as required (no default)"
            )
        else:
            assert getattr(cls, attr) == ast.literal_eval(default), (
                f"{cls_name}.{attr} is {getattr(cls, attr)!r}, not {default}"
            )
    for cls_name in ("CompressorConformance", "ZpoolConformance", "LevelParameterTests"):
        cls = getattr(kit, cls_name)
        settings = {n for n, a in cls.__annotations__.items() if "ClassVar" in str(a)}
        missing = settings - listed.get(cls_name, set())
        assert not missing, f"CONTRIBUTING.md does not list {cls_name}: {sorted(missing)}"


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


def test_a_run_time_write_reaches_the_pools_compressor(walkthrough: Walkthrough) -> None:
    """What step 3 says of the core (its block shows it on an instance of its own): a
    pool's compressor gets the module's one params object, and a write keeps the
    instance and reaches it."""
    code = """
import zswap_core

with zswap_core.Zswap(compressor="zlib", zpool="zbud") as z:
    mod = zswap_core.default_registry().loaded("compressor", "zlib")
    (pool,) = z._pools
    comp = pool.compressor
    assert comp.params is mod.params
    page = b" ".join(b"%d" % (i * i) for i in range(1000))[:4096]
    mod.params["level"] = 1
    fast = comp.compress(page)
    mod.params["level"] = 9
    (pool,) = z._pools
    assert pool.compressor is comp
    assert comp.compress(page) != fast
"""
    run([sys.executable, "-c", code], walkthrough.project, walkthrough.site)


def test_same_test_file_names_clash_in_one_session(
    walkthrough: Walkthrough, tmp_path: Path
) -> None:
    """Why step 5 names the file test_<name>_conformance.py: the two projects' tests,
    with both files renamed to test_conformance.py, cannot be collected in one session."""
    for name in projects():
        dst = tmp_path / name / "tests"
        ignore = shutil.ignore_patterns("__pycache__")
        shutil.copytree(walkthrough.root / name / "tests", dst, ignore=ignore)
        (test_file,) = dst.glob("test_*_conformance.py")
        test_file.rename(dst / "test_conformance.py")
    cmd = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    proc = subprocess.run(
        [*cmd, *(f"{name}/tests" for name in projects())],
        cwd=tmp_path,
        env=env(walkthrough.site),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0 and "import file mismatch" in proc.stdout, proc.stdout[-3000:]


def bundled_distributions() -> set[str]:
    return {
        tomllib.loads(p.read_text())["project"]["name"]
        for p in [ROOT / "pyproject.toml", *ROOT.glob("plugins/*/*/pyproject.toml")]
    }


def bash_lines() -> list[tuple[Block, str, str]]:
    """Every command of the bash blocks, in the guide's order, with the folder it runs
    in: the guide's ``cd`` lines are followed from the folder the walk-throughs start in
    ("") into a project (its name) and back (``cd ..``)."""
    out = []
    cwd = ""
    for b in by("bash"):
        for raw in b.body.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            out.append((b, line, cwd))
            words = shlex.split(line)
            if words[0] == "cd":
                cwd = "" if words[1:] == [".."] else " ".join(words[1:])
    return out


@pytest.mark.parametrize(("block", "line", "cwd"), bash_lines(), ids=lambda x: str(x))
def test_bash_line_is_checked(walkthrough: Walkthrough, block: Block, line: str, cwd: str) -> None:
    words = shlex.split(line)
    proj = walkthrough.project
    here = walkthrough.root / cwd
    if words[0] == "mkdir" or (words[0] == "cd" and words[1:] != [".."]):
        # into a project's folder, from the folder the walk-throughs start in
        assert cwd == "" and len(words) == 2, f"{line!r} in {cwd or 'the start folder'}"
        assert words[1] in projects(), "a walk-through's folder is named after its dist"
    elif words == ["cd", ".."]:
        assert cwd in projects(), "`cd ..` leaves a project's folder"
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
        assert cwd in projects(), f"{line!r} outside a project"
        entry_points_of(walkthrough, cwd)  # the project has a test extra
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
        for arg in words[3:]:
            assert arg.startswith("-") or (here / arg).exists(), f"{arg} is not in {here}"
        out = run(
            [sys.executable, *words[1:], "-p", "no:cacheprovider", "-rs"], here, walkthrough.site
        )
        summary = out.strip().splitlines()[-1]
        assert "passed" in summary and "skipped" not in summary and "failed" not in summary
    elif words[:3] == ["python", "-m", "build"]:
        assert words == ["python", "-m", "build"]  # run by the fixture, exactly so
        assert cwd in projects(), f"{line!r} outside a project"
    elif words[:4] == ["python", "-m", "twine", "upload"]:
        # Not run; what it uploads is checked by test_the_wheel_carries_the_entry_points.
        assert cwd in projects() and words[-1] == "dist/*"
        assert walkthrough.dist(cwd).is_dir()
    elif words[:3] == ["python3", "dev.py", "test"]:
        source = (ROOT / "dev.py").read_text()
        assert '"test"' in source and '"pytest", "-q", *rest' in source
        if words[3:]:  # the options reach pytest and select something
            cmd = [sys.executable, "-m", "pytest", "--collect-only", "-q", *words[3:]]
            out = run([*cmd, "tests/test_conformance_kit.py"], ROOT)
            assert "error" not in out.lower() and " collected" in out, out
    else:
        pytest.fail(f"{block}: no check for the command {line!r}; add one here")
