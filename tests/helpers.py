"""Helpers shared by tests: fake plugin distributions, subprocess environment."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

from zswap_core import hookimpl


class FakeDists:
    """Writes ``*.dist-info`` folders with entry points (no pip, no network)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def add(
        self,
        dist: str,
        version: str,
        entry_points: dict[str, dict[str, str]],
        modules: dict[str, str] | None = None,
    ) -> None:
        info = self.root / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        lines = []
        for group, eps in entry_points.items():
            lines.append(f"[{group}]")
            lines += [f"{name} = {target}" for name, target in eps.items()]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
        for mod, source in (modules or {}).items():
            (self.root / f"{mod}.py").write_text(textwrap.dedent(source))


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("ZSWAP_BLOCK_PLUGINS", None)
    return env


ALL_COMPRESSORS = ("lz4", "lz4hc", "zstd", "lzo", "lzo-rle", "deflate")
ALL_ZPOOLS = ("zbud", "z3fold", "zsmalloc")


def mixed_pages(n: int, page_size: int = 4096, seed: int = 0) -> list[bytes]:
    """A small realistic mix: zero, same-filled, text, heap-like, incompressible pages."""
    import random
    import struct

    rng = random.Random(seed)
    words = [
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
        for _ in range(300)
    ]
    pages = []
    for i in range(n):
        kind = i % 6
        if kind == 0:
            page = bytes(page_size)
        elif kind == 1:
            page = struct.pack("<Q", rng.getrandbits(64) | 1) * (page_size // 8)
        elif kind == 2:
            text = " ".join(rng.choice(words) for _ in range(page_size // 4)).encode()
            page = text[:page_size]
        elif kind == 3:
            rec = bytearray()
            while len(rec) < page_size:
                rec += struct.pack(
                    "<QIh6s",
                    0x7F0000000000 + rng.randrange(1 << 20) * 16,
                    rng.randrange(100),
                    rng.randrange(-5, 5),
                    rng.choice(words)[:6].encode(),
                )
            page = bytes(rec[:page_size])
        elif kind == 4:
            page = rng.randbytes(page_size)
        else:
            half = rng.randbytes(page_size // 8) * 2
            page = (half + bytes(page_size))[:page_size]
        assert len(page) == page_size
        pages.append(page)
    return pages


#: The observer hooks of zswap_core (``zswap.hooks``), in the order the specs list them.
HOOKS = (
    "zswap_pool_created",
    "zswap_pool_destroyed",
    "zswap_compressor_created",
    "zswap_compressor_destroyed",
    "zswap_param_changed",
    "zswap_store",
    "zswap_load",
    "zswap_invalidate",
    "zswap_writeback",
)


class EveryHook:
    """An observer of every hook; each call goes to :meth:`hit` with the hook's name."""

    def hit(self, hook: str) -> None:
        raise NotImplementedError

    @hookimpl
    def zswap_pool_created(self, zswap: object, pool: object) -> None:
        self.hit("zswap_pool_created")

    @hookimpl
    def zswap_pool_destroyed(self, zswap: object, pool: object) -> None:
        self.hit("zswap_pool_destroyed")

    @hookimpl
    def zswap_compressor_created(self, zswap: object, pool: object) -> None:
        self.hit("zswap_compressor_created")

    @hookimpl
    def zswap_compressor_destroyed(self, zswap: object, pool: object) -> None:
        self.hit("zswap_compressor_destroyed")

    @hookimpl
    def zswap_param_changed(self, module: str, name: str, old: object, new: object) -> None:
        self.hit("zswap_param_changed")

    @hookimpl
    def zswap_store(self, zswap: object, type: int, offset: int, stored: bool) -> None:
        self.hit("zswap_store")

    @hookimpl
    def zswap_load(self, zswap: object, type: int, offset: int, found: bool) -> None:
        self.hit("zswap_load")

    @hookimpl
    def zswap_invalidate(self, zswap: object, type: int, offset: int) -> None:
        self.hit("zswap_invalidate")

    @hookimpl
    def zswap_writeback(self, zswap: object, type: int, offset: int, ok: bool) -> None:
        self.hit("zswap_writeback")


#: ``python -c CLI_ENTRY ARGS``: the zswap command with SIGINT and SIGTERM at their
#: defaults, as in an interactive shell, even where the tests run with them ignored (a
#: shell starts a background job with SIGINT ignored, and the command then rightly
#: ignores Ctrl-C). Tests that send real signals start the command this way.
CLI_ENTRY = (
    "import signal, sys\n"
    "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
    "signal.signal(signal.SIGTERM, signal.SIG_DFL)\n"
    "from zswap_core.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)
