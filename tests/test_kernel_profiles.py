"""Kernel profiles: each release's parameters, counters and allocators as the kernel had them.

The expected tables here are written from the kernel reference
(/work/shared/reference/kernel-zswap.md, sections 1, 2 and the allocator timeline), by
hand, not derived from kernels.toml: a wrong fact in the data file fails them.
"""

from __future__ import annotations

import os
import tomllib
from importlib import resources
from pathlib import Path

import pytest

from zswap_core.kernels import (
    PROFILES,
    SIMULATOR_ONLY,
    KernelProfileError,
    all_facts,
    kernel_profile,
    parse_release,
    read_host,
    simulator_only_note,
)

ROOT = Path(__file__).resolve().parent.parent

# -- from the reference, release by release ----------------------------------------------

_CLASSIC = {"enabled", "compressor", "zpool", "max_pool_percent"}

#: /sys/module/zswap/parameters per release (reference section 1, "History" column).
EXPECTED_PARAMS = {
    "4.19": _CLASSIC | {"same_filled_pages_enabled"},
    "5.15": _CLASSIC | {"same_filled_pages_enabled", "accept_threshold_percent"},
    "6.1": _CLASSIC
    | {"same_filled_pages_enabled", "non_same_filled_pages_enabled", "accept_threshold_percent"},
    "6.6": _CLASSIC
    | {
        "same_filled_pages_enabled",
        "non_same_filled_pages_enabled",
        "accept_threshold_percent",
        "exclusive_loads",
    },
    "6.8": _CLASSIC
    | {
        "same_filled_pages_enabled",
        "non_same_filled_pages_enabled",
        "accept_threshold_percent",
        "exclusive_loads",
        "shrinker_enabled",
    },
    "6.12": _CLASSIC | {"accept_threshold_percent", "shrinker_enabled"},
    # zpool removed in 6.18: what this very machine's 6.18 kernel shows
    "6.18": {
        "enabled",
        "compressor",
        "max_pool_percent",
        "accept_threshold_percent",
        "shrinker_enabled",
    },
}

_OLD_COUNTERS = {
    "pool_limit_hit",
    "reject_reclaim_fail",
    "reject_alloc_fail",
    "reject_kmemcache_fail",
    "reject_compress_poor",
    "written_back_pages",
    "pool_total_size",
    "stored_pages",
}

#: /sys/kernel/debug/zswap per release (reference section 2, "Era" column).
EXPECTED_COUNTERS = {
    "4.19": _OLD_COUNTERS | {"duplicate_entry", "same_filled_pages"},
    "5.15": _OLD_COUNTERS | {"duplicate_entry", "same_filled_pages"},
    "6.1": _OLD_COUNTERS | {"duplicate_entry", "same_filled_pages"},
    "6.6": _OLD_COUNTERS | {"duplicate_entry", "same_filled_pages", "reject_compress_fail"},
    "6.8": _OLD_COUNTERS | {"duplicate_entry", "same_filled_pages", "reject_compress_fail"},
    "6.12": _OLD_COUNTERS | {"reject_compress_fail"},
    "6.18": _OLD_COUNTERS
    | {"reject_compress_fail", "decompress_fail", "stored_incompressible_pages"},
}

#: Allocators: zbud 3.11-6.14, z3fold 4.8-6.14, zsmalloc always (reference section 6).
EXPECTED_ZPOOLS = {
    "4.19": {"zbud", "z3fold", "zsmalloc"},
    "5.15": {"zbud", "z3fold", "zsmalloc"},
    "6.1": {"zbud", "z3fold", "zsmalloc"},
    "6.6": {"zbud", "z3fold", "zsmalloc"},
    "6.8": {"zbud", "z3fold", "zsmalloc"},
    "6.12": {"zbud", "z3fold", "zsmalloc"},  # z3fold deprecated, still there
    "6.18": {"zsmalloc"},
}

#: (exclusive loads, same-filled handling, incompressible pages) per release.
EXPECTED_BEHAVIOUR = {
    "4.19": ("none", "zswap", "reject"),
    "5.15": ("none", "zswap", "reject"),
    "6.1": ("none", "zswap", "reject"),
    "6.6": ("param", "zswap", "reject"),  # exclusive_loads 6.5..6.8
    "6.8": ("param", "zswap", "reject"),
    "6.12": ("always", "swapcore-zero", "reject"),  # zero pages by the swap core
    "6.18": ("always", "swapcore-zero", "store-raw"),  # incompressible stored raw
}


