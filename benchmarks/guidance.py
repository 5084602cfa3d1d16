"""Classifier-free guidance sweep: accuracy, FD and diversity against the scale w.

    python benchmarks/guidance.py --publish     # the committed table (n = 500 per w, 3 seeds)

Writes runs/tables/guidance.{json,md} (``--out DIR`` elsewhere); with ``--publish``, the
committed diffusion_lib/results/guidance.{json,md} (package data), which notebook 05 reads
before it re-runs a small slice live. DDIM, 50 steps, η = 0, x̂0 clipped, batched CFG; every
measured column is the mean over the seeds ± 2 standard errors.
"""

from __future__ import annotations

import sys
from typing import Any

import torch

from diffusion_lib.bench.sweeps import guidance_sweep
from diffusion_lib.bench.tables import markdown_table, publish_table, table_parser
from diffusion_lib.metrics import load_classifier, wilson_interval
from diffusion_lib.pretrained import load_pretrained

SCALES = (0.0, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0)
SAMPLER = dict(sampler="ddim", steps=50)
COLUMNS = [
    ("w", "w", "g"),
    ("accuracy_ci", "accuracy (Wilson interval)", "s"),
    ("fd_ci", "FD ± 2 SE", "s"),
    ("fd_floor", "floor", ".1f"),
    ("diversity_ci", "diversity ± 2 SE", "s"),
    ("diversity_real", "real diversity", ".2f"),
    ("saturated_ci", "pixels at ±1 ± 2 SE", "s"),
    ("seconds", "wall s", ".1f"),
]
FORMATS = {"fd": ".1f", "diversity": ".2f", "saturated": ".1%"}


def with_intervals(rows: list[dict[str, Any]]) -> None:
    """Add the ``<column>_ci`` strings: "mean ± 2 SE"; accuracy: the pooled Wilson interval."""
    for r in rows:
        for key, spec in FORMATS.items():
            half = 2 * r[f"{key}_se"]  # two significant digits, so a small one is not "0.00"
            shown = f"{100 * half:.2g}%" if spec.endswith("%") else f"{half:.2g}"
            r[f"{key}_ci"] = f"{format(r[key], spec)} ± {shown}"
        total = r["n"] * len(r["seeds"])
        correct = round(sum(r["accuracy_seeds"]) * r["n"])
        lo, hi = wilson_interval(correct, total)
        r["accuracy_interval"] = [lo, hi]
        r["accuracy_ci"] = f"{correct / total:.1%} ({lo:.1%}–{hi:.1%})"


def render(payload: dict[str, Any]) -> str:
    """The Markdown table of a guidance.json payload."""
    return (
        "# Classifier-free guidance sweep\n\n"
        f"Command: `{payload['command']}`\n\n{payload['env']}. n = {payload['n']} digits per w "
        f"(classes 0…9), DDIM 50 steps, η = 0, x̂0 clipped, seeds {payload['seeds']}; each "
        "measured column is the mean over the seeds ± 2 standard errors (accuracy: the Wilson "
        "interval of all seeds' digits together). The floor is real-vs-real FD at the same n "
        "and class balance: small-n FD rewards low variance, so a value near or below it is "
        'not "better than real".\n\n' + markdown_table(payload["rows"], COLUMNS)
    )


def main(argv: list[str] | None = None) -> int:
    parser = table_parser(__doc__, n=500)
    args = parser.parse_args(argv)
    seeds = args.seeds
    torch.set_num_threads(args.threads)
    model, schedule = load_pretrained("digits")
    rows, _ = guidance_sweep(
        model, schedule, SCALES, n=args.n, seed=seeds, classifier=load_classifier(), **SAMPLER
    )
    with_intervals(rows)
    publish_table(
        "guidance", "benchmarks/guidance.py", argv, args, render, sampler=SAMPLER, rows=rows
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
