"""Build zswap-core's optional C extension; the metadata is in pyproject.toml.

The extension (``zswap_core._core``, sources in ``zswap_core/_native/``) is the native
backend of the per-page paths. It is optional: where it cannot be compiled, the
package installs without it and ``zswap_core`` runs on its Python backend, saying so
once. Sanitizer builds pass their flags in ``CFLAGS`` (``python3 dev.py test --sanitize``).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "zswap_core._core",
            sources=[
                "zswap_core/_native/zswap.c",
                "zswap_core/_native/page_alloc.c",
                "zswap_core/_native/crc32.c",
                "zswap_core/_native/codec.c",
                "zswap_core/_native/gate.c",
            ],
            depends=["zswap_core/_native/native.h", "zswap_core/_native/zswap_ops.h"],
            extra_compile_args=["-O2", "-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra"],
            optional=True,
        )
    ]
)
