"""One run at a time per directory: an exclusive, non-blocking ``flock`` on ``DIR/.lock``.

A second process that tries to write into a directory while another run holds
its lock fails at once, naming the other run (its pid, host and start time).
The lock is tied to the open file, so the kernel releases it when the holder
exits, however it exits (``kill -9`` included): a stale lock file blocks no one.
The lock file is opened without following links and must be a regular file with
one link; anything else there (a planted symlink, a FIFO) is refused in one line.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
import time
from pathlib import Path

from ..files import file_kind

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are then not protected against each other
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".lock"


class RunConflict(ValueError):
    """The output directory is in use by another run, or now holds another run's settings."""


_OPEN_FLAGS = (
    os.O_RDWR
    | os.O_CREAT
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_CLOEXEC", 0)
)


def _not_ours(path: Path, kind: str) -> RunConflict:
    return RunConflict(
        f"{path} is {kind}, not this tool's lock file; nothing was written: remove it "
        "(after checking what it is) and re-run"
    )


def _open_lock(path: Path) -> int:
    """Open (or create) ``path`` as a regular file with one link, never through a link.

    A symbolic link, a FIFO, a directory or a hard link to another file there is
    refused: the lock's stamp is written into the file, so following one would
    overwrite a file outside the directory.
    """
    try:
        fd = os.open(path, _OPEN_FLAGS, 0o644)
    except OSError as err:
        if err.errno not in (errno.ELOOP, errno.EMLINK, errno.EISDIR, errno.ENXIO):
            raise
        try:
            kind = file_kind(os.lstat(path).st_mode)
        except OSError:
            raise err from None
        raise _not_ours(path, kind) from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        kind = (
            file_kind(info.st_mode)
            if not stat.S_ISREG(info.st_mode)
            else f"a file with {info.st_nlink} hard links"
        )
        raise _not_ours(path, kind)
    return fd


class RunLock:
    """Hold ``DIR/.lock`` exclusively; :meth:`release` (or exit) lets the next run in.

    Raises:
        RunConflict: another process holds the lock, or ``DIR/.lock`` is not a regular
            file with one link (a symlink, a FIFO, a directory, a hard link): nothing
            is written then.
    """

    def __init__(self, out_dir: Path) -> None:
        self.path = out_dir / LOCK_FILE
        self.fd: int | None = _open_lock(self.path)
        if fcntl is None:
            return
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                return  # a file system without flock (some network mounts): run unlocked
            holder = self._holder()
            os.close(self.fd)
            self.fd = None
            raise RunConflict(
                f"another run is writing into {out_dir} ({holder}); wait for it to finish "
                "(then re-run to resume), or choose another output directory"
            ) from None
        stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        os.ftruncate(self.fd, 0)
        os.write(self.fd, f"pid {os.getpid()} on {socket.gethostname()}, since {stamp}\n".encode())

    def _holder(self) -> str:
        with contextlib.suppress(OSError, ValueError):
            text = os.pread(self.fd, 200, 0).decode("utf-8", "replace").strip()
            if text:
                return " ".join(text.split())
        return "holder unknown"

    def release(self) -> None:
        """Unlock and close (the lock file stays: removing it would race with a new run)."""
        if self.fd is not None:
            os.close(self.fd)  # closing the last descriptor releases the flock
            self.fd = None


__all__ = ["LOCK_FILE", "RunConflict", "RunLock"]
