"""Shared fixtures: fake plugin distributions on a temporary sys.path entry."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import FakeDists

from zswap_core import Registry


@pytest.fixture
def fake_dists(tmp_path: Path) -> Iterator[FakeDists]:
    root = tmp_path / "site"
    root.mkdir()
    sys.path.insert(0, str(root))
    try:
        yield FakeDists(root)
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m.startswith("fake_")]:
            del sys.modules[name]


@pytest.fixture
def registry() -> Registry:
    """A registry of its own, so tests never disturb the process-wide one."""
    return Registry()


@pytest.fixture(autouse=True)
def _no_user_plugin_config(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("ZSWAP_BLOCK_PLUGINS", "ZSWAP_DISABLE_PLUGIN_AUTOLOAD", "ZSWAP_MODPROBE_DIR"):
        monkeypatch.delenv(var, raising=False)
