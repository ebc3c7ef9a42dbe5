"""The bundled compressor plugins' C codec ops: the capsule, its level, its lifetime.

The conformance kit checks the ops' behaviour (formats both ways, bad input, buffers,
threads) through each plugin's own suite; this file checks what is particular to how
the bundled plugins export them: one capsule per instance whose C level follows the
module parameter through a listener, removed by close() or collection; ops withheld
from Python overrides and absent without the extension; output byte for byte the
Python path's where both link the same library release (so both backends store the
same sizes); and the native core storing through them.
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import zlib
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from zswap_core import ModuleParams, Zswap, default_registry
from zswap_core.testing import page_mix, sample_pages
from zswap_core.testing._codec_ops import CAPSULE, _api, _OpsTable

core = pytest.importorskip("zswap_core._core", reason="the native core is not built")
CodecOps = core.CodecOps

#: compressor -> (package, default level or None when it has no level)
PLUGINS: dict[str, tuple[str, int | None]] = {
    "lz4": ("zswap_lz4", None),
    "lz4hc": ("zswap_lz4", 9),
    "zstd": ("zswap_zstd", 3),
    "lzo": ("zswap_lzo", 1),
    "lzo-rle": ("zswap_lzo", 1),
    "deflate": ("zswap_deflate", 6),
}
LEVELLED = [name for name, (_pkg, level) in PLUGINS.items() if level is not None]


def ops_module(name: str) -> ModuleType:
    pkg = PLUGINS[name][0]
    pytest.importorskip(pkg)
    return pytest.importorskip(f"{pkg}._ops", reason=f"{pkg}'s C ops are not built")


@pytest.fixture
def module(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The registry's module of the compressor ``request.param``, its values restored."""
    name = request.param
    ops_module(name)
    mod = default_registry().require("compressor", name)
    saved = dict(mod.params)
    yield mod
    for key, value in saved.items():
        mod.params[key] = value


def table_of(capsule: object) -> _OpsTable:
    return _OpsTable.from_address(_api.PyCapsule_GetPointer(capsule, CAPSULE))


@pytest.mark.parametrize("module", list(PLUGINS), indirect=True)
def test_the_capsule_and_its_table(module: Any) -> None:
    comp = module.driver(module.params)
    try:
        cap = comp.codec_ops
        assert type(cap).__name__ == "PyCapsule"
        assert comp.codec_ops is cap, "one capsule per instance"
        table = table_of(cap)
        assert table.version == 1 and table.size == ctypes.sizeof(_OpsTable)
        assert _api.PyCapsule_GetContext(cap), "the capsule's context is the codec"
        other = module.driver(module.params)
        assert _api.PyCapsule_GetContext(other.codec_ops) != _api.PyCapsule_GetContext(cap), (
            "each instance has a codec struct of its own"
        )
        other.close()
    finally:
        comp.close()


def test_lzo_rle_exports_lzo_s_table() -> None:
    ops_module("lzo")
    lzo = default_registry().require("compressor", "lzo")
    rle = default_registry().require("compressor", "lzo-rle")
    a, b = lzo.driver(lzo.params), rle.driver(rle.params)
    try:
        assert _api.PyCapsule_GetPointer(a.codec_ops, CAPSULE) == _api.PyCapsule_GetPointer(
            b.codec_ops, CAPSULE
        )
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("module", LEVELLED, indirect=True)
def test_the_c_level_follows_the_parameter(module: Any) -> None:
    name = module.name
    ops = ops_module(name)
    decl = module.params.declaration("level")
    module.params["level"] = decl.maximum
    comp = module.driver(module.params)
    cap = comp.codec_ops
    assert ops.level(cap) == decl.maximum, "a new instance starts at the current level"
    module.params["level"] = f" {decl.minimum}\n"
    assert ops.level(cap) == decl.minimum
    with pytest.raises(Exception, match="level"):
        module.params["level"] = decl.maximum + 1
    assert ops.level(cap) == decl.minimum, "a refused write leaves the C level"
    unrelated = ModuleParams(name, type(comp).parameters)
    unrelated["level"] = decl.maximum
    assert ops.level(cap) == decl.minimum, "another ModuleParams does not reach it"
    comp.close()
    module.params["level"] = decl.default
    assert ops.level(cap) == decl.minimum, "after close() the capsule no longer follows"


@pytest.mark.parametrize("module", list(PLUGINS), indirect=True)
def test_close_removes_the_listener_and_withholds_the_ops(module: Any) -> None:
    listeners = module.params._listeners
    before = len(listeners)
    comp = module.driver(module.params)
    assert len(listeners) == before + (PLUGINS[module.name][1] is not None)
    cap = comp.codec_ops
    comp.close()
    assert len(listeners) == before
    assert comp.codec_ops is None, "a closed instance hands out no ops"
    comp.close()  # twice: nothing left to remove
    module.params.remove_listener(lambda *a: None)  # never added: tolerated
    page = sample_pages(4096)["text"]
    assert comp.decompress(comp.compress(page), 4096) == page, "the Python path still works"
    ops = CodecOps(cap)  # the capsule (as a pool holds it) still works
    assert ops.decompress(ops.compress(page), 4096) == page


