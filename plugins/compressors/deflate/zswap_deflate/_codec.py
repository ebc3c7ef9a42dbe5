"""The C codec ops of this plugin's compressors: one capsule per instance.

``_ops`` (built from ``_native/*_ops.c`` when the library's headers were there)
makes a ``"zswap.codec_ops"`` capsule per compressor instance. Its context is a C
struct holding the level, which a listener on the module's parameters keeps equal to
``params["level"]``. (The bundled compressor plugins each carry this helper.)
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from zswap_core import Compressor

try:
    from . import _ops

    HAVE_OPS = True
except ImportError:  # built without the library's headers, or without a C compiler
    HAVE_OPS = False

__all__ = ["HAVE_OPS", "NativeCodec", "attach", "exported"]


class NativeCodec:
    """One instance's C codec: its capsule, and its level following the parameter.

    The listener holds the capsule, not the compressor; it is removed by
    :meth:`close` or when the compressor is collected, whichever comes first.
    """

    __slots__ = ("_detach", "capsule")

    def __init__(self, owner: Compressor, kind: str, level: int) -> None:
        params = owner.params
        capsule = _ops.new(kind, level)
        self.capsule: object | None = capsule
        self._detach: weakref.finalize[Any, Any] | None = None
        if params is None or "level" not in params:
            return
        set_level = _ops.set_level

        def on_change(module: str, name: str, old: object, new: Any) -> None:
            if name == "level":
                set_level(capsule, new)

        # Under the module's lock, so that no write falls between reading the level
        # and the listener taking over (listeners run with that lock held).
        with params.lock:
            params.add_listener(on_change)
            set_level(capsule, params["level"])
        self._detach = weakref.finalize(owner, params.remove_listener, on_change)

    def close(self) -> None:
        """Stop following the parameter; the capsule is no longer handed out."""
        self.capsule = None
        if self._detach is not None:
            self._detach()


def attach(owner: Compressor, kind: str, level: int) -> NativeCodec | None:
    """The C codec of ``owner`` (``kind`` names its ops table), or None without ``_ops``."""
    if not HAVE_OPS:
        return None
    return NativeCodec(owner, kind, level)


def exported(owner: Compressor, cls: type[Compressor], native: NativeCodec | None) -> object:
    """What ``owner.codec_ops`` returns: the capsule, or None when it is withheld.

    Withheld without the extension, after ``close()``, and when ``compress`` or
    ``decompress`` is not ``cls``'s own (a subclass, or the instance, replaced it in
    Python): the native core would call the C functions instead of the override.
    """
    if native is None or native.capsule is None:
        return None
    kind = type(owner)
    if kind.compress is not cls.compress or kind.decompress is not cls.decompress:
        return None
    own = vars(owner)
    if "compress" in own or "decompress" in own:
        return None
    return native.capsule
