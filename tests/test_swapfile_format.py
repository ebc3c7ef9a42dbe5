"""The Linux swap-area format: what we write, what util-linux sees, what we refuse."""

from __future__ import annotations

import errno
import os
import random
import shutil
import stat
import struct
import subprocess
import uuid
from pathlib import Path

import pytest

from zswap_core import _swapfile
from zswap_core._swapfile import (
    MAGIC,
    SwapHeaderError,
    create,
    format_header,
    max_badpages,
    open_swapfile,
    parse_header,
    read_header,
)

PS = 4096
UTIL_PATH = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"


def _tool(name: str) -> str:
    path = shutil.which(name, path=UTIL_PATH)
    if path is None:
        pytest.skip(f"{name} (util-linux) is not installed")
    return path


def _blkid(path: Path) -> dict[str, str]:
    out = subprocess.run(
        [_tool("blkid"), "-p", "-o", "export", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


# -- layout ---------------------------------------------------------------------------------


def test_header_layout_matches_the_format(tmp_path: Path) -> None:
    u = uuid.UUID("12345678-1234-5678-1234-567812345678")
    with create(tmp_path / "swap", 64, PS, label="mylabel", uuid=u) as f:
        assert f.header.nr_pages == 64
    raw = (tmp_path / "swap").read_bytes()
    assert len(raw) == 64 * PS
    assert raw[:1024] == bytes(1024)  # boot block untouched
    version, last_page, nr_bad = struct.unpack_from("=III", raw, 1024)
    assert (version, last_page, nr_bad) == (1, 63, 0)
    assert raw[1036:1052] == u.bytes
    assert raw[1052:1068] == b"mylabel".ljust(16, b"\0")
    assert raw[PS - 10 : PS] == MAGIC
    assert raw[PS:] == bytes(63 * PS)  # slots are zero (sparse)


@pytest.mark.parametrize("page_size", [4096, 8192, 16384, 65536])
def test_read_header_round_trip_and_finds_page_size(tmp_path: Path, page_size: int) -> None:
    u = uuid.uuid4()
    create(tmp_path / "s", 12, page_size, label="x" * 16, uuid=u).close()
    h = read_header(tmp_path / "s")  # page size found from where the magic is
    assert (h.version, h.last_page, h.nr_badpages, h.page_size) == (1, 11, 0, page_size)
    assert h.uuid == u and h.label == "x" * 16 and h.usable_pages == 11
    fd = os.open(tmp_path / "s", os.O_RDONLY)
    try:
        assert read_header(fd, page_size) == h
    finally:
        os.close(fd)


def test_mode_0600_even_with_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        create(tmp_path / "s", 16).close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "s").st_mode) == 0o600


def test_reuse_tightens_loose_mode(tmp_path: Path) -> None:
    create(tmp_path / "s", 16).close()
    os.chmod(tmp_path / "s", 0o644)
    create(tmp_path / "s", 16).close()
    assert stat.S_IMODE(os.stat(tmp_path / "s").st_mode) == 0o600


def test_existing_valid_header_is_reused(tmp_path: Path) -> None:
    with create(tmp_path / "s", 20, label="keep") as f:
        u = f.header.uuid
        f.write_page(5, b"\x07" * PS)
    with create(tmp_path / "s", 20, label="other") as f:
        assert f.header.uuid == u and f.header.label == "keep"
        assert f.read_page(5) == b"\x07" * PS
    with open_swapfile(tmp_path / "s") as f:
        assert f.header.uuid == u


def test_size_mismatch_refused_unless_force(tmp_path: Path) -> None:
    create(tmp_path / "s", 20).close()
    before = (tmp_path / "s").read_bytes()
    with pytest.raises(SwapHeaderError, match="20 pages"):
        create(tmp_path / "s", 30)
    assert (tmp_path / "s").read_bytes() == before
    create(tmp_path / "s", 30, force=True).close()
    assert read_header(tmp_path / "s").last_page == 29


def test_bad_header_refused_unless_force(tmp_path: Path) -> None:
    p = tmp_path / "data"
    p.write_bytes(b"precious" * 10000)
    os.chmod(p, 0o640)
    before = p.read_bytes()
    with pytest.raises(SwapHeaderError, match="force=True"):
        create(p, 16)
    assert p.read_bytes() == before  # nothing changed, not even the mode
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o640
    with create(p, 16, force=True) as f:
        assert f.header.last_page == 15
    assert os.path.getsize(p) == 16 * PS
    assert read_header(p).version == 1


