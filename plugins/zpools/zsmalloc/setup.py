"""Build the optional C extension; all metadata is in pyproject.toml.

The extension is optional: without a compiler the plugin installs as pure Python.
"""

from setuptools import Extension, setup  # type: ignore[import-untyped]

setup(
    ext_modules=[
        Extension(
            "zswap_zsmalloc._zsmalloc",
            sources=["zswap_zsmalloc/_native/zsmalloc.c"],
            depends=["zswap_zsmalloc/_native/zswap_ops.h"],
            include_dirs=["zswap_zsmalloc/_native"],
            optional=True,
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-std=c11"],
        )
    ],
)
