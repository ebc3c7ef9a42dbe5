"""``zswap_core.get_include()`` finds the ops ABI header a C plugin builds against."""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import pytest

import zswap_core


def test_get_include_holds_the_ops_header() -> None:
    inc = Path(zswap_core.get_include())
    header = inc / "zswap_ops.h"
    assert header.is_file()
    assert "struct zswap_zpool_ops" in header.read_text()


def test_a_c_file_compiles_against_it(tmp_path: Path) -> None:
    """The header is self-contained C11: a plugin includes it and nothing else of ours."""
    cc = os.environ.get("CC", "gcc")
    src = tmp_path / "use.c"
    src.write_text(
        textwrap.dedent(
            """
            #include <stddef.h>
            #include "zswap_ops.h"
            _Static_assert(offsetof(struct zswap_zpool_ops, version) == 0, "version first");
            _Static_assert(offsetof(struct zswap_zpool_ops, size) == 4, "then size");
            _Static_assert(offsetof(struct zswap_page_acct, version) == 0, "version first");
            _Static_assert(offsetof(struct zswap_codec_ops, version) == 0, "version first");
            _Static_assert(offsetof(struct zswap_codec_ops, size) == 4, "then size");
            /* version 2 only grew the zpool table at its end */
            _Static_assert(offsetof(struct zswap_zpool_ops, flags) >
                           offsetof(struct zswap_zpool_ops, free), "flags last");
            int main(void) {
                return ZSWAP_ZPOOL_OPS_VERSION == 2 && ZSWAP_CODEC_OPS_VERSION == 1 ? 0 : 1;
            }
            """
        )
    )
    try:
        proc = subprocess.run(
            [
                cc,
                "-std=c11",
                "-Wall",
                "-Wextra",
                "-Werror",
                "-I",
                zswap_core.get_include(),
                str(src),
                "-o",
                str(tmp_path / "use"),
            ],
            capture_output=True,
            text=True,
        )
    except FileNotFoundError:
        pytest.skip(f"no C compiler ({cc})")
    assert proc.returncode == 0, proc.stderr
    assert subprocess.run([str(tmp_path / "use")]).returncode == 0
