"""Files that are whole or absent: atomic writes, and output paths checked before any work.

Every command that writes (``generate``, ``train``, ``bench``) checks its output
directory with :func:`check_writable_dir` before it starts, and writes each file
with :func:`write_atomic`: to a new temp file in the same directory, fsync, rename,
fsync the directory. A kill, a full disk or a second process then leaves either
the whole old file, the whole new one, or nothing; never half a file.

Nothing is written through a link planted in the directory: a temp file is
created exclusively (``O_CREAT | O_EXCL | O_NOFOLLOW``) under a name no one can
predict (pid and random bytes), and the rename replaces a link at the final name
rather than following it. Files are read only when they are regular files of a
bounded size (:func:`read_regular`, :func:`read_json`): a FIFO, a device such as
``/dev/zero`` or a directory under a name this library reads is refused in one line
instead of blocking or filling the memory.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

TMP_SUFFIX = ".tmp"
JSON_MAX_BYTES = 1 << 20
"""The largest JSON file this library reads (a run.json, a checkpoint's JSON): 1 MiB."""
JSON_MAX_DEPTH = 64
"""The deepest nesting of lists and objects accepted in such a JSON file."""

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_CREATE_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC


class UnsafeFileError(ValueError):
    """A file this library reads is not a regular file, or is larger than it may be."""


def tmp_name(path: Path) -> Path:
    """``path.<pid>-<8 random hex>.tmp``: a fresh temp name no other process can predict."""
    return path.with_name(f"{path.name}.{os.getpid()}-{secrets.token_hex(4)}{TMP_SUFFIX}")


def create_tmp(path: Path, mode: int = 0o666) -> tuple[int, Path]:
    """Create a new temp file beside ``path`` (:func:`tmp_name`); return (fd, its path).

    Created with ``O_CREAT | O_EXCL | O_NOFOLLOW``: never an existing file, never
    through a link. A name that exists already (a file or a planted link) is
    skipped for another random one.
    """
    for _ in range(100):
        tmp = tmp_name(path)
        try:
            return os.open(tmp, _CREATE_NEW, mode), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temp name after 100 tries", str(tmp))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fsync_dir(directory: Path) -> None:
    """Make the renames inside ``directory`` durable (a no-op where unsupported)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomic(
    path: Path,
    data: bytes | Callable[[BinaryIO], None],
    *,
    sync_dir: bool = True,
    mode: int | None = None,
) -> None:
    """Write ``path`` via a new temp file + fsync + ``os.replace`` + fsync of the dir.

    Args:
        path: the final name. A link there is replaced, never followed.
        data: the bytes, or a function that writes them to a binary file object.
        sync_dir: fsync the directory after the rename (batch writers do it once
            per batch instead).
        mode: permission bits for the file (default: 0o666 less the umask).

    The temp file (:func:`create_tmp`: exclusive, unpredictable, no links
    followed) is removed if anything fails (a full disk, Ctrl-C), so a failure
    leaves ``path`` as it was and no temp file behind.
    """
    path = Path(path)
    fd, tmp = create_tmp(path)
    try:
        try:
            if mode is not None:
                os.fchmod(fd, mode)
            if callable(data):
                with os.fdopen(fd, "wb", closefd=False) as f:
                    data(f)
            else:
                _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    if sync_dir:
        fsync_dir(path.parent)


def file_kind(mode: int) -> str:
    """``"a directory"``, ``"a FIFO (named pipe)"``, … for an ``st_mode``."""
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISREG, "a regular file"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def open_regular(
    path: str | os.PathLike[str], what: str = "file", *, follow_symlinks: bool = True
) -> tuple[int, os.stat_result]:
    """Open ``path`` for reading if it is a regular file; return (fd, its fstat).

    Opened with ``O_NONBLOCK`` (a FIFO cannot block the open) and checked with
    ``fstat`` on the open descriptor (no race with a file swapped in between).

    Raises:
        UnsafeFileError: a FIFO, a device, a directory, a socket, or (with
            ``follow_symlinks=False``) a symbolic link; the message names ``what``
            and the path.
        OSError: the file cannot be opened (missing, no permission).
    """
    flags = os.O_RDONLY | _NONBLOCK | _CLOEXEC | (0 if follow_symlinks else _NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.EMLINK, errno.ENXIO, errno.EOPNOTSUPP):
            with contextlib.suppress(OSError):
                kind = file_kind(os.lstat(path).st_mode)
                raise UnsafeFileError(
                    f"{what} {os.fspath(path)} is {kind}, not a regular file"
                ) from None
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise UnsafeFileError(
            f"{what} {os.fspath(path)} is {file_kind(info.st_mode)}, not a regular file"
        )
    return fd, info


def read_regular(
    path: str | os.PathLike[str],
    what: str = "file",
    *,
    max_bytes: int | None = None,
    follow_symlinks: bool = True,
) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``max_bytes``.

    Raises:
        UnsafeFileError: not a regular file (:func:`open_regular`), or larger than
            ``max_bytes`` (checked before reading, and again while reading).
        OSError: it cannot be opened or read.
    """
    fd, info = open_regular(path, what, follow_symlinks=follow_symlinks)
    try:
        limit = None if max_bytes is None else max_bytes + 1
        if limit is not None and info.st_size >= limit:
            raise UnsafeFileError(
                f"{what} {os.fspath(path)} is {info.st_size:,} bytes, more than the "
                f"{max_bytes:,} it may have"
            )
        chunks, size = [], 0
        while chunk := os.read(fd, 1 << 20 if limit is None else min(1 << 20, limit - size)):
            chunks.append(chunk)
            size += len(chunk)
            if limit is not None and size >= limit:
                raise UnsafeFileError(
                    f"{what} {os.fspath(path)} grew past the {max_bytes:,} bytes it may have"
                )
        return b"".join(chunks)
    finally:
        os.close(fd)


def _depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value (iterative: no recursion limit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            stack.extend(
                (v, depth + 1) for v in (item.values() if isinstance(item, dict) else item)
            )
    return deepest


def read_json(
    path: str | os.PathLike[str],
    what: str = "JSON file",
    *,
    max_bytes: int = JSON_MAX_BYTES,
    max_depth: int = JSON_MAX_DEPTH,
    follow_symlinks: bool = True,
    error: type[ValueError] = ValueError,
) -> Any:
    """Parse a JSON file that is a regular file of at most ``max_bytes``, nested at most
    ``max_depth`` deep.

    Raises:
        error: (a ``ValueError`` class) not a regular file, too large, not UTF-8, not
            JSON, or nested too deep; one line naming ``what`` and the path.
        OSError: it cannot be opened or read (``FileNotFoundError`` when missing).
    """
    name = os.fspath(path)
    try:
        data = read_regular(path, what, max_bytes=max_bytes, follow_symlinks=follow_symlinks)
    except UnsafeFileError as err:
        raise error(str(err)) from None
    try:
        value = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise error(f"{what} {name} is not UTF-8 text ({err.reason} at byte {err.start})") from None
    except json.JSONDecodeError as err:
        raise error(f"{what} {name} is not valid JSON ({err})") from None
    except (RecursionError, MemoryError):
        raise error(f"{what} {name} is nested too deeply to be read") from None
    if _depth(value) > max_depth:
        raise error(f"{what} {name} is nested more than {max_depth} levels deep")
    return value


def check_writable_dir(directory: str | os.PathLike[str], what: str = "output directory") -> Path:
    """Check that ``directory`` exists and is writable, or can be created; create nothing.

    The check is real, not a guess from permission bits: it creates (and
    removes) a hidden probe in ``directory``, or in its nearest existing
    parent when ``directory`` does not exist yet. So ``/proc/x``, ``/sys/x``,
    a path under a regular file, a read-only or full file system all fail here,
    before any work is done.

    Raises:
        ValueError: the path is empty, a file, or cannot be created or written;
            the message names the path and the reason.
    """
    if str(directory).strip() == "":
        raise ValueError(f"the {what} is empty; give a path, e.g. out/run1")
    path = Path(directory)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{what} {path} is a file, not a directory")
    parent = path
    while not parent.exists():
        if parent.parent == parent:
            break
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"cannot create {what} {path}: {parent} is a file, not a directory")
    try:
        probe = tempfile.mkdtemp(prefix=".probe-", dir=parent)
        os.rmdir(probe)
    except OSError as err:
        reason = err.strerror or type(err).__name__
        where = "write to" if parent == path else "create"
        raise ValueError(f"cannot {where} {what} {path}: {reason} (at {parent})") from None
    return path


def check_file_stem(name: str, what: str = "name") -> str:
    """Check that ``name`` is a plain file name: not empty, no path separator, not ``.``/``..``.

    Raises:
        ValueError: one line naming ``what`` and the name.
    """
    seps = {"/", os.sep, *([os.altsep] if os.altsep else [])}
    if not isinstance(name, str) or name.strip() == "":
        raise ValueError(f"{what} is empty; give a plain file name such as cpu")
    if any(sep in name for sep in seps) or name in (".", "..") or "\x00" in name:
        raise ValueError(
            f"{what} {name!r} must be a plain file name (no path separator, not . or ..); "
            "choose the directory with --out"
        )
    return name


def os_error_line(err: OSError) -> str:
    """One line for an ``OSError``: ``No space left on device: 'out/sample_00003.png'``."""
    reason = err.strerror or str(err) or type(err).__name__
    name = err.filename if err.filename is not None else ""
    return f"{reason}: {str(name)!r}" if name else reason


__all__ = [
    "JSON_MAX_BYTES",
    "JSON_MAX_DEPTH",
    "TMP_SUFFIX",
    "UnsafeFileError",
    "check_file_stem",
    "check_writable_dir",
    "create_tmp",
    "file_kind",
    "fsync_dir",
    "open_regular",
    "os_error_line",
    "read_json",
    "read_regular",
    "tmp_name",
    "write_atomic",
]
