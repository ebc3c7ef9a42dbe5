"""The compressor driver API (the kernel's crypto "comp" algorithms).

A compressor plugin subclasses :class:`Compressor` and implements two methods. One
instance is made per pool; it must be safe to call from several threads at once, so
a codec whose context objects are not thread-safe keeps one per thread (see the zstd
plugin).
"""

from __future__ import annotations

from ._api import API_VERSION

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import ClassVar

    from typing_extensions import Buffer

    from ._params import ModuleParams, Param

__all__ = ["Compressor"]


class Compressor:
    """Base class of compressor drivers.

    Subclass it, set ``name`` (the entry point name, e.g. ``"lz4"``), and implement
    :meth:`compress` and :meth:`decompress`. Declare module parameters in
    ``parameters``; their current values are in ``self.params`` (e.g. zstd's
    ``level``). Raise any exception on corrupt input: the core turns it into a
    ``decompress_fail`` and never returns the data.

    Example::

        class Identity(Compressor):
            name = "identity"

            def compress(self, src):
                return bytes(src)

            def decompress(self, src, dlen):
                return bytes(src)
    """

    #: The name users write in ``zswap.compressor=``; equal to the entry point name.
    name: ClassVar[str] = ""
    #: The driver API this plugin was written against (see ``zswap_core.API_VERSION``).
    api_version: ClassVar[int] = API_VERSION
    #: Module parameters (``zstd.level``), set from boot strings and modprobe files.
    parameters: ClassVar[tuple[Param, ...]] = ()
    #: One line for ``zswap lsmod`` / ``modinfo``.
    description: ClassVar[str] = ""
    #: The compressor whose streams this one produces byte for byte ("" when none): a
    #: name kept for compatibility, which tools label as an alias instead of
    #: presenting two identical codecs as different ones (``lzo-rle`` -> ``lzo``).
    alias_of: ClassVar[str] = ""

    def __init__(self, params: ModuleParams | None = None) -> None:
        self.params = params

    def compress(self, src: Buffer) -> bytes:
        """Compress one page. The core refuses output longer than two pages."""
        raise NotImplementedError

    def decompress(self, src: Buffer, dlen: int) -> bytes:
        """Decompress to exactly ``dlen`` bytes, or raise."""
        raise NotImplementedError

    def close(self) -> None:
        """Release codec resources when the pool using this instance is destroyed."""
