"""Ctrl-C and SIGTERM while a command runs: one line, exit code 130 or 143, no traceback.

Batch schedulers (Slurm, Kubernetes, a torchrun tearing a job down) stop a job with
SIGTERM. Inside :func:`handled` the commands treat it like Ctrl-C: SIGTERM raises
:class:`Terminated`, a ``KeyboardInterrupt``, so every cleanup that runs on Ctrl-C runs
on it too (``generate`` keeps every finished image whole and a re-run resumes), and
the command prints one line and exits 143 (128 + 15) instead of 130.

The first of the two signals also makes the process ignore both from then on: a second
Ctrl-C while the first one's cleanup runs, or while Python shuts down, can no longer
cut that cleanup short, print an "Exception ignored in atexit callback" traceback, or
kill the process with the signal's default action.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

EXIT_INTERRUPTED = 130
"""Exit code after Ctrl-C (128 + SIGINT)."""
EXIT_TERMINATED = 143
"""Exit code after SIGTERM (128 + SIGTERM)."""
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C raises ``KeyboardInterrupt`` (so it is handled alike)."""


def exit_code(err: BaseException) -> int:
    """143 for :class:`Terminated`, 130 for any other ``KeyboardInterrupt``."""
    return EXIT_TERMINATED if isinstance(err, Terminated) else EXIT_INTERRUPTED


def stopped(err: BaseException) -> str:
    """``interrupted`` (Ctrl-C) or ``terminated (SIGTERM)``: the start of the one line."""
    return "terminated (SIGTERM)" if isinstance(err, Terminated) else "interrupted"


def _ignored(signum: int, frame: FrameType | None) -> None:
    """A signal after the first: nothing to do (a Python no-op rather than ``SIG_IGN``,
    which would make Python warn about a signal already pending when it was set)."""


def _ignore_both() -> None:
    for sig in _SIGNALS:
        signal.signal(sig, _ignored)


def _stop(signum: int, frame: FrameType | None) -> None:
    _ignore_both()  # the cleanup that follows runs to its end
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


@contextmanager
def handled(*, command_line: bool) -> Iterator[None]:
    """Inside the block, Ctrl-C raises ``KeyboardInterrupt`` and SIGTERM :class:`Terminated`,
    the first one only (both are ignored after it).

    A signal the process was started ignoring (``SIG_IGN``, as a shell does for SIGINT
    of a background job) stays ignored.

    Args:
        command_line: the process ends when the block does (``python -m diffusion_lib``):
            both signals stay ignored after it, through Python's shutdown. Otherwise (a
            program or a test calling :func:`diffusion_lib.cli.main`) the handlers that
            were there before come back.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only; leave them alone
        return
    previous = {sig: signal.getsignal(sig) for sig in _SIGNALS}
    for sig, handler in previous.items():
        if handler is not signal.SIG_IGN:  # one ignored from the start stays so (`cmd &`)
            signal.signal(sig, _stop)
    try:
        yield
    finally:
        if command_line:  # SIG_IGN, which Python's shutdown keeps (it resets its own handlers)
            for sig in _SIGNALS:
                signal.signal(sig, signal.SIG_IGN)
        else:
            for sig, handler in previous.items():
                signal.signal(sig, signal.SIG_DFL if handler is None else handler)


__all__ = ["EXIT_INTERRUPTED", "EXIT_TERMINATED", "Terminated", "exit_code", "handled", "stopped"]
