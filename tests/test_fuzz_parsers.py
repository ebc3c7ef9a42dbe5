"""Fuzzing the parsers with Hypothesis: arbitrary input gives a result or the parser's
own error, never anything else, and a refused write changes nothing.

* parameter writes (``Param.parse`` through ``ModuleParams``, i.e. ``z.params[...] =``):
  only :class:`ParamError`; a refused write leaves every value and every pool as it
  was; an accepted one reads back in range and in its sysfs form;
* ``parse_cmdline`` and ``Zswap.from_cmdline``: a ``{module: {param: value}}`` dict or
  :class:`ParamError`;
* ``parse_modprobe``: a config or :class:`ParamError`;
* the swap header reader (``parse_header``, ``open_swapfile``) on arbitrary and mutated
  bytes: a header whose fields are consistent, or :class:`SwapHeaderError`, and the
  file is never written.

No example database is kept (``database=None``); each test stays under ~10 s.
"""

from __future__ import annotations

import os
import re
import struct
import tempfile
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from zswap_core import (
    ModuleParams,
    Param,
    ParamError,
    Registry,
    Zswap,
    parse_cmdline,
    parse_modprobe,
)
from zswap_core._swapfile import (
    MAGIC,
    MIN_PAGES,
    PAGE_SIZES,
    SwapHeaderError,
    format_header,
    open_swapfile,
    parse_header,
)

FUZZ = settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def fuzz(examples: int) -> settings:
    return settings(FUZZ, max_examples=examples)


_MODULE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_PARAM = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")

# -- strategies --------------------------------------------------------------------------------

#: Arbitrary text, biased towards what parsers trip on.
nasty_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=40),
    st.text(alphabet=" \t\n\r\x0b\x0c\0=.\"'#\\YyNn01x-+_", max_size=30),
    st.text(min_size=1000, max_size=1100, alphabet="a1 "),
    st.sampled_from(
        ["Y", "N", "y", "n", "1", "0", "on", "off", "true", "false", "yes", "no", "20", "0x14"]
    ).flatmap(
        lambda v: st.tuples(st.text(" \t\n", max_size=2), st.text(" \t\n\0x", max_size=2)).map(
            lambda pads: pads[0] + v + pads[1]
        )
    ),
    st.from_regex(r"\A\s*[+-]?(0[xXoObB])?[0-9a-fA-F_]{0,12}\s*\Z"),
)
typed_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True),
    st.binary(max_size=8),
    st.lists(st.integers(), max_size=2),
)
#: Text a driver name could look like: hits the registry's name check and its lookup.
name_like = st.one_of(
    st.sampled_from(["lz4", "zstd", "zbud", "z3fold", "zsmalloc", "deflate", "lz4hc"]),
    st.from_regex(r"\A[a-z0-9:./_ -]{0,12}\Z"),
    nasty_text,
)

# -- parameter writes ----------------------------------------------------------------------------

DECLS = (
    Param("flag", "bool", False),
    Param("count", "uint", 20, maximum=100),
    Param("signed", "int", -5, minimum=-1000, maximum=1000),
    Param("name", "charp", "lz4"),
)


@fuzz(600)
@given(name=st.sampled_from([p.name for p in DECLS]), value=st.one_of(nasty_text, typed_values))
def test_module_param_writes(name: str, value: object) -> None:
    params = ModuleParams("fuzzmod", DECLS)
    before = params.as_sysfs()
    try:
        params[name] = value
    except ParamError as exc:
        assert exc.errno is not None and str(exc)
        assert params.as_sysfs() == before  # a refused write changes nothing
        return
    got = params[name]
    decl = params.declaration(name)
    if decl.kind == "bool":
        assert isinstance(got, bool)
    elif decl.kind in ("int", "uint"):
        assert isinstance(got, int) and not isinstance(got, bool)
        assert (decl.minimum or (0 if decl.kind == "uint" else -(2**31))) <= got
        assert got <= (decl.maximum if decl.maximum is not None else 2**32)
    else:
        assert isinstance(got, str)
        assert got == got.strip(" \t\n\r\v\f") and "\0" not in got
        assert not any(ord(ch) < 32 or 0x7F <= ord(ch) <= 0x9F for ch in got)
        assert len(got) <= 1024
    # the sysfs form is accepted back as the same value
    params[name] = params.sysfs(name)
    assert params[name] == got
    assert {k: v for k, v in params.as_sysfs().items() if k != name} == {
        k: v for k, v in before.items() if k != name
    }


