"""Every test here runs against both implementations: the C pool and the Python one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from zswap_zsmalloc import NATIVE_AVAILABLE, NATIVE_ERROR

from zswap_core import PageAllocator


def native_page_acct() -> bool:
    """zswap-core's PageAllocator exports ``page_acct`` (its native backend is built)."""
    try:
        return getattr(PageAllocator(4096, backend="native"), "page_acct", None) is not None
    except (TypeError, ValueError):
        return False


@pytest.fixture(autouse=True, params=["native", "python"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``ZSWAP_BACKEND`` for the test (read when a pool or PageAllocator is made)."""
    name: str = request.param
    if name == "native":
        if not NATIVE_AVAILABLE:
            pytest.skip(f"native: {NATIVE_ERROR}")
        if not native_page_acct():
            pytest.skip("native: zswap_core's PageAllocator has no page_acct (core not native)")
    monkeypatch.setenv("ZSWAP_BACKEND", name)
    yield name
