"""Build the optional C codec ops; all metadata is in pyproject.toml.

The extension links the system's zlib. Without its headers (or without a C
compiler) the plugin installs with its Python path only: ``codec_ops`` is then None.
"""

import os
import sys
import sysconfig

from setuptools import Extension, setup  # type: ignore[import-untyped]

HEADERS = ("zlib.h",)


def include_dirs() -> list[str]:
    """Where the compiler looks for system headers (the usual places)."""
    dirs = [d for var in ("CPATH", "C_INCLUDE_PATH") for d in os.environ.get(var, "").split(":")]
    dirs += ["/usr/local/include", "/usr/include"]
    multiarch = sysconfig.get_config_var("MULTIARCH")
    if multiarch:
        dirs.append(f"/usr/include/{multiarch}")
    return [d for d in dirs if d]


def have_headers(names: tuple[str, ...]) -> bool:
    dirs = include_dirs()
    return all(any(os.path.exists(os.path.join(d, n)) for d in dirs) for n in names)


ext_modules = []
if have_headers(HEADERS):
    ext_modules.append(
        Extension(
            "zswap_deflate._ops",
            sources=["zswap_deflate/_native/deflate_ops.c"],
            depends=["zswap_deflate/_native/zswap_ops.h"],
            include_dirs=["zswap_deflate/_native"],
            libraries=["z"],
            optional=True,
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-std=c11"],
        )
    )
else:
    print(
        f"zswap-deflate: {' or '.join(HEADERS)} not found (install zlib's headers): "
        "building without the C codec ops, the Python path only",
        file=sys.stderr,
    )

setup(ext_modules=ext_modules)
