"""Security properties, each proved through the public API.

1. Plugin names are looked up only among installed entry points, never as module paths
   or attribute paths: ``crypto_has_comp("os:system")``, ``zpool_has_pool("subprocess")``,
   ``z.params["compressor"] = "json"``... are all "not available" and import nothing. A
   module on ``sys.path`` with a plugin-like name but no entry point is never imported,
   and an entry point's object is never called while being checked.
2. A blocked plugin is never imported: ``block_plugin``, ``$ZSWAP_BLOCK_PLUGINS``
   (``name`` or ``kind:name``), a modprobe.d ``blacklist`` line and
   ``ZSWAP_DISABLE_PLUGIN_AUTOLOAD=1`` for third-party plugins. The fake plugin's import
   would create a marker file; the marker never appears (and does appear in the
   unblocked control run, so the check can fail).
3. A plugin that raises anything at import (``SystemExit``, ``KeyboardInterrupt``) is
   "not available" with a reason; the process and the other plugins carry on.
4. Swap files: created 0600 whatever the umask, loosened modes tightened; symlinks
   (dangling or not, also with ``force=True``), hard links, FIFOs, directories and
   files owned by another user are refused, and their targets left untouched; a file
   that is not a swap area (or one of another size) is refused rather than overwritten
   unless ``force=True``; a file in use is refused (EBUSY).

Lower-level versions of some checks are in test_registry.py
(test_non_plugin_names_are_unavailable_and_import_nothing,
test_blocked_plugin_is_never_imported) and test_swapfile_format.py (the ``create`` /
``open_swapfile`` checks); this file stands on its own.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import FakeDists, subprocess_env

import zswap_core
from zswap_core import ParamError, Registry, Zswap
from zswap_core.swap import Swap, SwapHeaderError

PS = 4096

HOSTILE_NAMES = [
    "os:system",
    "os.system",
    "subprocess",
    "subprocess:Popen",
    "json",
    "importlib",
    "builtins",
    "ctypes",
    "os.path",
    "zswap_core._zswap",
    "zswap_lz4",
    "zswap_lz4:LZ4",
    "lz4.block",
    "../lz4",
    "./lz4",
    "/etc/passwd",
    "lz4/../../x",
    "__import__('os').system('id')",
    "lz4; rm -rf /",
    "LZ4",
    "lz4\0",
    "",
    "a" * 200,
]


def _warm_up() -> None:
    """A miss rescans the installed distributions; let that import what it needs first."""
    zswap_core.crypto_has_comp("no-such-plugin-warm-up")
    zswap_core.zpool_has_pool("no-such-plugin-warm-up")
    for name in ("lz4", "zbud", "zsmalloc"):  # what the test itself uses legitimately
        assert zswap_core.crypto_has_comp(name) or zswap_core.zpool_has_pool(name)


# -- 1. names are entry points, never module paths -----------------------------------------------


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=lambda n: repr(n)[:24])
def test_hostile_names_are_not_plugins_and_import_nothing(name: str) -> None:
    _warm_up()
    before = set(sys.modules)
    assert zswap_core.crypto_has_comp(name) is False
    assert zswap_core.zpool_has_pool(name) is False
    z = Zswap(compressor="lz4", zpool="zbud", ram_bytes=1 << 30)
    try:
        for kind in ("compressor", "zpool"):
            with pytest.raises(ParamError) as info:
                z.params[kind] = name
            assert info.value.errno in (errno.ENOENT, errno.EINVAL)
        assert (z.params["compressor"], z.params["zpool"]) == ("lz4", "zbud")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            z2 = Zswap(compressor=name, zpool=name, ram_bytes=1 << 30)
        assert (z2.params["compressor"], z2.params["zpool"]) == ("lz4", "zsmalloc")
        assert any("not available" in str(w.message) for w in caught)
        z2.close()
    except ParamError:  # Zswap(compressor="lz4\0"): refused at parse, also fine
        assert "\0" in name
    finally:
        z.close()
    new = set(sys.modules) - before
    assert new == set(), f"{name!r} imported {new}"
    assert name.strip() not in {p.name for p in zswap_core.list_plugins()}


def test_a_module_with_a_plugin_name_but_no_entry_point_is_never_imported(
    fake_dists: FakeDists, tmp_path: Path
) -> None:
    marker = tmp_path / "imported"
    (fake_dists.root / "fake_trojan.py").write_text(
        f"open({str(marker)!r}, 'w').write('imported')\n"
        "from zswap_core import Compressor\n"
        "class Trojan(Compressor):\n    name = 'fake_trojan'\n"
    )
    reg = Registry()
    for name in ("fake_trojan", "fake-trojan", "fake_trojan:Trojan"):
        assert reg.request("compressor", name) is None
        assert reg.request("zpool", name) is None
    assert not marker.exists()
    assert "fake_trojan" not in sys.modules


def test_an_entry_point_object_is_checked_never_called(
    fake_dists: FakeDists, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An entry point naming a function (``os:system``) is refused; it is not called."""
    calls: list[object] = []
    monkeypatch.setattr(os, "system", lambda *a: calls.append(a) or 0)
    fake_dists.add(
        "fake-evil-ep",
        "1.0",
        {"zswap.compressors": {"evilcall": "os:system"}, "zswap.zpools": {"evilcall": "os:system"}},
    )
    reg = Registry()
    assert reg.request("compressor", "evilcall") is None
    assert reg.request("zpool", "evilcall") is None
    assert "not a subclass" in str(reg.error("compressor", "evilcall"))
    assert calls == []


