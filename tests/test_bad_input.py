"""Bad input at every public entry point: a specific exception with a message, and no
change to anything observable.

Each case runs through :func:`refused`, which snapshots the parameters
(``z.params.as_sysfs()``), the counters (``z.stats``), the pools (``z.pools``), the
allocator's pages, the swap layer's ``vmstat`` and ``swaps``, every stored page (read
back through ``z.load`` and from the swap file's bytes) before and after, and
compares. The cases are counted by kind; the totals are printed at the end of the
module (``-s``) and written as JSON to ``$ZSWAP_BAD_INPUT_REPORT`` when set.

Narrower versions of some of these live in test_zswap_core.py (test_bad_arguments,
test_param_errors_leave_everything_unchanged), test_swap_layer.py
(test_bad_entries_raise_and_change_nothing) and test_params.py; this file is the
complete sweep, with the full before/after comparison.
"""

from __future__ import annotations

import array
import collections
import errno
import json
import os
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import zswap_core
from zswap_core import ParamError, Registry, Zswap, ZswapError, parse_cmdline, parse_modprobe
from zswap_core.swap import Swap, SwapEntry, SwapHeaderError

PS = 4096

#: Bad inputs tried, by kind.
BAD: collections.Counter[str] = collections.Counter()


@pytest.fixture(scope="module", autouse=True)
def _bad_input_report() -> Iterator[None]:
    yield
    total = sum(BAD.values())
    print(f"\nbad inputs tried: {total}", json.dumps(dict(sorted(BAD.items())), indent=1))
    out = os.environ.get("ZSWAP_BAD_INPUT_REPORT")
    if out:
        Path(out).write_text(json.dumps({"total": total, **dict(sorted(BAD.items()))}) + "\n")


# -- a world with data in it, and its snapshot -------------------------------------------------


class World:
    """A Zswap with pages in zswap (type 0 via Swap) and in the file, plus a direct type."""

    def __init__(self, tmp: Path) -> None:
        self.z = Zswap(compressor="lz4", zpool="zbud", ram_bytes=1 << 30)
        self.s = Swap(self.z)
        self.path = tmp / "swapfile"
        self.t = self.s.swapon(self.path, 64)
        rng = random.Random(1)
        self.entries: dict[SwapEntry, bytes] = {}
        for i in range(12):
            if i % 4 == 3:
                page = rng.randbytes(PS)  # to the file
            elif i % 4 == 2:
                page = bytes([i]) * PS  # same-filled
            else:
                page = (rng.randbytes(700) + bytes(PS))[:PS]
            self.entries[self.s.swap_out(page)] = page
        self.freed = self.s.swap_out(b"f" * PS)
        self.s.swap_free(self.freed)
        # a type driven directly (no Swap), with an entry at offset 7
        self.direct = 20
        self.z.init(self.direct)
        self.direct_page = (rng.randbytes(500) + bytes(PS))[:PS]
        assert self.z.store(self.direct, 7, self.direct_page)
        assert self.s.vmstat["pswpout"] >= 3 and self.z.stats["stored_pages"] >= 8

    def snapshot(self) -> dict[str, Any]:
        z, s = self.z, self.s
        return {
            "params": z.params.as_sysfs(),
            "stats": z.stats,
            "pools": z.pools,
            "pages": z.pages.nr_pages,
            "vmstat": s.vmstat,
            "swaps": s.swaps,
            "zswap data": {
                e: z.load(e.type, e.offset) for e in [*self.entries, self.freed]
            },  # z.load: no counter moves
            "direct": [z.load(self.direct, off) for off in (6, 7, 8)],
            "file": self.path.read_bytes(),
        }

    def check_data(self) -> None:
        for e, page in self.entries.items():
            assert self.s.swap_in(e) == page
        assert self.z.load(self.direct, 7) == self.direct_page

    def close(self) -> None:
        self.s.close()
        self.z.close()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.close()


def refused(
    w: World | None,
    kind: str,
    call: Callable[[], object],
    exc: type[BaseException] | tuple[type[BaseException], ...],
    match: str | None = None,
    *,
    err: int | None = None,
) -> BaseException:
    """``call()`` must raise ``exc`` with a message (and ``errno`` ``err``) and change nothing."""
    before = w.snapshot() if w is not None else None
    with pytest.raises(exc, match=match) as info:
        call()
    assert str(info.value).strip(), f"{kind}: {info.value!r} has no message"
    if err is not None:
        assert getattr(info.value, "errno", None) == err, f"{kind}: {info.value!r}"
    if w is not None:
        after = w.snapshot()
        changed = [k for k in before if before[k] != after[k]]  # type: ignore[index]
        assert not changed, f"{kind}: {info.value!r} changed {changed}"
    BAD[kind] += 1
    return info.value


