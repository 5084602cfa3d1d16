"""Ctrl-C or SIGTERM while a command line starts up: one line and exit code 130 or 143.

``python -m diffusion_lib`` (and the ``diffusion-lib`` script) spends seconds importing
torch before any of its code runs. Imported first by the package, this module makes
SIGINT during that time print one line and exit 130, and SIGTERM (a batch scheduler's
stop) one line and exit 143, instead of a traceback or a silent death.
:func:`diffusion_lib.cli.main` replaces both handlers once the imports are done
(:mod:`._signals`: the commands then handle ``KeyboardInterrupt``); :func:`restore`
hands them back to Python. Nothing changes when the package is imported by a program,
a notebook or a test.
"""

from __future__ import annotations

import os
import signal
import sys


def _is_command_line() -> bool:
    argv0 = sys.argv[0] if sys.argv else ""
    # while `python -m pkg` imports pkg, sys.argv[0] is "-m"
    return argv0 == "-m" or os.path.basename(argv0) == "diffusion-lib"


COMMAND_LINE = _is_command_line()
"""Whether this process is the command line (``python -m diffusion_lib``, ``diffusion-lib``),
as seen when the package was imported (``sys.argv[0]`` changes after that)."""


def _interrupted(signum: int, frame: object) -> None:
    if signum == signal.SIGTERM:
        os.write(2, b"terminated (SIGTERM) while starting up; nothing was written\n")
        os._exit(143)
    os.write(2, b"\ninterrupted while starting up; nothing was written\n")
    os._exit(130)


_DEFAULTS = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}


def install() -> None:
    """Quiet SIGINT and SIGTERM during start-up, for the command line only (each only if
    it still has Python's default handler)."""
    if not COMMAND_LINE:
        return
    for sig, default in _DEFAULTS.items():
        if signal.getsignal(sig) is default:
            try:
                signal.signal(sig, _interrupted)
            except ValueError:  # not the main thread
                return


def restore() -> None:
    """Give SIGINT (``KeyboardInterrupt``) and SIGTERM back to Python if :func:`install`
    took them."""
    for sig, default in _DEFAULTS.items():
        if signal.getsignal(sig) is _interrupted:
            signal.signal(sig, default)


install()
