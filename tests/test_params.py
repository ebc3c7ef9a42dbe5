"""Module parameters: typed values, sysfs strings, boot strings, modprobe files."""

from __future__ import annotations

import errno

import pytest

from zswap_core import ModuleParams, Param, ParamError, parse_cmdline, parse_modprobe
from zswap_core._params import BUILTIN_PARAM_LOCK, read_modprobe_dir


def make() -> ModuleParams:
    return ModuleParams(
        "demo",
        [
            Param("flag", "bool", True),
            Param("count", "uint", 20, maximum=100),
            Param("name", "charp", "lz4"),
            Param("fixed", "int", 3, writable=False),
        ],
    )


def test_typed_reads_and_sysfs_forms() -> None:
    p = make()
    assert p["flag"] is True and p.sysfs("flag") == "Y"
    assert p["count"] == 20 and p.sysfs("count") == "20"
    p["flag"] = "n"
    assert p["flag"] is False and p.sysfs("flag") == "N"
    for text, want in (("1", True), ("0", False), ("y", True), ("N\n", False), (" Y ", True)):
        p["flag"] = text
        assert p["flag"] is want
    p["count"] = " 42\n"
    assert p["count"] == 42
    p["name"] = "  zstd\n"
    assert p["name"] == "zstd"
    assert p.as_sysfs() == {"flag": "Y", "count": "42", "name": "zstd", "fixed": "3"}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("flag", "maybe"),
        ("flag", 1),
        ("count", "-1"),
        ("count", "101"),
        ("count", "ten"),
        ("count", 2.5),
        ("count", True),
        ("name", "a\0b"),
        ("name", "two\nlines"),
        ("name", "x" * 5000),
        ("name", 7),
        ("nosuch", "1"),
    ],
)
def test_bad_values_raise_einval_and_keep_old(name: str, value: object) -> None:
    p = make()
    before = p.as_sysfs()
    with pytest.raises(ParamError) as info:
        p[name] = value
    assert info.value.errno == errno.EINVAL
    assert isinstance(info.value, OSError)
    assert p.as_sysfs() == before


def test_read_only_param_refused_at_run_time_but_set_at_boot() -> None:
    p = make()
    with pytest.raises(ParamError) as info:
        p["fixed"] = 5
    assert info.value.errno == errno.EPERM
    assert p["fixed"] == 3
    p.set("fixed", "5", boot=True)
    assert p["fixed"] == 5


def test_update_validates_everything_before_writing() -> None:
    p = make()
    with pytest.raises(ParamError):
        p.update({"count": "50", "flag": "bogus"})
    assert p["count"] == 20


def test_set_callback_can_refuse_or_commit() -> None:
    seen: list[object] = []

    def on_set(params: ModuleParams, name: str, value: object) -> None:
        if value == "bad":
            raise ParamError(errno.ENOENT, "nope")
        seen.append(value)
        params.commit(name, value)

    p = ModuleParams("cb", [Param("x", "charp", "a", on_set=on_set)])
    p["x"] = "b"
    with pytest.raises(ParamError) as info:
        p["x"] = "bad"
    assert info.value.errno == errno.ENOENT
    assert p["x"] == "b" and seen == ["b"]


def test_builtin_modules_share_one_lock_loadable_have_their_own() -> None:
    a = ModuleParams("a", [], builtin=True)
    b = ModuleParams("b", [], builtin=True)
    c = ModuleParams("c", [])
    d = ModuleParams("d", [])
    assert a.lock is b.lock is BUILTIN_PARAM_LOCK
    assert c.lock is not d.lock and c.lock is not BUILTIN_PARAM_LOCK


def test_cmdline_parsing() -> None:
    got = parse_cmdline(
        "root=/dev/sda1 quiet zswap.enabled=Y zswap.compressor=zstd zstd.level=5 "
        'zswap.zpool="z3fold"'
    )
    assert got == {
        "zswap": {"enabled": "Y", "compressor": "zstd", "zpool": "z3fold"},
        "zstd": {"level": "5"},
    }
    assert parse_cmdline("zswap.enabled") == {"zswap": {"enabled": "Y"}}


@pytest.mark.parametrize(
    "bad", ['zswap.compressor="unterminated', "zswap.=x", ".x=1", "zswap.a-b=1", "zs\0wap.x=1"]
)
def test_malformed_cmdline_raises(bad: str) -> None:
    with pytest.raises(ParamError) as info:
        parse_cmdline(bad)
    assert info.value.errno == errno.EINVAL


def test_modprobe_parsing(tmp_path: object) -> None:
    cfg = parse_modprobe(
        "# comment\noptions zstd level=5 extra=1\n\nblacklist lzo\nalias foo bar\n"
    )
    assert cfg.options == {"zstd": {"level": "5", "extra": "1"}}
    assert cfg.blacklist == {"lzo"}
    for bad in ("options zstd", "frobnicate x", "blacklist", "options zstd lev-el=1"):
        with pytest.raises(ParamError):
            parse_modprobe(bad)


def test_modprobe_dir_merges_in_name_order(tmp_path: object) -> None:
    from pathlib import Path

    d = Path(str(tmp_path))
    (d / "10-a.conf").write_text("options zstd level=5\n")
    (d / "20-b.conf").write_text("options zstd level=7\nblacklist deflate\n")
    (d / "ignored.txt").write_text("garbage\n")
    cfg = read_modprobe_dir(d)
    assert cfg.options == {"zstd": {"level": "7"}}
    assert cfg.blacklist == {"deflate"}
    assert read_modprobe_dir(d / "missing").options == {}
