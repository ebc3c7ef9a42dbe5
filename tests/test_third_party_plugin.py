"""A third-party plugin, as its users get it: a wheel pip-installed into a fresh venv.

The worked example (examples/zswap-example-zpool, zpool ``simplepool``) is built into
a wheel and installed next to wheels of the core, lz4 and zbud in a virtual
environment made for this module (their dependencies come from the package index).
Inside it: the plugin is found, a running Zswap switches to it and back, the
conformance kit passes, a plugin installed while a process runs is found on rescan
and on a miss, and blocking keeps it from being imported. Plugins that are
incompatible or broken are checked in-process with fake distributions.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import tomllib
import venv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import FakeDists

import zswap_core
from zswap_core import ApiVersionError, ParamError, Registry, Zswap

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "zswap-example-zpool"
#: From the package index: what the wheels need, plus the build backend and pytest.
INDEX_PACKAGES = ["hatchling>=1.18", "pytest>=8"]


@dataclass
class Venv:
    root: Path
    python: Path
    wheels: dict[str, Path]

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("ZSWAP_", "PYTHON", "VIRTUAL_ENV", "PYTEST_"))
        }
        env["VIRTUAL_ENV"] = str(self.root)
        env["PATH"] = f"{self.python.parent}{os.pathsep}{env.get('PATH', '')}"
        env.update(extra)
        return env

    def pip(self, *args: str) -> None:
        """The workspace's pip, acting on this venv (which has none of its own)."""
        cmd = [sys.executable, "-m", "pip", "--python", str(self.python), "-q", *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=self.env())
        assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}"

    def run(self, code: str, *, cwd: Path | None = None, **env: str) -> str:
        proc = subprocess.run(
            [str(self.python), "-c", textwrap.dedent(code)],
            capture_output=True,
            text=True,
            env=self.env(**env),
            cwd=cwd or self.root,
            timeout=120,
        )
        assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
        return proc.stdout

    def build(self, projects: list[Path], out: Path) -> None:
        """Build wheels (one pip run: its start-up is most of the cost)."""
        self.pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(out), *map(str, projects))
        for wheel in out.glob("*.whl"):
            self.wheels[wheel.name.split("-")[0]] = wheel

    def installed(self, dist: str) -> bool:
        out = self.run(
            f"""
            from importlib import metadata
            try:
                metadata.version({dist!r}); print("yes")
            except metadata.PackageNotFoundError:
                print("no")
            """
        )
        return out.strip() == "yes"


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """A new venv with the core, lz4 and zbud installed from wheels (not the example)."""
    root = tmp_path_factory.mktemp("third-party")
    venv.EnvBuilder(with_pip=False, clear=True).create(root / "venv")
    v = Venv(root / "venv", root / "venv" / "bin" / "python", {})
    v.pip("install", *INDEX_PACKAGES)
    # The core and its plugins as CONTRIBUTING.md tells an author to get them: the
    # wheels of `python3 dev.py wheels` (each built from its sdist), never editable.
    proc = subprocess.run(
        [sys.executable, str(ROOT / "dev.py"), "wheels", "--out", str(root / "dist")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for wheel in (root / "dist").glob("*.whl"):
        v.wheels[wheel.name.split("-")[0]] = wheel
    v.build([EXAMPLE, late_project(root)], root / "wheels")  # the third-party ones
    # The core's dependencies (pluggy, stevedore, click, rich) and lz4 come from the index.
    v.pip("install", *(str(v.wheels[w]) for w in ("zswap_core", "zswap_lz4", "zswap_zbud")))
    return v


@pytest.fixture
def with_example(fresh: Venv) -> Venv:
    if not fresh.installed("zswap-example-zpool"):
        fresh.pip("install", "--no-index", "--no-deps", str(fresh.wheels["zswap_example_zpool"]))
    return fresh


def test_dev_py_wheels_builds_every_distribution(fresh: Venv) -> None:
    """An sdist and a wheel for the core and each bundled plugin, by their pyproject names."""
    dist = fresh.root.parent / "dist"
    names = {
        tomllib.loads((ROOT / m / "pyproject.toml").read_text())["project"]["name"]
        for m in [".", *(str(p.parent) for p in ROOT.glob("plugins/*/*/pyproject.toml"))]
    }
    assert len(names) == 8
    for name in names:
        stem = name.replace("-", "_")
        # those with a C extension (the core, zsmalloc, the codecs' ops) are platform
        # wheels, built from their sdists; the two Python allocators are pure
        tag = "py3-none-any" if stem in ("zswap_zbud", "zswap_z3fold") else "cp3*-linux_*"
        assert len(list(dist.glob(f"{stem}-*-{tag}.whl"))) == 1, name
        assert len(list(dist.glob(f"{stem}-*.tar.gz"))) == 1, name


def test_the_wheel_built_from_the_sdist_carries_the_native_core(fresh: Venv) -> None:
    """The core's sdist compiles its C extension: the wheel made from it runs native."""
    out = fresh.run(
        """
        import os
        import zswap_core
        from zswap_core import Zswap
        from zswap_core._backend import NATIVE_ERROR
        z = Zswap(compressor="lz4", zpool="zbud", ram_bytes=1 << 30)
        z.init(0)
        page = bytes(range(256)) * 16
        assert z.store(0, 1, page) and z.load(0, 1) == page
        header = os.path.join(zswap_core.get_include(), "zswap_ops.h")
        print(NATIVE_ERROR, z.backend, os.path.isfile(header))
        """,
        ZSWAP_BACKEND="auto",
    )
    assert out.split() == ["None", "native", "True"]  # and the ops header is installed


def test_the_core_installs_straight_from_a_clone(tmp_path: Path) -> None:
    """CONTRIBUTING's other way: `pip install /path/to/clone` (pip builds the wheel)."""
    target = tmp_path / "site"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (target / "zswap_core" / "testing" / "__init__.py").is_file()  # the kit ships too
    assert list(target.glob("zswap_core-*.dist-info/entry_points.txt"))


def test_fresh_venv_has_only_what_was_installed(fresh: Venv) -> None:
    out = fresh.run(
        """
        import sys, zswap_core
        assert "/work/main" not in str(zswap_core.__file__), zswap_core.__file__
        print(sorted(p.name for p in zswap_core.list_plugins()))
        """
    )
    assert out.split("\n")[0] == str(["lz4", "lz4hc", "zbud"])


def test_found_and_switchable_in_a_running_zswap(with_example: Venv) -> None:
    with_example.run(
        """
        import random, zswap_core
        assert zswap_core.zpool_has_pool("simplepool")
        (row,) = [p for p in zswap_core.list_plugins() if p.name == "simplepool"]
        assert (row.distribution, row.version, row.state) == (
            "zswap-example-zpool", "0.1.0", "loaded"), row
        rng = random.Random(1)
        pages = {i: bytes([rng.randrange(4)]) * 1024 + rng.randbytes(2048) + bytes(1024)
                 for i in range(90)}
        z = zswap_core.Zswap(compressor="lz4", zpool="zbud", checksums_enabled=True,
                             ram_bytes=1 << 30)
        z.init(0)
        for i in range(0, 30):
            assert z.store(0, i, pages[i])
        z.params["zpool"] = "simplepool"
        assert z.pools[0].zpool == "simplepool"
        for i in range(30, 60):
            assert z.store(0, i, pages[i])
        z.params["zpool"] = "zbud"
        for i in range(60, 90):
            assert z.store(0, i, pages[i])
        assert [p.zpool for p in z.pools] == ["zbud", "simplepool"]
        for i, page in pages.items():
            assert z.load(0, i) == page, i
        for i in range(30, 60):
            z.invalidate_page(0, i)
        assert [p.zpool for p in z.pools] == ["zbud"]
        assert z.stats["decompress_fail"] == 0
        z.close()
        assert z.pages.nr_pages == 0
        """
    )


def test_conformance_kit_passes_in_the_fresh_venv(with_example: Venv, tmp_path: Path) -> None:
    """The example's own tests (the kit), and the kit on lz4 and zbud, as a plugin CI runs them."""
    suite = tmp_path / "suite"
    shutil.copytree(EXAMPLE / "tests", suite / "tests")
    for f in (
        ROOT / "plugins/compressors/lz4/tests/test_lz4_conformance.py",
        ROOT / "plugins/zpools/zbud/tests/test_zbud_conformance.py",
    ):
        shutil.copy(f, suite / "tests" / f.name)
    proc = subprocess.run(
        [
            str(with_example.python),
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-W",
            "error::pytest.PytestAssertRewriteWarning",
            "-rs",
            "tests",
        ],
        cwd=suite,
        capture_output=True,
        text=True,
        env=with_example.env(),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    summary = proc.stdout.strip().splitlines()[-1]
    assert "passed" in summary and "skipped" not in summary and "failed" not in summary, summary


DRIVER = """
import json, sys, zswap_core

for line in sys.stdin:
    cmd, _, arg = line.strip().partition(" ")
    if cmd == "has":
        out = zswap_core.zpool_has_pool(arg)
    elif cmd == "error":
        out = str(zswap_core.plugin_error("zpool", arg))
    elif cmd == "rescan":
        zswap_core.rescan_plugins()
        out = None
    elif cmd == "roundtrip":
        with zswap_core.Zswap(compressor="lz4", zpool=arg, ram_bytes=1 << 30) as z:
            z.init(0)
            page = bytes(range(256)) * 16
            out = z.store(0, 5, page) and z.load(0, 5) == page and z.pools[0].zpool == arg
    elif cmd == "modules":
        out = sorted(m for m in sys.modules if m.startswith("zswap_"))
    else:
        break
    print(json.dumps(out), flush=True)
"""


@dataclass
class Driven:
    proc: subprocess.Popen[str]

    def ask(self, line: str) -> object:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        assert answer, (
            f"the driven process died: {self.proc.stderr.read() if self.proc.stderr else ''}"
        )
        return json.loads(answer)


@pytest.fixture
def driven(fresh: Venv) -> Iterator[Driven]:
    for dist in ("zswap-late-zpool", "zswap-example-zpool"):
        if fresh.installed(dist):
            fresh.pip("uninstall", "-y", dist)
    proc = subprocess.Popen(
        [str(fresh.python), "-c", DRIVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=fresh.env(),
        cwd=fresh.root,
    )
    try:
        yield Driven(proc)
    finally:
        if proc.poll() is None:
            assert proc.stdin is not None
            proc.stdin.write("quit\n")
            proc.stdin.close()
            proc.wait(30)


def late_project(tmp_path: Path) -> Path:
    """A second third-party plugin, installed while a process runs."""
    proj = tmp_path / "zswap-late-zpool"
    (proj / "zswap_late_zpool").mkdir(parents=True)
    (proj / "pyproject.toml").write_text(
        textwrap.dedent(
            """
            [build-system]
            requires = ["hatchling>=1.18"]
            build-backend = "hatchling.build"

            [project]
            name = "zswap-late-zpool"
            version = "0.1.0"
            dependencies = ["zswap-example-zpool"]

            [project.entry-points."zswap.zpools"]
            latepool = "zswap_late_zpool:LatePool"
            """
        )
    )
    (proj / "zswap_late_zpool" / "__init__.py").write_text(
        "from zswap_example_zpool import SimplePool\n\n\n"
        "class LatePool(SimplePool):\n    type = 'latepool'\n"
    )
    return proj


def test_installed_while_running_is_found(fresh: Venv, driven: Driven) -> None:
    assert driven.ask("has simplepool") is False
    err = driven.ask("error simplepool")
    assert isinstance(err, str) and "no zpool named 'simplepool'" in err
    fresh.pip("install", "--no-index", "--no-deps", str(fresh.wheels["zswap_example_zpool"]))
    assert driven.ask("rescan") is None
    assert driven.ask("has simplepool") is True
    assert driven.ask("roundtrip simplepool") is True
    # A name never asked for before: found by the rescan a miss does, no explicit rescan.
    fresh.pip("install", "--no-index", "--no-deps", str(fresh.wheels["zswap_late_zpool"]))
    assert driven.ask("has latepool") is True
    assert driven.ask("roundtrip latepool") is True
    assert "zswap_late_zpool" in driven.ask("modules")  # type: ignore[operator]


BLOCK_CHECK = """
import json, os, sys, zswap_core
out = {}
if os.environ.get("USE_API"):
    zswap_core.block_plugin("simplepool")
out["blocked_has"] = zswap_core.zpool_has_pool("simplepool")
out["imported"] = "zswap_example_zpool" in sys.modules
out["error"] = str(zswap_core.plugin_error("zpool", "simplepool"))
out["zbud"] = zswap_core.zpool_has_pool("zbud")
if os.environ.get("USE_API"):
    zswap_core.unblock_plugin("simplepool")
    out["unblocked_has"] = zswap_core.zpool_has_pool("simplepool")
    out["imported_after"] = "zswap_example_zpool" in sys.modules
print(json.dumps(out))
"""


@pytest.mark.parametrize(
    "how",
    [
        {"ZSWAP_BLOCK_PLUGINS": "simplepool"},
        {"ZSWAP_BLOCK_PLUGINS": "lzo, zpool:simplepool"},
        {"ZSWAP_DISABLE_PLUGIN_AUTOLOAD": "1"},
        {"USE_API": "1"},
    ],
    ids=["env", "env-kind", "disable-autoload", "block_plugin"],
)
def test_blocked_plugin_is_never_imported(with_example: Venv, how: dict[str, str]) -> None:
    out = json.loads(with_example.run(BLOCK_CHECK, **how))
    assert out["blocked_has"] is False
    assert out["imported"] is False, "a blocked plugin was imported"
    assert out["zbud"] is True, "blocking one plugin must not affect the others"
    if "USE_API" in how:
        assert out["unblocked_has"] is True and out["imported_after"] is True
    if "ZSWAP_BLOCK_PLUGINS" in how or "USE_API" in how:
        assert "blocked" in out["error"] and "zswap-example-zpool" in out["error"]


# -- incompatible and broken plugins (in-process, fake distributions) ---------------------------

FAKE_POOL = """
from zswap_core.testing import ReferencePagePool


class Pool(ReferencePagePool):
    type = "{name}"
"""


def test_incompatible_api_version(fake_dists: FakeDists, registry: Registry) -> None:
    fake_dists.add(
        "zswap-future-zpool",
        "3.0",
        {"zswap.zpools": {"future": "fake_future_pool:Pool"}},
        {"fake_future_pool": FAKE_POOL.format(name="future") + "Pool.api_version = 99\n"},
    )
    assert registry.request("zpool", "future") is None
    err = registry.error("zpool", "future")
    assert isinstance(err, ApiVersionError)
    text = str(err)
    assert "'future'" in text and "zswap-future-zpool 3.0" in text
    assert "API 99" in text and f"current {zswap_core.API_VERSION}" in text
    assert "pip install --upgrade zswap-future-zpool zswap-core" in text
    _core_keeps_working(registry, "future")


def test_plugin_that_fails_to_import(fake_dists: FakeDists, registry: Registry) -> None:
    fake_dists.add(
        "zswap-broken-zpool",
        "1.2",
        {"zswap.zpools": {"broken": "fake_broken_pool:Pool"}},
        {"fake_broken_pool": "import zswap_no_such_dependency\n"},
    )
    assert registry.request("zpool", "broken") is None
    text = str(registry.error("zpool", "broken"))
    assert "'broken'" in text and "zswap-broken-zpool 1.2" in text
    assert "ModuleNotFoundError" in text and "zswap_no_such_dependency" in text
    assert "pip install --force-reinstall zswap-broken-zpool" in text
    _core_keeps_working(registry, "broken")


def _core_keeps_working(registry: Registry, bad: str) -> None:
    # The kit's reference drivers are not installed; serve them the way the kit does.
    from zswap_core.testing import KitRegistry, ReferenceDeflate, ReferencePagePool
    from zswap_core.testing._common import load_driver

    kit = KitRegistry(
        load_driver("compressor", "kit-deflate", ReferenceDeflate, {}),
        load_driver("zpool", "kit-pagepool", ReferencePagePool, {}),
        fallback=registry,
    )
    with Zswap(registry=kit, compressor="kit-deflate", zpool="kit-pagepool") as z:
        z.init(0)
        page = bytes(range(256)) * 16
        assert z.store(0, 1, page)
        with pytest.raises(ParamError) as info:
            z.params["zpool"] = bad
        assert info.value.errno == 2  # ENOENT, with the reason
        assert bad in str(info.value)
        assert z.params["zpool"] == "kit-pagepool"
        assert z.load(0, 1) == page


def test_the_core_installs_without_a_c_compiler(fresh: Venv, tmp_path: Path) -> None:
    """No compiler: the sdist still installs (the extension is optional), and the core
    runs on its Python backend, says so once, and refuses an explicit native."""
    (sdist,) = (fresh.root.parent / "dist").glob("zswap_core-*.tar.gz")
    target = tmp_path / "site"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZSWAP_", "PYTHON"))}
    env["CC"] = "false"  # every compile fails, as on a machine without gcc
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(sdist),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not list(target.glob("zswap_core/_core*.so"))
    # the dependencies (pluggy, stevedore, click, rich) from this environment, behind it
    deps = sysconfig.get_paths()["purelib"]
    code = """
        import warnings
        from zswap_core import PageAllocator, _backend
        assert _backend.NATIVE_ERROR and "not built" in _backend.NATIVE_ERROR
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert _backend.choose() == "python" and _backend.choose() == "python"
            pa = PageAllocator()
        assert pa.backend == "python" and pa.alloc_page() and pa.nr_pages == 1
        print(len(caught), caught[0].message)
        try:
            _backend.choose("native")
        except ValueError as exc:
            print("refused:", exc)
        """
    run = subprocess.run(  # -S: not this environment's editable install of the core
        [sys.executable, "-S", "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "PYTHONPATH": f"{target}{os.pathsep}{deps}"},
        cwd=tmp_path,  # not the repository, whose zswap_core has the extension built
    )
    assert run.returncode == 0, run.stderr
    first, refused = run.stdout.strip().splitlines()
    assert first.startswith("1 zswap: using the Python backend")  # said once, not twice
    assert refused.startswith("refused: backend='native': the C extension")


def test_a_codec_plugin_installs_without_its_c_ops(fresh: Venv, tmp_path: Path) -> None:
    """No compiler (or no library headers): the lz4 plugin's sdist still installs, its
    codec ops are missing, and its compressors run on their Python methods."""
    dist = fresh.root.parent / "dist"
    (core,) = dist.glob("zswap_core-*.tar.gz")
    (plugin,) = dist.glob("zswap_lz4-*.tar.gz")
    target = tmp_path / "site"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZSWAP_", "PYTHON"))}
    env["CC"] = "false"  # every compile fails, as on a machine without gcc
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "install", "-q", "--no-deps"),
            *("--no-build-isolation", "--target", str(target), str(core), str(plugin)),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not list(target.glob("zswap_lz4/_ops*.so"))
    deps = sysconfig.get_paths()["purelib"]
    code = """
        import warnings
        warnings.simplefilter("ignore")  # the core's own "Python backend" notice
        from zswap_lz4 import LZ4, LZ4HC, _codec
        assert not _codec.HAVE_OPS
        page = bytes(range(256)) * 16
        for cls in (LZ4, LZ4HC):
            c = cls()
            assert c.codec_ops is None
            assert c.decompress(c.compress(page), len(page)) == page
        print("python path")
        """
    run = subprocess.run(
        [sys.executable, "-S", "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "PYTHONPATH": f"{target}{os.pathsep}{deps}"},
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "python path"