# -- Zswap construction ----------------------------------------------------------------------------

CONSTRUCTOR_CASES: list[tuple[dict[str, Any], type[BaseException], str]] = [
    ({"page_size": 1000}, ValueError, "page_size"),
    ({"page_size": 4097}, ValueError, "page_size"),
    ({"page_size": "4096"}, ValueError, "page_size"),
    ({"page_size": 2**20}, ValueError, "page_size"),
    ({"ram_bytes": 0}, ValueError, "ram_bytes"),
    ({"ram_bytes": -1}, ValueError, "ram_bytes"),
    ({"ram_bytes": 1.5e9}, ValueError, "ram_bytes"),
    ({"ram_bytes": "1G"}, ValueError, "ram_bytes"),
    ({"ram_bytes": True}, ValueError, "ram_bytes"),
    ({"bogus": 1}, TypeError, "unknown zswap parameter"),
    ({"max_pool_percent": 101}, ParamError, "above 100"),
    ({"max_pool_percent": -1}, ParamError, "unsigned"),
    ({"max_pool_percent": "twenty"}, ParamError, "not an integer"),
    ({"max_pool_percent": 2**64}, ParamError, "unsigned"),
    ({"enabled": "maybe"}, ParamError, "not a bool"),
    ({"enabled": 1}, ParamError, "expected a bool"),
    ({"compressor": 5}, ParamError, "expected a string"),
    ({"compressor": "lz4\0"}, ParamError, "NUL"),
    ({"compressor": "x" * 5000}, ParamError, "longer than"),
    ({"zpool": "zbud\nzsmalloc"}, ParamError, "control character"),
    ({"exclusive_loads": None}, ParamError, "expected a bool"),
]


@pytest.mark.parametrize(("kwargs", "exc", "match"), CONSTRUCTOR_CASES)
def test_zswap_constructor(kwargs: dict[str, Any], exc: type[BaseException], match: str) -> None:
    kwargs = {"ram_bytes": 1 << 30, **kwargs}
    refused(None, "Zswap(...) arguments", lambda: Zswap(**kwargs), exc, match)


# -- frontswap calls -------------------------------------------------------------------------------

BAD_TYPES: list[tuple[object, type[BaseException]]] = [
    ("0", (TypeError, ValueError)),  # type: ignore[list-item]
    (0.0, (TypeError, ValueError)),  # type: ignore[list-item]
    (True, (TypeError, ValueError)),  # type: ignore[list-item]
    (None, (TypeError, ValueError)),  # type: ignore[list-item]
    (-1, ValueError),
    (32, ValueError),
    (2**70, ValueError),
    (5, ValueError),  # never initialised
]
BAD_OFFSETS: list[tuple[object, type[BaseException]]] = [
    ("7", TypeError),
    (7.0, TypeError),
    (True, TypeError),
    (None, TypeError),
    (-1, ValueError),
    (2**32, ValueError),
    (2**100, ValueError),
]


def test_store_load_invalidate_with_bad_types_and_offsets(world: World) -> None:
    z, t = world.z, world.direct
    page = b"p" * PS
    buf = bytearray(PS)
    for bad, exc in BAD_TYPES:
        refused(world, "bad swap type", lambda b=bad: z.store(b, 7, page), exc)
        refused(world, "bad swap type", lambda b=bad: z.load(b, 7), exc)
        refused(world, "bad swap type", lambda b=bad: z.load_into(b, 7, buf), exc)
        refused(world, "bad swap type", lambda b=bad: z.invalidate_page(b, 7), exc)
        refused(world, "bad swap type", lambda b=bad: z.invalidate_area(b), exc)
    for bad, exc in BAD_TYPES[:-1]:  # (init of a valid, new type is not an error)
        refused(world, "bad swap type", lambda b=bad: z.init(b), exc)
    for bad, exc in BAD_OFFSETS:
        refused(world, "bad offset", lambda b=bad: z.store(t, b, page), exc)
        refused(world, "bad offset", lambda b=bad: z.load(t, b), exc)
        refused(world, "bad offset", lambda b=bad: z.load_into(t, b, buf), exc)
        refused(world, "bad offset", lambda b=bad: z.invalidate_page(t, b), exc)