@pytest.fixture(scope="module")
def zswap() -> Zswap:
    z = Zswap(compressor="lz4", zpool="zbud", ram_bytes=1 << 30)
    z.init(0)
    assert z.store(0, 1, (b"page" * 300).ljust(4096, b"\0"))
    return z


ZSWAP_NUMERIC = [
    "enabled",
    "max_pool_percent",
    "accept_threshold_percent",
    "same_filled_pages_enabled",
    "non_same_filled_pages_enabled",
    "exclusive_loads",
    "checksums_enabled",
]


def _restore(z: Zswap, sysfs: dict[str, str]) -> None:
    for k, v in sysfs.items():
        z.params[k] = v


@fuzz(600)
@given(name=st.sampled_from(ZSWAP_NUMERIC), value=st.one_of(nasty_text, typed_values))
def test_zswap_param_writes(zswap: Zswap, name: str, value: object) -> None:
    z = zswap
    before = (z.params.as_sysfs(), z.pools, z.stats)
    try:
        z.params[name] = value
    except ParamError:
        assert (z.params.as_sysfs(), z.pools, z.stats) == before
        return
    assert z.stats["stored_pages"] == 1  # a parameter write never drops a page
    _restore(z, before[0])
    page = z.load(0, 1)
    assert page is not None and page.startswith(b"page")


@fuzz(300)
@given(kind=st.sampled_from(["compressor", "zpool"]), value=st.one_of(name_like, typed_values))
def test_zswap_driver_name_writes(zswap: Zswap, kind: str, value: object) -> None:
    """A compressor/zpool write of arbitrary text: ParamError (EINVAL/ENOENT) and no
    change, or a switch to an installed driver."""
    z = zswap
    before = (z.params.as_sysfs(), [p.name for p in z.pools])
    try:
        z.params[kind] = value
    except ParamError as exc:
        assert exc.errno in (22, 2)  # EINVAL, ENOENT
        assert (z.params.as_sysfs(), [p.name for p in z.pools]) == before
        return
    assert isinstance(value, str)
    assert z.params[kind] == value.strip()
    assert z.pools[0].current
    assert getattr(z.pools[0], kind) == value.strip()
    _restore(z, before[0])


# -- boot strings ----------------------------------------------------------------------------------

word = st.one_of(
    st.from_regex(r"\A[A-Za-z0-9_.=-]{0,20}\Z"),
    st.tuples(
        st.sampled_from(["zswap", "zstd", "lz4", "a", "", "z" * 70]),
        st.sampled_from([".", "..", "", ". "]),
        st.sampled_from(["enabled", "compressor", "level", "max_pool_percent", "", "1x", "a-b"]),
        st.sampled_from(["=", "", "=="]),
        st.one_of(nasty_text, st.just('"quoted value"'), st.just("'x")),
    ).map("".join),
    nasty_text,
)
cmdlines = st.one_of(st.lists(word, max_size=6).map(" ".join), st.text(max_size=80))


@fuzz(500)
@given(cmdline=cmdlines)
def test_parse_cmdline(cmdline: str) -> None:
    try:
        out = parse_cmdline(cmdline)
    except ParamError as exc:
        assert exc.errno == 22 and str(exc)
        return
    assert isinstance(out, dict)
    for module, opts in out.items():
        assert _MODULE.match(module), module
        assert isinstance(opts, dict)
        for param, value in opts.items():
            assert _PARAM.match(param), param
            assert isinstance(value, str)
            assert "\0" not in value


@fuzz(200)
@given(cmdline=st.one_of(cmdlines, st.binary(max_size=20), st.none(), st.integers()))
def test_zswap_from_cmdline(cmdline: str) -> None:
    reg = Registry()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # unavailable driver: fallback
        try:
            z = Zswap.from_cmdline(cmdline, registry=reg, ram_bytes=1 << 30)
        except ParamError as exc:
            assert exc.errno == 22 and str(exc)
            return
    try:
        # a boot string that was accepted gives a consistent instance
        assert not z.params["enabled"] or z.pools  # enabled only with a pool
        assert z.params.as_sysfs()["max_pool_percent"].isdigit()
    finally:
        z.close()


# -- modprobe files --------------------------------------------------------------------------------

