"""``python -m diffusion_lib train``: train a shipped model from its preset.

    python -m diffusion_lib train --model digits --out diffusion_lib/weights/digits
    python -m diffusion_lib train --model moons --out diffusion_lib/weights/moons --steps 4000
    python -m diffusion_lib train --model classifier --out diffusion_lib/weights/classifier

Writes ``<out>.safetensors`` (EMA weights) and ``<out>.json`` (config, schedule,
training settings, data split, git commit, and this command line).
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
from typing import Any

import torch

MODEL_CHOICES = ("digits", "digits_cosine", "moons", "classifier")


def add_train_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``train`` subcommand to an ``argparse`` subparsers object."""
    parser = subparsers.add_parser(
        "train",
        help="train a model from a preset and write safetensors + JSON",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True, choices=MODEL_CHOICES, help="preset to train")
    parser.add_argument("--out", required=True, help="output path without extension")
    parser.add_argument("--steps", type=int, help="optimiser steps (default: the preset's)")
    parser.add_argument("--batch-size", type=int, help="batch size (default: the preset's)")
    parser.add_argument("--lr", type=float, help="learning rate (default: the preset's)")
    parser.add_argument("--seed", type=int, help="random seed (default: the preset's, 0)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run_train)
    return parser


add_parser = add_train_parser  # the name diffusion_lib.__main__ looks for


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    values = {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed}
    return {k: v for k, v in values.items() if v is not None}


def _command_line(args: argparse.Namespace) -> str:
    """The canonical command that reproduces this run (recorded in the JSON)."""
    words = ["python", "-m", "diffusion_lib", "train", "--model", args.model, "--out", args.out]
    for flag, value in (("--steps", args.steps), ("--batch-size", args.batch_size),
                        ("--lr", args.lr), ("--seed", args.seed), ("--device", args.device),
                        ("--threads", args.threads)):
        if value is not None:
            words += [flag, str(value)]
    return shlex.join(words)


def run_train(args: argparse.Namespace) -> int:
    """Handler of ``train``: run the preset, save the checkpoint, print a summary."""
    from .pretrained import save_checkpoint

    if args.threads is not None:
        if args.threads < 1:
            raise SystemExit(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    command = _command_line(args)
    overrides = _overrides(args)

    if args.model == "classifier":
        from .metrics import ClassifierTrainConfig, train_classifier

        cfg = dataclasses.replace(ClassifierTrainConfig(device=args.device), **overrides)
        model, metadata = train_classifier(cfg, progress=not args.no_progress)
        metadata["command"] = command
        weights, config = save_checkpoint(args.out, model, metadata=metadata)
        print(
            f"held-out accuracy {metadata['results']['heldout_accuracy']:.4f}, "
            f"{metadata['results']['wall_time_s']:.0f} s; wrote {weights} and {config}"
        )
        return 0

    from .train import PRESETS, train, training_metadata

    preset = PRESETS[args.model]
    cfg = dataclasses.replace(preset.train, device=args.device, **overrides)
    result = train(preset.model, cfg, progress=not args.no_progress)
    schedule = {"name": cfg.schedule, "num_timesteps": cfg.num_timesteps}
    metadata = training_metadata(result, command)
    metadata["description"] = preset.description
    weights, config = save_checkpoint(args.out, result.model, schedule=schedule, metadata=metadata)
    print(
        f"final loss {metadata['results']['final_loss_mean_last_200']:.4f}, "
        f"{result.wall_time_s:.0f} s; wrote {weights} and {config}"
    )
    return 0
