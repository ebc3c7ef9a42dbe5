"""The conformance kit (zswap_core.testing) itself: it passes correct drivers, catches broken ones.

Deliberately broken allocators and compressors are run through the kit's test classes
with pytest's ``pytester`` (one in-process run); each must fail the test that checks
the rule it breaks, and the same driver without the bug must pass everything.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from types import CodeType

import pytest
from helpers import subprocess_env

from zswap_core.testing import (
    CompressorConformance,
    ReferenceDeflate,
    ReferencePagePool,
    ZpoolConformance,
)
from zswap_core.testing._interleave import Interleaver, watch_locks

pytest_plugins = ["pytester"]


# -- the kit passes correct drivers ------------------------------------------------------------


class TestReferencePagePool(ZpoolConformance):
    zpool_class = ReferencePagePool


class TestReferenceDeflate(CompressorConformance):
    compressor_class = ReferenceDeflate


def test_import_zswap_core_does_not_import_the_kit_or_pytest() -> None:
    code = (
        "import sys, zswap_core\n"
        "bad = [m for m in ('zswap_core.testing', 'pytest', '_pytest') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=subprocess_env())


# -- forced interleavings ----------------------------------------------------------------------


class Counter:
    """A read-modify-write that another thread can slip into, with or without a lock."""

    def __init__(self, lock: object = None) -> None:
        self.n = 0
        self.lock = lock

    def bump(self) -> None:
        if self.lock is None:
            self.add()
            return
        with self.lock:  # type: ignore[attr-defined]
            self.add()

    def add(self) -> None:
        n = self.n
        self.n = n + 1


def in_counter(code: CodeType) -> bool:
    return code.co_name in ("bump", "add")


def test_interleaver_forces_a_lost_update_every_run() -> None:
    """No lock: probes land between the read and the write of every step, the same way
    on every run."""
    outcomes = set()
    for _ in range(3):
        c = Counter()
        il = Interleaver(in_counter, lambda n, c=c: c.bump())
        il.run([("bump", c.bump)] * 5)
        assert il.probes > 5 and il.blocked == 0
        assert c.n < 5 + il.probes, "no update was lost"
        outcomes.add((c.n, il.probes))
    assert len(outcomes) == 1, outcomes


def test_interleaver_with_a_watched_lock_loses_nothing_and_never_stalls() -> None:
    with watch_locks():
        c = Counter(threading.Lock())
    il = Interleaver(in_counter, lambda n: c.bump())
    il.run([("bump", c.bump)] * 5)
    assert c.n == 5 + il.probes
    assert il.blocked == 5 and il.stalls == 0 and not il.notes


def test_interleaver_with_a_lock_it_cannot_see_stalls_and_gives_up() -> None:
    c = Counter(threading.Lock())  # made outside watch_locks(): invisible to the kit
    il = Interleaver(in_counter, lambda n: c.bump(), stall=0.05, max_stalls=1)
    il.run([("bump", c.bump)] * 4)  # the run ends: no deadlock
    assert c.n == 4 + il.probes
    assert il.stalls == 1 and il.notes and "probes stopped" in il.notes[0]


def test_interleaver_reports_where_the_probe_failed() -> None:
    c = Counter()

    def probe(n: int) -> None:
        assert n < 3, "probe failed"

    with pytest.raises(AssertionError, match="probe failed") as info:
        Interleaver(in_counter, probe).run([("bump", c.bump)] * 3)
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "probe 3" in notes and "Counter." in notes and "during step 'bump'" in notes


# -- the kit catches broken drivers ------------------------------------------------------------

BROKEN = '''
import errno
import threading
import zlib

from zswap_core import Compressor, MapMode, Zpool, ZpoolError
from zswap_core.testing import CompressorConformance, ZpoolConformance


class BumpPool(Zpool):
    """Bump allocation in pages; a page goes back when its last object is freed.

    Correct as it stands; each subclass below breaks one rule.
    """

    type = "bump"

    def __init__(self, name, pages, params=None):
        super().__init__(name, pages, params)
        self.lock = threading.RLock()
        self.objects = {}  # handle -> (page number, offset, size)
        self.page_list = {}  # page number -> [bytearray, live objects]
        self.cur = {}  # lane -> (page number, next offset)
        self.next_handle = 1
        self.next_page = 0

    def lane(self, size):
        """Objects of one lane share pages (here: all objects)."""
        return 0

    def step(self, size):
        return size

    def new_page(self):
        data = self.pages.alloc_page()
        self.nr_pages += 1
        return data

    def malloc(self, size):
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise ZpoolError(errno.EINVAL, "bad size")
        if size > self.page_size:
            raise ZpoolError(errno.ENOSPC, "too big")
        with self.lock:
            lane = self.lane(size)
            cur = self.cur.get(lane)
            if cur is None or cur[1] + size > self.page_size:
                data = self.new_page()
                self.page_list[self.next_page] = [data, 0]
                cur = (self.next_page, 0)
                self.next_page += 1
            pno, off = cur
            self.cur[lane] = (pno, off + self.step(size))
            self.page_list[pno][1] += 1
            handle = self.next_handle
            self.next_handle += 1
            self.objects[handle] = (pno, off, size)
            return handle

    def release(self, handle):
        pno, _off, _size = self.objects.pop(handle)
        entry = self.page_list[pno]
        entry[1] -= 1
        if entry[1] == 0:
            del self.page_list[pno]
            for lane, cur in list(self.cur.items()):
                if cur[0] == pno:
                    del self.cur[lane]
            self.nr_pages -= 1
            self.pages.free_page(entry[0])

    def check(self, handle):
        if isinstance(handle, bool) or not isinstance(handle, int) or handle not in self.objects:
            raise ZpoolError(errno.EINVAL, "bad handle")

    def free(self, handle):
        with self.lock:
            self.check(handle)
            self.release(handle)

    def map(self, handle, mode=MapMode.RW):
        with self.lock:
            self.check(handle)
            pno, off, size = self.objects[handle]
            return memoryview(self.page_list[pno][0])[off : off + size]

    def unmap(self, handle):
        with self.lock:
            self.check(handle)

    def destroy(self):
        with self.lock:
            for data, _n in self.page_list.values():
                self.pages.free_page(data)
            self.page_list.clear()
            self.objects.clear()
            self.cur.clear()
            self.nr_pages = 0


class ClassPool(BumpPool):
    """Size classes: sizes are rounded up to 32 bytes, and each class fills pages of its
    own with slots of the class size. Correct as it stands."""

    def lane(self, size):
        return -(-size // 32) * 32

    def step(self, size):
        return self.lane(size)


class OverlapPool(BumpPool):
    """Objects overlap: the bump pointer moves only half an object."""

    def step(self, size):
        return size // 2 + 1


class ShortClassPool(ClassPool):
    """The class table is one class short for 8 sizes out of 4,096: an object of such a
    size gets a slot 32 bytes too small and runs into the next slot, whose object (of
    its own size or another of that class) it overwrites, or which overwrites it."""

    SHORT = frozenset({613, 777, 1001, 1111, 1234, 1517, 1789, 1999})

    def lane(self, size):
        return super().lane(size) - 32 * (size in self.SHORT)


class PageCheckedFreePool(ClassPool):
    """free() checks that the handle's page is still in use, not that the handle is: a
    second free of an object is refused when the object was alone on its page (the page
    went back with it), but taken when a neighbour is still live there. It then counts
    the page down once more, and gives the page back under the neighbour."""

    def __init__(self, name, pages, params=None):
        super().__init__(name, pages, params)
        self.freed = {}  # handle -> where it was

    def free(self, handle):
        with self.lock:
            where = self.freed.get(handle) if type(handle) is int else None
            if where is not None and handle not in self.objects and where[0] in self.page_list:
                self.objects[handle] = where  # its page is in use: "still there"
            self.check(handle)
            self.freed[handle] = self.objects[handle]
            self.release(handle)


class LeakyPool(BumpPool):
    """Emptied pages are never given back."""

    def release(self, handle):
        pno, _off, _size = self.objects.pop(handle)
        self.page_list[pno][1] -= 1


class NoDoubleFreeCheckPool(BumpPool):
    """A second free of the same handle is silently ignored."""

    def free(self, handle):
        with self.lock:
            if handle in self.objects:
                self.release(handle)


class SwallowEnomemPool(BumpPool):
    """An allocation failure comes out as the wrong error (ENOSPC)."""

    def new_page(self):
        try:
            return super().new_page()
        except ZpoolError:
            raise ZpoolError(errno.ENOSPC, "no page") from None


class LaxSizePool(BumpPool):
    """Sizes go through int(): 1.5 and "10" are taken as sizes."""

    def malloc(self, size):
        return super().malloc(int(size))


class LaxUnmapPool(BumpPool):
    """unmap() never looks at its handle: bad and freed handles pass."""

    def unmap(self, handle):
        pass


class KeepsPageOnEnomemPool(BumpPool):
    """A new page comes with a spare for next time; when the spare is refused, the
    new page is kept as the spare and the malloc fails holding it."""

    spare = None

    def new_page(self):
        if self.spare is not None:
            data, self.spare = self.spare, None
            return data
        data = super().new_page()
        try:
            self.spare = super().new_page()
        except ZpoolError:
            self.spare = data
            raise
        return data

    def release(self, handle):
        super().release(handle)
        if not self.page_list and self.spare is not None:
            self.nr_pages -= 1
            self.pages.free_page(self.spare)
            self.spare = None

    def destroy(self):
        super().destroy()
        if self.spare is not None:
            self.pages.free_page(self.spare)
            self.spare = None


class ScratchMapPool(BumpPool):
    """map() hands out one scratch buffer per pool (copied in, and back on unmap), so
    a second mapping overwrites the first."""

    def __init__(self, name, pages, params=None):
        super().__init__(name, pages, params)
        self.scratch = bytearray(self.page_size)
        self.modes = {}

    def map(self, handle, mode=MapMode.RW):
        with self.lock:
            view = super().map(handle, mode)
            self.scratch[: len(view)] = view
            self.modes[handle] = mode
            return memoryview(self.scratch)[: len(view)]

    def unmap(self, handle):
        with self.lock:
            super().unmap(handle)
            if self.modes.pop(handle, MapMode.RO) != MapMode.RO:
                pno, off, size = self.objects[handle]
                self.page_list[pno][0][off : off + size] = self.scratch[:size]


class UnlockedCompactPool(BumpPool):
    """compact() (which moves nothing) rebuilds the handle table without the lock: for a
    moment the table is empty, and a map() or free() on another thread fails."""

    can_compact = True

    def compact(self):
        objects, self.objects = self.objects, {}
        for handle, where in objects.items():
            self.objects[handle] = where
        return 0


class UnlockedFreePool(BumpPool):
    """free() skips the lock: its ``live objects -= 1`` on a page can interleave with a
    malloc's ``+= 1`` on another thread, and one of the two counts is lost."""

    def free(self, handle):
        self.check(handle)
        self.release(handle)


