"""Fewer steps: the chapter's naive strided sampler vs respaced DDPM (σ² = β̃ and β) vs DDIM.

    python benchmarks/fewer_steps.py --publish                # digits: the committed table
    python benchmarks/fewer_steps.py --model digits_cosine --publish  # the cosine model's
    python benchmarks/fewer_steps.py --n 50 --seeds 0,1       # a quick look (runs/tables/)
    python benchmarks/fewer_steps.py --rederive --publish     # intervals again, no sampling

Writes runs/tables/fewer_steps.{json,md} (``--model digits_cosine``:
fewer_steps_cosine.{json,md}; ``--out DIR`` elsewhere); with ``--publish``, the committed
diffusion_lib/results/ ones (package data), which notebook 04 reads. Every row samples
the model with classes 0…9 in turn, x̂0 clipped, no guidance, on each of the seeds.

Each row carries two measurements:

- the trained model: FD in the shipped classifier's features (mean ± t·SE over the seeds,
  a 95 % Student-t interval with k − 1 df) and its difference from DDPM-1000 taken seed by
  seed (same seeds, same real reference: a paired t-test, k − 1 df);
- the exact oracle: the same sampler run on "Gaussian digits" (each pixel N(μ, s²) with the
  training set's per-pixel mean and sd, the exact ε̂) has a closed-form output
  (diffusion_lib.exact.moments.exact_moments); the column is its W₂ distance to the data
  Gaussian, √(Σ_pixels (m − μ)² + (sd − s)²), with no Monte Carlo noise (clipping not
  modelled).
"""

from __future__ import annotations

import functools
import sys
from typing import Any

import numpy as np
import torch

from diffusion_lib.bench.reuse import CommittedSeeds
from diffusion_lib.bench.sweeps import (
    SamplerSetting,
    paired_difference,
    sampler_grid,
    seed_estimate,
)
from diffusion_lib.bench.tables import (
    interval_note,
    markdown_table,
    publish_table,
    read_results,
    rederive_table,
    table_parser,
)
from diffusion_lib.data import load_digits_split
from diffusion_lib.exact.moments import exact_moments
from diffusion_lib.exact.outputs import gaussian_w2
from diffusion_lib.metrics import load_classifier
from diffusion_lib.pretrained import load_pretrained

STEPS = (10, 25, 50, 100, 250)


def settings(model: str) -> list[SamplerSetting]:
    """The grid: every sampler at every step count on digits, leading and (DDPM) trailing
    spacing; the spacings on cosine. (At 1000 steps every spacing visits every t.)"""
    grid = [SamplerSetting("ddpm", 1000, spacing="leading")]
    if model == "digits_cosine":
        for steps in (10, 25, 50):
            for spacing in ("leading", "linspace", "trailing"):
                grid += [
                    SamplerSetting("ddim", steps, spacing=spacing),
                    SamplerSetting("ddpm", steps, spacing=spacing),
                ]
        return grid
    grid.append(SamplerSetting("ddim", 1000, spacing="leading"))
    for steps in STEPS:
        grid += [
            SamplerSetting("naive_strided", steps),  # its own stride (leading-like)
            SamplerSetting("ddpm", steps, spacing="leading"),
            SamplerSetting("ddpm", steps, spacing="leading", variance="beta"),
            SamplerSetting("ddim", steps, spacing="leading", eta=0.0),
            SamplerSetting("ddim", steps, spacing="leading", eta=0.5),
            SamplerSetting("ddim", steps, spacing="leading", eta=1.0),
            # trailing: the last step jumps from t = T/steps − 1 straight to x̂0, where
            # leading's t = T/steps → 0 step adds σ z that its last, near-identity step
            # (t = 0) never removes
            SamplerSetting("ddpm", steps, spacing="trailing"),
            SamplerSetting("ddpm", steps, spacing="trailing", variance="beta"),
        ]
    for steps in (10, 25, 50):
        for spacing in ("linspace", "trailing"):
            grid.append(SamplerSetting("ddim", steps, spacing=spacing))
    return grid


@functools.cache
def _digit_pixel_stats() -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel mean and sd (64,) of the training digits: the "Gaussian digits"."""
    train = load_digits_split().train_images.double().flatten(1)  # (1437, 64)
    return train.mean(0).numpy(), train.std(0).clamp(min=1e-3).numpy()


def gaussian_digits_w2(schedule: Any, setting: SamplerSetting) -> float:
    """Exact W₂ between the sampler's output on Gaussian digits and the data Gaussian."""
    mu, sd = _digit_pixel_stats()
    m, s = exact_moments(
        schedule,
        setting.sampler,
        setting.steps,
        spacing=setting.spacing,
        variance=setting.variance,
        eta=setting.eta,
        mean=mu,
        std=sd,
    )
    return gaussian_w2(m, s, mu, sd)


COLUMNS = [
    ("name", "sampler", "s"),
    ("steps", "steps", "d"),
    ("spacing", "spacing", "s"),
    ("seconds", "wall s", ".1f"),
    ("speedup", "speed-up (calls)", ".0f"),
    ("fd_ci", "FD ± 95 % CI (t, k−1 df)", "s"),
    ("delta_ci", "FD − DDPM-1000 ± 95 % CI (paired t)", "s"),
    ("differs", "differs?", "s"),
    ("fd_floor", "floor", ".1f"),
    ("accuracy", "accuracy", ".0%"),
    ("oracle_w2", "oracle W₂ (exact)", ".3f"),
]


