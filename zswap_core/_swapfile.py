"""The Linux swap area on-disk format (version 1, "SWAPSPACE2"), written from the format.

A swap area is a file of ``last_page + 1`` pages. Page 0 is the header::

    offset  size  field
    0       1024  boot block (left zero: room for a disk label or boot loader)
    1024    4     version       u32, 1
    1028    4     last_page     u32, index of the last usable page
    1032    4     nr_badpages   u32
    1036    16    uuid
    1052    16    volume name   (the label; NUL padded, not necessarily terminated)
    1068    468   padding
    1536    4*n   badpages      u32 each, page numbers never to use
    ps-10   10    magic         "SWAPSPACE2", the last ten bytes of the first page

The integers are in the byte order of the machine that wrote them; readers accept
either (as the kernel and blkid do). The page size is not recorded: it is where the
magic is. Usable slots are ``1..last_page`` minus the bad pages; slot ``n`` is at
byte ``n * page_size``.

This is the format ``mkswap`` writes and ``blkid``/``swaplabel`` recognise, so a file
made here can be inspected with util-linux and, on Linux, even used by ``swapon``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import struct
import sys
import threading
import uuid as _uuid
from dataclasses import dataclass
from typing import Final

__all__ = [
    "MAGIC",
    "MIN_PAGES",
    "PAGE_SIZES",
    "SwapFile",
    "SwapHeader",
    "SwapHeaderError",
    "create",
    "format_header",
    "max_badpages",
    "open_swapfile",
    "parse_header",
    "read_header",
]

MAGIC: Final = b"SWAPSPACE2"
#: The version-0 magic ("SWAP-SPACE"): recognised only to say it is unsupported.
OLD_MAGIC: Final = b"SWAP-SPACE"
#: Page sizes a header may be written for (where readers look for the magic).
PAGE_SIZES: Final = (4096, 8192, 16384, 32768, 65536)
#: As mkswap: a swap area smaller than this many pages (header included) is refused.
MIN_PAGES: Final = 10
#: last_page is a u32; offsets in the swap layer are 32-bit as well.
MAX_LAST_PAGE: Final = (1 << 32) - 1

_BOOTBITS = 1024
_INFO = struct.Struct("III16s16s")  # version, last_page, nr_badpages, uuid, volume name
_BADPAGES_OFF = 1536
_VERSION = 1
_LABEL_LEN = 16


class SwapHeaderError(ValueError):
    """The header is missing, malformed or does not match what was asked for."""


@dataclass(frozen=True)
class SwapHeader:
    """The fields of a swap header. ``label`` is decoded (undecodable bytes replaced);
    ``label_bytes`` is exact."""

    version: int
    last_page: int
    nr_badpages: int
    uuid: _uuid.UUID
    label: str
    page_size: int
    badpages: tuple[int, ...] = ()
    label_bytes: bytes = b""
    byteorder: str = sys.byteorder

    @property
    def nr_pages(self) -> int:
        """Pages in the area, header included (what mkswap is given)."""
        return self.last_page + 1

    @property
    def usable_pages(self) -> int:
        """Slots that can hold pages: ``1..last_page`` minus the bad ones."""
        return self.last_page - len(set(self.badpages))

    @property
    def size(self) -> int:
        """Bytes the area spans."""
        return self.nr_pages * self.page_size


def max_badpages(page_size: int) -> int:
    """How many bad-page numbers fit between the fields and the magic."""
    return (page_size - len(MAGIC) - _BADPAGES_OFF) // 4


def _check_page_size(page_size: object) -> int:
    if isinstance(page_size, bool) or not isinstance(page_size, int):
        raise TypeError(f"page_size must be an int, got {type(page_size).__name__}")
    if page_size not in PAGE_SIZES:
        raise ValueError(f"page_size must be one of {PAGE_SIZES}, got {page_size}")
    return page_size


def _encode_label(label: str | bytes | None) -> bytes:
    if label is None:
        return b""
    if isinstance(label, str):
        raw = label.encode("utf-8")
    elif isinstance(label, bytes):
        raw = label
    else:
        raise TypeError(f"label must be str or bytes, got {type(label).__name__}")
    if len(raw) > _LABEL_LEN:
        raise ValueError(f"label is {len(raw)} bytes; a swap label holds at most {_LABEL_LEN}")
    if b"\0" in raw:
        raise ValueError("label must not contain NUL bytes")
    return raw


def _coerce_uuid(value: _uuid.UUID | str | bytes | None) -> _uuid.UUID:
    if value is None:
        return _uuid.uuid4()
    if isinstance(value, _uuid.UUID):
        return value
    if isinstance(value, bytes):
        if len(value) != 16:
            raise ValueError(f"a uuid is 16 bytes, got {len(value)}")
        return _uuid.UUID(bytes=value)
    if isinstance(value, str):
        return _uuid.UUID(value)
    raise TypeError(f"uuid must be a UUID, str or 16 bytes, got {type(value).__name__}")


def format_header(
    nr_pages: int,
    page_size: int = 4096,
    *,
    label: str | bytes | None = None,
    uuid: _uuid.UUID | str | bytes | None = None,
    badpages: tuple[int, ...] | list[int] = (),
) -> bytes:
    """The first page of a swap area of ``nr_pages`` pages (header included)."""
    _check_page_size(page_size)
    if isinstance(nr_pages, bool) or not isinstance(nr_pages, int):
        raise TypeError(f"nr_pages must be an int, got {type(nr_pages).__name__}")
    if not MIN_PAGES <= nr_pages <= MAX_LAST_PAGE + 1:
        raise ValueError(
            f"nr_pages must be in {MIN_PAGES}..{MAX_LAST_PAGE + 1} (header included), "
            f"got {nr_pages}"
        )
    last_page = nr_pages - 1
    bad = sorted(set(badpages))
    if len(bad) > max_badpages(page_size):
        raise ValueError(f"too many bad pages ({len(bad)} > {max_badpages(page_size)})")
    for b in bad:
        if isinstance(b, bool) or not isinstance(b, int) or not 1 <= b <= last_page:
            raise ValueError(f"bad page {b!r} is not in 1..{last_page}")
    raw_label = _encode_label(label)
    uid = _coerce_uuid(uuid)
    buf = bytearray(page_size)
    _INFO.pack_into(
        buf, _BOOTBITS, _VERSION, last_page, len(bad), uid.bytes, raw_label.ljust(16, b"\0")
    )
    if bad:
        struct.pack_into(f"{len(bad)}I", buf, _BADPAGES_OFF, *bad)
    buf[page_size - len(MAGIC) :] = MAGIC
    return bytes(buf)


def parse_header(
    data: bytes | bytearray | memoryview,
    page_size: int | None = None,
    *,
    file_size: int | None = None,
) -> SwapHeader:
    """Decode a header from the first bytes of an area; raises only :class:`SwapHeaderError`.

    ``page_size`` None: find the magic at any of :data:`PAGE_SIZES`. ``file_size``:
    also check that the area fits in a file of that many bytes.
    """
    try:
        buf = memoryview(data).tobytes()
    except Exception as exc:  # not bytes-like
        raise SwapHeaderError(f"header must be bytes-like: {exc}") from None
    if page_size is None:
        sizes: tuple[int, ...] = PAGE_SIZES
    else:
        try:
            sizes = (_check_page_size(page_size),)
        except (TypeError, ValueError) as exc:
            raise SwapHeaderError(str(exc)) from None
    found = 0
    for ps in sizes:
        if len(buf) < ps:
            break
        tail = buf[ps - len(MAGIC) : ps]
        if tail == MAGIC:
            found = ps
            break
        if tail == OLD_MAGIC:
            raise SwapHeaderError(
                "version-0 swap area (SWAP-SPACE); only version 1 (SWAPSPACE2) is supported"
            )
    if not found:
        where = f"{sizes[0]}-byte page" if len(sizes) == 1 else "any supported page size"
        if len(buf) < sizes[0]:
            raise SwapHeaderError(f"not a swap area: {len(buf)} bytes is shorter than one page")
        raise SwapHeaderError(f"not a swap area: no SWAPSPACE2 signature for {where}")
    ps = found
    version, last_page, nr_bad, raw_uuid, raw_label = _INFO.unpack_from(buf, _BOOTBITS)
    order = sys.byteorder
    if version != _VERSION:
        swapped = int.from_bytes(version.to_bytes(4, "little"), "big")
        if swapped != _VERSION:
            raise SwapHeaderError(f"unsupported swap area version {version}")
        order = "big" if sys.byteorder == "little" else "little"
        version, last_page, nr_bad = (
            int.from_bytes(v.to_bytes(4, sys.byteorder), order)
            for v in (version, last_page, nr_bad)
        )
    if last_page == 0:
        raise SwapHeaderError("empty swap area (last_page is 0)")
    if last_page + 1 < MIN_PAGES:
        raise SwapHeaderError(
            f"swap area of {last_page + 1} pages is smaller than the minimum {MIN_PAGES}"
        )
    if nr_bad > max_badpages(ps):
        raise SwapHeaderError(f"nr_badpages {nr_bad} exceeds the maximum {max_badpages(ps)}")
    fmt = ("<" if order == "little" else ">") + f"{nr_bad}I"
    badpages = struct.unpack_from(fmt, buf, _BADPAGES_OFF) if nr_bad else ()
    for b in badpages:
        if not 1 <= b <= last_page:
            raise SwapHeaderError(f"bad page number {b} is not in 1..{last_page}")
    if len(set(badpages)) >= last_page:
        raise SwapHeaderError("every page of the swap area is marked bad")
    if file_size is not None and file_size < (last_page + 1) * ps:
        raise SwapHeaderError(
            f"swap area is shorter than its header says: {file_size} bytes, "
            f"header says {last_page + 1} pages of {ps}"
        )
    label_bytes = raw_label.split(b"\0", 1)[0]
    return SwapHeader(
        version=version,
        last_page=last_page,
        nr_badpages=nr_bad,
        uuid=_uuid.UUID(bytes=raw_uuid),
        label=label_bytes.decode("utf-8", "replace"),
        page_size=ps,
        badpages=tuple(badpages),
        label_bytes=label_bytes,
        byteorder=order,
    )


def _pread_exact(fd: int, size: int, offset: int) -> bytes:
    chunks: list[bytes] = []
    got = 0
    while got < size:
        b = os.pread(fd, size - got, offset + got)
        if not b:
            break
        chunks.append(b)
        got += len(b)
    return b"".join(chunks)


def _pwrite_all(fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
    view = memoryview(data)
    done = 0
    while done < len(view):
        n = os.pwrite(fd, view[done:], offset + done)
        if n <= 0:  # pragma: no cover - pwrite raises instead on real errors
            raise OSError(errno.EIO, "short write to swap file")
        done += n


def read_header(source: str | os.PathLike[str] | int, page_size: int | None = None) -> SwapHeader:
    """The header of a swap area given by path or open file descriptor.

    Raises :class:`SwapHeaderError` for anything that is not a well-formed version-1
    swap area (and ``OSError`` only when the file cannot be opened or read).
    """
    if isinstance(source, bool):
        raise TypeError("source must be a path or a file descriptor")
    if isinstance(source, int):
        return _read_header_fd(source, page_size)
    fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return _read_header_fd(fd, page_size)
    finally:
        os.close(fd)


def _read_header_fd(fd: int, page_size: int | None) -> SwapHeader:
    st = os.fstat(fd)
    file_size = st.st_size if stat.S_ISREG(st.st_mode) else None
    want = PAGE_SIZES[-1] if page_size is None else page_size
    if not isinstance(want, int) or isinstance(want, bool) or want not in PAGE_SIZES:
        raise SwapHeaderError(f"page_size must be one of {PAGE_SIZES}, got {page_size!r}")
    data = _pread_exact(fd, want, 0)
    return parse_header(data, page_size, file_size=file_size)


class SwapFile:
    """An open swap area: the header and page-sized ``pread``/``pwrite`` at slot offsets.

    Made by :func:`create` or :func:`open_swapfile`. Holds an exclusive ``flock`` so
    two users cannot swap onto the same file. I/O is thread-safe (positional calls);
    :meth:`close` waits for none - the swap layer keeps I/O out of a closing file.
    """

    def __init__(self, path: str, fd: int, header: SwapHeader) -> None:
        self.path = path
        self.fd = fd
        self.header = header
        self.page_size = header.page_size
        self.last_page = header.last_page
        self._closed = False
        self._close_lock = threading.Lock()

    @property
    def closed(self) -> bool:
        return self._closed

    def _check(self, offset: int) -> None:
        if self._closed:
            raise OSError(errno.EBADF, f"swap file {self.path} is closed")
        if isinstance(offset, bool) or not isinstance(offset, int):
            raise TypeError(f"offset must be an int, got {type(offset).__name__}")
        if not 1 <= offset <= self.last_page:
            raise ValueError(f"slot {offset} is not in 1..{self.last_page}")

    def read_page(self, offset: int) -> bytes:
        """The page in slot ``offset`` (1..last_page)."""
        self._check(offset)
        ps = self.page_size
        data = _pread_exact(self.fd, ps, offset * ps)
        if len(data) != ps:
            raise OSError(errno.EIO, f"short read of slot {offset} from {self.path}")
        return data

    def write_page(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        """Write one page into slot ``offset`` (1..last_page)."""
        self._check(offset)
        ps = self.page_size
        if len(data) != ps:
            raise ValueError(f"page must be {ps} bytes, got {len(data)}")
        _pwrite_all(self.fd, data, offset * ps)

    def sync(self) -> None:
        os.fsync(self.fd)

    def close(self) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            os.close(self.fd)  # also drops the flock

    def __enter__(self) -> SwapFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"<SwapFile {self.path!r} pages={self.header.nr_pages} "
            f"page_size={self.page_size} label={self.header.label!r}>"
        )


def _lock(fd: int, path: str) -> None:
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise OSError(errno.EBUSY, f"swap file {path} is already in use") from None


def _open_existing(path: str) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(errno.ELOOP, f"refusing to use symlink {path} as a swap file") from None
        raise


# Filesystems whose "regular files" are kernel interfaces, not storage: a /proc or
# /sys file reports S_ISREG (often with size 0), and formatting it would write into
# the kernel's settings (as root) or fail half-way with a bare ESPIPE or EINVAL.
_PSEUDO_FILESYSTEMS: Final = frozenset(
    {
        "autofs",
        "binfmt_misc",
        "bpf",
        "cgroup",
        "cgroup2",
        "configfs",
        "debugfs",
        "devpts",
        "efivarfs",
        "fusectl",
        "mqueue",
        "nsfs",
        "proc",
        "pstore",
        "rpc_pipefs",
        "securityfs",
        "selinuxfs",
        "sysfs",
        "tracefs",
    }
)


def _fs_type(st: os.stat_result) -> str | None:
    """The type of the filesystem holding ``st`` from /proc/self/mountinfo (Linux), or None."""
    dev = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                # "36 35 98:0 /root /mnt opts [optional...] - fstype source superopts"
                fields = line.split()
                if len(fields) > 2 and fields[2] == dev and "-" in fields[6:]:
                    sep = fields.index("-", 6)
                    if sep + 1 < len(fields):
                        return fields[sep + 1]
    except OSError:
        return None
    return None


def _vet(fd: int, path: str) -> os.stat_result:
    """Refuse what must not become a swap file; tighten loose permissions."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise OSError(errno.EINVAL, f"{path} is not a regular file")
    fstype = _fs_type(st)
    if fstype in _PSEUDO_FILESYSTEMS:
        raise OSError(
            errno.EINVAL,
            f"{path} is on a {fstype} filesystem (a kernel interface, not storage): "
            "it cannot be a swap file",
        )
    if st.st_uid != os.geteuid():
        raise PermissionError(
            errno.EPERM,
            f"refusing swap file {path}: owned by uid {st.st_uid}, not by the current "
            f"user (uid {os.geteuid()})",
        )
    if st.st_nlink > 1:
        raise OSError(errno.EINVAL, f"refusing swap file {path}: it has {st.st_nlink} links")
    return st