def test_store_with_bad_pages_keeps_the_old_copy(world: World) -> None:
    """A refused store must not drop the page already stored at that offset."""
    z, t = world.z, world.direct
    bad_pages: list[tuple[object, type[BaseException], str]] = [
        (None, TypeError, "bytes-like"),
        ("x" * PS, TypeError, "bytes-like"),
        ([0] * PS, TypeError, "bytes-like"),
        (12345, TypeError, "bytes-like"),
        (b"", ValueError, "4096 bytes"),
        (b"x" * (PS - 1), ValueError, "4096 bytes"),
        (b"x" * (PS + 1), ValueError, "4096 bytes"),
        (b"x" * (2 * PS), ValueError, "4096 bytes"),
        (bytearray(100), ValueError, "4096 bytes"),
        (memoryview(b"x" * (2 * PS))[::3], ValueError, "4096 bytes"),
        (array.array("I", bytes(PS + 4)), ValueError, "4096 bytes"),
    ]
    for page, exc, match in bad_pages:
        refused(world, "bad page", lambda p=page: z.store(t, 7, p), exc, match)  # type: ignore[arg-type]
    assert z.load(t, 7) == world.direct_page


def test_load_into_bad_buffers(world: World) -> None:
    z, t = world.z, world.direct
    for buf, exc in [
        (bytes(PS), ValueError),  # read-only
        (bytearray(PS - 1), ValueError),
        (bytearray(PS + 1), ValueError),
        (None, TypeError),
        ("x" * PS, TypeError),
        (memoryview(bytes(PS)), ValueError),
    ]:
        refused(world, "bad load_into buffer", lambda b=buf: z.load_into(t, 7, b), exc)  # type: ignore[arg-type]


def test_never_stored_offsets_load_none_and_change_nothing(world: World) -> None:
    z, t = world.z, world.direct
    before = world.snapshot()
    for off in (0, 6, 8, 4095, 4096, 2**32 - 1):
        assert z.load(t, off) is None
        assert z.load_into(t, off, bytearray(PS)) is False
        z.invalidate_page(t, off)  # nothing there: a no-op
        BAD["load/invalidate of a never-stored offset"] += 3
    assert world.snapshot() == before


def test_writeback_and_compact_arguments(world: World) -> None:
    z = world.z
    for bad, exc in [(-1, ValueError), ("3", ValueError), (1.5, ValueError), (True, ValueError)]:
        refused(world, "bad writeback count", lambda b=bad: z.writeback(b), exc, "nr_pages")  # type: ignore[arg-type]
    refused(world, "bad writeback count", lambda: z.writeback(None), ValueError)  # type: ignore[arg-type]


def test_use_after_invalidate_area_and_close(tmp_path: Path) -> None:
    z = Zswap(compressor="lz4", zpool="zbud", ram_bytes=1 << 30)
    z.init(3)
    assert z.store(3, 1, b"a" * PS)
    z.invalidate_area(3)
    for call in (
        lambda: z.store(3, 1, b"a" * PS),
        lambda: z.load(3, 1),
        lambda: z.load_into(3, 1, bytearray(PS)),
        lambda: z.invalidate_page(3, 1),
        lambda: z.invalidate_area(3),
    ):
        refused(None, "use after invalidate_area", call, ValueError, "not initialised")
    assert z.stats["stored_pages"] == 0 and z.pages.nr_pages == 0
    z.close()
    refused(None, "use after close", lambda: z.init(3), ZswapError, "closed")
    refused(None, "use after close", lambda: z.store(3, 1, b"a" * PS), ValueError)
    refused(None, "use after close", lambda: z.load(3, 1), ValueError)


# -- parameters ------------------------------------------------------------------------------------

NAMES = [
    "enabled",
    "compressor",
    "zpool",
    "max_pool_percent",
    "accept_threshold_percent",
    "same_filled_pages_enabled",
    "non_same_filled_pages_enabled",
    "exclusive_loads",
    "checksums_enabled",
]
BOOLS = [n for n in NAMES if n.endswith("enabled") or n == "exclusive_loads"]
UINTS = ["max_pool_percent", "accept_threshold_percent"]
STRS = ["compressor", "zpool"]