class TestBump(ZpoolConformance):
    zpool_class = BumpPool
    page_sizes = (4096,)


class TestOverlap(TestBump):
    zpool_class = OverlapPool


class TestBumpClasses(TestBump):
    zpool_class = ClassPool


class TestShortClass(TestBump):
    zpool_class = ShortClassPool


class TestPageCheckedFree(TestBump):
    zpool_class = PageCheckedFreePool


class TestLeaky(TestBump):
    zpool_class = LeakyPool


class TestNoDoubleFreeCheck(TestBump):
    zpool_class = NoDoubleFreeCheckPool


class TestSwallowEnomem(TestBump):
    zpool_class = SwallowEnomemPool


class TestLaxSize(TestBump):
    zpool_class = LaxSizePool


class TestLaxUnmap(TestBump):
    zpool_class = LaxUnmapPool


class TestKeepsPageOnEnomem(TestBump):
    zpool_class = KeepsPageOnEnomemPool


class TestScratchMap(TestBump):
    zpool_class = ScratchMapPool


class TestUnlockedCompact(TestBump):
    zpool_class = UnlockedCompactPool


class TestUnlockedFree(TestBump):
    zpool_class = UnlockedFreePool


class TestUsableAfterDestroy(TestBump):
    """BumpPool allocates again after destroy(): not allowed when the kit is told so."""

    unusable_after_destroy = True


