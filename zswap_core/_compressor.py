"""The compressor driver API (the kernel's crypto "comp" algorithms).

A compressor plugin subclasses :class:`Compressor` and implements two methods. One
instance is made per pool; it must be safe to call from several threads at once, so
a codec whose context objects are not thread-safe keeps one per thread (see the zstd
plugin). A plugin may also export its codec as C functions (``codec_ops``), which
zswap-core's native backend calls without the GIL instead of the two methods.
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

    **C codec ops** (optional). ``codec_ops`` is None here. A plugin with a C
    extension may make it a property that returns a ``PyCapsule`` named
    ``"zswap.codec_ops"`` (``ZSWAP_CODEC_OPS_CAPSULE`` in ``zswap_ops.h``, see
    ``zswap_core.get_include()``): its pointer is the plugin's static
    ``struct zswap_codec_ops``, its context a C struct of this instance (such as the
    current level), freed by the capsule's destructor. The native backend then
    compresses and decompresses pages through those functions, without the GIL and
    with one context per thread, and never calls :meth:`compress` and
    :meth:`decompress`; the Python backend always calls the methods. So:

    * the C functions must write and read exactly the streams the methods do (the
      conformance kit checks both directions, corrupt input and the bound);
    * parameters the C side reads must be kept current: register a listener with
      ``self.params.add_listener`` in ``__init__`` that stores the new value in the
      capsule's struct (read atomically by the C functions, once per call), and
      remove it in :meth:`close` (``self.params.remove_listener``);
    * return None when the C extension is not built, after :meth:`close`, and when
      a subclass overrides :meth:`compress` or :meth:`decompress` in Python: the core
      would otherwise bypass the override.

    The core reads ``getattr(compressor, "codec_ops", None)`` once per pool and
    treats None, or anything that is not a usable capsule, as "no ops".
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

    if TYPE_CHECKING:

        @property
        def codec_ops(self) -> object:
            """The C codec ops capsule, or None (see the class docstring)."""

    else:
        #: The C codec ops capsule, or None: the Python methods are the codec.
        codec_ops = None

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