def test_symlink_refused(tmp_path: Path) -> None:
    target = tmp_path / "target"
    link = tmp_path / "link"
    link.symlink_to(target)  # dangling: O_EXCL must not create the target
    with pytest.raises(OSError) as ei:
        create(link, 16)
    assert ei.value.errno == errno.ELOOP
    assert not target.exists()
    create(target, 16).close()
    with pytest.raises(OSError, match="symlink"):
        create(link, 16)
    with pytest.raises(OSError, match="symlink"):
        open_swapfile(link)


def test_foreign_owner_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to give a file to another user")
    p = tmp_path / "s"
    create(p, 16).close()
    os.chown(p, 65534, 65534)
    with pytest.raises(PermissionError, match="owned by uid 65534"):
        create(p, 16)
    with pytest.raises(PermissionError):
        open_swapfile(p)


def test_not_a_regular_file_refused(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    with pytest.raises(OSError):
        create(tmp_path / "d", 16)


def test_second_user_of_a_file_gets_ebusy(tmp_path: Path) -> None:
    with create(tmp_path / "s", 16), pytest.raises(OSError) as ei:
        open_swapfile(tmp_path / "s")
    assert ei.value.errno == errno.EBUSY
    open_swapfile(tmp_path / "s").close()  # free again after close


def test_arguments_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at most 16"):
        create(tmp_path / "s", 16, label="x" * 17)
    with pytest.raises(ValueError, match="nr_pages"):
        create(tmp_path / "s", 9)
    with pytest.raises(ValueError, match="page_size"):
        create(tmp_path / "s", 16, 1000)
    with pytest.raises(ValueError):
        create(tmp_path / "s", 16, uuid="not-a-uuid")
    assert not (tmp_path / "s").exists()


# -- page I/O --------------------------------------------------------------------------------


def test_page_io_at_slot_offsets(tmp_path: Path) -> None:
    with create(tmp_path / "s", 16) as f:
        for off in (1, 7, 15):
            f.write_page(off, bytes([off]) * PS)
        for off in (1, 7, 15):
            assert f.read_page(off) == bytes([off]) * PS
        for bad in (0, 16, -1):
            with pytest.raises(ValueError):
                f.write_page(bad, bytes(PS))
            with pytest.raises(ValueError):
                f.read_page(bad)
        with pytest.raises(ValueError):
            f.write_page(2, b"short")
    raw = (tmp_path / "s").read_bytes()
    assert raw[7 * PS : 8 * PS] == bytes([7]) * PS
    assert read_header(tmp_path / "s").last_page == 15  # header intact
    with pytest.raises(OSError):
        f.read_page(1)  # closed


# -- util-linux interoperability ------------------------------------------------------------


def test_blkid_recognises_label_and_uuid(tmp_path: Path) -> None:
    u = uuid.uuid4()
    create(tmp_path / "s", 40, label="zswap-test", uuid=u).close()
    tags = _blkid(tmp_path / "s")
    assert tags["TYPE"] == "swap"
    assert tags["LABEL"] == "zswap-test"
    assert tags["UUID"] == str(u)


def test_swaplabel_reads_label(tmp_path: Path) -> None:
    u = uuid.uuid4()
    create(tmp_path / "s", 40, label="lbl", uuid=u).close()
    out = subprocess.run(
        [_tool("swaplabel"), str(tmp_path / "s")], capture_output=True, text=True, check=True
    ).stdout
    assert "LABEL: lbl" in out
    assert str(u) in out


def test_reads_what_mkswap_writes(tmp_path: Path) -> None:
    mkswap = _tool("mkswap")
    p = tmp_path / "m"
    with open(p, "wb") as fh:
        fh.truncate(100 * PS)
    os.chmod(p, 0o600)
    u = uuid.uuid4()
    subprocess.run(
        [mkswap, "-L", "fromutil", "-U", str(u), "-p", str(PS), str(p)],
        capture_output=True,
        check=True,
    )
    h = read_header(p)
    assert (h.version, h.last_page, h.label, h.uuid, h.page_size) == (1, 99, "fromutil", u, PS)
    create(p, 100).close()  # a mkswap'ed file is reused as it is
    assert read_header(p).uuid == u


# -- the parser: every malformed input is a SwapHeaderError ----------------------------------


def _valid(**kw: object) -> bytearray:
    return bytearray(format_header(32, PS, label="ok", **kw))  # type: ignore[arg-type]


def _set_u32(buf: bytearray, off: int, value: int) -> bytearray:
    struct.pack_into("=I", buf, off, value)
    return buf


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "shorter than one page"),
        (bytes(PS), "no SWAPSPACE2"),
        (bytes(PS - 10) + b"SWAP-SPACE", "version-0"),
        (bytes(_set_u32(_valid(), 1024, 2)), "version 2"),
        (bytes(_set_u32(_valid(), 1028, 0)), "empty swap area"),
        (bytes(_set_u32(_valid(), 1028, 5)), "smaller than the minimum"),
        (bytes(_set_u32(_valid(), 1032, max_badpages(PS) + 1)), "nr_badpages"),
        (bytes(_set_u32(_set_u32(_valid(), 1032, 1), 1536, 0)), "bad page number 0"),
        (bytes(_set_u32(_set_u32(_valid(), 1032, 1), 1536, 32)), "bad page number 32"),
    ],
)
def test_malformed_headers(data: bytes, match: str) -> None:
    with pytest.raises(SwapHeaderError, match=match):
        parse_header(data)


