"""Build the C extension; all metadata is in pyproject.toml.

The extension is required (``optional=False``): czpool is nothing but C, so an
install without a C compiler should fail loudly rather than install a package
that cannot be imported.
"""

from setuptools import Extension, setup  # type: ignore[import-untyped]

setup(
    ext_modules=[
        Extension(
            "zswap_example_czpool._czpool",
            sources=["zswap_example_czpool/_native/czpool.c"],
            depends=["zswap_example_czpool/_native/zswap_ops.h"],
            include_dirs=["zswap_example_czpool/_native"],
            optional=False,
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-std=c11"],
        )
    ],
)
