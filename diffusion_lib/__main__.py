"""Command line: ``python -m diffusion_lib {train,generate,bench} ...``.

Each subcommand lives in its own ``cli_*.py`` module exposing
``add_parser(subparsers)``, which registers the subcommand and sets
``func(args) -> int`` as its handler.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

SUBCOMMANDS = ("cli_train", "cli_generate", "cli_bench")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m diffusion_lib",
        description="Train, sample and benchmark the diffusion_lib models.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"diffusion_lib.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"diffusion_lib.{name}":
                raise
            continue
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # as typed, for records
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