# -- 2. blocked plugins are never imported -------------------------------------------------------

EVIL_PLUGIN = """
import os
open(os.environ["ZSWAP_TEST_MARKER"], "a").write("imported\\n")
from zswap_core import Compressor


class Evil(Compressor):
    name = "evil"

    def compress(self, src):
        return bytes(src)

    def decompress(self, src, dlen):
        return bytes(src)
"""

PROBE = textwrap.dedent(
    """
    import json, os, sys, warnings
    import zswap_core
    from zswap_core import ParamError, Zswap
    how = sys.argv[1]
    if how == "block_plugin":
        zswap_core.block_plugin("evil")
    out = {"has_comp": zswap_core.crypto_has_comp("evil")}
    z = Zswap(compressor="lz4", zpool="zbud", ram_bytes=1 << 30)
    try:
        z.params["compressor"] = "evil"
        out["param"] = "accepted"
    except ParamError as exc:
        out["param"] = str(exc)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["boot"] = Zswap.from_cmdline("zswap.compressor=evil", ram_bytes=1 << 30).params[
            "compressor"
        ]
    out["states"] = {r.name: r.state for r in zswap_core.list_plugins() if r.name == "evil"}
    out["error"] = str(zswap_core.plugin_error("compressor", "evil"))
    out["in_sys_modules"] = "fake_evil" in sys.modules
    print(json.dumps(out))
    """
)


def run_probe(site: Path, marker: Path, how: str, **env: str) -> dict[str, object]:
    e = subprocess_env()
    e.pop("ZSWAP_DISABLE_PLUGIN_AUTOLOAD", None)
    e.pop("ZSWAP_MODPROBE_DIR", None)
    e["PYTHONPATH"] = os.pathsep.join([str(site), e.get("PYTHONPATH", "")])
    e["ZSWAP_TEST_MARKER"] = str(marker)
    e.update(env)
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, how], env=e, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.fixture
def evil(fake_dists: FakeDists, tmp_path: Path) -> tuple[Path, Path]:
    fake_dists.add(
        "fake-evil",
        "6.6.6",
        {"zswap.compressors": {"evil": "fake_evil:Evil"}},
        {"fake_evil": EVIL_PLUGIN},
    )
    return fake_dists.root, tmp_path / "marker"


def test_control_an_unblocked_plugin_is_imported(evil: tuple[Path, Path]) -> None:
    """Without a block the probe does import the plugin: the marker check can fail."""
    site, marker = evil
    out = run_probe(site, marker, "none")
    assert out["has_comp"] is True and out["param"] == "accepted" and out["boot"] == "evil"
    assert marker.exists()


@pytest.mark.parametrize(
    ("how", "env"),
    [
        ("block_plugin", {}),
        ("env", {"ZSWAP_BLOCK_PLUGINS": "evil"}),
        ("env", {"ZSWAP_BLOCK_PLUGINS": "lzo, compressor:evil"}),
        ("modprobe", {}),
        ("env", {"ZSWAP_DISABLE_PLUGIN_AUTOLOAD": "1"}),
    ],
    ids=["block_plugin", "env-name", "env-kind-name", "modprobe-blacklist", "disable-autoload"],
)
def test_a_blocked_plugin_is_never_imported(
    evil: tuple[Path, Path], tmp_path: Path, how: str, env: dict[str, str]
) -> None:
    site, marker = evil
    if how == "modprobe":
        d = tmp_path / "modprobe.d"
        d.mkdir()
        (d / "block.conf").write_text("# no thanks\nblacklist evil\n")
        env = {"ZSWAP_MODPROBE_DIR": str(d)}
    out = run_probe(site, marker, how, **env)
    assert not marker.exists(), "the blocked plugin's module was imported"
    assert out["in_sys_modules"] is False
    assert out["has_comp"] is False
    assert "ENOENT" in str(out["param"]) and "evil" in str(out["param"])
    assert out["boot"] == "lz4"  # the boot string fell back to the default
    assert out["states"] == {"evil": "blocked"}
    assert "blocked" in str(out["error"])


# -- 3. a plugin that raises at import cannot take the process down -----------------------------


