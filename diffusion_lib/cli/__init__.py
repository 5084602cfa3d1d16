"""Command line: ``python -m diffusion_lib {train,generate,bench} ...``.

Each subcommand lives in its own module of this package exposing
``add_parser(subparsers)``, which registers the subcommand and sets
``func(args) -> int`` as its handler.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from collections.abc import Sequence

from . import _signals, _startup

SUBCOMMANDS = ("train", "generate", "bench")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m diffusion_lib",
        description="Train, sample and benchmark the diffusion_lib models.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parser(sub)
    return parser


_DASH_VALUE = re.compile(r"^-(?:[\d.:]|inf|infinity|nan$)", re.IGNORECASE)
"""A value that starts with '-' (``-3:``, ``-inf``, ``-0.5``): argparse would take it for a flag."""


def _join_dash_values(argv: list[str]) -> list[str]:
    """``["--indices", "-3:"]`` → ``["--indices=-3:"]``, so the value reaches its own check."""
    out: list[str] = []
    k = 0
    while k < len(argv):
        word = argv[k]
        takes_value = word.startswith("-") and "=" not in word and word != "--"
        if takes_value and k + 1 < len(argv) and _DASH_VALUE.match(argv[k + 1]):
            out.append(f"{word}={argv[k + 1]}" if word.startswith("--") else word + argv[k + 1])
            k += 2
        else:
            out.append(word)
            k += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit code: 0 done, 2 bad input, 1 failed, 130 Ctrl-C, 143 SIGTERM.

    Whatever happens, the user sees one line, never a traceback: Ctrl-C at any
    moment gives exit code 130 and SIGTERM (a batch scheduler's stop) 143, each
    handled like Ctrl-C (:mod:`._signals`; a second signal during the cleanup is
    ignored); an ``OSError`` a command did not expect (a full disk, a file that
    vanished) gives its reason and exit code 1, and so does running out of memory.
    """
    from ..device import is_out_of_memory, out_of_memory_line
    from ..files import os_error_line

    try:
        parser = build_parser()
        with _signals.handled(command_line=_startup.COMMAND_LINE):
            typed = list(sys.argv[1:] if argv is None else argv)
            args = parser.parse_args(_join_dash_values(typed))
            args.argv = typed  # as typed, for records
            if getattr(args, "func", None) is None:
                parser.print_help()
                return 2
            return int(args.func(args) or 0)
    except KeyboardInterrupt as err:
        print(
            ("\n" if _signals.exit_code(err) == 130 else "") + _signals.stopped(err),
            file=sys.stderr,
        )
        return _signals.exit_code(err)
    except OSError as err:
        print(f"error: {os_error_line(err)}", file=sys.stderr)
        return 1
    except (MemoryError, RuntimeError) as err:  # a command that did not name its options
        if not is_out_of_memory(err):
            raise
        print(f"error: {out_of_memory_line(err, 'lower the batch size')}", file=sys.stderr)
        return 1
