"""Compress batches of pages with every codec: compact per-page sizes and CPU times.

This is what a worker process runs on each batch it reads: per page a kind byte
(zero / same-filled / other) and, per compressor, the compressed size; per batch and
compressor the CPU time (``time.thread_time_ns``) of compressing and of decompressing
the batch. A compressor with C codec ops is timed through them
(``zswap_core._core.CodecOps``: what the native core calls, without Python in the
loop); one without, through its Python methods. Every decompressed page is checked
against the original: a codec that does not round-trip is an error, not a figure.
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._estimate import page_kind

__all__ = ["BatchResult", "CodecError", "Codecs", "compress_batch", "size_typecode"]


class CodecError(Exception):
    """A codec failed or did not give back the page it compressed."""


@dataclass
class BatchResult:
    """One batch's results; arrays as bytes (of :func:`size_typecode`) for the pipe."""

    index: int
    kinds: bytes = b""
    sizes: dict[str, bytes] = field(default_factory=dict)
    compress_ns: dict[str, int] = field(default_factory=dict)
    decompress_ns: dict[str, int] = field(default_factory=dict)
    nbytes: int = 0
    vanished: int = 0
    cold: bytes | None = None
    backend: dict[str, str] = field(default_factory=dict)


class Codecs:
    """One instance of each compressor (made in the process that uses it).

    ``aliases`` maps a compressor to the one whose streams it produces byte for byte;
    an alias is not compressed again: it gets its original's figures.
    """

    def __init__(self, names: Sequence[str]) -> None:
        from zswap_core import default_registry

        reg = default_registry()
        self.names = list(names)
        self.aliases: dict[str, str] = {}
        self._instances: list[Any] = []
        self.ops: dict[str, tuple[Callable[[bytes], bytes], Callable[[bytes, int], bytes]]] = {}
        self.backend: dict[str, str] = {}
        for name in self.names:
            mod = reg.require("compressor", name)
            alias = str(getattr(mod.driver, "alias_of", "") or "")
            if alias and alias in self.names and alias != name:
                self.aliases[name] = alias
                continue
            comp = mod.driver(mod.params)
            self._instances.append(comp)
            capsule = getattr(comp, "codec_ops", None)
            if capsule is not None:
                from zswap_core._core import CodecOps

                try:
                    c_ops = CodecOps(capsule)
                except Exception:  # not a usable capsule: the Python methods, labelled
                    c_ops = None
                if c_ops is not None:
                    self.ops[name] = (c_ops.compress, c_ops.decompress)
                    self.backend[name] = "c"
                    continue
            self.ops[name] = (comp.compress, comp.decompress)
            self.backend[name] = "python"
        for name, alias in self.aliases.items():
            self.backend[name] = self.backend[alias]

    def close(self) -> None:
        for comp in self._instances:
            comp.close()
        self._instances.clear()


def size_typecode(page_size: int) -> str:
    """The array type of compressed sizes: 2 bytes a page for pages up to 16 KiB."""
    return "H" if 2 * page_size + 1 < 1 << 16 else "I"


def compress_batch(index: int, pages: Sequence[bytes], codecs: Codecs) -> BatchResult:
    """Kinds, compressed sizes and CPU times of ``pages`` under every codec."""
    out = BatchResult(index, backend=dict(codecs.backend))
    if not pages:
        for name in codecs.names:
            out.sizes[name] = b""
            out.compress_ns[name] = out.decompress_ns[name] = 0
        return out
    page_size = len(pages[0])
    zero = bytes(page_size)
    out.kinds = bytes(page_kind(p, zero) for p in pages)
    out.nbytes = page_size * len(pages)
    clock = time.thread_time_ns
    code = size_typecode(page_size)
    cap = 2 * page_size + 1
    for name, (compress, decompress) in codecs.ops.items():
        try:
            # untimed warm-up: the codec's context and the allocator's free lists, so
            # that the batch's first pages do not pay for them
            decompress(compress(pages[0]), page_size)
            t0 = clock()
            packed = [compress(p) for p in pages]
            t1 = clock()
            unpacked = [decompress(c, page_size) for c in packed]
            t2 = clock()
        except Exception as exc:
            raise CodecError(f"{name}: {type(exc).__name__}: {exc}") from None
        for p, u in zip(pages, unpacked, strict=True):
            if p != u:
                raise CodecError(f"{name}: a page decompressed differs from the original")
        # more than two pages is refused by zswap whatever it is: clamped to fit the type
        out.sizes[name] = array(code, [min(len(c), cap) for c in packed]).tobytes()
        out.compress_ns[name] = t1 - t0
        out.decompress_ns[name] = t2 - t1
        # freed before the next codec: each codec's outputs reuse the same memory
        # instead of growing the heap (page faults would count as its CPU time)
        del packed, unpacked
    for name, alias in codecs.aliases.items():
        out.sizes[name] = out.sizes[alias]
        out.compress_ns[name] = out.compress_ns[alias]
        out.decompress_ns[name] = out.decompress_ns[alias]
    return out