modprobe_line = st.one_of(
    st.tuples(
        st.sampled_from(["options", "blacklist", "alias", "install", "bogus", "", "#", " "]),
        st.lists(word, max_size=4).map(" ".join),
    ).map(" ".join),
    st.text(max_size=60),
)


@fuzz(400)
@given(text=st.lists(modprobe_line, max_size=6).map("\n".join))
def test_parse_modprobe(text: str) -> None:
    try:
        cfg = parse_modprobe(text, source="fuzz.conf")
    except ParamError as exc:
        assert exc.errno == 22 and "fuzz.conf:" in str(exc)
        return
    for module, opts in cfg.options.items():
        assert _MODULE.match(module)
        assert all(_PARAM.match(k) and isinstance(v, str) for k, v in opts.items())
    assert all(_MODULE.match(m) for m in cfg.blacklist)


# -- swap headers ----------------------------------------------------------------------------------


def check_header(buf: bytes, page_size: int | None, file_size: int | None) -> None:
    try:
        h = parse_header(buf, page_size, file_size=file_size)
    except SwapHeaderError as exc:
        assert str(exc)
        return
    # accepted: the fields are consistent with the bytes and with each other
    assert h.page_size in PAGE_SIZES and len(buf) >= h.page_size
    assert buf[h.page_size - len(MAGIC) : h.page_size] == MAGIC
    assert page_size in (None, h.page_size)
    assert h.version == 1 and h.last_page + 1 >= MIN_PAGES
    assert h.nr_badpages == len(h.badpages)
    assert all(1 <= b <= h.last_page for b in h.badpages)
    assert h.usable_pages >= 1
    assert file_size is None or file_size >= h.size
    assert len(h.label_bytes) <= 16 and b"\0" not in h.label_bytes


@st.composite
def headers(draw: st.DrawFn) -> tuple[bytes, int | None, int | None]:
    ps = draw(st.sampled_from(PAGE_SIZES[:3]))
    nr = draw(st.integers(MIN_PAGES, 2**32))
    bad = draw(st.lists(st.integers(1, min(nr - 1, 50)), max_size=5, unique=True))
    label = draw(st.binary(max_size=16).filter(lambda b: b"\0" not in b))
    buf = bytearray(format_header(nr, ps, label=label, badpages=bad))
    # mutate: random byte pokes, then maybe a field set to a hostile value, maybe cut
    for _ in range(draw(st.integers(0, 6))):
        pos = draw(
            st.one_of(
                st.integers(1024, 1100), st.integers(1536, 1600), st.integers(0, len(buf) - 1)
            )
        )
        buf[pos] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        field = draw(st.sampled_from([1024, 1028, 1032, 1536]))
        value = draw(
            st.one_of(
                st.sampled_from([0, 1, 9, 10, 2**31, 2**32 - 1, 0x01000000]),
                st.integers(0, 2**32 - 1),
            )
        )
        order = draw(st.sampled_from(["<", ">"]))
        struct.pack_into(order + "I", buf, field, value)
    if draw(st.booleans()):
        buf = buf[: draw(st.integers(0, len(buf)))]
    page_size = draw(st.one_of(st.none(), st.sampled_from(PAGE_SIZES)))
    file_size = draw(st.one_of(st.none(), st.integers(0, 2**45)))
    return bytes(buf), page_size, file_size


@fuzz(600)
@given(case=headers())
def test_parse_header_on_mutated_headers(case: tuple[bytes, int | None, int | None]) -> None:
    check_header(*case)


@fuzz(400)
@given(
    buf=st.one_of(
        st.binary(max_size=64),
        st.binary(min_size=4096, max_size=4200),
        st.binary(max_size=100).map(lambda b: (b + bytes(4096))[: 4096 - 10] + MAGIC),
    ),
    page_size=st.one_of(st.none(), st.sampled_from(PAGE_SIZES), st.integers(-5, 5000)),
)
def test_parse_header_on_arbitrary_bytes(buf: bytes, page_size: int | None) -> None:
    check_header(buf, page_size, None)


@fuzz(150)
@given(case=headers())
def test_opening_a_mutated_swap_file_never_writes_it(
    case: tuple[bytes, int | None, int | None],
) -> None:
    buf, page_size, _ = case
    assume(len(buf) > 0)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "swap"
        path.write_bytes(buf)
        os.chmod(path, 0o600)
        try:
            f = open_swapfile(path, page_size)
        except SwapHeaderError as exc:
            assert str(exc)
        else:
            f.close()
        assert path.read_bytes() == buf