GENERIC_BAD: list[object] = [
    "\0",
    "Y\0",
    "1\0",
    "lz4\0zstd",
    "x" * 1025,
    "1" * 5000,
    "Y" * 100_000,
    "Y\nN",
    "1\n2",
    "lz4\nzstd",
    "lz4\r\nzstd",
    "lz4\tzstd",
    "",
    "   ",
    "\n",
    None,
    [],
    {"a": 1},
    b"Y",
    object(),
    1.5,
]
SPECIFIC_BAD: dict[str, list[object]] = {
    "bool": ["maybe", "Y N", "YY", "2", "-1", "y e s", "tru e", 2, 0, "N\x0bN"],
    "uint": [
        "-1",
        "101",
        "1 0",
        " 2 0 ",
        "abc",
        "0x",
        "1e3",
        "5%",
        "10.0",
        "+-1",
        -1,
        101,
        2**32,
        2**200,
        True,
    ],
    "charp": [
        "lz 4",
        "zs malloc",
        "os:system",
        "subprocess",
        "../lz4",
        "zswap_core._zswap",
        "json",
        "LZ4",
        "lz4;rm -rf /",
        "nosuch",
        "zbud",  # a zpool name as a compressor (and the reverse for zpool, below)
        "\u00e9",
        "a/b",
        5,
    ],
}


def bad_values(name: str) -> list[object]:
    kind = "bool" if name in BOOLS else "uint" if name in UINTS else "charp"
    specific = list(SPECIFIC_BAD[kind])
    if name == "zpool":
        specific = ["lz4" if v == "zbud" else v for v in specific]
    return GENERIC_BAD + specific


@pytest.mark.parametrize("name", NAMES)
def test_parameter_writes_with_bad_values(world: World, name: str) -> None:
    z = world.z
    for value in bad_values(name):
        refused(
            world,
            "bad parameter value",
            lambda v=value: z.params.__setitem__(name, v),
            ParamError,
        )
        refused(world, "bad parameter value", lambda v=value: z.params.set(name, v), ParamError)
    world.check_data()


def test_parameter_errors_carry_kernel_errnos(world: World) -> None:
    z = world.z
    refused(world, "bad parameter value", lambda: z.params.__setitem__("enabled", "x"), ParamError,
            err=errno.EINVAL)  # fmt: skip
    refused(world, "bad parameter value", lambda: z.params.__setitem__("compressor", "nosuch"),
            ParamError, "not available", err=errno.ENOENT)  # fmt: skip
    refused(world, "bad parameter value", lambda: z.params.__setitem__("zpool", "os:system"),
            ParamError, err=errno.ENOENT)  # fmt: skip


def test_unknown_parameter_names(world: World) -> None:
    z = world.z
    for name in ["nosuch", "", "Enabled", "enabled ", "zswap.enabled", None, 1, ("enabled",)]:
        refused(world, "unknown parameter", lambda n=name: z.params.__setitem__(n, "Y"), ParamError,
                "no parameter", err=errno.EINVAL)  # fmt: skip
        refused(world, "unknown parameter", lambda n=name: z.params[n], ParamError, "no parameter")
        refused(world, "unknown parameter", lambda n=name: z.params.sysfs(n), ParamError)


def test_enabling_without_a_pool_is_enodev(tmp_path: Path) -> None:
    reg = Registry()
    reg.block("lz4")  # neither the asked-for nor the default compressor can load
    reg.block("nosuch")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        z = Zswap(compressor="nosuch", zpool="zbud", ram_bytes=1 << 30, registry=reg)
    assert z.params["enabled"] is False and z.pools == []
    before = z.params.as_sysfs()
    refused(None, "enable without a pool", lambda: z.params.__setitem__("enabled", "Y"),
            ParamError, "no pool", err=errno.ENODEV)  # fmt: skip
    assert z.params.as_sysfs() == before
    z.close()


# -- boot strings and modprobe files -----------------------------------------------------------

BAD_CMDLINES: list[object] = [
    'zswap.compressor="unterminated',
    "zswap.compressor='unterminated",
    "zswap.=x",
    ".x=1",
    "zswap..x=1",
    "zswap.a-b=1",
    "zs wap.x=1 zswap.@=1",
    "zswap.enabled=Y\0",
    "\0",
    "zswap.enabled=maybe",
    "zswap.max_pool_percent=101",
    "zswap.max_pool_percent=-5",
    "zswap.max_pool_percent=1e3",
    "zswap.compressor=" + "a" * 5000,
    'zswap.compressor="lz4\nzstd"',
    "zswap.nosuch=1",
    "zswap.enabled=Y zswap.bogus=N",
    "zswap.max_pool_percent=5 zswap.max_pool_percent=abc",
    "z" * 70 + ".x=1",
    "zswap." + "p" * 70 + "=1",
    None,
    b"zswap.enabled=Y",
    42,
]


