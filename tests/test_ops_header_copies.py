"""Every vendored copy of the C ops header is byte-identical to the core's.

``zswap_core/_native/zswap_ops.h`` is the ABI between the native core and C plugins;
a plugin ships its own copy, unchanged (the header's own rule). A copy that drifted
would build a table that the core misreads.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER = ROOT / "zswap_core" / "_native" / "zswap_ops.h"
#: The copies that must exist (more are found and checked too).
KNOWN_COPIES = [
    "plugins/zpools/zsmalloc/zswap_zsmalloc/_native/zswap_ops.h",
    "examples/zswap-example-czpool/zswap_example_czpool/_native/zswap_ops.h",
    "plugins/compressors/lz4/zswap_lz4/_native/zswap_ops.h",
    "plugins/compressors/zstd/zswap_zstd/_native/zswap_ops.h",
    "plugins/compressors/lzo/zswap_lzo/_native/zswap_ops.h",
    "plugins/compressors/deflate/zswap_deflate/_native/zswap_ops.h",
]
SKIP_DIRS = {".venv", "build", "dist", ".git", "node_modules"}


def copies() -> list[Path]:
    return sorted(
        p
        for p in ROOT.rglob("zswap_ops.h")
        if p != HEADER and not SKIP_DIRS & set(p.relative_to(ROOT).parts)
    )


def test_known_copies_exist() -> None:
    found = {p.relative_to(ROOT).as_posix() for p in copies()}
    missing = set(KNOWN_COPIES) - found
    assert not missing, f"vendored headers missing: {sorted(missing)}"


def test_every_copy_is_identical() -> None:
    want = HEADER.read_bytes()
    for path in copies():
        assert path.read_bytes() == want, (
            f"{path.relative_to(ROOT)} differs from zswap_core/_native/zswap_ops.h: "
            "copy it again, unchanged"
        )
