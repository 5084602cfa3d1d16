"""The committed tables: where they live, how a benchmark writes them, how a notebook reads them.

- :data:`RESULTS_DIR`: ``diffusion_lib/results/``, package data;
- :func:`table_parser`: the arguments every script of ``benchmarks/`` takes;
- :func:`provenance`, :func:`publish_table`, :func:`write_results`: a table's header,
  JSON and Markdown;
- :func:`read_results`: a committed table, for the notebooks;
- :func:`markdown_table`: rows as Markdown.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..pretrained import git_commit
from .cache import TableCache

# The committed tables ship inside the package (package data), so a notebook finds them in an
# installed wheel as in a checkout; this folder is their one copy, and the writers write here.
RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"


def _seeds_arg(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",")]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"comma-separated integers, got {text!r}") from err
    if len(seeds) < 2:
        raise argparse.ArgumentTypeError("needs at least 2 seeds (the intervals come from them)")
    return seeds


DEFAULT_CACHE = "runs/table_cache.jsonl"


def table_parser(doc: str, n: int, seeds: str = "0,1,2") -> argparse.ArgumentParser:
    """The arguments every table in ``benchmarks/`` takes: ``--n``, ``--seeds``, ``--threads``,
    ``--cache``.

    ``args.seeds`` comes back as a list of at least two ints; ``args.cache`` as a
    :class:`~diffusion_lib.bench.cache.TableCache` (``--cache none``: no cache).
    """
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--n", type=int, default=n)
    parser.add_argument("--seeds", type=_seeds_arg, default=seeds,
                        help="comma-separated, at least 2")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--cache", type=lambda text: TableCache(None if text == "none" else text),
        default=DEFAULT_CACHE,
        help=f"per-seed measurements kept here, so a stopped run resumes (default "
             f"{DEFAULT_CACHE}; 'none' to measure everything again)")
    return parser


def provenance(script: str, argv: Sequence[str] | None, threads: int) -> tuple[str, str]:
    """(the command that made a table, its environment line) for the table's header."""
    command = f"python {script} " + shlex.join(sys.argv[1:] if argv is None else argv)
    env = (f"torch {torch.__version__}, {platform.machine()}, {threads} threads, "
           f"git {git_commit()[:12]}")
    return command.strip(), env


def publish_table(
    name: str,
    script: str,
    argv: Sequence[str] | None,
    args: argparse.Namespace,
    render: Callable[[dict[str, Any]], str],
    **fields: Any,
) -> dict[str, Any]:
    """Write and print a table of ``benchmarks/``; return its payload.

    The payload is the command and environment (:func:`provenance`), ``args.n``,
    ``args.seeds`` and ``fields``; ``render(payload)`` is its Markdown. Both go to
    ``diffusion_lib/results/<name>.{json,md}`` (:func:`write_results`).
    """
    command, env = provenance(script, argv, args.threads)
    payload = {"command": command, "env": env, "n": args.n, "seeds": args.seeds, **fields}
    markdown = render(payload)
    write_results(name, payload, markdown)
    print(markdown)
    return payload


def write_results(name: str, payload: dict[str, Any], markdown: str) -> Path:
    """Write ``diffusion_lib/results/<name>.json`` and ``.md``; return the JSON path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(payload, indent=1) + "\n")
    (RESULTS_DIR / f"{name}.md").write_text(markdown)
    return path


def read_results(name: str) -> dict[str, Any] | None:
    """The committed ``diffusion_lib/results/<name>.json``, or None when it is absent."""
    path = RESULTS_DIR / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str, str]]) -> str:
    """A Markdown table; ``columns`` are (key, header, format spec)."""
    head = "| " + " | ".join(h for _, h, _ in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = [
        "| " + " | ".join(
            format(r[k], f) if r.get(k) is not None else "–" for k, _, f in columns
        ) + " |"
        for r in rows
    ]  # fmt: skip
    return "\n".join([head, rule, *body]) + "\n"