@pytest.mark.parametrize("cmdline", BAD_CMDLINES, ids=lambda c: repr(c)[:30])
def test_malformed_boot_strings(cmdline: object) -> None:
    reg = Registry()
    refused(
        None,
        "malformed boot string",
        lambda: Zswap.from_cmdline(cmdline, registry=reg, ram_bytes=1 << 30),  # type: ignore[arg-type]
        ParamError,
        err=errno.EINVAL,
    )
    # nothing was handed to the registry either: zstd loads with its default level
    assert reg.require("compressor", "zstd").params["level"] == 3


def test_a_failing_boot_string_leaves_plugin_options_alone() -> None:
    reg = Registry()
    refused(
        None,
        "malformed boot string",
        lambda: Zswap.from_cmdline("zstd.level=9 zswap.enabled=maybe", registry=reg),
        ParamError,
    )
    assert reg.require("compressor", "zstd").params["level"] == 3


BUG_CMDLINE_HALF_APPLIED = (
    "BUG: Zswap.from_cmdline hands other modules' options (zstd.level=...) to the "
    "registry before constructing the Zswap; when construction then fails (bad "
    "page_size, unknown keyword) the options stay applied"
)


def test_a_failing_constructor_leaves_boot_options_alone() -> None:
    reg = Registry()
    refused(
        None,
        "malformed boot string",
        lambda: Zswap.from_cmdline("zstd.level=9", registry=reg, page_size=1000),
        ValueError,
    )
    assert reg.require("compressor", "zstd").params["level"] == 3


BAD_MODPROBE: list[str] = [
    "options",
    "options zstd",
    "options z$td level=1",
    "options zstd 1level=3",
    "options zstd =3",
    "options zstd level=1\0",
    "blacklist",
    "blacklist lzo zstd",
    "blacklist ../lzo",
    "frobnicate zstd",
    "OPTIONS zstd level=1",
    "options zstd level=1\nbogus line here",
    "options " + "m" * 70 + " level=1",
]


@pytest.mark.parametrize("text", BAD_MODPROBE, ids=lambda t: repr(t)[:30])
def test_malformed_modprobe_files(text: str, tmp_path: Path) -> None:
    err = refused(None, "malformed modprobe file", lambda: parse_modprobe(text, source="x.conf"),
                  ParamError, err=errno.EINVAL)  # fmt: skip
    assert "x.conf:" in str(err)  # says where
    # through a registry: the bad file is reported (ParamError), and nothing is loaded
    d = tmp_path / "modprobe.d"
    d.mkdir()
    (d / "x.conf").write_text(text)
    reg = Registry(modprobe_dir=d)
    refused(None, "malformed modprobe file", lambda: reg.request("compressor", "zstd"),
            ParamError, "x.conf")  # fmt: skip
    assert reg.loaded("compressor", "zstd") is None
    (d / "x.conf").write_text("options zstd level=4\n")
    assert reg.require("compressor", "zstd").params["level"] == 4


@pytest.mark.parametrize("text", [None, b"options zstd level=1", 5])
def test_modprobe_parser_rejects_wrong_types_with_its_error(text: object) -> None:
    refused(None, "malformed modprobe file", lambda: parse_modprobe(text), ParamError)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["1_0", "\u0663", "\uff11\uff10"])
def test_integer_parameters_refuse_non_kernel_spellings(world: World, value: str) -> None:
    refused(world, "bad parameter value",
            lambda: world.z.params.__setitem__("max_pool_percent", value), ParamError)  # fmt: skip


def test_cmdline_parser_type_errors() -> None:
    for bad in (None, b"zswap.enabled=Y", 1, ["zswap.enabled=Y"]):
        refused(None, "malformed boot string", lambda b=bad: parse_cmdline(b), ParamError)  # type: ignore[arg-type]


# -- the swap layer --------------------------------------------------------------------------------


