"""Plugin and observer loading has a deadline and never stops or hangs the program.

Issue 12 §4 (observer loading) and §5. A "hung" import here waits on an Event in a
``fake_gate`` module that the test sets in its teardown, so no thread is left blocked;
the deadlines are short (0.5 s) and only ever an upper bound: every assertion is on
what happened, never on how long it took.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import subprocess
import sys
import threading
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from helpers import FakeDists, subprocess_env

from zswap_core import ParamError, Registry, Zswap, _hooks, _registry
from zswap_core._hooks import STATE, load_observer_entry_points
from zswap_core.swap import Swap

T = TypeVar("T")

GOOD = """
from zswap_core import Compressor, Param
class Good(Compressor):
    name = "{name}"
    parameters = (Param("level", "int", 3, minimum=1, maximum=9),)
    def compress(self, src):
        return bytes(src)
    def decompress(self, src, dlen):
        return bytes(src)
"""

# Imports, says it has started, then waits until the test releases it.
HANG = "import fake_gate\nfake_gate.entered.set()\nfake_gate.release.wait()\n"

#: Upper bound for a call that must not hang: far above the 0.5 s deadlines, so a
#: slow machine never fails a correct build, and a hang fails instead of blocking.
BOUND = 20.0


def bounded(fn: Callable[[], T]) -> T:
    """Run ``fn`` on a daemon thread; fail (not hang) if it does not return."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # re-raised below, in the test's thread
            box["exc"] = exc

    t = threading.Thread(target=run, name="test-bounded", daemon=True)
    t.start()
    t.join(BOUND)
    assert not t.is_alive(), "the call hung"
    if "exc" in box:
        raise box["exc"]
    return box["value"]  # type: ignore[no-any-return]


def loader_threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"modprobe-{name}" and t.is_alive()]


@pytest.fixture
def gate(fake_dists: FakeDists) -> Iterator[types.ModuleType]:
    """A ``fake_gate`` module whose ``release`` Event every hung import waits on."""
    mod = types.ModuleType("fake_gate")
    mod.entered = threading.Event()  # type: ignore[attr-defined]
    mod.release = threading.Event()  # type: ignore[attr-defined]
    sys.modules["fake_gate"] = mod
    try:
        yield mod
    finally:
        mod.release.set()
        for t in threading.enumerate():  # let released loaders finish before cleanup
            if t.name.startswith(("modprobe-", "zswap-observer-", "test-bounded")):
                t.join(BOUND)
        sys.modules.pop("fake_gate", None)


def add_hung_compressor(fake_dists: FakeDists, name: str = "hang") -> None:
    fake_dists.add(
        f"fake-{name}",
        "1.0",
        {"zswap.compressors": {name: f"fake_{name}:Good"}},
        {f"fake_{name}": HANG + GOOD.format(name=name)},
    )


# -- §5: a deadline, and the error names the plugin ------------------------------------------------


