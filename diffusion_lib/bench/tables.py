"""The committed tables: where they live, how a benchmark writes them, how a notebook reads them.

- :data:`RESULTS_DIR`: ``diffusion_lib/results/``, package data;
- :func:`table_parser`: the arguments every script of ``benchmarks/`` takes;
- :func:`provenance`, :func:`publish_table`, :func:`write_results`: a table's header,
  JSON and Markdown, written atomically (a kill or a full disk leaves the old file or the
  new one, never half of one) into ``runs/tables/`` (or ``--out DIR``), and into the
  committed ``diffusion_lib/results/`` only with ``--publish``;
- :func:`rederive_table`: a committed table's derived columns (intervals, verdicts) and
  Markdown rebuilt from the per-seed values it stores, measuring nothing (``--rederive``);
- :func:`read_results`: a committed table, for the notebooks;
- :func:`markdown_table`: rows as Markdown; :func:`interval_note`: what a table's
  intervals over seeds are (Student-t, k − 1 df) and how many false flags to expect.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..files import check_writable_dir, os_error_line, write_atomic
from ..metrics.estimates import over_seeds, t_cdf, t_quantile
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
DEFAULT_TABLES = "runs/tables"
"""Where a benchmark's table goes unless ``--publish`` or ``--out`` says otherwise."""


def _cache_arg(text: str) -> TableCache:
    try:
        return TableCache(None if text == "none" else text)
    except ValueError as err:  # argparse would hide the message of a ValueError
        raise argparse.ArgumentTypeError(str(err)) from None


def _out_arg(text: str) -> Path:
    try:
        return check_writable_dir(text, "--out directory")
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


class _TableParser(argparse.ArgumentParser):
    """Resolves ``args.out``: ``--out``, else the package's results with ``--publish``, else
    :data:`DEFAULT_TABLES`; checked writable before anything is measured."""

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[no-untyped-def]
        parsed, extra = super().parse_known_args(args, namespace)
        if getattr(parsed, "publish", False) and getattr(parsed, "out", None) is not None:
            self.error("give --publish (write the committed tables) or --out DIR, not both")
        if getattr(parsed, "out", None) is None:
            target = RESULTS_DIR if getattr(parsed, "publish", False) else Path(DEFAULT_TABLES)
            try:
                parsed.out = check_writable_dir(target, "table directory")
            except ValueError as err:
                self.error(str(err))
        return parsed, extra


def table_parser(doc: str, n: int, seeds: str = "0,1,2") -> argparse.ArgumentParser:
    """The arguments every table in ``benchmarks/`` takes: ``--n``, ``--seeds``, ``--threads``,
    ``--cache``, ``--out`` / ``--publish``, ``--reuse``, ``--rederive``.

    ``args.seeds`` comes back as a list of at least two ints; ``args.cache`` as a
    :class:`~diffusion_lib.bench.cache.TableCache` (``--cache none``: no cache), its path
    checked; ``args.out`` as the directory the table goes to, checked writable:
    ``runs/tables/`` by default, ``--out DIR``, or the committed
    ``diffusion_lib/results/`` with ``--publish``. ``args.rederive``: measure nothing,
    rebuild the committed table's derived columns (:func:`rederive_table`).
    """
    parser = _TableParser(description=doc.splitlines()[0])
    parser.add_argument("--n", type=int, default=n)
    parser.add_argument(
        "--seeds", type=_seeds_arg, default=seeds, help="comma-separated, at least 2"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--cache",
        type=_cache_arg,
        default=DEFAULT_CACHE,
        help=f"per-seed measurements kept here, so a stopped run resumes (default "
        f"{DEFAULT_CACHE}; 'none' to measure everything again)",
    )
    parser.add_argument(
        "--publish",
        action="store_true",
        help="write the table into the package's committed results (diffusion_lib/results/), "
        "replacing the committed one; without it the table goes to "
        f"{DEFAULT_TABLES}/ (or --out)",
    )
    parser.add_argument(
        "--out",
        type=_out_arg,
        default=None,
        help=f"directory for the table's .json and .md (default {DEFAULT_TABLES}; "
        "the committed results only with --publish)",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="take per-seed values from the committed table for the rows it holds (same "
        "setting, n and guidance): each such row's first stored seed is measured again "
        "and the rest are reused only if it agrees (diffusion_lib/bench/reuse.py)",
    )
    parser.add_argument(
        "--rederive",
        action="store_true",
        help="measure nothing: rebuild the committed table's intervals, verdicts and Markdown "
        "from the per-seed values it stores (its command, environment and measured values "
        "kept); written like a measured table (--publish to replace the committed one)",
    )
    return parser


def _measuring_args(argv: Sequence[str]) -> list[str]:
    """``argv`` without ``--publish`` and ``--out DIR``: where a table is written changes
    none of its numbers, so a table reads the same wherever it goes."""
    kept, skip = [], False
    for word in argv:
        if skip:
            skip = False
        elif word == "--publish" or word.startswith("--out="):
            continue
        elif word == "--out":
            skip = True
        else:
            kept.append(word)
    return kept