def test_the_profiles_are_the_issues_releases() -> None:
    assert PROFILES == ("4.19", "5.15", "6.1", "6.6", "6.8", "6.12", "6.18")


@pytest.mark.parametrize("release", sorted(EXPECTED_PARAMS))
def test_params_per_release_match_the_reference(release: str) -> None:
    p = kernel_profile(release)
    assert set(p.params) == EXPECTED_PARAMS[release]
    for name in EXPECTED_PARAMS[release]:
        assert p.has_param(name)
    assert not p.has_param("checksums_enabled")


@pytest.mark.parametrize("release", sorted(EXPECTED_COUNTERS))
def test_counters_per_release_match_the_reference(release: str) -> None:
    assert set(kernel_profile(release).counters) == EXPECTED_COUNTERS[release]


@pytest.mark.parametrize("release", sorted(EXPECTED_ZPOOLS))
def test_allocators_per_release_match_the_reference(release: str) -> None:
    p = kernel_profile(release)
    assert set(p.zpools) == EXPECTED_ZPOOLS[release]
    assert p.compressors is None  # a named release: any codec its crypto API may have


@pytest.mark.parametrize("release", sorted(EXPECTED_BEHAVIOUR))
def test_storage_behaviour_per_release_matches_the_reference(release: str) -> None:
    p = kernel_profile(release)
    assert (p.exclusive_loads, p.same_filled, p.incompressible) == EXPECTED_BEHAVIOUR[release]
    assert p.codec_levels is False


def test_defaults_from_the_reference() -> None:
    p = kernel_profile("6.8")
    assert p.params["max_pool_percent"].default == "20"
    assert p.params["accept_threshold_percent"].default == "90"
    assert p.params["exclusive_loads"].default == "N"
    assert p.params["shrinker_enabled"].default == "N"
    assert p.params["same_filled_pages_enabled"].default == "Y"
    assert kernel_profile("4.19").params["zpool"].default == "zbud"
    assert kernel_profile("4.19").params["compressor"].default == "lzo"


def test_a_618_profile_never_offers_zbud_z3fold_or_codec_levels() -> None:
    p = kernel_profile("6.18")
    assert p.zpools == ("zsmalloc",)
    assert not p.has_zpool("zbud") and not p.has_zpool("z3fold")
    assert p.codec_levels is False
    assert "level" in SIMULATOR_ONLY
    assert not p.has_param("zpool") and not p.has_param("level")
    # and no release at all has codec levels or our checksums
    for name in PROFILES:
        q = kernel_profile(name)
        assert q.codec_levels is False and not (set(q.params) & SIMULATOR_ONLY)


def _struct_bytes(fields: list[int]) -> int:
    """sizeof a C struct of naturally aligned fields on x86-64 (8-byte alignment)."""
    off = 0
    for size in fields:
        align = min(size, 8)
        off = (off + align - 1) // align * align + size
    return (off + 7) // 8 * 8


def test_entry_bytes_is_struct_zswap_entry() -> None:
    # 6.6 (torvalds/linux mm/zswap.c @003ae2fb): rb_node 24, swp_entry_t 8, int refcount,
    # unsigned length, pool pointer, handle/value union, objcg pointer, list_head 16.
    assert kernel_profile("6.6").entry_bytes == _struct_bytes([24, 8, 4, 4, 8, 8, 8, 16])
    # 4.19: no objcg, no lru
    assert kernel_profile("4.19").entry_bytes == _struct_bytes([24, 8, 4, 4, 8, 8])
    # newest: swpentry, length, bool referenced, pool, handle, objcg, lru, + xarray share
    newest = _struct_bytes([8, 4, 1, 8, 8, 8, 16])
    assert newest < kernel_profile("6.18").entry_bytes <= newest + 16
    # zswap_header (the swap entry) in front of objects of evictable pools until 6.5
    assert kernel_profile("5.15").header_bytes("zbud") == 8
    assert kernel_profile("5.15").header_bytes("zsmalloc") == 0
    assert kernel_profile("6.6").header_bytes("zbud") == 0


