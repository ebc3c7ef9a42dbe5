"""The C allocator example (examples/zswap-example-czpool, zpool ``czpool``), as its
users get it: pip builds and installs it (``--target``, a folder of its own), and its
own tests (the conformance kit, the ops table inside Zswap, handles through the
capsule) run in a subprocess that sees it, on the native backend and on the Python
one (where the C pool refuses to be made, clearly)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from zswap_core._backend import NATIVE_ERROR

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "zswap-example-czpool"

pytestmark = [
    pytest.mark.skipif(NATIVE_ERROR is not None, reason=str(NATIVE_ERROR)),
    pytest.mark.skipif(
        shutil.which((sysconfig.get_config_var("CC") or "cc").split()[0]) is None,
        reason="no C compiler",
    ),
]


def env(site: Path, **extra: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith(("ZSWAP_", "PYTEST_"))}
    out["PYTHONPATH"] = str(site)
    out.update(extra)
    return out


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The example built from its folder by pip (a copy: no build/ left in the tree)
    and installed into a folder of its own; and pip's log (the compiler's output)."""
    root = tmp_path_factory.mktemp("czpool")
    src = root / "src"
    shutil.copytree(
        EXAMPLE, src, ignore=shutil.ignore_patterns("build", "*.so", "__pycache__", "*.egg-info")
    )
    site = root / "site"
    cmd = [sys.executable, "-m", "pip", "install", "-v", "--no-deps", "--no-build-isolation"]
    proc = subprocess.run(
        [*cmd, "--target", str(site), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env(root),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return site, proc.stdout + proc.stderr


def run_example_tests(site: Path, tmp_path: Path, **extra: str) -> str:
    shutil.copytree(EXAMPLE / "tests", tmp_path / "tests")  # as a plugin's CI runs them
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", "tests"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=env(site, **extra),
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return proc.stdout.strip().splitlines()[-1]


def test_builds_without_compiler_warnings(installed: tuple[Path, str]) -> None:
    site, log = installed
    assert "czpool.c" in log, "pip's log shows no compilation"
    warning = re.compile(r"\.[ch]:\d+:(\d+:)? warning:")
    warnings = [line for line in log.splitlines() if warning.search(line)]
    assert not warnings, "\n".join(warnings)
    files = {p.name for p in (site / "zswap_example_czpool").iterdir() if p.is_file()}
    ext = "_czpool" + sysconfig.get_config_var("EXT_SUFFIX")
    assert files == {"__init__.py", "_czpool.pyi", "py.typed", ext}, files  # no C sources


def test_example_tests_pass_on_the_native_backend(
    installed: tuple[Path, str], tmp_path: Path
) -> None:
    summary = run_example_tests(installed[0], tmp_path)
    assert "passed" in summary and "skipped" not in summary, summary


def test_example_tests_on_the_python_backend(installed: tuple[Path, str], tmp_path: Path) -> None:
    """Only the clear refusal runs; the rest skips, saying why."""
    summary = run_example_tests(installed[0], tmp_path, ZSWAP_BACKEND="python")
    assert summary.startswith("1 passed") and "skipped" in summary, summary