class TestWrongDistribution(ZpoolConformance):
    """An installed plugin that comes from another distribution than the one named."""

    zpool_type = "zbud"
    distribution = "zswap-not-zbud"
    page_sizes = (4096,)


class Zlib(Compressor):
    """Correct as it stands; each subclass below breaks one rule."""

    name = "kit-zlib-test"

    def compress(self, src):
        return zlib.compress(src, 1)

    def decompress(self, src, dlen):
        d = zlib.decompressobj()
        out = d.decompress(src, dlen)
        if not d.eof or len(out) != dlen:
            raise ValueError("truncated or wrong length")
        return out


class WrongDataCompressor(Zlib):
    """Flips a bit of the last byte of every page it decompresses."""

    def decompress(self, src, dlen):
        out = bytearray(super().decompress(src, dlen))
        out[-1] ^= 1
        return bytes(out)


class PadsTruncatedCompressor(Zlib):
    """Decodes what it can and pads with zeros: a cut-off input looks like a page."""

    def decompress(self, src, dlen):
        out = zlib.decompressobj().decompress(src, dlen)
        return out.ljust(dlen, b"\\0")


class ExpandingCompressor(Zlib):
    """Output can exceed the core's two-page buffer."""

    def compress(self, src):
        return super().compress(src) + bytes(3 * len(src))

    def decompress(self, src, dlen):
        return super().decompress(bytes(src)[: len(src) - 3 * dlen], dlen)