def test_a_hung_import_fails_after_the_env_deadline_naming_the_plugin(
    fake_dists: FakeDists, gate: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_hung_compressor(fake_dists)
    monkeypatch.setenv("ZSWAP_PLUGIN_LOAD_TIMEOUT", "0.5")
    reg = Registry()
    assert bounded(lambda: reg.request("compressor", "hang")) is None
    assert gate.entered.is_set()
    text = str(reg.error("compressor", "hang"))
    assert "'hang'" in text and "fake-hang" in text
    assert "did not finish within 0.5s" in text
    assert "ZSWAP_PLUGIN_LOAD_TIMEOUT" in text  # says how to allow more time
    assert reg.load_timeout == 0.5


def test_the_default_deadline_is_finite_and_a_bad_env_value_falls_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert 0 < Registry().load_timeout < 60
    monkeypatch.setenv("ZSWAP_PLUGIN_LOAD_TIMEOUT", "soon")
    with pytest.warns(RuntimeWarning, match="ZSWAP_PLUGIN_LOAD_TIMEOUT"):
        timeout = Registry().load_timeout
    assert timeout == _registry.DEFAULT_LOAD_TIMEOUT
    assert Registry(modprobe_timeout=2.5).load_timeout == 2.5  # the argument wins
    with pytest.raises(ValueError):
        Registry(modprobe_timeout=-1)


def test_a_parameter_write_naming_a_hung_plugin_fails_naming_it(
    fake_dists: FakeDists, gate: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_hung_compressor(fake_dists)
    monkeypatch.setenv("ZSWAP_PLUGIN_LOAD_TIMEOUT", "0.5")
    reg = Registry()
    z = Zswap(registry=reg, ram_bytes=1 << 30, compressor="lz4", zpool="zbud")
    z.init(0)
    try:
        page = bytes(range(256)) * 16

        def write() -> None:
            z.params["compressor"] = "hang"

        with pytest.raises(ParamError) as info:
            bounded(write)
        assert info.value.errno == errno.ENOENT
        assert "'hang'" in str(info.value) and "did not finish" in str(info.value)
        assert z.params["compressor"] == "lz4"  # the failed write left the old value
        assert z.store(0, 1, page) and z.load(0, 1) == page
    finally:
        z.close()


def test_stores_and_loads_do_not_wait_while_a_parameter_write_loads_a_plugin(
    fake_dists: FakeDists, gate: types.ModuleType, tmp_path: Path
) -> None:
    add_hung_compressor(fake_dists)
    reg = Registry(modprobe_timeout=BOUND * 2)  # the write stays stuck for the whole test
    z = Zswap(registry=reg, ram_bytes=1 << 30, compressor="lz4", zpool="zbud")
    z.init(0)
    # Another instance behind the swap layer: built-in modules share one parameter
    # lock, so this is where a lock held by the stuck write would show.
    other = Zswap(registry=reg, ram_bytes=1 << 30, compressor="lz4", zpool="zbud")
    swap = Swap(other)
    swap.swapon(tmp_path / "swap", 64)
    page = bytes(range(256)) * 16

    def write() -> None:
        # Succeeds once the test releases the import; its outcome is not the point.
        with contextlib.suppress(ParamError):
            z.params["compressor"] = "hang"

    writer = threading.Thread(target=write, name="test-bounded", daemon=True)
    try:
        writer.start()
        assert gate.entered.wait(BOUND)  # the write is now waiting for the import
        assert bounded(lambda: z.store(0, 1, page))
        assert bounded(lambda: z.load(0, 1)) == page
        entry = bounded(lambda: swap.swap_out(page))
        assert bounded(lambda: swap.swap_in(entry)) == page
        assert writer.is_alive()  # still waiting: none of the above needed it
    finally:
        gate.release.set()
        writer.join(BOUND)
        swap.close()
        other.close()
        z.close()


# -- §5: no retry on every request; rescan retries without a second blocked thread ---------------


def test_a_hung_plugin_is_not_retried_on_an_unknown_name(
    fake_dists: FakeDists, gate: types.ModuleType
) -> None:
    add_hung_compressor(fake_dists)
    reg = Registry(modprobe_timeout=0.5)
    assert bounded(lambda: reg.request("compressor", "hang")) is None
    # A miss rescans the installed distributions; it must not forget the failure.
    assert bounded(lambda: reg.request("compressor", "nosuchthing")) is None
    assert bounded(lambda: reg.request("compressor", "hang")) is None
    assert reg.loads == 1
    assert len(loader_threads("hang")) == 1


def test_a_failed_plugin_is_not_reimported_on_an_unknown_name(
    fake_dists: FakeDists, tmp_path: Path
) -> None:
    counter = tmp_path / "imports.txt"
    fake_dists.add(
        "fake-boom",
        "1.0",
        {"zswap.compressors": {"boom": "fake_boom:Good"}},
        {"fake_boom": f"open({str(counter)!r}, 'a').write('x')\nraise RuntimeError('boom')\n"},
    )
    reg = Registry(modprobe_timeout=BOUND)
    assert reg.request("compressor", "boom") is None
    assert reg.request("compressor", "nosuchthing") is None
    assert reg.request("compressor", "boom") is None
    assert counter.read_text() == "x"
    assert "boom" in str(reg.error("compressor", "boom"))


def test_rescan_retries_a_hung_plugin_without_a_second_blocked_thread(
    fake_dists: FakeDists, gate: types.ModuleType
) -> None:
    add_hung_compressor(fake_dists)
    reg = Registry(modprobe_timeout=0.5)
    assert bounded(lambda: reg.request("compressor", "hang")) is None
    [first] = loader_threads("hang")
    for _ in range(3):
        reg.rescan()
        assert bounded(lambda: reg.request("compressor", "hang")) is None
        assert "did not finish" in str(reg.error("compressor", "hang"))
    # Every retry waited for the same import rather than starting another one.
    assert loader_threads("hang") == [first]
    assert reg.loads == 1
    gate.release.set()
    first.join(BOUND)
    assert not first.is_alive()
    reg.rescan()
    mod = reg.request("compressor", "hang")
    assert mod is not None and mod.params["level"] == 3
    assert reg.loads == 1


def test_an_import_that_finishes_late_is_picked_up_without_reimporting(
    fake_dists: FakeDists, gate: types.ModuleType
) -> None:
    add_hung_compressor(fake_dists)
    reg = Registry(modprobe_timeout=0.5)
    assert bounded(lambda: reg.request("compressor", "hang")) is None
    [loader] = loader_threads("hang")
    gate.release.set()
    loader.join(BOUND)
    # Not a retry: the one import finished, so its result is used.
    assert reg.request("compressor", "hang") is not None
    assert reg.loads == 1


# -- §5: modprobe.d directories: regular files only, never block -----------------------------------


@pytest.mark.parametrize("kind", ["fifo", "directory", "dangling-symlink"])
def test_modprobe_dir_skips_what_is_not_a_regular_file_with_a_warning(
    fake_dists: FakeDists, tmp_path: Path, kind: str
) -> None:
    fake_dists.add(
        "fake-opt",
        "1.0",
        {"zswap.compressors": {"opt": "fake_opt:Good"}},
        {"fake_opt": GOOD.format(name="opt")},
    )
    conf = tmp_path / "modprobe.d"
    conf.mkdir()
    (conf / "a.conf").write_text("options opt level=5\n")
    odd = conf / "x.conf"
    if kind == "fifo":
        os.mkfifo(odd)
    elif kind == "directory":
        odd.mkdir()
    else:
        odd.symlink_to(tmp_path / "nowhere")
    reg = Registry(modprobe_dir=conf, modprobe_timeout=BOUND)
    try:
        with pytest.warns(RuntimeWarning) as caught:
            mod = bounded(lambda: reg.request("compressor", "opt"))
            bounded(lambda: Zswap(registry=reg, ram_bytes=1 << 30)).close()
    finally:
        if kind == "fifo":  # before the fix a reader blocks in open(); a writer frees it
            with contextlib.suppress(OSError):
                os.close(os.open(odd, os.O_WRONLY | os.O_NONBLOCK))
    assert mod is not None and mod.params["level"] == 5  # the regular file still counts
    [message] = [str(w.message) for w in caught if "modprobe.d" in str(w.message)]
    assert str(odd) in message
    assert {"fifo": "FIFO", "directory": "directory", "dangling-symlink": "dangling"}[kind] in (
        message
    )


def test_an_unreadable_modprobe_dir_is_a_warning_not_an_oserror(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "modprobe.d"
    conf.mkdir()
    real_listdir = os.listdir

    def listdir(path: Any) -> list[str]:
        # What chmod 000 does to everyone but root (tests may run as root).
        if os.fspath(path) == str(conf):
            raise PermissionError(errno.EACCES, "Permission denied", str(conf))
        return real_listdir(path)

    monkeypatch.setattr(os, "listdir", listdir)
    reg = Registry(modprobe_dir=conf, modprobe_timeout=BOUND)
    with pytest.warns(RuntimeWarning, match="Permission denied"):
        assert reg.blocked() == set()


# -- §4: observer loading ------------------------------------------------------------------------


@pytest.fixture
def fresh_observers(monkeypatch: pytest.MonkeyPatch) -> Registry:
    """Observer state of a process that has not loaded its entry points yet."""
    reg = Registry(modprobe_timeout=0.5)
    monkeypatch.setattr(_registry, "_default", reg)
    monkeypatch.setattr(STATE, "pm", None)
    monkeypatch.setattr(STATE, "active", False)
    monkeypatch.setattr(STATE, "entry_points_loaded", False)
    return reg


OBSERVER = """
from zswap_core import hookimpl
@hookimpl
def zswap_param_changed(module, name, old, new):
    pass
"""


@pytest.mark.parametrize(
    "body",
    [
        "raise SystemExit(3)\n",
        "class Boom(BaseException):\n    pass\nraise Boom('no')\n",
        "raise GeneratorExit\n",
        HANG,
    ],
    ids=["SystemExit", "BaseException", "GeneratorExit", "hang"],
)
def test_an_observer_that_exits_raises_or_hangs_on_import_is_skipped(
    fake_dists: FakeDists,
    gate: types.ModuleType,
    fresh_observers: Registry,
    caplog: pytest.LogCaptureFixture,
    body: str,
) -> None:
    fake_dists.add(
        "fake-observers",
        "1.0",
        {"zswap.hooks": {"bad": "fake_bad_obs", "good": "fake_good_obs"}},
        {"fake_bad_obs": body + OBSERVER, "fake_good_obs": OBSERVER},
    )
    with caplog.at_level(logging.WARNING, logger="zswap_core"):
        bounded(load_observer_entry_points)
    pm = _hooks.plugin_manager()
    assert pm.has_plugin("good") and not pm.has_plugin("bad")
    assert STATE.active
    warned = [r.getMessage() for r in caplog.records if "'bad'" in r.getMessage()]
    assert len(warned) == 1 and "fake-observers" in warned[0]
    if body == HANG:
        assert "did not finish within 0.5s" in warned[0]


def test_zswap_construction_survives_an_observer_that_calls_sys_exit(
    fake_dists: FakeDists,
) -> None:
    fake_dists.add(
        "fake-exit-observer",
        "1.0",
        {"zswap.hooks": {"quitter": "fake_quitter"}},
        {"fake_quitter": "import sys\nsys.exit(3)\n"},
    )
    env = subprocess_env()
    env["PYTHONPATH"] = os.pathsep.join([str(fake_dists.root), env.get("PYTHONPATH", "")])
    code = (
        "import zswap_core\n"
        "z = zswap_core.Zswap(ram_bytes=1 << 30)\n"
        "z.init(0)\n"
        "page = bytes(range(256)) * 16\n"
        "assert z.store(0, 1, page) and z.load(0, 1) == page\n"
        "print('survived')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "survived" in out.stdout
    assert "quitter" in out.stderr  # the warning names the observer


def test_a_parameter_write_waiting_for_a_plugin_holds_no_parameter_lock(
    fake_dists: FakeDists, gate: types.ModuleType
) -> None:
    """While one thread's `compressor` write waits for a hung import (a long deadline
    here), parameters of every instance can still be read and written."""
    add_hung_compressor(fake_dists)
    reg = Registry(modprobe_timeout=BOUND * 2)  # the import stays hung for the whole test
    with Zswap(registry=reg, ram_bytes=1 << 30) as z, Zswap(ram_bytes=1 << 30) as other:
        result: dict[str, Any] = {}

        def write() -> None:
            try:
                z.params["compressor"] = "hang"
            except ParamError as exc:
                result["error"] = exc

        writer = threading.Thread(target=write, name="test-bounded-writer", daemon=True)
        writer.start()
        assert gate.entered.wait(BOUND)  # the writer is inside the import now

        def other_params() -> None:
            assert z.params["compressor"] == "lz4" and z.params.sysfs("enabled") == "Y"
            z.params["max_pool_percent"] = 10
            other.params["compressor"] = "deflate"  # another instance: same built-in lock

        bounded(other_params)
        assert writer.is_alive()  # still waiting, and nobody waited with it
        gate.release.set()
        writer.join(BOUND)
        assert not writer.is_alive() and "error" not in result
        assert z.params["compressor"] == "hang" and z.pools[0].compressor == "hang"
        assert z.params["max_pool_percent"] == 10