def _format(fd: int, path: str, size: int, header_page: bytes) -> SwapHeader:
    """Size the file and write its header; every failure names the path."""
    try:
        os.ftruncate(fd, size)
        if os.fstat(fd).st_size != size:  # not storage after all (a pseudo file)
            raise OSError(errno.EINVAL, "its size cannot be set")
        _pwrite_all(fd, header_page, 0)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot make {path} a swap area: {exc.strerror or exc}") from exc
    return parse_header(header_page, len(header_page), file_size=size)


def _header_of(fd: int, path: str, page_size: int | None) -> SwapHeader:
    """The header of an open file, with errors that name the file."""
    try:
        return _read_header_fd(fd, page_size)
    except SwapHeaderError as exc:
        raise SwapHeaderError(f"{path}: {exc}") from None
    except OSError as exc:
        raise OSError(exc.errno, f"cannot read the header of {path}: {exc.strerror}") from exc


def _tighten_mode(fd: int) -> None:
    if stat.S_IMODE(os.fstat(fd).st_mode) != 0o600:
        os.fchmod(fd, 0o600)  # swapped memory must not be readable by others


def create(
    path: str | os.PathLike[str],
    nr_pages: int,
    page_size: int = 4096,
    *,
    label: str | bytes | None = None,
    uuid: _uuid.UUID | str | bytes | None = None,
    force: bool = False,
) -> SwapFile:
    """Open the swap area at ``path``, making it if needed; returns an open :class:`SwapFile`.

    ``nr_pages`` counts every page of the area, the header included (as mkswap's
    size): the usable slots are ``1..nr_pages - 1``.

    A new file is made with ``O_CREAT|O_EXCL|O_NOFOLLOW`` and mode 0600, sparse. An
    existing file is opened without following symlinks and must be a regular file
    owned by the current user (its mode is then set to 0600); an empty one is
    formatted, a valid header of the same size and page size is reused as it is
    (label and uuid kept). A file with a bad or different header is refused
    (:class:`SwapHeaderError`, nothing changed) unless ``force=True``, which
    rewrites it.
    """
    _check_page_size(page_size)
    spath = os.fspath(path)
    if not isinstance(spath, str):
        raise TypeError("path must be a str path")
    spath = os.path.abspath(spath)
    header_page = format_header(nr_pages, page_size, label=label, uuid=uuid)  # validates
    size = nr_pages * page_size
    created = False
    try:
        fd = os.open(
            spath, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
        created = True
    except FileExistsError:
        fd = _open_existing(spath)
    try:
        st = _vet(fd, spath)
        _lock(fd, spath)
        if created or st.st_size == 0:  # an empty file holds nothing to lose
            header = _format(fd, spath, size, header_page)
        else:
            try:
                header = _read_header_fd(fd, page_size)  # (named below if refused)
                if header.nr_pages != nr_pages:
                    raise SwapHeaderError(
                        f"{spath} is a swap area of {header.nr_pages} pages, not {nr_pages}"
                    )
            except SwapHeaderError as exc:
                if not force:
                    raise SwapHeaderError(
                        f"refusing to overwrite {spath}: {exc} (pass force=True to reformat)"
                    ) from None
                header = _format(fd, spath, size, header_page)
        _tighten_mode(fd)
    except BaseException:
        os.close(fd)
        if created:
            with contextlib.suppress(OSError):
                os.unlink(spath)
        raise
    return SwapFile(spath, fd, header)


def open_swapfile(path: str | os.PathLike[str], page_size: int | None = None) -> SwapFile:
    """Open an existing swap area (same checks as :func:`create`, never writes the header)."""
    spath = os.fspath(path)
    if not isinstance(spath, str):
        raise TypeError("path must be a str path")
    spath = os.path.abspath(spath)
    fd = _open_existing(spath)
    try:
        _vet(fd, spath)
        _lock(fd, spath)
        header = _header_of(fd, spath, page_size)
        _tighten_mode(fd)
    except BaseException:
        os.close(fd)
        raise
    return SwapFile(spath, fd, header)
