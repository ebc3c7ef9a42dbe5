"""Tests of the lz4 and lz4hc compressor plugins, loaded through the real plugin registry."""

from __future__ import annotations

import errno
import os
import random
import struct
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from zswap_lz4 import LZ4, LZ4HC

import zswap_core
from zswap_core import Compressor, ParamError, PluginError, Registry
from zswap_core._registry import LoadedModule  # not exported; the type of require()

DISTRIBUTION = "zswap-lz4"
#: Entry point name -> driver class.
DRIVERS: dict[str, type[Compressor]] = {"lz4": LZ4, "lz4hc": LZ4HC}
#: Names that have a ``level`` parameter -> (default, minimum, maximum, fast, small).
LEVELS: dict[str, tuple[int, int, int, int, int]] = {"lz4hc": (9, 1, 12, 1, 12)}
PAGE_SIZES = (4096, 16384, 65536)


def worst_case(ps: int) -> int:
    """The most an incompressible page may grow to."""
    return ps + ps // 255 + 16


# -- page makers ------------------------------------------------------------------------


def text_page(ps: int, seed: int = 0) -> bytes:
    rng = random.Random(seed)
    words = [b"swap", b"page", b"zswap", b"compress", b"memory", b"kernel", b"pool", b"entry"]
    out = bytearray()
    while len(out) < ps:
        out += b" ".join(rng.choice(words) for _ in range(rng.randint(3, 12)))
        out += b".\n" if rng.random() < 0.2 else b", "
    return bytes(out[:ps])