def bad_entries(w: World) -> list[tuple[object, type[BaseException]]]:
    e = next(iter(w.entries))
    return [
        (None, TypeError),
        ("nonsense", TypeError),
        (5, TypeError),
        ((0,), TypeError),
        ((0, 1, 2), TypeError),
        (("0", e.offset), TypeError),
        ((0, str(e.offset)), TypeError),
        ((0, float(e.offset)), TypeError),
        ((True, e.offset), TypeError),
        ((0, True), TypeError),
        ((0, 0), ValueError),  # the header
        ((0, -1), ValueError),
        ((0, 64), ValueError),  # past the end
        ((0, 2**40), ValueError),
        ((-1, 1), ValueError),
        ((32, 1), ValueError),
        ((7, 1), ValueError),  # never swapped on
        ((w.direct, 7), ValueError),  # a zswap type the swap layer does not own
        (w.freed, ValueError),  # freed
        ((0, 50), ValueError),  # never used
    ]


def test_swap_in_and_free_with_bad_entries(world: World) -> None:
    s = world.s
    for entry, exc in bad_entries(world):
        refused(world, "bad swap entry", lambda e=entry: s.swap_in(e), exc)  # type: ignore[arg-type]
        refused(world, "bad swap entry", lambda e=entry: s.swap_free(e), exc)  # type: ignore[arg-type]
    world.check_data()


def test_double_free(world: World) -> None:
    s = world.s
    e, page = next(iter(world.entries.items()))
    assert s.swap_in(e) == page
    s.swap_free(e)
    del world.entries[e]
    for _ in range(3):
        refused(world, "double free", lambda: s.swap_free(e), ValueError, "double free")
        refused(world, "use after free", lambda: s.swap_in(e), ValueError, "not in use")
    world.check_data()


def test_swap_out_bad_pages(world: World) -> None:
    s = world.s
    for page, exc in [
        (None, TypeError),
        ("x" * PS, TypeError),
        (12345, TypeError),
        ([1] * PS, TypeError),
        (b"", ValueError),
        (b"x" * (PS - 1), ValueError),
        (bytearray(PS + 1), ValueError),
        (b"x" * (PS * 2), ValueError),
    ]:
        refused(world, "bad page", lambda p=page: s.swap_out(p), exc)  # type: ignore[arg-type]


def test_swapon_swapoff_and_fault_injection_arguments(world: World, tmp_path: Path) -> None:
    s = world.s
    new = tmp_path / "new"
    cases: list[
        tuple[Callable[[], object], type[BaseException] | tuple[type[BaseException], ...]]
    ] = [
        (lambda: s.swapon(new, 16, priority="1"), TypeError),  # type: ignore[arg-type]
        (lambda: s.swapon(new, 16, priority=True), TypeError),
        (lambda: s.swapon(new, 16, priority=40000), ValueError),
        (lambda: s.swapon(new, 16, priority=-40000), ValueError),
        (lambda: s.swapon(new, 0), ValueError),
        (lambda: s.swapon(new, 9), ValueError),  # mkswap's minimum is 10
        (lambda: s.swapon(new, -1), ValueError),
        (lambda: s.swapon(new, 2**40), ValueError),
        (lambda: s.swapon(new, "16"), TypeError),  # type: ignore[arg-type]
        (lambda: s.swapon(new, 16.0), TypeError),  # type: ignore[arg-type]
        (lambda: s.swapon(new, 16, label="x" * 17), ValueError),
        (lambda: s.swapon(new, 16, label="a\0b"), ValueError),
        (lambda: s.swapon(new, 16, label=5), TypeError),  # type: ignore[arg-type]
        (lambda: s.swapon(new, None, label="x"), ValueError),
        (lambda: s.swapon(new, None), FileNotFoundError),
        (lambda: s.swapon(tmp_path / "no" / "dir", 16), FileNotFoundError),
        (lambda: s.swapon(tmp_path, 16), OSError),  # a directory
        (lambda: s.swapon(None, 16), TypeError),  # type: ignore[arg-type]
        (lambda: s.swapon(world.path, 16), OSError),  # in use by this Swap (flock)
        (lambda: s.swapoff("0"), TypeError),  # type: ignore[arg-type]
        (lambda: s.swapoff(-1), ValueError),
        (lambda: s.swapoff(32), ValueError),
        (lambda: s.swapoff(9), ValueError),  # not active
        (lambda: s.inject_io_errors(9, writes=1), ValueError),
        (lambda: s.inject_io_errors(world.t, writes=-1), ValueError),
        (lambda: s.inject_io_errors(world.t, reads=True), ValueError),
        (lambda: s.inject_io_errors(world.t, reads="1"), ValueError),  # type: ignore[arg-type]
        (lambda: Swap(world.z), ValueError),  # a Zswap is driven by one Swap
        (lambda: Swap(world.z, page_size=8192), ValueError),
        (lambda: Swap(page_size=1000), ValueError),
        (lambda: Swap(page_size="4096"), TypeError),  # type: ignore[arg-type]
    ]
    for call, exc in cases:
        refused(world, "bad swapon/swapoff/Swap argument", call, exc)
    assert not new.exists()  # no failed swapon left a file behind
    err = refused(world, "swapoff while busy", lambda: s.swapoff(world.t), OSError, "pages",
                  err=errno.EBUSY)  # fmt: skip
    assert "force=True" in str(err)
    world.check_data()