def with_intervals(rows: list[dict[str, Any]]) -> None:
    """Add the columns derived from the per-seed values: speed-up, FD's 95 % t-interval and
    the paired difference from DDPM-1000 with its verdict (``--rederive`` re-runs this)."""
    ref = next(r for r in rows if r["sampler"] == "ddpm" and r["steps"] == 1000)
    for r in rows:
        if r["sampler"] == "naive_strided":
            r["spacing"] = "own stride"  # the chapter's t = T − 1 − k·(T // steps), no spacing
        # model calls, not wall time: the seeds' wall times come from runs on differently
        # loaded machines (reused seeds and new ones), the calls are exact
        r["speedup"] = ref["steps"] / r["steps"]
        half = seed_estimate(r).half_width() if "fd_seeds" in r else float("nan")
        r["fd_ci"] = f"{r['fd']:.1f} ± {half:.1f}"
        if r is not ref and "fd_seeds" in r:
            d = paired_difference(r, ref)  # k − 1 df: the paired t-test
            r["delta_fd"], r["delta_fd_se"], r["delta_fd_df"] = d.value, d.se, int(d.df)
            r["delta_ci"] = f"{d.value:+.1f} ± {d.half_width():.1f}"
            r["differs"] = "yes" if abs(d.value) > d.half_width() else "no"


def annotate(rows: list[dict[str, Any]], schedule: Any) -> None:
    """Add the derived columns (:func:`with_intervals`) and the exact oracle column."""
    with_intervals(rows)
    for r in rows:
        setting = SamplerSetting(r["sampler"], r["steps"], r["spacing"], r["eta"], r["variance"])
        r["oracle_w2"] = gaussian_digits_w2(schedule, setting)


def render(payload: dict[str, Any]) -> str:
    """The Markdown table of a fewer_steps*.json payload."""
    tests = sum("differs" in r for r in payload["rows"])
    return (
        f"# Fewer steps: wall time and quality (`{payload['model']}` model)\n\n"
        f"Command: `{payload['command']}`\n\n{payload['env']}. n = {payload['n']} digits per "
        f"row and seed (classes 0…9), seeds {payload['seeds']}, x̂0 clipped, no guidance.\n\n"
        f"{interval_note(len(payload['seeds']), tests)}\n\n"
        "- **FD ± 95 % CI**: mean over the seeds of the FD in the shipped classifier's "
        "features against held-out digits, ± t·SE over the seeds.\n"
        "- **FD − DDPM-1000**: the difference from the DDPM-1000 row taken seed by seed, ± t·SE "
        "of the k differences (a paired t-test, k − 1 df); **differs?** says whether 0 is "
        "outside that interval. A row that does not differ is a tie at this n. The pairs "
        "share x_T only (DDPM-1000 draws fresh noise at every step; the real reference is "
        "the same for every seed), so pairing narrows little here and costs degrees of "
        "freedom (notebook 08).\n"
        "- **spacing**: which timesteps a respaced sampler visits (leading: t = k·T/steps, "
        "ending at t = 0; trailing: ending at t = T/steps − 1, the library's default). With "
        "leading spacing DDPM's step t = T/steps → 0 adds noise σ z that its last, "
        "near-identity step never removes: σ² = β at 10 leading steps is the worst row, at "
        "10 trailing steps it ties with DDPM-1000.\n"
        "- **floor**: real-vs-real FD at the same n and class balance (held-out halves), "
        'itself a small-n estimate. A row at or below it is not "better than real data"; '
        "read it with the diversity column.\n"
        "- **wall s**: mean wall time per seed, from runs on a shared, differently loaded "
        "machine: rough. **speed-up (calls)**: 1000 ÷ model calls, exact.\n"
        "- **oracle W₂ (exact)**: the same sampler on Gaussian digits (per-pixel N(μ, s²) of "
        "the training set, exact ε̂), W₂ of its exact output to the data; 0 is perfect; no "
        "sampling noise, clipping not modelled.\n\n" + markdown_table(payload["rows"], COLUMNS)
    )


def main(argv: list[str] | None = None) -> int:
    parser = table_parser(__doc__, n=200)
    parser.add_argument("--model", default="digits", choices=["digits", "digits_cosine"])
    args = parser.parse_args(argv)
    name = "fewer_steps" if args.model == "digits" else "fewer_steps_cosine"
    if args.rederive:
        rederive_table(name, args, render, with_intervals)
        return 0
    seeds = args.seeds
    torch.set_num_threads(args.threads)
    model, schedule = load_pretrained(args.model)
    rows = sampler_grid(
        model,
        schedule,
        settings(args.model),
        n=args.n,
        seed=seeds,
        classifier=load_classifier(),
        cache=args.cache,
        reuse=CommittedSeeds.from_payload(read_results(name), args.n) if args.reuse else None,
    )
    annotate(rows, schedule)
    publish_table(
        name, "benchmarks/fewer_steps.py", argv, args, render, model=args.model, rows=rows
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