@pytest.mark.parametrize("module", list(PLUGINS), indirect=True)
def test_a_collected_instance_leaves_no_listener(module: Any) -> None:
    listeners = module.params._listeners
    before = len(listeners)
    comp = module.driver(module.params)
    ops = CodecOps(comp.codec_ops)
    del comp
    gc.collect()
    assert len(listeners) == before, "the listener outlived its compressor"
    page = sample_pages(4096)["heap"]
    assert ops.decompress(ops.compress(page), 4096) == page, "the capsule outlives it"


@pytest.mark.parametrize("module", list(PLUGINS), indirect=True)
def test_python_overrides_get_no_ops(module: Any) -> None:
    base = module.driver

    class Subclass(base):  # type: ignore[misc, valid-type]
        pass

    class Overrides(base):  # type: ignore[misc, valid-type]
        def decompress(self, src: Any, dlen: int) -> bytes:
            return bytes(super().decompress(src, dlen))

    plain, sub, over = base(module.params), Subclass(module.params), Overrides(module.params)
    try:
        assert plain.codec_ops is not None and sub.codec_ops is not None
        assert over.codec_ops is None
        plain.compress = lambda src: bytes(src)  # an instance attribute overrides too
        assert plain.codec_ops is None
    finally:
        for c in (plain, sub, over):
            c.close()


@pytest.mark.parametrize("module", list(PLUGINS), indirect=True)
def test_without_the_extension_there_are_no_ops(
    module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    codec = importlib.import_module(f"{PLUGINS[module.name][0]}._codec")
    monkeypatch.setattr(codec, "HAVE_OPS", False)
    listeners = len(module.params._listeners)
    comp = module.driver(module.params)
    assert comp.codec_ops is None
    assert len(module.params._listeners) == listeners, "no listener without ops"
    page = sample_pages(4096)["text"]
    assert comp.decompress(comp.compress(page), 4096) == page
    comp.close()


def test_the_ops_modules_refuse_bad_calls() -> None:
    lz4 = ops_module("lz4")
    zstd = ops_module("zstd")
    with pytest.raises(ValueError, match="no codec ops named"):
        lz4.new("zstd", 3)
    with pytest.raises(ValueError, match="level 13"):
        lz4.new("lz4hc", 13)
    with pytest.raises(ValueError, match="level 0"):
        zstd.new("zstd", 0)
    cap = zstd.new("zstd", 3)
    with pytest.raises(TypeError, match="zswap_lz4"):
        lz4.set_level(cap, 3)  # another plugin's capsule
    with pytest.raises(TypeError):
        zstd.level(object())
    with pytest.raises(ValueError, match="level 23"):
        zstd.set_level(cap, 23)
    assert zstd.level(cap) == 3


def library_versions(name: str) -> tuple[str, str]:
    """(the Python path's library release, the C ops' one)."""
    c_version = ops_module(name).LIBRARY_VERSION
    if name.startswith("lz4"):
        import lz4

        return lz4.library_version_string(), c_version
    if name.startswith("lzo"):
        import lzo

        version = lzo.LZO_VERSION_STRING
        return version.decode() if isinstance(version, bytes) else str(version), c_version
    if name == "deflate":
        return zlib.ZLIB_RUNTIME_VERSION, c_version
    import zstandard

    return ".".join(map(str, zstandard.ZSTD_VERSION)), c_version


@pytest.mark.parametrize("module", list(PLUGINS), indirect=True)
def test_the_c_output_is_the_python_output(module: Any) -> None:
    """On the same library release, byte for byte at every level: the two backends then
    store the same sizes (what the differential test compares)."""
    py_version, c_version = library_versions(module.name)
    if py_version != c_version:
        pytest.skip(f"the Python path runs {py_version}, the C ops {c_version}")
    comp = module.driver(module.params)
    ops = CodecOps(comp.codec_ops)
    pages = page_mix(18, 4096, 5) + list(sample_pages(16384, 2).values())
    levels: list[int | None] = [None]
    if PLUGINS[module.name][1] is not None:
        decl = module.params.declaration("level")
        levels = sorted({decl.minimum, decl.default, decl.maximum})
    try:
        for level in levels:
            if level is not None:
                module.params["level"] = level
            for i, page in enumerate(pages):
                assert ops.compress(page) == comp.compress(page), (
                    f"page {i} at level {level}: the C ops' output differs from the Python path's"
                )
    finally:
        comp.close()


@pytest.mark.parametrize("name", list(PLUGINS))
def test_the_native_core_stores_through_the_ops(name: str) -> None:
    """Pages stored and loaded by the native backend through the pool's C ops, the
    level changed in between: every page comes back."""
    ops_module(name)
    z = Zswap(backend="native", compressor=name, zpool="zsmalloc", checksums_enabled=True)
    try:
        assert z._core is not None and z._current is not None
        assert z._core.pool_codec_backend(z._current.id) == "native", "the ops were not bound"
        z.init(0)
        pages = page_mix(24, z.page_size, 11)
        mod = default_registry().require("compressor", name)
        saved = dict(mod.params)
        try:
            for i, page in enumerate(pages):
                if i == 12 and "level" in mod.params:
                    mod.params["level"] = mod.params.declaration("level").maximum
                z.store(0, i, page)
        finally:
            for key, value in saved.items():
                mod.params[key] = value
        stored = [i for i in range(len(pages)) if z.load(0, i) is not None]
        assert len(stored) >= len(pages) // 2
        for i in stored:
            assert z.load(0, i) == pages[i], f"page {i} came back wrong"
        assert z.stats["decompress_fail"] == 0, z.stats
    finally:
        z.close()
