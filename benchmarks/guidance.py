"""Classifier-free guidance sweep: accuracy, FD and diversity against the scale w.

    python benchmarks/guidance.py               # the committed table (n = 500 per w)

Writes diffusion_lib/results/guidance.{json,md} (package data); notebook 05 reads the JSON
and re-runs a small slice live. DDIM, 50 steps, η = 0, x̂0 clipped, seed 0, batched CFG.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys

import torch

from diffusion_lib.experiments import guidance_sweep, markdown_table, write_results
from diffusion_lib.metrics import load_classifier
from diffusion_lib.pretrained import git_commit, load_pretrained

SCALES = (0.0, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0)
SAMPLER = dict(sampler="ddim", steps=50)
COLUMNS = [
    ("w", "w", "g"),
    ("accuracy", "accuracy", ".1%"),
    ("fd", "FD", ".1f"),
    ("fd_floor", "floor", ".1f"),
    ("diversity", "diversity", ".2f"),
    ("diversity_real", "real diversity", ".2f"),
    ("saturated", "pixels at ±1", ".1%"),
    ("seconds", "wall s", ".1f"),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, schedule = load_pretrained("digits")
    rows, _ = guidance_sweep(
        model, schedule, SCALES, n=args.n, classifier=load_classifier(), **SAMPLER
    )
    command = "python benchmarks/guidance.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    env = (
        f"torch {torch.__version__}, {platform.machine()}, {args.threads} threads, "
        f"git {git_commit()[:12]}"
    )
    md = (
        "# Classifier-free guidance sweep\n\n"
        f"Command: `{command.strip()}`\n\n{env}. n = {args.n} digits per w (classes 0…9), "
        "DDIM 50 steps, η = 0, x̂0 clipped, seed 0.\n\n" + markdown_table(rows, COLUMNS)
    )
    write_results(
        "guidance",
        {"command": command.strip(), "env": env, "n": args.n, "sampler": SAMPLER, "rows": rows},
        md,
    )
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
