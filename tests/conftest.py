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


# -- both backends ---------------------------------------------------------------------
#
# The core's suite runs against the native backend (the C extension) and the Python
# reference alike: every test in these files is parametrized, not copied. The choice
# reaches every Zswap the test makes, and the subprocesses it starts, through
# ZSWAP_BACKEND. Tests of the Python implementation's own insides are marked
# `python_backend_only`.
BACKEND_MODULES = {
    "test_bad_input",
    "test_density",
    "test_faults",
    "test_reliability_core",
    "test_reliability_params",
    "test_reliability_swap",
    "test_security",
    "test_swap_layer",
    "test_writeback",
    "test_zswap_core",
    "test_zswap_model",
    "test_stress",
    "test_param_lock_deadlock",
    "test_memcg",
    "test_shrinker",
    "test_shared_zpool",
}


def _backends() -> list[object]:
    from zswap_core._backend import NATIVE_ERROR

    native = pytest.param(
        "native",
        marks=pytest.mark.skipif(NATIVE_ERROR is not None, reason=str(NATIVE_ERROR)),
    )
    return [native, "python"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    name = metafunc.module.__name__.rpartition(".")[2]
    if name in BACKEND_MODULES and "zswap_backend" in metafunc.fixturenames:
        metafunc.parametrize("zswap_backend", _backends(), indirect=True)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "python_backend_only: tests the Python backend's own insides"
    )


@pytest.fixture(autouse=True)
def zswap_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The backend this test runs on (``native`` or ``python``)."""
    from zswap_core._backend import NATIVE_ERROR

    default = "python" if NATIVE_ERROR is not None else "native"
    backend: str = getattr(request, "param", default)
    if backend != "python" and request.node.get_closest_marker("python_backend_only"):
        pytest.skip("exercises the Python backend's own data structures")
    monkeypatch.setenv("ZSWAP_BACKEND", backend)
    return backend