def provenance(script: str, argv: Sequence[str] | None, threads: int) -> tuple[str, str]:
    """(the command that made a table, its environment line) for the table's header.

    The command leaves out ``--publish`` and ``--out``: they say where the table is
    written, not what it measures."""
    words = _measuring_args(sys.argv[1:] if argv is None else argv)
    command = f"python {script} " + shlex.join(words)
    env = (
        f"torch {torch.__version__}, {platform.machine()}, {threads} threads, "
        f"git {git_commit()[:12]}"
    )
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
    ``<args.out>/<name>.{json,md}`` (:func:`write_results`): ``runs/tables/`` unless the
    script was given ``--out DIR`` or ``--publish`` (the committed
    ``diffusion_lib/results/``); a line on stderr says where. A write that fails (a full
    disk) is one line on stderr and exit code 1, and leaves the old files whole.
    """
    command, env = provenance(script, argv, args.threads)
    payload = {"command": command, "env": env, "n": args.n, "seeds": args.seeds, **fields}
    _emit(name, payload, render(payload), args)
    return payload


def rederive_table(
    name: str,
    args: argparse.Namespace,
    render: Callable[[dict[str, Any]], str],
    derive: Callable[[list[dict[str, Any]]], None],
) -> dict[str, Any]:
    """Rebuild the committed table ``name``'s derived columns and Markdown; return its payload.

    Nothing is measured: the committed ``diffusion_lib/results/<name>.json`` is read, each
    row that stores per-seed values (``c_seeds`` beside ``c`` and ``c_se``) is checked
    against them (mean and SE recomputed; a mismatch is an error, so a hand-edited table is
    not silently re-dressed) and gets ``c_df`` = k − 1, then ``derive(rows)`` (the script's
    interval and verdict columns) and ``render(payload)`` run again. The command, the
    environment and every measured value are kept. Written like a measured table
    (``runs/tables/``, ``--out DIR``, or the committed one with ``--publish``).
    """
    payload = read_results(name)
    if payload is None:
        print(f"error: no committed table {RESULTS_DIR / (name + '.json')}", file=sys.stderr)
        raise SystemExit(1)
    for row in payload["rows"]:
        _check_seed_columns(name, row)
    derive(payload["rows"])
    _emit(name, payload, render(payload), args)
    return payload


def _check_seed_columns(name: str, row: dict[str, Any]) -> None:
    """Add ``c_df`` = k − 1 to every column ``c`` stored per seed, after checking its mean
    and SE against the seeds' values."""
    for key in [k[: -len("_seeds")] for k in row if k.endswith("_seeds") and k != "seeds"]:
        values, se = row[f"{key}_seeds"], row.get(f"{key}_se")
        if se is None or row.get(key) is None or len(values) < 2:
            continue
        estimate = over_seeds(values)
        if not (
            math.isclose(estimate.value, row[key], rel_tol=1e-9, abs_tol=1e-12)
            and math.isclose(estimate.se, se, rel_tol=1e-6, abs_tol=1e-12)
        ):
            raise ValueError(
                f"{name}: row {row.get('name', row.get('model', '?'))!r} column {key!r} "
                f"stores {row[key]!r} ± {se!r} but its seeds give {estimate.value!r} ± "
                f"{estimate.se!r}: re-measure it instead"
            )
        row[f"{key}_df"] = len(values) - 1


def _emit(name: str, payload: dict[str, Any], markdown: str, args: argparse.Namespace) -> None:
    """Print a table's Markdown and write it with its JSON (:func:`write_results`)."""
    print(markdown)
    out = getattr(args, "out", None)
    out = RESULTS_DIR if out is None and getattr(args, "publish", False) else out
    try:
        path = write_results(name, payload, markdown, Path(DEFAULT_TABLES) if out is None else out)
    except OSError as err:
        print(
            f"error: writing the table failed: {os_error_line(err)}; the files there are "
            "as they were",
            file=sys.stderr,
        )
        raise SystemExit(1) from None
    print(f"wrote {path} and {path.with_suffix('.md')}", file=sys.stderr)


def write_results(
    name: str, payload: dict[str, Any], markdown: str, out_dir: Path | None = None
) -> Path:
    """Write ``<out_dir>/<name>.json`` and ``.md`` atomically; return the JSON path.

    ``out_dir`` defaults to ``diffusion_lib/results`` (the committed tables). Each file
    is whole or as it was (:func:`~diffusion_lib.files.write_atomic`); the JSON is
    written first, and the Markdown is a pure function of it.
    """
    out_dir = RESULTS_DIR if out_dir is None else Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    write_atomic(path, (json.dumps(payload, indent=1) + "\n").encode())
    write_atomic(out_dir / f"{name}.md", markdown.encode())
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


def interval_note(k: int, comparisons: int = 0, flag: str = "differs") -> str:
    """What a table's intervals over ``k`` seeds are, as one paragraph of its Markdown.

    Mean ± t·SE, Student-t with k − 1 degrees of freedom at 95 %; with ``comparisons``
    (how many two-sided 5 % tests the table draws), also how many false ``flag`` verdicts
    to expect if none of the rows truly differed: 0.05 × comparisons.
    """
    t = t_quantile(0.975, k - 1)
    text = (
        f"Every ± over the k = {k} seeds is a 95 % Student-t interval, mean ± t·SE with "
        f"k − 1 = {k - 1} degrees of freedom (t = {t:.2f}; ± 2 SE would cover only "
        f"{100 * (2 * t_cdf(2.0, k - 1) - 1):.0f} %)."
    )
    if comparisons:
        text += (
            f" Each *{flag}* is a two-sided 5 % test: among this table's {comparisons} "
            f"comparisons expect about {0.05 * comparisons:.1f} false *{flag}* flags by chance "
            "alone if none truly differed (1 in 20)."
        )
    return text
