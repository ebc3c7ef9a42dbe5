"""zswap for userspace: a compressed page cache with pluggable compressors and allocators.

Public names are listed in ``__all__``; everything in ``zswap_core._*`` is private.
Importing this package imports no plugin and no codec library.
"""

from __future__ import annotations

from ._api import API_VERSION
from ._compressor import Compressor
from ._errors import (
    ApiVersionError,
    CompressError,
    DecompressError,
    DuplicatePluginError,
    ParamError,
    PluginError,
    WritebackDisabledError,
    ZpoolError,
    ZswapError,
)
from ._hooks import hookimpl, register_observer, unregister_observer
from ._memcg import Group
from ._page_alloc import PageAllocator
from ._params import ModuleParams, Param, parse_cmdline, parse_modprobe
from ._registry import (
    PluginInfo,
    Registry,
    block_plugin,
    blocked_plugins,
    crypto_has_comp,
    default_registry,
    list_plugins,
    plugin_error,
    rescan_plugins,
    unblock_plugin,
    zpool_has_pool,
)
from ._zpool import MapMode, Zpool
from ._zswap import PoolInfo, Zswap

__all__ = [
    "API_VERSION",
    "ApiVersionError",
    "CompressError",
    "Compressor",
    "DecompressError",
    "DuplicatePluginError",
    "Group",
    "MapMode",
    "ModuleParams",
    "PageAllocator",
    "Param",
    "ParamError",
    "PluginError",
    "PluginInfo",
    "PoolInfo",
    "Registry",
    "WritebackDisabledError",
    "Zpool",
    "ZpoolError",
    "Zswap",
    "ZswapError",
    "block_plugin",
    "blocked_plugins",
    "crypto_has_comp",
    "default_registry",
    "get_include",
    "hookimpl",
    "list_plugins",
    "parse_cmdline",
    "parse_modprobe",
    "plugin_error",
    "register_observer",
    "rescan_plugins",
    "unblock_plugin",
    "unregister_observer",
    "zpool_has_pool",
]


def get_include() -> str:
    """The directory of ``zswap_ops.h``, the C ops tables' ABI, for a C plugin's build.

    As numpy's ``get_include()``: ``Extension(..., include_dirs=[zswap_core.get_include()])``
    with zswap-core in the build environment. A plugin may instead vendor the header
    unchanged (the version and size fields make either safe at run time).
    """
    import os

    return os.path.join(os.path.dirname(__file__), "_native")


def __getattr__(name: str) -> object:
    # The version comes from the installed metadata, read only when asked for
    # (importlib.metadata is slow to import).
    if name == "__version__":
        from importlib.metadata import version

        return version("zswap-core")
    raise AttributeError(f"module 'zswap_core' has no attribute {name!r}")