def test_a_file_that_is_not_swap_is_refused_and_not_overwritten(
    world: World, tmp_path: Path
) -> None:
    victim = tmp_path / "precious.txt"
    content = b"my thesis, chapter 1\n" * 1000
    victim.write_bytes(content)
    for nr in (16, None):
        refused(world, "not a swap file", lambda n=nr: world.s.swapon(victim, n), SwapHeaderError,
                "SWAPSPACE2|not a swap area")  # fmt: skip
    assert victim.read_bytes() == content


def test_use_after_swapoff_and_close(tmp_path: Path) -> None:
    z = Zswap(compressor="lz4", zpool="zbud", ram_bytes=1 << 30)
    s = Swap(z)
    t = s.swapon(tmp_path / "sw", 16)
    e = s.swap_out(b"q" * PS)
    s.swapoff(t, force=True)
    refused(None, "use after swapoff", lambda: s.swap_in(e), ValueError, "not active")
    refused(None, "use after swapoff", lambda: s.swap_free(e), ValueError, "not active")
    refused(None, "use after swapoff", lambda: s.swapoff(t), ValueError, "not active")
    refused(None, "use after swapoff", lambda: z.load(t, e.offset), ValueError)
    refused(None, "use after swapoff", lambda: s.swap_out(b"q" * PS), OSError, "no free swap slot",
            err=errno.ENOSPC)  # fmt: skip
    s.close()
    refused(None, "use after close", lambda: s.swapon(tmp_path / "sw2", 16), ValueError, "closed")
    refused(None, "use after close", lambda: s.swap_out(b"q" * PS), ValueError, "closed")
    z.close()
    assert z.pages.nr_pages == 0


def test_groups_with_bad_names_parents_and_values(world: World, tmp_path: Path) -> None:
    """Groups: bad names, parents, files and values are refused and change nothing
    (the snapshot includes every group's files); a store or swap-out with something
    that is not a group of this Zswap stores nothing."""
    z, s = world.z, world.s
    g = z.group("g")
    g.write("memory.zswap.max", "64K")

    def groups() -> dict[str, str]:
        return {
            p: grp.read("memory.stat") + grp.read("memory.zswap.max") for p, grp in z.groups.items()
        }

    before = groups()
    for name in ("", "a/b", "a:b", " ", "x" * 65, "\0", None, 7, b"g", "g"):
        err = errno.EEXIST if name == "g" else errno.EINVAL
        refused(world, "group name", lambda n=name: z.group(n), ParamError, err=err)  # type: ignore[arg-type]
    for parent, exc in (("nope", ParamError), (3, TypeError), (object(), TypeError)):
        refused(world, "group parent", lambda p=parent: z.group("x", parent=p), exc)  # type: ignore[arg-type]
    other = Zswap(compressor="lz4", zpool="zbud", ram_bytes=1 << 30)
    try:
        foreign = other.group("f")
        refused(world, "group parent", lambda: z.group("x", parent=foreign), ValueError)
        for bad, exc in (
            (foreign, ValueError),
            ("g", TypeError),
            (1, TypeError),
            (g.path, TypeError),
        ):
            refused(
                world,
                "store group",
                lambda b=bad: z.store(world.direct, 9, b"q" * PS, group=b),
                exc,
            )  # type: ignore[arg-type]
            refused(world, "swap_out group", lambda b=bad: s.swap_out(b"q" * PS, group=b), exc)  # type: ignore[arg-type]
    finally:
        other.close()
    for file, value, err in (
        ("memory.zswap.max", "-1", errno.EINVAL),
        ("memory.zswap.max", "1.5M", errno.EINVAL),
        ("memory.zswap.max", "10X", errno.EINVAL),
        ("memory.zswap.max", None, errno.EINVAL),
        ("memory.zswap.max", 2.0, errno.EINVAL),
        ("memory.zswap.max", True, errno.EINVAL),
        ("memory.zswap.writeback", "on", errno.EINVAL),
        ("memory.zswap.writeback", 0.5, errno.EINVAL),
        ("memory.zswap.current", "0", errno.EACCES),
        ("memory.stat", "", errno.EACCES),
        ("memory.max", "1M", errno.ENOENT),
        ("cgroup.procs", "1", errno.ENOENT),
    ):
        refused(world, "group file", lambda f=file, v=value: g.write(f, v), ParamError, err=err)
    refused(world, "group file", lambda: g.read("memory.zswap.min"), ParamError, err=errno.ENOENT)
    assert groups() == before
    world.check_data()


