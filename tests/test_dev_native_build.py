"""dev.py rebuilds a C extension when any of its .c or .h files changes, and only then."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def _dev() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dev_script", ROOT / "dev.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_every_c_source_of_both_extensions_is_watched() -> None:
    dev = _dev()
    names = {p.name for m in dev.NATIVE for p in dev.native_sources(m)}
    assert {"zswap.c", "page_alloc.c", "crc32.c", "native.h", "zswap_ops.h"} <= names
    assert "zsmalloc.c" in names
    # every C file the builds compile is among them
    core_c = {p.name for p in (ROOT / "zswap_core" / "_native").glob("*.c")}
    assert core_c <= names


def test_a_changed_header_or_source_or_flavour_changes_the_fingerprint(tmp_path: Path) -> None:
    dev = _dev()
    shutil.copytree(ROOT / "zswap_core" / "_native", tmp_path / "zswap_core" / "_native")
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "ignored.c").write_text("/* a build product */\n")
    first = dev.native_fingerprint(".", "release", tmp_path)
    assert dev.native_fingerprint(".", "release", tmp_path) == first  # stable
    assert dev.native_fingerprint(".", "address", tmp_path) != first
    header = tmp_path / "zswap_core" / "_native" / "native.h"
    header.write_text(header.read_text() + "\n/* changed */\n")
    second = dev.native_fingerprint(".", "release", tmp_path)
    assert second != first
    source = tmp_path / "zswap_core" / "_native" / "crc32.c"
    source.write_text(source.read_text() + "\n/* changed too */\n")
    assert dev.native_fingerprint(".", "release", tmp_path) not in (first, second)
    (tmp_path / "build" / "ignored.c").write_text("/* rebuilt */\n")  # not a source
    assert dev.native_fingerprint(".", "release", tmp_path) == dev.native_fingerprint(
        ".", "release", tmp_path
    )
