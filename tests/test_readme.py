"""The README's examples run as written (the swap file goes to a temporary folder)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from helpers import subprocess_env

ROOT = Path(__file__).resolve().parents[1]


def python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_python_examples_run(tmp_path: Path) -> None:
    blocks = python_blocks()
    assert len(blocks) == 3
    program = "\n".join(blocks).replace("/tmp/swapfile", str(tmp_path / "swapfile"))
    out = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "Y PoolInfo(name=" in out.stdout
    assert "'pswpout'" in out.stdout or "pswpout" in out.stdout
    assert "'zswpout': 1" in out.stdout  # the group's memory.stat


def test_readme_names_the_two_commands_that_ci_runs() -> None:
    text = (ROOT / "README.md").read_text()
    assert "python3 dev.py run" in text and "python3 dev.py test" in text
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python3 dev.py test" in ci