class AcceptsGarbageCompressor(Zlib):
    """Input it cannot decode comes out as a page of zeros."""

    def decompress(self, src, dlen):
        try:
            return super().decompress(src, dlen)
        except (zlib.error, ValueError):
            return bytes(dlen)


class ZeroDlenCompressor(Zlib):
    """dlen 0 reaches zlib as max_length 0, which means "no limit"."""

    def decompress(self, src, dlen):
        d = zlib.decompressobj()
        out = d.decompress(src, dlen)
        if not d.eof or (dlen and len(out) != dlen):
            raise ValueError("truncated or wrong length")
        return out


class ThreadDependentCompressor(Zlib):
    """Output depends on the calling thread (as with a context shared between threads)."""

    def compress(self, src):
        return zlib.compress(src, 1 if threading.current_thread() is threading.main_thread() else 9)


class ReusedOutputCompressor(Zlib):
    """compress() writes into one bytearray per instance and returns it: the next call,
    on any thread, overwrites what the last one returned."""

    def __init__(self, params=None):
        super().__init__(params)
        self.out = bytearray()

    def compress(self, src):
        self.out[:] = super().compress(src)
        return self.out


class ReusedDecompressOutputCompressor(Zlib):
    """decompress() does the same with its page-sized output."""

    def __init__(self, params=None):
        super().__init__(params)
        self.page = bytearray()

    def decompress(self, src, dlen):
        self.page[:] = super().decompress(src, dlen)
        return self.page


class SharedScratchCompressor(Zlib):
    """compress() copies the page into one scratch buffer per instance and compresses
    that: correct on one thread, but two threads at once compress each other's pages."""

    def __init__(self, params=None):
        super().__init__(params)
        self.scratch = bytearray()

    def compress(self, src):
        self.scratch[:] = src
        return super().compress(bytes(self.scratch))


class TestZlib(CompressorConformance):
    compressor_class = Zlib
    page_sizes = (4096,)
    zswap_page_sizes = (4096,)


class TestAcceptsGarbage(TestZlib):
    compressor_class = AcceptsGarbageCompressor


class TestZeroDlen(TestZlib):
    compressor_class = ZeroDlenCompressor


class TestThreadDependent(TestZlib):
    compressor_class = ThreadDependentCompressor


class TestReusedOutput(TestZlib):
    compressor_class = ReusedOutputCompressor


class TestReusedDecompressOutput(TestZlib):
    compressor_class = ReusedDecompressOutputCompressor


class TestSharedScratch(TestZlib):
    compressor_class = SharedScratchCompressor


class TestTrailingData(TestZlib):
    """Zlib ignores bytes after the stream: not allowed when the kit is told otherwise."""

    refuses_trailing_data = True


class TestWrongData(TestZlib):
    compressor_class = WrongDataCompressor


class TestPadsTruncated(TestZlib):
    compressor_class = PadsTruncatedCompressor


class TestExpanding(TestZlib):
    compressor_class = ExpandingCompressor


class TestMissing(ZpoolConformance):
    zpool_type = "no-such-zpool"
