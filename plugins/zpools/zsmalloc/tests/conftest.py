"""Every test here runs against both implementations: the C pool and the Python one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from zswap_zsmalloc import NATIVE_AVAILABLE, NATIVE_ERROR

from zswap_core import PageAllocator


def skip_without_native() -> None:
    """Skip, saying why, when the C pool cannot run here."""
    if not NATIVE_AVAILABLE:
        pytest.skip(f"native: {NATIVE_ERROR}")
    try:
        acct = getattr(PageAllocator(4096, backend="native"), "page_acct", None)
    except (TypeError, ValueError):
        acct = None
    if acct is None:
        pytest.skip("native: zswap_core's PageAllocator has no page_acct (core not native)")


@pytest.fixture
def require_native() -> None:
    skip_without_native()


@pytest.fixture(autouse=True, params=["native", "python"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``ZSWAP_BACKEND`` for the test (read when a pool or PageAllocator is made)."""
    name: str = request.param
    if name == "native":
        skip_without_native()
    monkeypatch.setenv("ZSWAP_BACKEND", name)
    yield name
