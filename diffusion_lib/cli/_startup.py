"""Ctrl-C while a command line starts up: one line and exit code 130, not a traceback.

``python -m diffusion_lib`` (and the ``diffusion-lib`` script) spends seconds importing
torch before any of its code runs. Imported first by the package, this module makes
SIGINT during that time print one line and exit 130; :func:`restore` (called by
:func:`diffusion_lib.cli.main` once the imports are done) hands Ctrl-C back to
Python, whose ``KeyboardInterrupt`` the commands then handle. Nothing changes when the
package is imported by a program, a notebook or a test.
"""

from __future__ import annotations

import os
import signal
import sys


def _is_command_line() -> bool:
    argv0 = sys.argv[0] if sys.argv else ""
    # while `python -m pkg` imports pkg, sys.argv[0] is "-m"
    return argv0 == "-m" or os.path.basename(argv0) == "diffusion-lib"


def _interrupted(signum: int, frame: object) -> None:
    os.write(2, b"\ninterrupted while starting up; nothing was written\n")
    os._exit(130)


def install() -> None:
    """Quiet SIGINT during start-up, for the command line only (and only if SIGINT is live)."""
    if _is_command_line() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        try:
            signal.signal(signal.SIGINT, _interrupted)
        except ValueError:  # not the main thread
            pass


def restore() -> None:
    """Give SIGINT back to Python (``KeyboardInterrupt``) if :func:`install` took it."""
    if signal.getsignal(signal.SIGINT) is _interrupted:
        signal.signal(signal.SIGINT, signal.default_int_handler)


install()