def test_the_snapshot_notices_a_change(world: World) -> None:
    """The harness is not vacuous: a call that changes something and then raises fails."""

    def sneaky() -> None:
        world.z.store(world.direct, 8, b"s" * PS)
        raise ValueError("looks refused, but stored a page first")

    with pytest.raises(AssertionError, match="changed"):  # (and not counted)
        refused(world, "self-test", sneaky, ValueError)
    world.z.invalidate_page(world.direct, 8)

    def sneaky_file() -> None:
        world.s.swap_out(b"r" * PS)  # same-filled: zswap takes it, the file is untouched
        raise ValueError("x")

    with pytest.raises(AssertionError, match="changed"):
        refused(world, "self-test", sneaky_file, ValueError)
    assert "self-test" not in BAD


def test_summary_is_large() -> None:
    """Keep the sweep honest: it must have tried a few hundred bad inputs (runs last)."""
    if len(BAD) < 10:
        pytest.skip("run the whole module for the count")
    assert sum(BAD.values()) >= 300, dict(BAD)


def test_public_api_has_no_unexpected_entry_points() -> None:
    """If a new public callable appears, this sweep must be extended to cover it."""
    covered = {
        "Zswap",
        "parse_cmdline",
        "parse_modprobe",
        "crypto_has_comp",
        "zpool_has_pool",
        "block_plugin",
        "unblock_plugin",
        "blocked_plugins",
        "list_plugins",
        "plugin_error",
        "rescan_plugins",
        "default_registry",
        "register_observer",
        "unregister_observer",
        "hookimpl",
        "Registry",
        "ModuleParams",
        "Param",
        "PageAllocator",
        "Compressor",
        "Zpool",
        "MapMode",
        "PoolInfo",
        "PluginInfo",
        "get_include",
        "Group",  # made by Zswap.group: test_groups_with_bad_names_parents_and_values
    }
    public = {
        n
        for n in zswap_core.__all__
        if callable(getattr(zswap_core, n))
        and not (
            isinstance(getattr(zswap_core, n), type)
            and issubclass(getattr(zswap_core, n), BaseException)
        )
    }
    assert public <= covered, public - covered


@pytest.mark.parametrize(
    "value", [5, "", "Native", "c", b"native", 1.0, ["native"], "native "], ids=repr
)
def test_a_bad_backend_is_a_clear_error_and_makes_nothing(value: Any) -> None:
    """``Zswap(backend=...)`` and ``ZSWAP_BACKEND``: one of auto, native, python."""
    before = [(p.name, p.state, p.use_count) for p in zswap_core.list_plugins()]
    with pytest.raises(ValueError, match="expected one of auto, native, python"):
        Zswap(backend=value, ram_bytes=1 << 30)
    # refused before any pool: no plugin was loaded or used for it
    assert [(p.name, p.state, p.use_count) for p in zswap_core.list_plugins()] == before


@pytest.mark.parametrize("value", ["fast", "1", "nat"])
def test_a_bad_backend_variable_is_a_clear_error(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZSWAP_BACKEND", value)
    with pytest.raises(ValueError, match=f"ZSWAP_BACKEND={value!r}: expected one of"):
        Zswap(ram_bytes=1 << 30)


def test_get_include_takes_no_arguments() -> None:
    with pytest.raises(TypeError):
        zswap_core.get_include("x")  # type: ignore[call-arg]
