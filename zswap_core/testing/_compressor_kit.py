"""The compressor half of the conformance kit: :class:`CompressorConformance`."""

from __future__ import annotations

import errno
import random
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import pytest

from .._compressor import Compressor
from .._params import ModuleParams
from .._registry import LoadedModule
from ._codec_ops import (
    COMPRESS_ERRORS,
    DECOMPRESS_ERRORS,
    RawCodecOps,
    codec_ops_of,
    declares_codec_ops,
)
from ._common import (
    BUNDLED_COMPRESSORS,
    BUNDLED_ZPOOLS,
    KitRegistry,
    check_declaration,
    check_installed,
    first_available,
    kit_registry,
    load_driver,
    page_mix,
    run_threads,
    sample_pages,
    zswap_switch_check,
    zswap_threads_check,
)
from ._interleave import Interleaver, driver_code, watch_locks

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = ["CompressorConformance"]

#: Pages that any real codec shrinks.
COMPRESSIBLE = ("zero", "same-filled", "text", "sparse", "short-cycle", "ff")
#: Pages of one repeated value: any real codec writes them in a few bytes.
UNIFORM = ("zero", "same-filled", "ff")


class CompressorConformance:
    """The compressor driver contract, as pytest tests. Subclass it in your test suite::

        from zswap_core.testing import CompressorConformance

        class TestMyCodec(CompressorConformance):
            compressor_name = "mycodec"

    The driver is looked up like ``zswap_core.crypto_has_comp`` does (the tests skip,
    saying why, when it is not installed); set ``compressor_class`` to test a class
    directly. Codec tests run at each of ``page_sizes``, the Zswap tests at each of
    ``zswap_page_sizes``. The ``test_codec_ops_*`` tests check a driver's C codec ops
    when it declares ``codec_ops`` (and pass when it does not).
    """

    #: The compressor's name (its entry point in ``zswap.compressors``).
    compressor_name: ClassVar[str] = ""
    #: Test this class directly instead of the installed entry point.
    compressor_class: ClassVar[type[Compressor] | None] = None
    #: Module parameters for the test (``{"level": 3}``), as a modprobe option.
    params: ClassVar[Mapping[str, object]] = {}
    page_sizes: ClassVar[tuple[int, ...]] = (4096, 65536)
    zswap_page_sizes: ClassVar[tuple[int, ...]] = (4096, 16384)
    threads: ClassVar[int] = 4
    seed: ClassVar[int] = 0
    #: The zpool and the other compressor of the Zswap tests (None: the first bundled
    #: zpool installed; the kit's reference zlib compressor).
    partner_zpool: ClassVar[str | None] = None
    partner_compressor: ClassVar[str | None] = None
    #: The distribution the installed plugin must come from (None: not checked).
    distribution: ClassVar[str | None] = None
    #: Set when the format knows where it ends: bytes after a complete stream must
    #: raise. (Otherwise they must at least not change the page.)
    refuses_trailing_data: ClassVar[bool] = False

    module: LoadedModule

    # -- machinery --------------------------------------------------------------------
    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "page_size" in metafunc.fixturenames:
            metafunc.parametrize("page_size", self.page_sizes, ids=lambda p: f"page{p}")
        if "zswap_page_size" in metafunc.fixturenames:
            metafunc.parametrize("zswap_page_size", self.zswap_page_sizes, ids=lambda p: f"page{p}")

    @pytest.fixture(autouse=True)
    def _zswap_kit_driver(self) -> Iterator[None]:
        cls = self.compressor_class
        name = self.compressor_name or (cls.name if cls is not None else "")
        self.module = load_driver("compressor", name, cls, self.params)
        self._instances: list[Compressor] = []
        yield
        for c in self._instances:
            c.close()

    @property
    def driver(self) -> type[Compressor]:
        cls: type[Compressor] = self.module.driver
        return cls

    def new_compressor(self, params: ModuleParams | None = None) -> Compressor:
        """An instance as a pool makes one (closed after the test)."""
        c = self.driver(params if params is not None else self.module.params)
        self._instances.append(c)
        return c

    def compressed(self, comp: Compressor, page: Buffer, what: str) -> bytes:
        out = comp.compress(page)
        assert isinstance(out, bytes | bytearray), (
            f"compress() of {what} returned {type(out).__name__}, not bytes"
        )
        return bytes(out)

    def compressed_size_bound(self, page_size: int) -> int:
        """The most a page may compress to: override with your format's worst case."""
        return 2 * page_size

    def decompress_raises(self, comp: Compressor, data: Buffer, dlen: int, what: str) -> None:
        """``decompress(data, dlen)`` must raise; returning anything is a failure."""
        try:
            out = comp.decompress(data, dlen)
        except Exception:
            return
        raise AssertionError(f"decompress() of {what} returned {len(out)} bytes instead of raising")

    def round_trip(self, comp: Compressor, page: bytes, what: str) -> bytes:
        c = self.compressed(comp, page, what)
        out = comp.decompress(c, len(page))
        assert out == page, (
            f"{what}: decompress(compress(page)) returned "
            f"{len(out)} bytes{' that differ' if len(out) == len(page) else ''}"
        )
        return c

    # -- the driver class ----------------------------------------------------------------
    def test_declaration(self) -> None:
        """The class as the loader checks it; an installed plugin also as lsmod shows it."""
        check_declaration("compressor", self.module.name, self.driver, Compressor)
        if self.compressor_class is not None:
            return  # tested before it is installed: there is no registry entry
        check_installed(self.module, self.distribution)

    # -- codec ---------------------------------------------------------------------------
    def test_round_trip(self, page_size: int) -> None:
        comp = self.new_compressor()
        for kind, page in sample_pages(page_size, self.seed).items():
            self.round_trip(comp, page, f"{kind} page of {page_size} bytes")

    def test_round_trip_random_pages(self, page_size: int) -> None:
        comp = self.new_compressor()
        rng = random.Random(self.seed + page_size)
        for i in range(24):
            # random runs of literals, repeats and zeros: every match/literal mix
            page = bytearray()
            while len(page) < page_size:
                n = rng.randint(1, 300)
                pick = rng.random()
                if pick < 0.4:
                    page += rng.randbytes(n)
                elif pick < 0.7 and page:
                    start = rng.randrange(len(page))
                    page += (page[start:] * (n // max(1, len(page) - start) + 1))[:n]
                else:
                    page += bytes([rng.randrange(256)]) * n
            self.round_trip(comp, bytes(page[:page_size]), f"random mix page {i}")

    def test_accepts_any_buffer(self, page_size: int) -> None:
        """Pages come as bytes, bytearray or memoryview; the core hands decompress() a
        memoryview slice of the zpool's memory. The output is the same for each."""
        comp = self.new_compressor()
        for kind, page in sample_pages(page_size, self.seed).items():
            c = self.compressed(comp, page, kind)
            for src in (bytearray(page), memoryview(page)):
                what = f"a {kind} page as {type(src).__name__}"
                assert self.compressed(comp, src, what) == c, f"{what} compressed differently"
            arena = bytearray(len(c) + 64)
            arena[16 : 16 + len(c)] = c
            views: tuple[tuple[str, Buffer], ...] = (
                ("a memoryview of a bytearray", memoryview(bytearray(c))),
                ("a memoryview slice", memoryview(arena)[16 : 16 + len(c)]),
            )
            for what, view in views:
                out = comp.decompress(view, page_size)
                assert isinstance(out, bytes | bytearray), (
                    f"decompress() of {what} returned {type(out).__name__}, not bytes"
                )
                assert out == page, f"decompress() of {what} ({kind} page) returned wrong data"

    def test_compressible_pages_shrink(self, page_size: int) -> None:
        comp = self.new_compressor()
        pages = sample_pages(page_size, self.seed)
        for kind in COMPRESSIBLE:
            c = self.compressed(comp, pages[kind], kind)
            assert len(c) < page_size, (
                f"a {kind} page of {page_size} bytes compressed to {len(c)} bytes"
            )
        limits = [("text", page_size // 2), ("heap", page_size * 3 // 4)]
        limits += [(kind, page_size // 64) for kind in UNIFORM]
        for kind, limit in limits:
            c = self.compressed(comp, pages[kind], kind)
            assert len(c) < limit, (
                f"a {kind} page compressed only to {len(c)} of {page_size} bytes "
                f"(expected under {limit})"
            )

    def test_output_bounded(self, page_size: int) -> None:
        """Output is never empty and never over two pages (the core's buffer), nor over
        :meth:`compressed_size_bound`."""
        comp = self.new_compressor()
        rng = random.Random(self.seed + 1)
        bound = min(2 * page_size, self.compressed_size_bound(page_size))
        pages = list(sample_pages(page_size, self.seed).items())
        pages += [(f"random {i}", rng.randbytes(page_size)) for i in range(8)]
        for kind, page in pages:
            c = self.compressed(comp, page, kind)
            assert 0 < len(c) <= bound, (
                f"a {kind} page of {page_size} bytes compressed to {len(c)} bytes (bound {bound})"
            )

    def test_truncated_input_raises(self, page_size: int) -> None:
        """A cut-off input raises; it never decodes to a (wrong) page."""
        comp = self.new_compressor()
        for kind, page in sample_pages(page_size, self.seed).items():
            c = self.compressed(comp, page, kind)
            n = len(c)
            for cut in sorted({k for k in (0, 1, 2, n // 3, n // 2, n - 2, n - 1) if 0 <= k < n}):
                try:
                    out = comp.decompress(c[:cut], page_size)
                except Exception:
                    continue
                raise AssertionError(
                    f"decompress() of a {kind} page's output cut to {cut} of {n} bytes "
                    f"returned {len(out)} bytes instead of raising"
                    + (" (the page itself!)" if out == page else "")
                )
            assert comp.decompress(c, page_size) == page, (
                f"after refusing cut-off input, the intact {kind} page no longer decodes"
            )

    def test_extended_input(self, page_size: int) -> None:
        """Bytes after a complete stream never change the page (with
        ``refuses_trailing_data``: they raise)."""
        comp = self.new_compressor()
        for kind, page in sample_pages(page_size, self.seed).items():
            c = self.compressed(comp, page, kind)
            for tail in (b"\0", b"garbage", c):
                what = f"a {kind} page's output with {len(tail)} bytes appended"
                if self.refuses_trailing_data:
                    self.decompress_raises(comp, c + tail, page_size, what)
                    continue
                try:
                    out = comp.decompress(c + tail, page_size)
                except Exception:
                    continue
                assert out == page, f"decompress() of {what} returned a different page"
            assert comp.decompress(c, page_size) == page, (
                f"after extended input, the intact {kind} page no longer decodes"
            )

    def test_garbage_input_raises(self, page_size: int) -> None:
        """Random bytes and runs of 0xff are no compressed page."""
        comp = self.new_compressor()
        rng = random.Random(self.seed + page_size)
        for n in (1, 7, 64, page_size // 2, page_size, 2 * page_size):
            self.decompress_raises(comp, rng.randbytes(n), page_size, f"{n} random bytes")
        for n in (7, 64, page_size):
            self.decompress_raises(comp, b"\xff" * n, page_size, f"{n} 0xff bytes")

    def test_corrupt_input_is_refused_or_page_sized(self, page_size: int) -> None:
        """Garbage either raises or decodes to exactly ``dlen`` bytes, never another size.

        Codecs without their own checksum cannot tell every corrupted input from a
        real one; zswap's ``checksums_enabled`` catches those. Wrong sizes, hangs and
        crashes are never acceptable.
        """
        comp = self.new_compressor()
        rng = random.Random(self.seed + 2)
        samples = sample_pages(page_size, self.seed)
        inputs: list[tuple[str, bytes]] = [("zeros", bytes(64))]
        flipped = 0
        for kind, count in (("text", 20), ("heap", 300), ("random", 20)):
            c = bytearray(self.compressed(comp, samples[kind], kind))
            for _ in range(count):
                bad = bytearray(c)
                for _ in range(rng.randint(1, 4)):
                    bad[rng.randrange(len(bad))] ^= 1 << rng.randrange(8)
                inputs.append((f"a {kind} page's output with flipped bits", bytes(bad)))
                flipped += 1
        raised = 0
        for what, data in inputs:
            try:
                out = comp.decompress(data, page_size)
            except Exception:
                raised += 1
                continue
            assert isinstance(out, bytes | bytearray) and len(out) == page_size, (
                f"decompress() of {what} returned {len(out)} bytes; expected {page_size} "
                "or an exception"
            )
        assert raised > 0, f"none of {flipped} corrupted outputs raised: is input checked?"

    def test_wrong_length_raises(self, page_size: int) -> None:
        """Input that decodes to N bytes is not a page of any other size (nor of 0 or -1)."""
        comp = self.new_compressor()
        dlens = (page_size - 1, page_size + 1, page_size // 2, 2 * page_size, 1, 0, -1)
        for kind in ("text", "random", "zero"):
            page = sample_pages(page_size, self.seed)[kind]
            c = self.compressed(comp, page, kind)
            for dlen in dlens:
                what = f"a {page_size}-byte {kind} page with dlen={dlen}"
                self.decompress_raises(comp, c, dlen, what)
            assert comp.decompress(c, page_size) == page, (
                f"after a wrong dlen, the {kind} page no longer decodes"
            )

    def test_output_not_reused(self, page_size: int) -> None:
        """What compress() and decompress() return stays as it was returned: later calls
        never change it (as they would an output buffer reused across calls), no two
        calls return the same mutable object, and the type is ``bytes``, which the core
        requires because nothing can change it."""
        comp = self.new_compressor()
        pages = list(sample_pages(page_size, self.seed).items())
        packed = {kind: self.compressed(comp, page, kind) for kind, page in pages}
        for fn in ("compress", "decompress"):
            outs: list[tuple[str, Any, bytes]] = []
            for kind, page in pages * 2:  # each page twice: the same input again too
                out = (
                    comp.compress(page)
                    if fn == "compress"
                    else comp.decompress(packed[kind], page_size)
                )
                try:
                    snap = bytes(memoryview(out))
                except TypeError:
                    raise AssertionError(
                        f"{fn}() of a {kind} page returned {type(out).__name__}, not bytes"
                    ) from None
                outs.append((kind, out, snap))
            for i, (kind, out, snap) in enumerate(outs):
                assert bytes(memoryview(out)) == snap, (
                    f"the output of {fn}() for a {kind} page changed after the call returned, "
                    f"when the compressor was called {len(outs) - 1 - i} more times: an "
                    "output buffer reused across calls"
                )
            mutable = [out for _kind, out, _snap in outs if type(out) is not bytes]
            assert len({id(out) for out in mutable}) == len(mutable), (
                f"{fn}() returned the same {type(mutable[0]).__name__} object from two calls: "
                "an output buffer reused across calls"
            )
            for kind, out, _snap in outs:
                assert type(out) is bytes, (
                    f"{fn}() of a {kind} page returned {type(out).__name__}: the core takes "
                    "only bytes, which no later call can change"
                )

    def test_threads(self, page_size: int) -> None:
        """One instance (as one pool shares it) used by two threads, then by ``threads``.

        Forced interleavings first (the verdict does not depend on the scheduler): one
        thread compresses and decompresses pages and stops before every bytecode of the
        driver, and right after each call returns; at each stop a second thread
        compresses and decompresses pages of its own to the end. Each thread must get
        what one thread alone gets, and a result must not change after it was returned
        (an output buffer or a scratch buffer shared between calls fails here every run).

        Then free-running threads (the interpreter's switch interval lowered): real
        parallelism, as in codec contexts that drop the GIL, which no forced schedule
        reaches.
        """
        with watch_locks():  # every lock made meanwhile (the driver's too), the kit sees
            self.threads_interleaved(page_size)
        self.threads_free_running(page_size)

    def threads_interleaved(self, page_size: int) -> None:
        comp = self.new_compressor()
        samples = sample_pages(page_size, self.seed * 13 + 1)
        steps_pages = [(kind, samples[kind]) for kind in ("text", "heap", "zero", "random")]
        # pages that differ from every page of the steps (a different seed), so that a
        # probe always writes other bytes into a buffer the driver shares
        others = sample_pages(page_size, self.seed * 13 + 2)
        probe_pages = [others[kind] for kind in ("text", "heap", "sparse", "half-random")]
        # what one thread alone gets (this thread, before any other uses the instance)
        want_step = [bytes(comp.compress(page)) for _kind, page in steps_pages]
        want_probe = [bytes(comp.compress(page)) for page in probe_pages]
        mode = ["compress"]

        def probe(n: int) -> None:
            i = n % len(probe_pages)
            if mode[0] == "compress":
                c = comp.compress(probe_pages[i])
                assert bytes(c) == want_probe[i], (
                    f"probing thread: page {i} compressed differently than on one thread "
                    "(state shared between threads?)"
                )
            else:
                out = comp.decompress(want_probe[i], page_size)
                assert out == probe_pages[i], f"probing thread: page {i} came back wrong"

        def compress(kind: str, page: bytes, want: bytes, probes: str) -> Callable[[], None]:
            def step() -> None:
                mode[0] = probes
                c = comp.compress(page)
                snap = bytes(c)
                il.pause("after compress() returned")
                assert bytes(c) == snap, (
                    f"the output of compress() for a {kind} page changed after the call "
                    f"returned, while another thread called {probes}(): an output buffer "
                    "reused across calls"
                )
                assert snap == want, (
                    f"a {kind} page compressed differently than on one thread while another "
                    f"thread called {probes}() (state shared between threads?)"
                )

            return step

        def decompress(kind: str, page: bytes, data: bytes, probes: str) -> Callable[[], None]:
            def step() -> None:
                mode[0] = probes
                out = comp.decompress(data, page_size)
                snap = bytes(out)
                il.pause("after decompress() returned")
                assert bytes(out) == snap, (
                    f"the output of decompress() for a {kind} page changed after the call "
                    f"returned, while another thread called {probes}(): an output buffer "
                    "reused across calls"
                )
                assert snap == page, (
                    f"a {kind} page came back wrong while another thread called {probes}()"
                )

            return step

        steps: list[tuple[str, Callable[[], None]]] = []
        for (kind, page), want in zip(steps_pages, want_step, strict=True):
            for probes in ("compress", "decompress"):
                steps.append(
                    (f"compress({kind} page), probes: {probes}", compress(kind, page, want, probes))
                )
            for probes in ("decompress", "compress"):
                steps.append(
                    (
                        f"decompress({kind} page), probes: {probes}",
                        decompress(kind, page, want, probes),
                    )
                )
        il = Interleaver(driver_code(self.driver, exclude=(Compressor,)), probe)
        il.run(steps)
        assert il.probes > 0, "the kit never stopped inside the driver: is its code traced?"
        for note in il.notes:
            warnings.warn(f"{self.module.name}: {note}", stacklevel=1)

    def threads_free_running(self, page_size: int) -> None:
        comp = self.new_compressor()
        inputs = [
            list(sample_pages(page_size, self.seed * 13 + t).values()) for t in range(self.threads)
        ]
        expected = [[bytes(comp.compress(page)) for page in pages] for pages in inputs]

        def work(t: int) -> None:
            for r in range(4):
                for i, (page, want) in enumerate(zip(inputs[t], expected[t], strict=True)):
                    c = comp.compress(page)
                    assert c == want, (
                        f"thread {t} round {r}: page {i} compressed differently than on one "
                        "thread (state shared between threads?)"
                    )
                    out = comp.decompress(c, page_size)
                    assert out == page, f"thread {t} round {r}: page {i} came back wrong"

        run_threads(self.threads, work)

    def test_parameters(self) -> None:
        """Every declared parameter value the module accepts gives a working codec."""
        page = sample_pages(4096, self.seed)["heap"]
        for p in self.driver.parameters:
            values: list[object] = [p.default]
            if p.kind == "bool":
                values = [True, False]
            elif p.kind in ("int", "uint"):
                values += [v for v in (p.minimum, p.maximum) if v is not None]
            for value in values:
                mp = ModuleParams(self.module.name, self.driver.parameters)
                mp.update(dict(self.params), boot=True)
                mp.set(p.name, value, boot=True)
                self.round_trip(self.new_compressor(mp), page, f"{p.name}={value!r}")

    # -- C codec ops (codec_ops, zswap_ops.h) --------------------------------------------
    # A driver that declares no codec_ops has nothing to check here: these tests pass.
    # One whose instance returns None (its C extension is not built) skips them.

    def codec_ops(self, comp: Compressor) -> Any:
        """``zswap_core._core.CodecOps`` over the instance's ``codec_ops``, or None."""
        return codec_ops_of(comp, self.module.name)

    def codec_ops_pages(self, page_size: int) -> list[tuple[str, bytes]]:
        pages = list(sample_pages(page_size, self.seed).items())
        mix = page_mix(12, page_size, self.seed + 3)
        return pages + [(f"mixed page {i}", page) for i, page in enumerate(mix)]

    def test_codec_ops_round_trip(self, page_size: int) -> None:
        """The C ops read their own output and the Python methods', and the methods read
        theirs: one stream format, both ways; every output within ``bound(page_size)``."""
        comp = self.new_compressor()
        ops = self.codec_ops(comp)
        if ops is None:
            return
        bound = ops.bound(page_size)
        limit = min(2 * page_size, self.compressed_size_bound(page_size))
        for kind, page in self.codec_ops_pages(page_size):
            c = ops.compress(page)
            assert 0 < len(c) <= bound, (
                f"the C ops compressed a {kind} page to {len(c)} bytes; bound() says {bound}"
            )
            assert len(c) <= limit, f"the C ops compressed a {kind} page to {len(c)} bytes"
            assert ops.decompress(c, page_size) == page, (
                f"a {kind} page compressed by the C ops came back wrong from them"
            )
            try:
                out = comp.decompress(c, page_size)
            except Exception as exc:
                raise AssertionError(
                    f"decompress() (Python) refused the C ops' output for a {kind} page "
                    f"({exc!r}): not the same stream format"
                ) from exc
            assert out == page, (
                f"decompress() (Python) of the C ops' output for a {kind} page returned "
                f"{len(out)} bytes{' that differ' if len(out) == page_size else ''}"
            )
            p = self.compressed(comp, page, kind)
            assert len(p) <= bound, (
                f"compress() (Python) gave {len(p)} bytes for a {kind} page, over the C "
                f"ops' bound() of {bound}"
            )
            try:
                out = ops.decompress(p, page_size)
            except ValueError as exc:
                raise AssertionError(
                    f"the C ops refused compress()'s (Python) output for a {kind} page "
                    f"({exc}): not the same stream format"
                ) from exc
            assert out == page, (
                f"the C ops decoded compress()'s (Python) output for a {kind} page wrongly"
            )

    def test_codec_ops_bound(self, page_size: int) -> None:
        """``bound(n)`` covers incompressible pages (and is at least ``n``)."""
        comp = self.new_compressor()
        ops = self.codec_ops(comp)
        if ops is None:
            return
        bound = ops.bound(page_size)
        assert bound >= page_size, f"bound({page_size}) is {bound}"
        assert ops.bound(2 * page_size) >= bound, "bound() is not monotonic"
        rng = random.Random(self.seed + 5)
        for i in range(8):
            c = ops.compress(rng.randbytes(page_size))
            assert len(c) <= bound, f"random page {i}: {len(c)} bytes of output, bound {bound}"

    def test_codec_ops_refuse_bad_input(self, page_size: int) -> None:
        """Cut-off, extended and empty input, and a wrong ``dlen``, raise ValueError;
        garbage raises as through the Python methods; flipped bits raise or decode to
        exactly ``dlen`` bytes."""
        comp = self.new_compressor()
        ops = self.codec_ops(comp)
        if ops is None:
            return

        def refused(data: bytes, dlen: int, what: str) -> None:
            try:
                out = ops.decompress(data, dlen)
            except ValueError:
                return
            raise AssertionError(
                f"the C ops decoded {what} to {len(out)} bytes instead of refusing it"
                + (" (the page itself!)" if len(out) == page_size else "")
            )

        refused(b"", page_size, "empty input")
        for kind, page in sample_pages(page_size, self.seed).items():
            c = ops.compress(page)
            n = len(c)
            for cut in sorted({k for k in (1, 2, n // 3, n // 2, n - 2, n - 1) if 0 < k < n}):
                refused(c[:cut], page_size, f"a {kind} page's output cut to {cut} of {n} bytes")
            for tail in (b"\0", b"garbage", c):
                refused(c + tail, page_size, f"a {kind} page's output + {len(tail)} bytes")
            for dlen in (page_size - 1, page_size + 1):
                refused(c, dlen, f"a {page_size}-byte {kind} page with dlen={dlen}")
            assert ops.decompress(c, page_size) == page, (
                f"after refusing bad input, the C ops no longer decode the {kind} page"
            )
        rng = random.Random(self.seed + page_size)
        for n in (1, 7, 64, page_size // 2, page_size, 2 * page_size):
            refused(rng.randbytes(n), page_size, f"{n} random bytes")
        for n in (7, 64, page_size):
            refused(b"\xff" * n, page_size, f"{n} 0xff bytes")
        samples = sample_pages(page_size, self.seed)
        for kind, count in (("text", 20), ("heap", 100), ("random", 20)):
            c = ops.compress(samples[kind])
            for _ in range(count):
                bad = bytearray(c)
                for _ in range(rng.randint(1, 4)):
                    bad[rng.randrange(len(bad))] ^= 1 << rng.randrange(8)
                try:
                    out = ops.decompress(bytes(bad), page_size)
                except ValueError:
                    continue
                assert len(out) == page_size, (
                    f"the C ops decoded a {kind} page's output with flipped bits to "
                    f"{len(out)} bytes"
                )

    def test_codec_ops_caller_buffers(self, page_size: int) -> None:
        """The functions themselves, on buffers with guard bytes around them: compress()
        into a short buffer returns ``-ENOSPC`` (or output that fits), never writing past
        it; decompress() of bad input returns ``-EINVAL`` and writes only its ``dlen``
        bytes."""
        comp = self.new_compressor()
        if self.codec_ops(comp) is None:
            return
        raw = RawCodecOps(comp.codec_ops)
        try:
            bound = raw.bound(page_size)
            for kind, page in sample_pages(page_size, self.seed).items():
                rc, c = raw.compress(page, bound, f"compress() of a {kind} page")
                assert rc == 0, f"compress() of a {kind} page into bound() bytes returned {rc}"
                n = len(c)
                for cap in sorted({0, 1, n // 2, n - 1, n}):
                    what = f"compress() of a {kind} page ({n} bytes) into {cap} bytes"
                    rc, out = raw.compress(page, cap, what)
                    if rc == 0:
                        assert raw.decompress(out, page_size, what)[1] == page, (
                            f"{what} returned output that does not decode to the page"
                        )
                    else:
                        assert rc == -errno.ENOSPC and cap < n, (
                            f"{what} returned {COMPRESS_ERRORS.get(rc, rc)}"
                            + (", not ENOSPC" if cap < n else ", though the output fits")
                        )
                what = f"decompress() of a {kind} page"
                assert raw.decompress(c, page_size, what) == (0, page), f"{what} failed"
                for data, dlen, bad in (
                    (c[: n // 2], page_size, "cut in half"),
                    (c + b"\0", page_size, "with a byte appended"),
                    (c, page_size - 1, "into one byte less"),
                    (c, 1, "into one byte"),
                    (c, 0, "into no bytes"),
                    (b"", page_size, "of no input"),
                ):
                    rc, _out = raw.decompress(data, dlen, f"{what} {bad}")
                    assert rc in DECOMPRESS_ERRORS, f"{what} {bad} returned {rc}, not -EINVAL"
        finally:
            raw.close()

    def test_codec_ops_threads(self, page_size: int) -> None:
        """``threads`` threads share one binding (the GIL released in every call) and
        each gets what one thread alone gets."""
        comp = self.new_compressor()
        ops = self.codec_ops(comp)
        if ops is None:
            return
        inputs = [
            list(sample_pages(page_size, self.seed * 17 + t).values()) for t in range(self.threads)
        ]
        expected = [[ops.compress(page) for page in pages] for pages in inputs]

        def work(t: int) -> None:
            for r in range(3):
                for i, (page, want) in enumerate(zip(inputs[t], expected[t], strict=True)):
                    c = ops.compress(page)
                    assert c == want, (
                        f"thread {t} round {r}: the C ops compressed page {i} differently "
                        "than on one thread (a context shared between threads?)"
                    )
                    assert ops.decompress(c, page_size) == page, (
                        f"thread {t} round {r}: page {i} came back wrong from the C ops"
                    )

        run_threads(self.threads, work)

    def test_codec_ops_withheld_from_overrides(self) -> None:
        """A subclass that overrides compress() or decompress() in Python gets no C ops:
        the native core would call the C functions and bypass the override."""
        if not declares_codec_ops(self.driver):
            return
        base = self.driver

        class OverridesCompress(base):  # type: ignore[valid-type, misc]
            def compress(self, src: Buffer) -> bytes:
                return super().compress(src)  # type: ignore[no-any-return]

        class OverridesDecompress(base):  # type: ignore[valid-type, misc]
            def decompress(self, src: Buffer, dlen: int) -> bytes:
                return super().decompress(src, dlen)  # type: ignore[no-any-return]

        for cls in (OverridesCompress, OverridesDecompress):
            comp = cls(self.module.params)
            self._instances.append(comp)
            assert comp.codec_ops is None, (
                f"a subclass of {base.__name__} that {cls.__name__.lower()} still exports "
                "codec_ops: the native core would bypass the override"
            )

    # -- inside Zswap --------------------------------------------------------------------
    def kit_registry(self) -> KitRegistry:
        return kit_registry(self.module)

    def test_zswap_switch(self, zswap_page_size: int) -> None:
        """Zswap (checksums on) switches its compressor to this one and back."""
        reg = self.kit_registry()
        zpool = self.partner_zpool or first_available(
            "zpool", BUNDLED_ZPOOLS, "", "kit-pagepool", reg
        )
        other = self.partner_compressor or first_available(
            "compressor", ("kit-deflate", *BUNDLED_COMPRESSORS), self.module.name, "", reg
        )
        if not other:
            pytest.skip("no other compressor to switch from (set partner_compressor)")
        zswap_switch_check(
            reg,
            param="compressor",
            plugin=self.module.name,
            partner_compressor=other,
            partner_zpool=zpool,
            page_size=zswap_page_size,
            seed=self.seed,
        )

    def test_zswap_threads(self, zswap_page_size: int) -> None:
        reg = self.kit_registry()
        zpool = self.partner_zpool or first_available(
            "zpool", BUNDLED_ZPOOLS, "", "kit-pagepool", reg
        )
        zswap_threads_check(
            reg,
            compressor=self.module.name,
            zpool=zpool,
            page_size=zswap_page_size,
            plugin_code=driver_code(self.driver, exclude=(Compressor,)),
            seed=self.seed,
            # with C codec ops the native backend never runs the driver's Python code:
            # the forced interleavings go through the Python backend, which does
            interleave_backend="python" if declares_codec_ops(self.driver) else None,
        )
