"""Reliability of the swap layer (issue 12, sections 2, 6 and 9).

Each test forces the interleaving it is about (wrapped methods that stop on events,
states waited for with a deadline), so none passes or fails by chance:

* an ``exclusive_loads`` flip around the very load of ``swap_in`` never loses the page;
* the swap layer reads no parameter on its hot path;
* a ``swapon`` racing a ``swapoff`` never gets the dying type, so the late
  ``invalidate_area`` cannot wipe the new file, and an old ``swap_in`` still in flight
  never sees the new file's page;
* with checksums on, a swap file changed behind the swap layer's back reads as EIO
  naming the slot and the file, never as zeros or another page;
* ``swapon`` of a /proc file is refused with its path, and nothing is written to it.
"""

from __future__ import annotations

import errno
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import zswap_core
from zswap_core import Zswap
from zswap_core._params import ModuleParams
from zswap_core.swap import MAX_SWAPFILES, Swap, SwapEntry

PS = 4096
WAIT = 10.0  # seconds: only ever reached when something is broken


def compressible(i: int) -> bytes:
    """A page lz4 compresses to ~1.1 KiB (zswap takes it); unique per i."""
    rng = random.Random(1_000_003 + i)
    return rng.randbytes(1000) + i.to_bytes(4, "little") + bytes(PS - 1004)


def incompressible(i: int) -> bytes:
    return random.Random(-i - 1).randbytes(PS)


@pytest.fixture
def make_zswap() -> Iterator[Callable[..., Zswap]]:
    if not zswap_core.zpool_has_pool("zbud"):
        pytest.skip("the zbud plugin is not installed")
    made: list[Zswap] = []

    def _make(**kw: Any) -> Zswap:
        kw.setdefault("zpool", "zbud")
        kw.setdefault("compressor", "lz4")
        kw.setdefault("ram_bytes", 4096 * PS)
        z = Zswap(**kw)
        made.append(z)
        return z

    yield _make
    for z in made:
        z.close()


def wait_until(cond: Callable[[], bool], what: str) -> None:
    """Wait for a state another thread reaches (never a guess about timing)."""
    deadline = time.monotonic() + WAIT
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        time.sleep(0.001)