def random_page(ps: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(ps)


def heap_page(ps: int, seed: int = 0) -> bytes:
    """Like a page of a C heap: headers, pointers into one region, small ints, padding."""
    rng = random.Random(seed)
    out = bytearray()
    base = 0x00007F3A_12000000
    while len(out) < ps:
        nwords = rng.choice((2, 4, 6, 8))
        out += struct.pack("<Q", nwords * 8 | 1)  # malloc chunk header
        for _ in range(nwords):
            kind = rng.random()
            if kind < 0.4:
                out += struct.pack("<Q", base + rng.randrange(0, 1 << 20, 16))
            elif kind < 0.7:
                out += struct.pack("<Q", rng.randrange(256))
            elif kind < 0.85:
                out += bytes(8)
            else:
                out += rng.choice((b"name\0\0\0\0", b"value\0\0\0", b"key_id\0\0"))
    return bytes(out[:ps])


def pages(ps: int) -> dict[str, bytes]:
    return {
        "text": text_page(ps),
        "urandom": os.urandom(ps),
        "randbytes": random_page(ps, 42),
        "zero": bytes(ps),
        "same-byte": b"\xa5" * ps,
        "same-word": struct.pack("<Q", 0xDEADBEEF_CAFEF00D) * (ps // 8),
        "heap": heap_page(ps),
    }


def _raises(fn: Callable[..., bytes], *args: object) -> None:
    """``fn(*args)`` must raise (any error); returning data of any kind is a failure."""
    try:
        out = fn(*args)
    except AssertionError:
        raise
    except Exception:
        return
    pytest.fail(f"returned {len(out)} bytes instead of raising")


# -- fixtures ---------------------------------------------------------------------------


def _module(name: str) -> LoadedModule:
    assert zswap_core.crypto_has_comp(name) is True
    return zswap_core.default_registry().require("compressor", name)


@pytest.fixture(params=sorted(DRIVERS))
def name(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture(params=sorted(LEVELS))
def level_name(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture
def module(name: str) -> LoadedModule:
    return _module(name)


@pytest.fixture
def comp(module: LoadedModule) -> Compressor:
    c: Compressor = module.driver(module.params)
    return c


@pytest.fixture
def level_module(level_name: str) -> Iterator[LoadedModule]:
    """A module with a ``level``; its process-wide parameters are restored afterwards."""
    mod = _module(level_name)
    saved = dict(mod.params)
    yield mod
    for key, value in saved.items():
        mod.params[key] = value


@pytest.fixture
def level_comp(level_module: LoadedModule) -> Compressor:
    c: Compressor = level_module.driver(level_module.params)
    return c


# -- loading ----------------------------------------------------------------------------


def test_loads_through_registry(name: str, module: LoadedModule) -> None:
    assert zswap_core.crypto_has_comp(name) is True
    assert module.driver is DRIVERS[name]
    assert issubclass(module.driver, Compressor)
    assert module.driver.name == name
    assert module.driver.api_version == zswap_core.API_VERSION
    assert module.driver.description
    assert module.distribution == DISTRIBUTION
    if name in LEVELS:
        default = LEVELS[name][0]
        assert module.params["level"] == default
        assert module.params.sysfs("level") == str(default)
        decl = module.params.declaration("level")
        assert (decl.minimum, decl.maximum) == LEVELS[name][1:3]
    else:
        assert len(module.params) == 0


def test_plugin_listed(name: str, module: LoadedModule) -> None:
    rows = [r for r in zswap_core.list_plugins() if r.kind == "compressor" and r.name == name]
    assert len(rows) == 1
    assert rows[0].distribution == DISTRIBUTION
    assert rows[0].state == "loaded"


def test_modprobe_options_apply_at_load(level_name: str, tmp_path: os.PathLike[str]) -> None:
    _, _, maximum, _, small = LEVELS[level_name]
    conf = os.path.join(tmp_path, "plugin.conf")
    with open(conf, "w") as fh:
        fh.write(f"options {level_name} level={small}\n")
    reg = Registry(modprobe_dir=tmp_path)
    assert reg.require("compressor", level_name).params["level"] == small

    with open(conf, "w") as fh:
        fh.write(f"options {level_name} level={maximum + 1}\n")
    bad = Registry(modprobe_dir=tmp_path)
    with pytest.raises(PluginError, match="level"):
        bad.require("compressor", level_name)


# -- round trips ------------------------------------------------------------------------


@pytest.mark.parametrize("ps", PAGE_SIZES)
def test_round_trip(comp: Compressor, ps: int) -> None:
    for kind, page in pages(ps).items():
        for src in (page, bytearray(page), memoryview(page)):
            data = comp.compress(src)
            assert isinstance(data, bytes), kind
            assert 0 < len(data) <= 2 * ps, kind
            # The core hands decompress a slice of a mapped zpool buffer.
            for view in (data, memoryview(bytearray(data)), memoryview(data + b"xx")[:-2]):
                out = comp.decompress(view, ps)
                assert out == page, kind
                assert isinstance(out, bytes), kind


@pytest.mark.parametrize("ps", PAGE_SIZES)
def test_compressible_pages_shrink(comp: Compressor, ps: int) -> None:
    p = pages(ps)
    assert len(comp.compress(p["text"])) < ps // 2
    assert len(comp.compress(p["heap"])) < ps * 3 // 4
    for kind in ("zero", "same-byte", "same-word"):
        assert len(comp.compress(p[kind])) < ps // 64, kind
    # Incompressible pages may grow, but only by the format's small overhead.
    for kind in ("urandom", "randbytes"):
        assert len(comp.compress(p[kind])) <= worst_case(ps), kind


# -- corrupt input ----------------------------------------------------------------------


@pytest.mark.parametrize("ps", PAGE_SIZES)
def test_truncated_and_extended_input_raises(comp: Compressor, ps: int) -> None:
    for kind, page in pages(ps).items():
        data = comp.compress(page)
        cuts = sorted({0, 1, 2, len(data) // 3, len(data) // 2, len(data) - 2, len(data) - 1})
        for cut in cuts:
            _raises(comp.decompress, data[:cut], ps)
        for tail in (b"\0", b"garbage", data):
            _raises(comp.decompress, data + tail, ps)
        _raises(comp.decompress, b"", ps)
        assert comp.decompress(data, ps) == page, kind  # the good stream still decodes


@pytest.mark.parametrize("ps", PAGE_SIZES)
def test_garbage_input_raises(comp: Compressor, ps: int) -> None:
    rng = random.Random(ps)
    for n in (1, 7, 64, ps // 2, ps, 2 * ps):
        _raises(comp.decompress, rng.randbytes(n), ps)
    for n in (7, 64, ps):
        _raises(comp.decompress, b"\xff" * n, ps)


def test_bit_flips_never_give_a_wrong_length(comp: Compressor) -> None:
    # Without a checksum a format cannot notice every flipped literal bit (the core's
    # checksums_enabled covers that); but a result is always exactly one page.
    ps = 4096
    data = comp.compress(heap_page(ps))
    rng = random.Random(1)
    raised = 0
    for _ in range(300):
        bad = bytearray(data)
        bad[rng.randrange(len(bad))] ^= 1 << rng.randrange(8)
        try:
            out = comp.decompress(bytes(bad), ps)
        except Exception:
            raised += 1
        else:
            assert len(out) == ps
    assert raised > 0


@pytest.mark.parametrize("ps", PAGE_SIZES)
def test_wrong_dlen_raises(comp: Compressor, ps: int) -> None:
    for page in (text_page(ps), random_page(ps), bytes(ps)):
        data = comp.compress(page)
        for dlen in (ps - 1, ps + 1, ps // 2, 2 * ps, 1, 0, -1):
            _raises(comp.decompress, data, dlen)
        assert comp.decompress(data, ps) == page


# -- threads ----------------------------------------------------------------------------


def _hammer(comp: Compressor, nthreads: int, rounds: int, ps: int) -> None:
    inputs = [
        [text_page(ps, t), heap_page(ps, t), random_page(ps, t), bytes([t]) * ps]
        for t in range(nthreads)
    ]
    expected = [[comp.compress(p) for p in mine] for mine in inputs]
    errors: list[BaseException] = []
    barrier = threading.Barrier(nthreads)

    def work(t: int) -> None:
        try:
            barrier.wait()
            for r in range(rounds):
                for page, want in zip(inputs[t], expected[t], strict=True):
                    data = comp.compress(page)
                    assert data == want, f"thread {t} round {r}: different output"
                    assert comp.decompress(data, ps) == page, f"thread {t} round {r}"
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(nthreads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors[0]


@pytest.mark.parametrize("nthreads", [2, 4])
def test_threads_share_one_instance(comp: Compressor, nthreads: int) -> None:
    _hammer(comp, nthreads, rounds=60, ps=4096)


def test_threads_while_level_changes(level_name: str, level_module: LoadedModule) -> None:
    comp: Compressor = level_module.driver(level_module.params)
    params = level_module.params
    default, _, _, fast, small = LEVELS[level_name]
    ps = 16384
    inputs = [text_page(ps, t) for t in range(3)]
    stop = threading.Event()
    errors: list[BaseException] = []

    def flip() -> None:
        levels = (fast, small, default)
        i = 0
        while not stop.is_set():
            params["level"] = levels[i % len(levels)]
            i += 1
            time.sleep(0.0005)

    def work(t: int) -> None:
        try:
            for _ in range(80):
                data = comp.compress(inputs[t])
                assert comp.decompress(data, ps) == inputs[t]
        except BaseException as exc:
            errors.append(exc)

    flipper = threading.Thread(target=flip)
    workers = [threading.Thread(target=work, args=(t,)) for t in range(3)]
    flipper.start()
    for th in workers:
        th.start()
    for th in workers:
        th.join()
    stop.set()
    flipper.join()
    assert not errors, errors[0]


# -- the level parameter ----------------------------------------------------------------


def test_level_changes_output_at_run_time(
    level_name: str, level_module: LoadedModule, level_comp: Compressor
) -> None:
    _, _, _, fast_level, small_level = LEVELS[level_name]
    params = level_module.params
    page = heap_page(65536, 3)
    params["level"] = fast_level
    fast = level_comp.compress(page)
    params["level"] = small_level  # the same instance sees the new value on its next call
    small = level_comp.compress(page)
    assert small != fast
    assert len(small) < len(fast)
    params["level"] = fast_level
    assert level_comp.compress(page) == fast
    # One decoder reads every level's output.
    assert level_comp.decompress(fast, 65536) == page
    assert level_comp.decompress(small, 65536) == page


def test_level_written_as_sysfs_string(
    level_name: str, level_module: LoadedModule, level_comp: Compressor
) -> None:
    _, _, _, fast_level, small_level = LEVELS[level_name]
    params = level_module.params
    page = heap_page(16384)
    params["level"] = f" {small_level}\n"
    assert params["level"] == small_level
    assert params.sysfs("level") == str(small_level)
    at_small = level_comp.compress(page)
    params["level"] = str(fast_level)
    assert params["level"] == fast_level
    assert level_comp.compress(page) != at_small


@pytest.mark.parametrize("bad", ["above", "below", 99, -1, "abc", "99", "", True, 3.5, None])
def test_bad_level_is_refused(
    level_name: str, level_module: LoadedModule, level_comp: Compressor, bad: object
) -> None:
    _, minimum, maximum, _, small_level = LEVELS[level_name]
    if bad == "above":
        bad = maximum + 1
    elif bad == "below":
        bad = minimum - 1
    params = level_module.params
    params["level"] = small_level
    page = heap_page(16384)
    before = level_comp.compress(page)
    with pytest.raises(ParamError) as info:
        params["level"] = bad
    assert info.value.errno == errno.EINVAL
    assert params["level"] == small_level
    assert params.sysfs("level") == str(small_level)
    assert level_comp.compress(page) == before


def test_registry_params_object_refuses_99(level_name: str, level_module: LoadedModule) -> None:
    params = zswap_core.default_registry().require("compressor", level_name).params
    assert params is level_module.params
    old = params["level"]
    with pytest.raises(ParamError) as info:
        params["level"] = 99
    assert info.value.errno == errno.EINVAL
    assert params["level"] == old


def test_plugins_without_level_refuse_one() -> None:
    for name in sorted(set(DRIVERS) - set(LEVELS)):
        params = _module(name).params
        with pytest.raises(ParamError) as info:
            params["level"] = 1
        assert info.value.errno == errno.EINVAL
        assert "level" not in params


# -- through zswap ----------------------------------------------------------------------


def test_store_and_load_through_zswap(name: str) -> None:
    zpool = next((z for z in ("zsmalloc", "zbud", "z3fold") if zswap_core.zpool_has_pool(z)), None)
    if zpool is None:
        pytest.skip("no zpool plugin installed")
    z = zswap_core.Zswap(compressor=name, zpool=zpool, ram_bytes=1 << 30)
    assert z.params["compressor"] == name
    z.init(0)
    stored = dict(enumerate(pages(4096).values()))
    accepted = {off: z.store(0, off, page) for off, page in stored.items()}
    assert accepted[0]  # the text page compresses well and must be taken
    for off, page in stored.items():
        got = z.load(0, off)
        if accepted[off]:
            assert got == page
        else:
            assert got is None
    assert z.stats["decompress_fail"] == 0


# -- lz4 specifics ----------------------------------------------------------------------


def test_output_is_a_bare_lz4_block() -> None:
    import lz4.block  # type: ignore[import-untyped]

    page = text_page(4096)
    data = LZ4(None).compress(page)
    assert data == lz4.block.compress(page, store_size=False)
    hc = LZ4HC(None).compress(page)  # no parameters: LZ4HC_DEFAULT_CLEVEL
    assert hc == lz4.block.compress(page, mode="high_compression", compression=9, store_size=False)
    assert len(hc) < len(data)
    # Either decoder reads the other's blocks: the format is the same.
    assert LZ4(None).decompress(hc, 4096) == page
    assert LZ4HC(None).decompress(data, 4096) == page


def test_short_block_is_refused() -> None:
    # lz4.block.decompress returns a block shorter than uncompressed_size without an
    # error; the plugin must refuse it.
    page = text_page(4096)
    data = LZ4(None).compress(page[:4000])
    _raises(LZ4(None).decompress, data, 4096)