def test_parser_rejects_wrong_types_with_its_error() -> None:
    for bad in (None, 12, "text", object()):
        with pytest.raises(SwapHeaderError):
            parse_header(bad)  # type: ignore[arg-type]
    with pytest.raises(SwapHeaderError):
        parse_header(_valid(), page_size=1234)
    with pytest.raises(SwapHeaderError):
        parse_header(_valid(), page_size=8192)  # magic is at the 4 KiB position


def test_badpages_and_other_byte_order() -> None:
    h = parse_header(format_header(32, PS, badpages=[3, 9]))
    assert h.badpages == (3, 9) and h.nr_badpages == 2 and h.usable_pages == 29
    # the same header written by a machine of the other byte order
    buf = bytearray(format_header(32, PS, badpages=[3, 9], label="be"))
    other = ">" if struct.pack("=I", 1) == struct.pack("<I", 1) else "<"
    struct.pack_into(other + "III", buf, 1024, 1, 31, 2)
    struct.pack_into(other + "II", buf, 1536, 3, 9)
    h2 = parse_header(buf)
    assert (h2.version, h2.last_page, h2.badpages, h2.label) == (1, 31, (3, 9), "be")


def test_truncated_area_refused(tmp_path: Path) -> None:
    p = tmp_path / "s"
    create(p, 32).close()
    os.truncate(p, 20 * PS)
    with pytest.raises(SwapHeaderError, match="shorter than its header"):
        read_header(p)
    with pytest.raises(SwapHeaderError):
        create(p, 32)


def test_random_corruption_only_raises_swap_header_error() -> None:
    rng = random.Random(1234)
    base = bytes(_valid(badpages=[4, 5]))
    for _ in range(3000):
        buf = bytearray(base)
        for _ in range(rng.randint(1, 8)):
            pos = rng.choice((rng.randrange(1024, 1600), rng.randrange(len(buf))))
            buf[pos] = rng.randrange(256)
        cut = rng.choice((len(buf), len(buf), rng.randrange(len(buf) + 1)))
        try:
            h = parse_header(bytes(buf[:cut]))
        except SwapHeaderError:
            continue
        assert h.version == 1 and h.last_page >= 9 and h.page_size == PS
        assert all(1 <= b <= h.last_page for b in h.badpages)


def test_private_helpers_not_needed_for_public_use() -> None:
    # the module's public surface is what the swap layer and tests use
    assert set(_swapfile.__all__) >= {"create", "read_header", "SwapHeaderError", "SwapFile"}


def test_existing_empty_file_is_formatted(tmp_path: Path) -> None:
    p = tmp_path / "s"
    p.touch(mode=0o644)
    with create(p, 16, label="empty") as f:
        assert f.header.label == "empty"
    assert read_header(p).last_page == 15
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