# -- the data file -----------------------------------------------------------------------


def _raw() -> dict[str, object]:
    path = ROOT / "zswap_core" / "kernels" / "kernels.toml"
    return tomllib.loads(path.read_text(encoding="utf-8"))


def test_every_fact_has_since_and_source() -> None:
    raw = _raw()
    n = 0
    for kind in ("param", "counter", "zpool", "procfs", "behaviour"):
        entries = raw[kind]
        assert isinstance(entries, list) and entries, kind
        for e in entries:
            where = f"{kind} {e.get('name')}"
            assert isinstance(e.get("since"), str) and parse_release(e["since"]), where
            assert isinstance(e.get("source"), str) and len(e["source"]) > 10, where
            if "until" in e:
                assert parse_release(e["since"]) < parse_release(e["until"]), where
                if kind != "behaviour":  # a removal has its own source
                    assert len(e.get("until_source", "")) > 10, where
            for change in e.get("defaults", []):
                assert change["since"] and len(change["source"]) > 10, where
                n += 1
            n += 1
    assert len(all_facts()) == n  # every fact of the file is loaded, none invented
    for f in all_facts():
        assert f.since and f.source


def test_behaviours_cover_every_release_without_overlap() -> None:
    """For each behaviour, exactly one value holds in every release since 3.11."""
    names = {f.name for f in all_facts() if f.kind == "behaviour"}
    assert names == {
        "exclusive_loads",
        "same_filled",
        "incompressible",
        "entry_bytes",
        "pool_header_bytes",
    }
    for name in names:
        for major, minors in ((3, range(11, 20)), (4, range(21)), (5, range(20)), (6, range(25))):
            for minor in minors:
                holding = [
                    f
                    for f in all_facts()
                    if f.kind == "behaviour" and f.name == name and f.holds((major, minor))
                ]
                assert len(holding) == 1, (name, major, minor, holding)


def test_kernels_toml_is_package_data_loaded_with_importlib_resources() -> None:
    res = resources.files("zswap_core.kernels").joinpath("kernels.toml")
    assert res.is_file()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "kernels/kernels.toml" in pyproject["tool"]["setuptools"]["package-data"]["zswap_core"]
    assert "zswap_core/kernels/kernels.toml" in (ROOT / "MANIFEST.in").read_text()


@pytest.mark.parametrize("bad", ["6.5", "", "latest", "6.18.1", "5", "host2", "6.18;rm"])
def test_bad_profile_names_are_one_line_errors(bad: str) -> None:
    with pytest.raises(KernelProfileError) as info:
        kernel_profile(bad)
    msg = str(info.value)
    assert "\n" not in msg and "unknown kernel profile" in msg and "6.18" in msg


def test_simulator_only_notes() -> None:
    assert simulator_only_note("zswap", "checksums_enabled")
    assert simulator_only_note("zstd", "level") and simulator_only_note("lz4hc", "level")
    assert simulator_only_note("zsmalloc", "chain_size")
    assert simulator_only_note("zswap", "pages_compacted")
    assert simulator_only_note("zswap", "compressor") is None
    assert simulator_only_note("zswap", "same_filled_pages_enabled") is None  # 4.16..6.9


# -- the host profile, on fake /sys and /proc trees --------------------------------------


def _tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


_CRYPTO_61 = """name         : zstd
driver       : zstd-scomp
type         : scomp

name         : lz4
driver       : lz4-generic
type         : compression

name         : sha256
driver       : sha256-generic
type         : shash

name         : deflate
driver       : deflate-generic
type         : acomp
"""