@pytest.mark.parametrize("raise_", ["SystemExit(3)", "KeyboardInterrupt()", "ImportError('x')"])
def test_a_plugin_raising_at_import_is_unavailable_not_fatal(
    fake_dists: FakeDists, raise_: str
) -> None:
    fake_dists.add(
        "fake-bomb",
        "1.0",
        {"zswap.compressors": {"bomb": "fake_bomb:Bomb"}},
        {"fake_bomb": f"raise {raise_}\n"},
    )
    reg = Registry()
    assert reg.request("compressor", "bomb") is None
    err = str(reg.error("compressor", "bomb"))
    assert "bomb" in err and "fake-bomb" in err and "pip install" in err
    z = Zswap(compressor="lz4", zpool="zbud", ram_bytes=1 << 30, registry=reg)
    with pytest.raises(ParamError) as info:
        z.params["compressor"] = "bomb"
    assert info.value.errno == errno.ENOENT
    z.init(0)
    assert z.store(0, 0, bytes(range(256)) * 16) and z.load(0, 0) == bytes(range(256)) * 16
    z.close()


# -- 4. swap files -------------------------------------------------------------------------------


@pytest.fixture
def swap() -> Iterator[Swap]:
    s = Swap()
    yield s
    s.close()


def mode(p: Path) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_swap_files_are_created_0600(swap: Swap, tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        swap.swapon(tmp_path / "s", 16)
    finally:
        os.umask(old)
    assert mode(tmp_path / "s") == 0o600


def test_an_existing_swap_file_with_a_loose_mode_is_tightened(swap: Swap, tmp_path: Path) -> None:
    t = swap.swapon(tmp_path / "s", 16)
    swap.swapoff(t)
    os.chmod(tmp_path / "s", 0o666)
    swap.swapon(tmp_path / "s", None)
    assert mode(tmp_path / "s") == 0o600


@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize("nr_pages", [16, None])
def test_symlinks_are_refused_and_their_targets_untouched(
    swap: Swap, tmp_path: Path, force: bool, nr_pages: int | None
) -> None:
    precious = tmp_path / "precious"
    precious.write_bytes(b"do not overwrite me\n" * 2000)
    os.chmod(precious, 0o644)
    link = tmp_path / "link"
    link.symlink_to(precious)
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    for path in (link, dangling):
        with pytest.raises(OSError) as info:
            if nr_pages is None:
                swap.swapon(path, None)
            else:
                swap.swapon(path, nr_pages, force=force)
        assert info.value.errno in (errno.ELOOP, errno.ENOENT), info.value
    assert precious.read_bytes() == b"do not overwrite me\n" * 2000
    assert mode(precious) == 0o644
    assert not (tmp_path / "nowhere").exists()
    assert swap.swaps == []


def test_hard_links_are_refused(swap: Swap, tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.write_bytes(b"x" * 70000)
    os.link(precious, tmp_path / "alias")
    for force in (False, True):
        with pytest.raises(OSError, match="links"):
            swap.swapon(tmp_path / "alias", 16, force=force)
    assert precious.read_bytes() == b"x" * 70000


def test_special_files_are_refused(swap: Swap, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "dir").mkdir()
    for path in (fifo, tmp_path / "dir"):
        for nr in (16, None):
            with pytest.raises(OSError):
                swap.swapon(path, nr, force=True)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_files_owned_by_another_user_are_refused(swap: Swap, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to give a file to another user")
    theirs = tmp_path / "theirs"
    t = swap.swapon(theirs, 16)
    swap.swapoff(t)
    os.chown(theirs, 65534, 65534)
    before = theirs.read_bytes()
    for call in (lambda: swap.swapon(theirs, 16, force=True), lambda: swap.swapon(theirs, None)):
        with pytest.raises(PermissionError, match="owned by uid 65534"):
            call()
    assert theirs.read_bytes() == before


def test_a_file_that_is_not_swap_is_refused_unless_forced(swap: Swap, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.write_bytes(b"important\n" * 9000)
    os.chmod(data, 0o640)
    for nr in (16, None):
        with pytest.raises(SwapHeaderError, match=r"force=True|not a swap area"):
            swap.swapon(data, nr)
    assert data.read_bytes() == b"important\n" * 9000 and mode(data) == 0o640
    t = swap.swapon(data, 16, force=True)  # the owner asked for it explicitly
    assert swap.swaps[0].size == 15 and mode(data) == 0o600
    swap.swapoff(t)


def test_a_swap_area_of_another_size_is_refused_unless_forced(swap: Swap, tmp_path: Path) -> None:
    p = tmp_path / "s"
    t = swap.swapon(p, 32)
    e = swap.swap_out(b"k" * PS)
    swap.swap_free(e)
    swap.swapoff(t)
    before = p.read_bytes()
    with pytest.raises(SwapHeaderError, match="32 pages"):
        swap.swapon(p, 16)
    assert p.read_bytes() == before
    swap.swapon(p, 16, force=True)
    assert swap.swaps[0].size == 15


def test_a_swap_file_in_use_is_refused(tmp_path: Path) -> None:
    with Swap() as a, Swap() as b:
        a.swapon(tmp_path / "s", 16)
        e = a.swap_out(b"m" * PS)
        with pytest.raises(OSError) as info:
            b.swapon(tmp_path / "s", 16, force=True)
        assert info.value.errno == errno.EBUSY
        assert a.swap_in(e) == b"m" * PS
