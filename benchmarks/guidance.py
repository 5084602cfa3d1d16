"""Classifier-free guidance sweep: accuracy, FD and diversity against the scale w.

    python benchmarks/guidance.py --publish     # the committed table (n = 500 per w, 3 seeds)
    python benchmarks/guidance.py --rederive --publish   # intervals again, no sampling

Writes runs/tables/guidance.{json,md} (``--out DIR`` elsewhere); with ``--publish``, the
committed diffusion_lib/results/guidance.{json,md} (package data), which notebook 05 reads
before it re-runs a small slice live. A sampler × w table: every w with the recommended
sampler (DDPM σ² = β, 50 trailing steps: a discretised reverse SDE) and with DDIM η = 0, 50
trailing steps (the probability-flow ODE), x̂0 clipped, batched CFG. Under guidance the two
converge to different distributions, so the cost of w depends on the sampler. Every
measured column is the mean over the seeds ± t·SE (a 95 % Student-t interval, k − 1 df).
"""

from __future__ import annotations

import sys
from typing import Any

import torch

from diffusion_lib.bench.reuse import CommittedSeeds
from diffusion_lib.bench.sweeps import guidance_sweep, seed_estimate
from diffusion_lib.bench.tables import (
    interval_note,
    markdown_table,
    publish_table,
    read_results,
    rederive_table,
    table_parser,
)
from diffusion_lib.metrics import load_classifier, wilson_interval
from diffusion_lib.pretrained import load_pretrained
from diffusion_lib.sampling import RECOMMENDED, SamplerSpec

SCALES = (0.0, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0)
# label -> sample()'s keyword arguments; the table's rows are sampler × w
SAMPLERS = {
    "DDPM σ²=β, 50 trailing (recommended)": RECOMMENDED.kwargs(),
    "DDIM η=0, 50 trailing": SamplerSpec("ddim", 50, spacing="trailing").kwargs(),
}
# the sweep before it was a sampler × w table (one sampler, no labels on the rows)
_FIRST_SWEEP = ("DDIM η=0, 50 trailing", {"sampler": "ddim", "steps": 50})
COLUMNS = [
    ("sampler_label", "sampler", "s"),
    ("w", "w", "g"),
    ("accuracy_ci", "accuracy (Wilson interval)", "s"),
    ("fd_ci", "FD ± 95 % CI (t, k−1 df)", "s"),
    ("fd_floor", "floor", ".1f"),
    ("diversity_ci", "diversity ± 95 % CI (t)", "s"),
    ("diversity_real", "real diversity", ".2f"),
    ("saturated_ci", "pixels at ±1 ± 95 % CI (t)", "s"),
    ("seconds", "wall s", ".1f"),
]
FORMATS = {"fd": ".1f", "diversity": ".2f", "saturated": ".1%"}


def with_intervals(rows: list[dict[str, Any]]) -> None:
    """Add the ``<column>_ci`` strings: "mean ± t·SE" (95 %, Student-t with k − 1 df);
    accuracy: the pooled Wilson interval (``--rederive`` re-runs this)."""
    for r in rows:
        for key, spec in FORMATS.items():
            half = seed_estimate(r, key).half_width()
            # two significant digits, so a small one is not "0.00"
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
        f"(classes 0…9), each w with each sampler, x̂0 clipped, seeds {payload['seeds']}; each "
        "measured column is the mean over the seeds ± t·SE (accuracy: the Wilson "
        "interval of all seeds' digits together). The floor is real-vs-real FD at the same n "
        "and class balance, itself a small-n estimate: a value near or below it is not "
        '"better than real"; read it with the diversity column. DDPM (a reverse SDE) and '
        "DDIM η = 0 (the probability-flow ODE) agree without guidance; with it they "
        "converge to different distributions (the guided ε̃ is not the score of any "
        "noised distribution), so read w with its sampler.\n\n"
        + interval_note(len(payload["seeds"]))
        + "\n\n"
        + markdown_table(payload["rows"], COLUMNS)
    )


def _committed(n: int) -> list[dict[str, Any]]:
    """The committed sweep's rows, each with its ``sampler_label`` (the first sweep's rows,
    one sampler, get it from the payload)."""
    payload = read_results("guidance")
    if payload is None or payload["n"] != n:
        return []
    label, kwargs = _FIRST_SWEEP
    if payload.get("sampler") == kwargs:
        return [dict(r, sampler_label=label) for r in payload["rows"]]
    return payload["rows"]


def main(argv: list[str] | None = None) -> int:
    parser = table_parser(__doc__, n=500)
    args = parser.parse_args(argv)
    if args.rederive:
        rederive_table("guidance", args, render, with_intervals)
        return 0
    seeds = args.seeds
    torch.set_num_threads(args.threads)
    model, schedule = load_pretrained("digits")
    committed = _committed(args.n) if args.reuse else []
    rows = []
    for label, kwargs in SAMPLERS.items():
        stored = [r for r in committed if r.get("sampler_label") == label]
        sweep, _ = guidance_sweep(
            model,
            schedule,
            SCALES,
            n=args.n,
            seed=seeds,
            classifier=load_classifier(),
            reuse=CommittedSeeds(stored, args.n) if stored else None,
            **kwargs,
        )
        rows += [dict(r, sampler_label=label, sampler=kwargs) for r in sweep]
    with_intervals(rows)
    publish_table("guidance", "benchmarks/guidance.py", argv, args, render, rows=rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
