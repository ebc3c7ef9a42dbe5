"""The GIL-free store and load paths of the native core, with the interleavings forced.

With a compressor that exports C codec ops and an allocator whose ops may run without
the GIL (the C zsmalloc), the core compresses, allocates and inserts a page, and
reads, decompresses and re-checks an entry, with the GIL released. These tests stop
such a call in the middle, inside the codec (``zswap_core._core.Gate``: a copying codec
whose next call blocks until released), and meanwhile run what it must race against
on the main thread: which can only happen if the GIL really was released. Timeouts
only end a hang, never give a verdict.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from zswap_core import Compressor, Registry, Zswap
from zswap_core._backend import NATIVE_ERROR
from zswap_core.testing._common import KitRegistry, load_driver

pytestmark = pytest.mark.skipif(NATIVE_ERROR is not None, reason=str(NATIVE_ERROR))

if NATIVE_ERROR is None:
    from zswap_core._core import Gate

PS = 4096
HANG = 30.0


def page(i: int) -> bytes:
    return i.to_bytes(4, "little") * 8 + bytes(PS - 33) + b"\x01"


class Gated(Compressor):
    """The gate's copying codec: C ops from ``gate``, the same format in Python."""

    name = "gated"
    gate: Any = None

    @property
    def codec_ops(self) -> object:
        return type(self).gate.codec_ops

    def compress(self, src: Any) -> bytes:
        return bytes(src)

    def decompress(self, src: Any, dlen: int) -> bytes:
        if len(src) != dlen:
            raise ValueError("gated: wrong length")
        return bytes(src)


@pytest.fixture
def gate() -> Iterator[Any]:
    g = Gate()
    Gated.gate = g
    yield g
    g.release()  # never leave a thread behind at the gate
    Gated.gate = None


@pytest.fixture
def z(gate: Any) -> Iterator[Zswap]:
    mod = load_driver("compressor", "gated", Gated, {})
    reg = KitRegistry(mod, fallback=Registry())
    z = Zswap(
        ram_bytes=1 << 30, registry=reg, backend="native", compressor="gated", zpool="zsmalloc"
    )
    z.init(0)
    assert z._core is not None and z._current is not None
    if z._core.pool_backend(z._current.id) != "native":
        pytest.skip("the C zsmalloc is not built")
    assert z._core.pool_codec_backend(z._current.id) == "native"
    yield z
    z.close()


class Background:
    """``fn()`` on a thread; ``result()`` joins it (a hang fails the test)."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.out: list[Any] = []
        self.err: list[BaseException] = []
        self.t = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.t.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self.out.append(fn())
        except BaseException as exc:
            self.err.append(exc)

    def result(self) -> Any:
        self.t.join(HANG)
        assert not self.t.is_alive(), "the call did not finish: a deadlock"
        if self.err:
            raise self.err[0]
        return self.out[0]


def blocked_in(gate: Any, kind: str, fn: Callable[[], Any]) -> Background:
    gate.arm(kind)
    bg = Background(fn)
    assert gate.wait_blocked(HANG), f"the call never reached {kind}"
    return bg


def nogil_allocator(z: Zswap) -> bool:
    """Loads too run without the GIL: the allocator's ops allow it."""
    assert z._core is not None and z._current is not None
    return z._core.pool_nogil(z._current.id)


# -- store -------------------------------------------------------------------------


def test_other_threads_run_python_while_a_store_compresses(z: Zswap, gate: Any) -> None:
    bg = blocked_in(gate, "compress", lambda: z.store(0, 1, page(1)))
    # The store waits inside the codec; this thread runs Python meanwhile.
    assert z.store(0, 2, page(2)) and z.load(0, 2) == page(2)
    gate.release()
    assert bg.result() is True
    assert z.load(0, 1) == page(1)


def test_swapoff_while_a_store_compresses_refuses_the_store(z: Zswap, gate: Any) -> None:
    bg = blocked_in(gate, "compress", lambda: z.store(0, 7, page(7)))
    z.invalidate_area(0)
    gate.release()
    assert bg.result() is False
    assert z.pages.nr_pages == 0, "the refused page's memory went back"
    with pytest.raises(ValueError):
        z.load(0, 7)


def test_a_store_overtaken_at_the_same_offset_wins_as_the_later_one(z: Zswap, gate: Any) -> None:
    bg = blocked_in(gate, "compress", lambda: z.store(0, 3, page(30)))
    assert z.store(0, 3, page(31))
    gate.release()
    assert bg.result() is True
    assert z.load(0, 3) == page(30)
    assert z.stats["duplicate_entry"] == 1
    assert z.stats["stored_pages"] == 1


def test_a_compressor_change_while_a_store_compresses(z: Zswap, gate: Any) -> None:
    bg = blocked_in(gate, "compress", lambda: z.store(0, 4, page(4)))
    z.params["compressor"] = "lz4"  # a new pool; the old one lives on for its entries
    gate.release()
    assert bg.result() is True
    assert z.load(0, 4) == page(4)
    z.invalidate_page(0, 4)
    assert [p.compressor_name for p in z._pools] == ["lz4"], "the emptied old pool went"


# -- load --------------------------------------------------------------------------


def test_an_entry_invalidated_while_it_decompresses_is_not_returned(z: Zswap, gate: Any) -> None:
    if not nogil_allocator(z):
        pytest.skip("zsmalloc's ops need the GIL: loads take the GIL path")
    assert z.store(0, 5, page(5))
    bg = blocked_in(gate, "decompress", lambda: z.load(0, 5))
    z.invalidate_page(0, 5)
    gate.release()
    assert bg.result() is None


def test_an_entry_replaced_while_it_decompresses_gives_the_new_page(z: Zswap, gate: Any) -> None:
    if not nogil_allocator(z):
        pytest.skip("zsmalloc's ops need the GIL: loads take the GIL path")
    assert z.store(0, 6, page(60))
    bg = blocked_in(gate, "decompress", lambda: z.load(0, 6))
    assert z.store(0, 6, page(61))
    gate.release()
    assert bg.result() == page(61)


def test_an_exclusive_load_racing_an_invalidate_frees_once(z: Zswap, gate: Any) -> None:
    if not nogil_allocator(z):
        pytest.skip("zsmalloc's ops need the GIL: loads take the GIL path")
    assert z.store(0, 8, page(8))
    bg = blocked_in(gate, "decompress", lambda: z.load(0, 8, exclusive=True))
    z.invalidate_page(0, 8)
    gate.release()
    assert bg.result() is None
    assert z.stats["stored_pages"] == 0 and z.pages.nr_pages == 0


def test_an_exclusive_load_takes_the_entry_out(z: Zswap, gate: Any) -> None:
    if not nogil_allocator(z):
        pytest.skip("zsmalloc's ops need the GIL: loads take the GIL path")
    assert z.store(0, 9, page(9))
    bg = blocked_in(gate, "decompress", lambda: z.load(0, 9, exclusive=True))
    assert z.load(0, 9) == page(9), "a plain load meanwhile still sees it"
    gate.release()
    assert bg.result() == page(9)
    assert z.load(0, 9) is None and z.pages.nr_pages == 0
