"""One run at a time per directory: an exclusive, non-blocking ``flock`` on ``DIR/.lock``.

A second process that tries to write into a directory while another run holds
its lock fails at once, naming the other run (its pid, host and start time).
The lock is tied to the open file, so the kernel releases it when the holder
exits, however it exits (``kill -9`` included): a stale lock file blocks no one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are then not protected against each other
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".lock"


class RunConflict(ValueError):
    """The output directory is in use by another run, or now holds another run's settings."""


class RunLock:
    """Hold ``DIR/.lock`` exclusively; :meth:`release` (or exit) lets the next run in.

    Raises:
        RunConflict: another process holds the lock.
    """

    def __init__(self, out_dir: Path) -> None:
        self.path = out_dir / LOCK_FILE
        self.fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
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
        with contextlib.suppress(OSError), open(self.path) as f:
            text = f.read(200).strip()
            if text:
                return text
        return "holder unknown"

    def release(self) -> None:
        """Unlock and close (the lock file stays: removing it would race with a new run)."""
        if self.fd is not None:
            os.close(self.fd)  # closing the last descriptor releases the flock
            self.fd = None


__all__ = ["LOCK_FILE", "RunConflict", "RunLock"]
