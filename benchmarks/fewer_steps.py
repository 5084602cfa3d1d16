"""Fewer steps: the chapter's naive strided sampler vs respaced DDPM vs DDIM.

    python benchmarks/fewer_steps.py            # the committed table (n = 200 per row)
    python benchmarks/fewer_steps.py --n 50     # a quick look

Writes diffusion_lib/results/fewer_steps.{json,md} (package data). Notebook 04 reads the JSON
and re-runs a small slice live. Every row samples the shipped `digits` model, classes 0…9 in turn,
x̂0 clipped, seed 0, no guidance.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys

import torch

from diffusion_lib.experiments import SamplerSetting, markdown_table, sampler_grid, write_results
from diffusion_lib.metrics import load_classifier
from diffusion_lib.pretrained import git_commit, load_pretrained

STEPS = (10, 25, 50, 100, 250)


def settings() -> list[SamplerSetting]:
    grid = [SamplerSetting("ddpm", 1000), SamplerSetting("ddim", 1000)]
    for steps in STEPS:
        grid += [
            SamplerSetting("naive_strided", steps),
            SamplerSetting("ddpm", steps),
            SamplerSetting("ddim", steps, eta=0.0),
            SamplerSetting("ddim", steps, eta=0.5),
            SamplerSetting("ddim", steps, eta=1.0),
        ]
    for steps in (10, 25, 50):
        for spacing in ("linspace", "trailing"):
            grid.append(SamplerSetting("ddim", steps, spacing=spacing))
    return grid


COLUMNS = [
    ("name", "sampler", "s"),
    ("steps", "steps", "d"),
    ("spacing", "spacing", "s"),
    ("seconds", "wall s", ".1f"),
    ("speedup", "speed-up vs DDPM-1000", ".1f"),
    ("fd", "FD", ".1f"),
    ("fd_floor", "floor", ".1f"),
    ("accuracy", "accuracy", ".0%"),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, schedule = load_pretrained("digits")
    rows = sampler_grid(model, schedule, settings(), n=args.n, classifier=load_classifier())
    base = next(r["seconds"] for r in rows if r["sampler"] == "ddpm" and r["steps"] == 1000)
    for r in rows:
        r["speedup"] = base / r["seconds"]
    command = "python benchmarks/fewer_steps.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    env = (
        f"torch {torch.__version__}, {platform.machine()}, {args.threads} threads, "
        f"git {git_commit()[:12]}"
    )
    md = (
        "# Fewer steps: wall time and quality\n\n"
        f"Command: `{command.strip()}`\n\n{env}. n = {args.n} digits per row (classes 0…9), "
        "x̂0 clipped, seed 0, no guidance. FD floor = real-vs-real at the same n.\n\n"
        + markdown_table(rows, COLUMNS)
    )
    write_results(
        "fewer_steps", {"command": command.strip(), "env": env, "n": args.n, "rows": rows}, md
    )
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