def test_host_profile_of_a_fake_61_kernel(tmp_path: Path) -> None:
    params = {
        "enabled": "Y",
        "compressor": "zstd",
        "zpool": "z3fold",
        "max_pool_percent": "25",
        "accept_threshold_percent": "90",
        "same_filled_pages_enabled": "Y",
        "non_same_filled_pages_enabled": "Y",
        "vendor_knob": "1",  # something out of tree: shown, and noted
    }
    _tree(
        tmp_path,
        {
            "proc/sys/kernel/osrelease": "6.1.0-18-amd64\n",
            **{f"sys/module/zswap/parameters/{k}": v + "\n" for k, v in params.items()},
            "proc/crypto": _CRYPTO_61,
            "proc/meminfo": "MemTotal:  2048 kB\nZswap:  8 kB\nZswapped:  32 kB\n",
            "proc/vmstat": "nr_free_pages 1\nzswpin 5\nzswpout 7\npswpin 1\npswpout 2\n",
            "sys/kernel/debug/zswap/stored_pages": "3\n",
            "sys/kernel/debug/zswap/same_filled_pages": "1\n",
            "lib/modules/6.1.0-18-amd64/kernel/crypto/lz4hc.ko.xz": "",
            "lib/modules/6.1.0-18-amd64/kernel/crypto/aes.ko.xz": "",
        },
    )
    state = read_host(str(tmp_path))
    assert state.release == "6.1.0-18-amd64" and state.version == (6, 1)
    assert state.params == params
    assert state.compressors == ("deflate", "lz4", "zstd")
    assert state.loadable_compressors == ("lz4hc",)
    assert state.meminfo == {"MemTotal": 2048 * 1024, "Zswap": 8 * 1024, "Zswapped": 32 * 1024}
    assert state.vmstat == {"zswpin": 5, "zswpout": 7, "pswpin": 1, "pswpout": 2}
    assert state.debugfs == {"same_filled_pages": 1, "stored_pages": 3}
    assert state.problems == ()
    p = kernel_profile("host", host=state)
    assert p.name == "host" and p.release == "6.1.0-18-amd64" and p.base == "6.1"
    assert p.from_host
    assert set(p.params) == set(params)
    assert p.params["vendor_knob"].default is None
    assert any("vendor_knob" in n for n in p.notes)
    assert p.compressors == ("deflate", "lz4", "lz4hc", "zstd")
    assert not p.has_compressor("lzo")
    assert set(p.zpools) == {"zbud", "z3fold", "zsmalloc"}
    assert set(p.counters) == {"same_filled_pages", "stored_pages"}  # what debugfs has
    assert (p.exclusive_loads, p.same_filled, p.incompressible) == ("none", "zswap", "reject")


def test_host_between_profiles_takes_its_own_releases_facts(tmp_path: Path) -> None:
    """A 6.10 host: base profile 6.8, but 6.10's facts (no same-filled params)."""
    _tree(tmp_path, {"proc/sys/kernel/osrelease": "6.10.3\n"})
    p = kernel_profile("host", host=read_host(str(tmp_path)))
    assert p.base == "6.8" and p.version == (6, 10)
    assert "same_filled_pages_enabled" not in p.params and "exclusive_loads" not in p.params
    assert p.exclusive_loads == "always"
    assert any("no /sys/module/zswap" in n for n in p.notes)


def test_read_host_reports_missing_files_and_never_raises(tmp_path: Path) -> None:
    state = read_host(str(tmp_path))  # an empty tree: nothing at all
    assert state.params is None and state.compressors is None and state.debugfs is None
    assert state.meminfo == {} and state.vmstat == {}
    joined = "\n".join(state.problems)
    for path in ("/sys/module/zswap/parameters", "/proc/crypto", "/proc/meminfo", "/proc/vmstat"):
        assert path in joined
    assert state.debugfs_why and "/sys/kernel/debug/zswap" in state.debugfs_why
    with pytest.raises(KernelProfileError) as info:
        kernel_profile("host", host=state)
    assert "\n" not in str(info.value)


@pytest.mark.skipif(not os.path.isdir("/sys/module/zswap/parameters"), reason="no zswap here")
def test_this_hosts_sysfs_is_its_releases_profile() -> None:
    """The running kernel's parameters are exactly its release's (6.18 here: no zpool)."""
    state = read_host()
    assert state.version is not None
    name = f"{state.version[0]}.{state.version[1]}"
    if name not in EXPECTED_PARAMS:
        pytest.skip(f"kernel {state.release} is not one of the profiles")
    names = set(os.listdir("/sys/module/zswap/parameters"))
    assert names == EXPECTED_PARAMS[name]
    assert set(kernel_profile("host").params) == names