'''

#: (class, test) -> a phrase the failure message must contain
MUST_FAIL = {
    ("TestOverlap", "test_random_operations"): "was corrupted",
    ("TestOverlap", "test_many_handles_unique"): "was corrupted",
    ("TestOverlap", "test_zswap_switch"): "DecompressError",
    ("TestShortClass", "test_size_sweep"): "holds a byte of object",
    ("TestPageCheckedFree", "test_double_free_and_bad_handles"): "was accepted while",
    ("TestLeaky", "test_random_operations"): "pages kept after freeing every object",
    ("TestLeaky", "test_threads"): "pages kept after all threads freed",
    ("TestNoDoubleFreeCheck", "test_double_free_and_bad_handles"): "was accepted while",
    ("TestSwallowEnomem", "test_enomem_leaves_pool_consistent"): "expected ENOMEM",
    ("TestSwallowEnomem", "test_page_limit"): "expected ENOMEM",
    ("TestLaxSize", "test_size_limits"): "DID NOT RAISE",
    ("TestLaxUnmap", "test_double_free_and_bad_handles"): "DID NOT RAISE",
    ("TestKeepsPageOnEnomem", "test_enomem_leaves_pool_consistent"): "refused malloc kept pages",
    ("TestScratchMap", "test_random_operations"): "no longer shows the object",
    ("TestUnlockedCompact", "test_threads"): "bad handle",
    ("TestUnlockedFree", "test_threads"): "pages kept after all threads freed",
    ("TestUsableAfterDestroy", "test_destroy_returns_every_page"): "after destroy() did not",
    ("TestWrongDistribution", "test_declaration"): "comes from",
    ("TestWrongData", "test_round_trip"): "that differ",
    ("TestWrongData", "test_zswap_switch"): "checksum mismatch",
    ("TestWrongData", "test_threads"): "came back wrong",
    ("TestPadsTruncated", "test_truncated_input_raises"): "instead of raising",
    ("TestExpanding", "test_output_bounded"): "compressed to",
    ("TestAcceptsGarbage", "test_garbage_input_raises"): "instead of raising",
    ("TestAcceptsGarbage", "test_corrupt_input_is_refused_or_page_sized"): "none of",
    ("TestZeroDlen", "test_wrong_length_raises"): "dlen=0",
    ("TestThreadDependent", "test_threads"): "compressed differently",
    ("TestReusedOutput", "test_output_not_reused"): "changed after the call returned, when",
    ("TestReusedOutput", "test_threads"): "changed after the call returned, while",
    ("TestReusedDecompressOutput", "test_output_not_reused"): "changed after the call returned",
    ("TestReusedDecompressOutput", "test_threads"): "changed after the call returned, while",
    ("TestSharedScratch", "test_threads"): "compressed differently",
    ("TestTrailingData", "test_extended_input"): "instead of raising",
}


def run_kit(pytester: pytest.Pytester, classes: str) -> dict[tuple[str, str], pytest.TestReport]:
    """Run the kit's classes named in ``classes`` (a -k expression); reports by (class, test)."""
    pytester.makepyfile(test_broken=BROKEN)
    reprec = pytester.inline_run("-p", "no:cacheprovider", "-k", classes)
    out: dict[tuple[str, str], pytest.TestReport] = {}
    for rep in reprec.getreports("pytest_runtest_logreport"):
        if rep.when == "call" or not rep.passed:
            cls, test = rep.nodeid.split("::")[1:3]
            key = (cls, test.split("[")[0])
            if key not in out or out[key].passed:
                out[key] = rep
    return out


def test_broken_drivers_are_caught(pytester: pytest.Pytester) -> None:
    # only the tests that must fail: the others of these classes prove nothing here
    reports = run_kit(pytester, " or ".join(f"({cls} and {test})" for cls, test in MUST_FAIL))
    missed = []
    for (cls, test), phrase in sorted(MUST_FAIL.items()):
        rep = reports.get((cls, test))
        if rep is None or not rep.failed:
            missed.append(f"{cls}.{test} did not fail ({rep.outcome if rep else 'not run'})")
        elif phrase not in rep.longreprtext:
            missed.append(f"{cls}.{test} failed without {phrase!r}: {rep.longreprtext[-600:]}")
    assert not missed, "\n".join(missed)


def test_the_same_drivers_without_the_bugs_pass(pytester: pytest.Pytester) -> None:
    reports = run_kit(pytester, "TestBump or TestZlib")
    assert {cls for cls, _test in reports} == {"TestBump", "TestBumpClasses", "TestZlib"}
    assert len(reports) >= 20
    bad = {key: rep.longreprtext[-800:] for key, rep in reports.items() if not rep.passed}
    assert not bad


def test_a_missing_plugin_skips_with_the_reason(pytester: pytest.Pytester) -> None:
    reports = run_kit(pytester, "TestMissing")
    assert reports and all(rep.skipped for rep in reports.values())
    longrepr = next(iter(reports.values())).longrepr
    assert isinstance(longrepr, tuple)
    reason = longrepr[2]
    assert "zpool 'no-such-zpool' is not available" in reason
    assert "pip install" in reason
