"""Tests of a compressor's ``level`` parameter: :class:`LevelParameterTests`."""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import ClassVar

import pytest

from .._compressor import Compressor
from .._errors import ParamError, PluginError
from .._registry import LoadedModule, Registry, default_registry
from ._codec_ops import codec_ops_of
from ._common import run_threads, sample_pages
from ._interleave import Interleaver, driver_code, watch_locks

__all__ = ["LevelParameterTests"]

#: Values no ``level`` accepts ("above" and "below" stand for the range's neighbours).
BAD_VALUES: tuple[object, ...] = ("above", "below", 99, -1, "abc", "99", "", True, 3.5, None)


class LevelParameterTests:
    """A compression level as a module parameter, tested on the installed plugin::

        from zswap_core.testing import LevelParameterTests

        class TestMyCodecLevel(LevelParameterTests):
            compressor_name = "mycodec"
            default, minimum, maximum = 3, 1, 22

    The tests use the process-wide registry's module (its parameters are restored after
    each test) and check: the declaration and default; a modprobe option applied at
    load, and an out-of-range one refused; that one instance reads the level at run
    time and a smaller level's output decodes with the same decoder; sysfs strings;
    bad values refused with ``EINVAL`` keeping the old value; and threads compressing
    while the level changes. They skip when the plugin is not installed.
    """

    compressor_name: ClassVar[str] = ""
    #: The parameter's name.
    parameter: ClassVar[str] = "level"
    default: ClassVar[int]
    minimum: ClassVar[int]
    maximum: ClassVar[int]
    #: A level that compresses fast, and one that compresses smaller (None: the
    #: minimum, the maximum).
    fast: ClassVar[int | None] = None
    small: ClassVar[int | None] = None
    seed: ClassVar[int] = 0

    module: LoadedModule

    @pytest.fixture(autouse=True)
    def _zswap_kit_level_module(self) -> Iterator[None]:
        name = self.compressor_name
        if not name:
            raise TypeError("set compressor_name on the LevelParameterTests class")
        mod = default_registry().request("compressor", name)
        if mod is None:
            err = default_registry().error("compressor", name)
            pytest.skip(f"compressor {name!r} is not available: {err or 'not installed'}")
        self.module = mod
        saved = dict(mod.params)
        yield
        for key, value in saved.items():
            mod.params[key] = value

    @property
    def fast_level(self) -> int:
        return self.minimum if self.fast is None else self.fast

    @property
    def small_level(self) -> int:
        return self.maximum if self.small is None else self.small

    def new_compressor(self) -> Compressor:
        c: Compressor = self.module.driver(self.module.params)
        return c

    def test_declared_with_default(self) -> None:
        params, p = self.module.params, self.parameter
        assert params[p] == self.default
        assert params.sysfs(p) == str(self.default)
        decl = params.declaration(p)
        assert (decl.minimum, decl.maximum) == (self.minimum, self.maximum)

    def test_modprobe_option_applies_at_load(self, tmp_path: os.PathLike[str]) -> None:
        name, p = self.compressor_name, self.parameter
        conf = os.path.join(tmp_path, "plugin.conf")
        with open(conf, "w") as fh:
            fh.write(f"options {name} {p}={self.small_level}\n")
        assert Registry(modprobe_dir=tmp_path).require("compressor", name).params[p] == (
            self.small_level
        )
        with open(conf, "w") as fh:
            fh.write(f"options {name} {p}={self.maximum + 1}\n")
        with pytest.raises(PluginError, match=p):
            Registry(modprobe_dir=tmp_path).require("compressor", name)

    def test_read_at_run_time(self) -> None:
        """The same instance sees a new value on its next call; one decoder reads all."""
        params, p = self.module.params, self.parameter
        comp = self.new_compressor()
        page = sample_pages(65536, self.seed)["heap"]
        params[p] = self.fast_level
        fast = comp.compress(page)
        params[p] = self.small_level
        small = comp.compress(page)
        assert small != fast, f"{p}={self.small_level} gives the output of {self.fast_level}"
        assert len(small) < len(fast)
        params[p] = self.fast_level
        assert comp.compress(page) == fast
        assert comp.decompress(fast, 65536) == page
        assert comp.decompress(small, 65536) == page

    def test_written_as_sysfs_string(self) -> None:
        params, p = self.module.params, self.parameter
        comp = self.new_compressor()
        page = sample_pages(16384, self.seed)["heap"]
        params[p] = f" {self.small_level}\n"
        assert params[p] == self.small_level
        assert params.sysfs(p) == str(self.small_level)
        at_small = comp.compress(page)
        params[p] = str(self.fast_level)
        assert params[p] == self.fast_level
        assert comp.compress(page) != at_small

    @pytest.mark.parametrize("bad", BAD_VALUES, ids=repr)
    def test_bad_value_is_refused(self, bad: object) -> None:
        """``EINVAL``; the old value stays, in the module and in the codec's output."""
        if bad == "above":
            bad = self.maximum + 1
        elif bad == "below":
            bad = self.minimum - 1
        params, p = self.module.params, self.parameter
        comp = self.new_compressor()
        params[p] = self.small_level
        page = sample_pages(16384, self.seed)["heap"]
        before = comp.compress(page)
        with pytest.raises(ParamError) as info:
            params[p] = bad
        assert info.value.errno == errno.EINVAL
        assert params[p] == self.small_level
        assert params.sysfs(p) == str(self.small_level)
        assert comp.compress(page) == before

    def test_registry_serves_one_params_object(self) -> None:
        params = default_registry().require("compressor", self.compressor_name).params
        assert params is self.module.params
        old = params[self.parameter]
        with pytest.raises(ParamError) as info:
            params[self.parameter] = 99
        assert info.value.errno == errno.EINVAL
        assert params[self.parameter] == old

    def test_threads_while_level_changes(self) -> None:
        """The level changes at every point of a compress() call, then while threads run.

        Forced interleavings first: one thread compresses and stops before every bytecode
        of the driver, and at each stop another thread writes the next level. Every
        output must decompress, and be the output of one level, whole (a codec that
        reads the level twice in one call can mix two). Then free-running threads
        compress while a thread flips the level (the switch interval lowered).
        """
        params, p = self.module.params, self.parameter
        levels = (self.fast_level, self.small_level, self.default)
        page_size = 16384
        inputs = [sample_pages(page_size, self.seed + t)["text"] for t in range(3)]
        with watch_locks():  # the codec's locks, made with it, the kit sees
            comp = self.new_compressor()
        outputs: list[set[bytes]] = []
        for page in inputs:
            at_levels = set()
            for level in levels:
                params[p] = level
                at_levels.add(bytes(comp.compress(page)))
            outputs.append(at_levels)

        def flip(n: int) -> None:
            params[p] = levels[n % len(levels)]

        def compress(t: int) -> Callable[[], None]:
            def step() -> None:
                data = comp.compress(inputs[t])
                assert comp.decompress(data, page_size) == inputs[t], (
                    f"a page compressed while {p} changed does not decompress"
                )
                assert bytes(data) in outputs[t], (
                    f"a page compressed while {p} changed is the output of none of the "
                    f"levels {levels}: the level was read more than once in one call?"
                )

            return step

        steps = [
            (f"compress(page {t}), round {r}", compress(t)) for r in range(2) for t in range(3)
        ]
        il = Interleaver(driver_code(self.module.driver, exclude=(Compressor,)), flip)
        with watch_locks():  # every lock made meanwhile (a codec's per-thread ones), the kit sees
            il.run(steps)
        assert il.probes > 0, "the kit never stopped inside the driver: is its code traced?"

        stop = threading.Event()

        def flipper() -> None:
            i = 0
            while not stop.is_set():
                params[p] = levels[i % len(levels)]
                i += 1
                time.sleep(0.0005)

        def work(t: int) -> None:
            for _ in range(40):
                data = comp.compress(inputs[t])
                assert comp.decompress(data, page_size) == inputs[t]

        thread = threading.Thread(target=flipper, name="kit-level-flipper")
        thread.start()
        try:
            run_threads(3, work)
        finally:
            stop.set()
            thread.join()

    # -- C codec ops -------------------------------------------------------------------
    # Nothing to check (the tests pass) for a driver that declares no codec_ops; they
    # skip when its instance has none (its C extension is not built).

    def test_codec_ops_follow_level(self) -> None:
        """The C ops compress at the level the module parameter has now: a change
        reaches an existing instance's ops on their next call, a new instance starts
        at the current value, and every level's output decodes (C and Python)."""
        params, p = self.module.params, self.parameter
        comp = self.new_compressor()
        ops = codec_ops_of(comp, self.compressor_name)
        if ops is None:
            return
        page = sample_pages(65536, self.seed)["heap"]
        params[p] = self.fast_level
        fast = ops.compress(page)
        params[p] = self.small_level
        small = ops.compress(page)
        assert small != fast, (
            f"the C ops at {p}={self.small_level} give the output of {self.fast_level}: "
            "does the parameter reach them?"
        )
        assert len(small) < len(fast), (
            f"the C ops at {p}={self.small_level} gave {len(small)} bytes, at "
            f"{self.fast_level} {len(fast)}"
        )
        later = self.new_compressor()
        try:
            at_small = codec_ops_of(later, self.compressor_name).compress(page)
            assert at_small == small, (
                f"an instance made at {p}={self.small_level} compresses in C as at another level"
            )
        finally:
            later.close()
        params[p] = self.fast_level
        assert ops.compress(page) == fast, f"back at {p}={self.fast_level}: other output"
        for data in (fast, small):
            assert ops.decompress(data, 65536) == page
            assert comp.decompress(data, 65536) == page
        comp.close()

    def test_codec_ops_threads_while_level_changes(self) -> None:
        """Threads compress through the C ops (GIL released) while another flips the
        level: every output decodes and is one level's output, whole (a level read
        once per call)."""
        params, p = self.module.params, self.parameter
        comp = self.new_compressor()
        ops = codec_ops_of(comp, self.compressor_name)
        if ops is None:
            return
        levels = (self.fast_level, self.small_level, self.default)
        page_size = 16384
        inputs = [sample_pages(page_size, self.seed + t)["text"] for t in range(3)]
        outputs: list[set[bytes]] = []
        for page in inputs:
            at_levels = set()
            for level in levels:
                params[p] = level
                at_levels.add(ops.compress(page))
            outputs.append(at_levels)
        stop = threading.Event()

        def flipper() -> None:
            i = 0
            while not stop.is_set():
                params[p] = levels[i % len(levels)]
                i += 1
                time.sleep(0.0002)

        def work(t: int) -> None:
            for _ in range(20):
                data = ops.compress(inputs[t])
                assert ops.decompress(data, page_size) == inputs[t], (
                    f"a page the C ops compressed while {p} changed does not decompress"
                )
                assert data in outputs[t], (
                    f"a page the C ops compressed while {p} changed is the output of none "
                    f"of the levels {levels}"
                )

        thread = threading.Thread(target=flipper, name="kit-level-flipper")
        thread.start()
        try:
            run_threads(3, work)
        finally:
            stop.set()
            thread.join()
        comp.close()
