"""Files that are whole or absent: atomic writes, and output paths checked before any work.

Every command that writes (``generate``, ``train``, ``bench``) checks its output
directory with :func:`check_writable_dir` before it starts, and writes each file
with :func:`write_atomic`: to a temp name unique to the process, fsync, rename,
fsync the directory. A kill, a full disk or a second process then leaves either
the whole old file, the whole new one, or nothing; never half a file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

TMP_SUFFIX = ".tmp"


def tmp_name(path: Path) -> Path:
    """``path.<pid>.tmp``: a temp name no other process writes to."""
    return path.with_name(f"{path.name}.{os.getpid()}{TMP_SUFFIX}")


def fsync_dir(directory: Path) -> None:
    """Make the renames inside ``directory`` durable (a no-op where unsupported)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomic(
    path: Path, data: bytes | Callable[[BinaryIO], None], *, sync_dir: bool = True
) -> None:
    """Write ``path`` via a per-process temp file + fsync + ``os.replace`` + fsync of the dir.

    Args:
        path: the final name.
        data: the bytes, or a function that writes them to a binary file object.
        sync_dir: fsync the directory after the rename (batch writers do it once
            per batch instead).

    The temp file is removed if anything fails (a full disk, Ctrl-C), so a
    failure leaves ``path`` as it was and no temp file behind.
    """
    path = Path(path)
    tmp = tmp_name(path)
    try:
        with open(tmp, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    if sync_dir:
        fsync_dir(path.parent)


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


def os_error_line(err: OSError) -> str:
    """One line for an ``OSError``: ``No space left on device: 'out/sample_00003.png'``."""
    reason = err.strerror or str(err) or type(err).__name__
    name = err.filename if err.filename is not None else ""
    return f"{reason}: {str(name)!r}" if name else reason


__all__ = [
    "TMP_SUFFIX",
    "check_writable_dir",
    "fsync_dir",
    "os_error_line",
    "tmp_name",
    "write_atomic",
]