class Runner(threading.Thread):
    """A thread that keeps its result or exception for the test to check."""

    def __init__(self, fn: Callable[[], object], name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.fn = fn
        self.result: object = None
        self.exc: BaseException | None = None
        self.done = threading.Event()

    def run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as exc:
            self.exc = exc
        finally:
            self.done.set()

    def outcome(self) -> object:
        self.join(WAIT)
        assert not self.is_alive(), f"{self.name} did not finish"
        if self.exc is not None:
            raise self.exc
        return self.result


# -- 2. exclusive_loads flipped while swap_in runs ---------------------------------------------


def _flip_around_loads(z: Zswap, during: bool, after: bool) -> None:
    """Make the next loads see ``exclusive_loads=during``, then set it to ``after``.

    Another thread could do exactly this between the swap layer's own steps; doing
    it inside the load makes the interleaving certain. Both entry points are wrapped
    (``load`` calls ``load_dirty``), whichever the swap layer uses.
    """

    def flipping(real: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*a: Any, **kw: Any) -> Any:
            z.params["exclusive_loads"] = during
            try:
                return real(*a, **kw)
            finally:
                z.params["exclusive_loads"] = after

        return wrapper

    z.load = flipping(z.load)  # type: ignore[method-assign]
    z.load_dirty = flipping(z.load_dirty)  # type: ignore[method-assign]


def hold_swap_in_loads(
    z: Zswap, only_type: int | None = None
) -> tuple[threading.Event, threading.Event]:
    """Make the thread named ``swap_in`` stop inside zswap's load (of ``only_type``, or
    any type) until released: returns (in_load, go). Wraps ``load`` and ``load_dirty``."""
    in_load = threading.Event()
    go = threading.Event()

    def held(real: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(type: int, offset: int, **kw: Any) -> Any:
            if threading.current_thread().name == "swap_in" and only_type in (None, type):
                in_load.set()
                assert go.wait(WAIT), "never released"
            return real(type, offset, **kw)

        return wrapper

    z.load_dirty = held(z.load_dirty)  # type: ignore[method-assign]
    z.load = held(z.load)  # type: ignore[method-assign]
    return in_load, go


def test_exclusive_loads_flipped_n_y_n_during_swap_in_keeps_the_page(
    tmp_path: Path, make_zswap: Callable[..., Zswap]
) -> None:
    z = make_zswap(exclusive_loads=False)
    with Swap(z) as s:
        s.swapon(tmp_path / "swap", 64)
        page = compressible(1)
        e = s.swap_out(page)
        assert z.stats["stored_pages"] == 1
        _flip_around_loads(z, during=True, after=False)
        assert s.swap_in(e) == page  # zswap dropped its entry during this load...
        assert z.params["exclusive_loads"] is False
        # ...so the swap layer must have kept the page: the entry is still valid
        assert s.swap_in(e) == page
        assert s.swap_in(e) == page


def test_exclusive_loads_flipped_y_n_y_during_swap_in_stores_nothing_twice(
    tmp_path: Path, make_zswap: Callable[..., Zswap]
) -> None:
    z = make_zswap(exclusive_loads=True)
    with Swap(z) as s:
        s.swapon(tmp_path / "swap", 64)
        page = compressible(2)
        e = s.swap_out(page)
        before = s.vmstat["zswpout"]
        _flip_around_loads(z, during=False, after=True)
        assert s.swap_in(e) == page
        # zswap kept its entry (the load was not exclusive): nothing to store again
        assert s.vmstat["zswpout"] == before
        assert z.stats["duplicate_entry"] == 0
        assert z.stats["stored_pages"] == 1


def test_swap_layer_reads_no_parameter_on_its_hot_path(
    tmp_path: Path, make_zswap: Callable[..., Zswap], monkeypatch: pytest.MonkeyPatch
) -> None:
    z = make_zswap(exclusive_loads=True)
    reads: list[str] = []
    real_getitem = ModuleParams.__getitem__

    def spy(self: ModuleParams, name: str) -> Any:
        if self is z.params:
            reads.append(name)
        return real_getitem(self, name)

    with Swap(z) as s:
        s.swapon(tmp_path / "swap", 64)
        monkeypatch.setattr(ModuleParams, "__getitem__", spy)
        entries = [s.swap_out(compressible(i)) for i in range(4)]
        entries.append(s.swap_out(incompressible(9)))  # to the file
        for e in entries:
            s.swap_in(e)
            s.swap_in(e)
        for e in entries:
            s.swap_free(e)
        monkeypatch.undo()
    assert reads == []


# -- 6. swapon racing swapoff ------------------------------------------------------------------


class HeldInvalidate:
    """Stops ``Zswap.invalidate_area`` (the last step of swapoff) until released."""

    def __init__(self, z: Zswap) -> None:
        self.reached = threading.Event()
        self.release = threading.Event()
        real = z.invalidate_area

        def invalidate_area(type: int) -> None:
            self.reached.set()
            assert self.release.wait(WAIT), "never released"
            real(type)

        z.invalidate_area = invalidate_area  # type: ignore[method-assign]


def test_swapon_during_swapoff_gets_another_type_and_loses_nothing(
    tmp_path: Path, make_zswap: Callable[..., Zswap]
) -> None:
    z = make_zswap()
    with Swap(z) as s:
        old = s.swapon(tmp_path / "old", 64)
        held = HeldInvalidate(z)
        off = Runner(lambda: s.swapoff(old), "swapoff")
        off.start()
        try:
            assert held.reached.wait(WAIT)  # marked dead, in-flight done, not invalidated
            assert [a.type for a in s.swaps] == []
            new = s.swapon(tmp_path / "new", 64)
            assert new != old  # the dying type is still reserved
            pages = [compressible(100 + i) for i in range(10)] + [incompressible(7)]
            entries = [s.swap_out(p) for p in pages]
            assert all(e.type == new for e in entries)
        finally:
            held.release.set()
        off.outcome()
        # the late invalidate_area of the old type took nothing of the new file's
        assert [s.swap_in(e) for e in entries] == pages
        assert z.stats["stored_pages"] == 10
        with pytest.raises(ValueError, match="not active"):
            s.swap_in(SwapEntry(old, 1))
        # now that swapoff is over, the type is free again
        assert s.swapon(tmp_path / "third", 64) == old


def test_in_flight_swap_in_of_the_old_file_never_sees_the_new_file(
    tmp_path: Path, make_zswap: Callable[..., Zswap]
) -> None:
    z = make_zswap()
    with Swap(z) as s:
        old = s.swapon(tmp_path / "old", 64)
        old_page = compressible(1)
        e = s.swap_out(old_page)
        # hold the swap_in inside its zswap load, before it looks at the tree
        in_load, go = hold_swap_in_loads(z, old)
        reader = Runner(lambda: s.swap_in(e), "swap_in")
        reader.start()
        off = Runner(lambda: s.swapoff(old, force=True), "swapoff")
        try:
            assert in_load.wait(WAIT)
            off.start()
            # swapoff has marked the type dead and waits for the swap_in in flight
            wait_until(lambda: s.swaps == [], "swapoff to mark the type dead")
            assert not off.done.is_set()
            new = s.swapon(tmp_path / "new", 64)
            new_page = compressible(2)
            e2 = s.swap_out(new_page)
            assert e2.offset == e.offset  # same slot number: only the type differs
        finally:
            go.set()
        assert reader.outcome() == old_page  # never the new file's page
        off.outcome()
        assert new != old
        assert s.swap_in(e2) == new_page


def test_swapon_with_every_type_taken_or_dying_is_eperm_until_swapoff_ends(
    tmp_path: Path,
) -> None:
    with Swap() as s:
        for i in range(MAX_SWAPFILES):
            assert s.swapon(tmp_path / f"f{i}", 10) == i
        gate = threading.Event()
        reached = threading.Event()
        info = s._infos[5]
        assert info is not None
        real_close = info.file.close

        def close() -> None:  # the last step of a swapoff without zswap
            reached.set()
            assert gate.wait(WAIT)
            real_close()

        info.file.close = close  # type: ignore[method-assign]
        off = Runner(lambda: s.swapoff(5), "swapoff")
        off.start()
        try:
            assert reached.wait(WAIT)
            with pytest.raises(OSError) as ei:
                s.swapon(tmp_path / "late", 10)
            assert ei.value.errno == errno.EPERM
            assert "swapped off" in str(ei.value)
            with pytest.raises(ValueError, match="being swapped off"):
                s.swapoff(5)  # twice at once: the second is refused
            with pytest.raises(ValueError, match="being swapped off"):
                s.inject_io_errors(5, reads=1)
        finally:
            gate.set()
        off.outcome()
        assert s.swapon(tmp_path / "late", 10) == 5


# -- 9. the swap file's own pages are checksummed ----------------------------------------------


def _to_file(s: Swap, z: Zswap, pages: list[bytes]) -> list[SwapEntry]:
    """Swap pages out straight to the file (zswap disabled for the moment)."""
    z.params["enabled"] = False
    try:
        return [s.swap_out(p) for p in pages]
    finally:
        z.params["enabled"] = True


def test_truncated_and_re_extended_swap_file_reads_as_eio(
    tmp_path: Path, make_zswap: Callable[..., Zswap]
) -> None:
    z = make_zswap(checksums_enabled=True)
    path = tmp_path / "swap"
    with Swap(z) as s:
        s.swapon(path, 64)
        pages = [compressible(i) for i in range(3)]
        entries = _to_file(s, z, pages)
        assert z.stats["stored_pages"] == 0
        size = path.stat().st_size
        os.truncate(path, PS)  # someone cuts the file after its header...
        os.truncate(path, size)  # ...and extends it again: the slots read as zeros
        for e in entries:
            with pytest.raises(OSError) as ei:
                s.swap_in(e)
            assert ei.value.errno == errno.EIO
            assert f"slot {e.offset}" in str(ei.value) and str(path) in str(ei.value)
        # the entries stay valid: swapping the pages out again works
        for e in entries:
            s.swap_free(e)
        again = s.swap_out(pages[0])
        assert s.swap_in(again) == pages[0]


def test_overwritten_or_swapped_slots_read_as_eio(
    tmp_path: Path, make_zswap: Callable[..., Zswap]
) -> None:
    z = make_zswap(checksums_enabled=True)
    path = tmp_path / "swap"
    with Swap(z) as s:
        s.swapon(path, 64)
        a, b, c = _to_file(s, z, [incompressible(1), incompressible(2), incompressible(3)])
        with open(path, "r+b") as fh:
            fh.seek(a.offset * PS)
            fh.write(b"\xff" * 8)  # a few bytes overwritten
            c_page = incompressible(3)
            fh.seek(b.offset * PS)
            fh.write(c_page)  # another page's content, intact, in the wrong slot
        for e in (a, b):
            with pytest.raises(OSError) as ei:
                s.swap_in(e)
            assert ei.value.errno == errno.EIO and f"slot {e.offset}" in str(ei.value)
        assert s.swap_in(c) == c_page  # untouched slots still read fine


def test_written_back_pages_are_checksummed_too(
    tmp_path: Path, make_zswap: Callable[..., Zswap]
) -> None:
    z = make_zswap(checksums_enabled=True)
    path = tmp_path / "swap"
    with Swap(z) as s:
        s.swapon(path, 64)
        page = compressible(5)
        e = s.swap_out(page)
        assert z.writeback(1) == 1 and z.stats["stored_pages"] == 0
        with open(path, "r+b") as fh:
            fh.seek(e.offset * PS + 100)
            fh.write(b"tampered")
        with pytest.raises(OSError) as ei:
            s.swap_in(e)
        assert ei.value.errno == errno.EIO and f"slot {e.offset}" in str(ei.value)


def test_checksum_decided_when_the_page_is_written(
    tmp_path: Path, make_zswap: Callable[..., Zswap]
) -> None:
    z = make_zswap(checksums_enabled=False)
    path = tmp_path / "swap"
    with Swap(z) as s:
        s.swapon(path, 64)
        (plain,) = _to_file(s, z, [incompressible(1)])
        z.params["checksums_enabled"] = True
        (summed,) = _to_file(s, z, [incompressible(2)])
        z.params["checksums_enabled"] = False
        # a page written without a checksum reads as it was (nothing to check);
        # one written with a checksum stays checked after checksums are turned off
        assert s.swap_in(plain) == incompressible(1)
        with open(path, "r+b") as fh:
            fh.seek(summed.offset * PS)
            fh.write(bytes(PS))
        with pytest.raises(OSError) as ei:
            s.swap_in(summed)
        assert ei.value.errno == errno.EIO
        # a slot reused without checksums forgets the old one
        s.swap_free(summed)
        (reused,) = _to_file(s, z, [incompressible(3)])
        assert reused == summed
        assert s.swap_in(reused) == incompressible(3)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
@pytest.mark.parametrize("path", ["/proc/self/status", "/proc/sys/kernel/osrelease"])
@pytest.mark.parametrize("nr_pages", [None, 64])
def test_swapon_of_a_proc_file_is_refused_with_its_path(path: str, nr_pages: int | None) -> None:
    if not os.path.exists(path):
        pytest.skip(f"{path} does not exist here")
    before = Path(path).read_bytes()
    with Swap() as s:
        with pytest.raises(OSError) as ei:
            s.swapon(path, nr_pages)
        assert path in str(ei.value)
        assert s.swaps == []
    if path.startswith("/proc/sys/"):
        assert Path(path).read_bytes() == before  # nothing was written to it


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_a_pseudo_file_not_recognised_by_its_filesystem_still_names_its_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Without /proc/self/mountinfo the filesystem type is unknown; formatting then
    # finds out (its size cannot be set, or the write fails) and says which file.
    from zswap_core import _swapfile

    monkeypatch.setattr(_swapfile, "_fs_type", lambda st: None, raising=False)
    with Swap() as s, pytest.raises(OSError) as ei:
        s.swapon("/proc/self/status", 64)
    assert "/proc/self/status" in str(ei.value)


def test_a_file_that_is_not_a_swap_area_is_named(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"abc")
    with Swap() as s, pytest.raises(ValueError) as ei:
        s.swapon(path, None)
    assert str(path) in str(ei.value) and "not a swap area" in str(ei.value)


class _InterruptedWait:
    """Stands in for a swap file's condition: the first wait is a Ctrl-C."""

    def __init__(self, real: threading.Condition) -> None:
        self.real = real
        self.interrupted = False

    def wait(self, timeout: float | None = None) -> bool:
        if not self.interrupted:
            self.interrupted = True
            raise KeyboardInterrupt
        return self.real.wait(timeout)

    def notify_all(self) -> None:
        self.real.notify_all()


def test_swapoff_interrupted_while_waiting_puts_the_file_back(
    tmp_path: Path, make_zswap: Callable[..., Zswap]
) -> None:
    z = make_zswap()
    with Swap(z) as s:
        t = s.swapon(tmp_path / "swap", 64)
        page = compressible(1)
        e = s.swap_out(page)
        in_load, go = hold_swap_in_loads(z)
        reader = Runner(lambda: s.swap_in(e), "swap_in")
        reader.start()
        try:
            assert in_load.wait(WAIT)
            info = s._infos[t]
            assert info is not None
            info.cond = _InterruptedWait(info.cond)  # type: ignore[assignment]
            with pytest.raises(KeyboardInterrupt):
                s.swapoff(t, force=True)  # a swap_in is in flight: it must wait
            # nothing was dropped, and the type was not freed under the swap_in:
            # the file is in use again, as the kernel's interrupted swapoff leaves it
            assert [a.type for a in s.swaps] == [t]
            assert z.stats["stored_pages"] == 1
            e2 = s.swap_out(compressible(2))
            assert e2.type == t
        finally:
            go.set()
        assert reader.outcome() == page
        assert s.swap_in(e) == page
        s.swapoff(t, force=True)
        assert s.swaps == [] and z.stats["stored_pages"] == 0


def test_keep_survives_a_store_that_raises(
    tmp_path: Path, make_zswap: Callable[..., Zswap]
) -> None:
    # After an exclusive load the swap layer holds the only copy: a store that raises
    # instead of refusing must not lose it (the file takes it).
    z = make_zswap(exclusive_loads=True)
    with Swap(z) as s:
        s.swapon(tmp_path / "swap", 64)
        page = compressible(3)
        e = s.swap_out(page)
        real_store = z.store

        def store(*a: Any, **kw: Any) -> bool:
            raise RuntimeError("store exploded")

        z.store = store  # type: ignore[method-assign]
        try:
            assert s.swap_in(e) == page
        finally:
            z.store = real_store  # type: ignore[method-assign]
        assert s.swap_in(e) == page
        assert s.vmstat["pswpout"] == 1  # it went to the file


def test_checksums_beyond_the_first_chunk_of_slots(
    tmp_path: Path, make_zswap: Callable[..., Zswap]
) -> None:
    z = make_zswap(checksums_enabled=True)
    path = tmp_path / "swap"
    with Swap(z) as s:
        s.swapon(path, 4200)
        entries = _to_file(s, z, [i.to_bytes(4, "little") * (PS // 4) for i in range(4150)])
        far = entries[-1]
        assert far.offset > 4096
        with open(path, "r+b") as fh:
            fh.seek(far.offset * PS)
            fh.write(b"x")
        with pytest.raises(OSError) as ei:
            s.swap_in(far)
        assert ei.value.errno == errno.EIO and f"slot {far.offset}" in str(ei.value)
        assert s.swap_in(entries[0]) == bytes(PS)
