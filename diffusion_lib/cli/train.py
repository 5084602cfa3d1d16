"""``python -m diffusion_lib train``: train a shipped model from its preset.

    python -m diffusion_lib train --model digits --out diffusion_lib/weights/digits
    python -m diffusion_lib train --model moons --out diffusion_lib/weights/moons --steps 4000
    python -m diffusion_lib train --model classifier --out diffusion_lib/weights/classifier

Writes ``<out>.json`` (config, schedule, training settings, data split, git commit,
and this command line) and the EMA weights it names, ``<out>.<sha256[:16]>.safetensors``.
An existing checkpoint at ``<out>`` is replaced in one atomic step: a kill at any
moment leaves the old pair or the new one, whole (``save_checkpoint``).

Exit codes: 0 done; 2 a bad argument (nothing trained); 1 the run failed: the loss
went NaN/inf (lower --lr; no checkpoint is written), out of memory (lower
--batch-size), or the checkpoint could not be written; 130 Ctrl-C; 143 SIGTERM.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import shlex
import sys
from pathlib import Path
from typing import Any

from ..device import is_out_of_memory, max_threads, out_of_memory_line, set_threads, usable_device
from ..files import check_writable_dir, os_error_line

MODEL_CHOICES = ("digits", "digits_cosine", "moons", "classifier")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``train`` subcommand to an ``argparse`` subparsers object."""
    parser = subparsers.add_parser(
        "train",
        help="train a model from a preset and write safetensors + JSON",
        description=__doc__.replace("``", ""),  # plain text in --help
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True, choices=MODEL_CHOICES, help="preset to train")
    parser.add_argument("--out", required=True, help="output path without extension")
    parser.add_argument("--steps", type=int, help="optimiser steps (default: the preset's)")
    parser.add_argument("--batch-size", type=int, help="batch size (default: the preset's)")
    parser.add_argument("--lr", type=float, help="learning rate (default: the preset's)")
    parser.add_argument("--seed", type=int, help="random seed (default: the preset's, 0)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    parser.add_argument(
        "--threads",
        type=int,
        help=f"torch CPU threads, 1 to {max_threads()} (4 × the cores) (default: torch's)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=handler)
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    values = {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed}
    return {k: v for k, v in values.items() if v is not None}


def _command_line(args: argparse.Namespace) -> str:
    """The canonical command that reproduces this run (recorded in the JSON)."""
    words = ["python", "-m", "diffusion_lib", "train", "--model", args.model, "--out", args.out]
    for flag, value in (
        ("--steps", args.steps),
        ("--batch-size", args.batch_size),
        ("--lr", args.lr),
        ("--seed", args.seed),
        ("--device", args.device),
        ("--threads", args.threads),
    ):
        if value is not None:
            words += [flag, str(value)]
    return shlex.join(words)


def check_args(args: argparse.Namespace) -> None:
    """Every number, the device and the output path, before anything trains; ValueError."""
    for name, low in (("steps", 1), ("batch_size", 1), ("seed", 0)):
        value = getattr(args, name)
        if value is not None and value < low:
            raise ValueError(f"--{name.replace('_', '-')} must be an int >= {low}, got {value}")
    if args.lr is not None and not (math.isfinite(args.lr) and args.lr > 0):
        raise ValueError(f"--lr must be a finite number > 0, got {args.lr}")
    usable_device(args.device)
    if str(args.out).strip() == "":
        raise ValueError("--out is empty; give a path without extension, e.g. weights/digits")
    out = Path(args.out)
    if out.name in ("", ".", "..") or out.is_dir():
        raise ValueError(f"--out {args.out!r} names a directory; add a file stem, e.g. {out}/m")
    check_writable_dir(out.parent, "directory of --out")


def handler(args: argparse.Namespace) -> int:
    """Handler of ``train``: check, train, save; one line and exit code 2 on a bad argument."""
    try:
        if args.threads is not None:
            set_threads(args.threads)
        check_args(args)
        return _train(args)
    except ValueError as err:  # a bad argument: found before training starts
        print("error: " + " ".join(str(err).split()), file=sys.stderr)
        return 2
    except FloatingPointError as err:  # the loss went NaN/inf: nothing was written
        print("error: " + " ".join(str(err).split()), file=sys.stderr)
        return 1
    except OSError as err:
        print(f"error: writing the checkpoint failed: {os_error_line(err)}", file=sys.stderr)
        return 1
    except (MemoryError, RuntimeError) as err:
        if not is_out_of_memory(err):
            raise
        size = "the preset's" if args.batch_size is None else args.batch_size
        line = out_of_memory_line(
            err, f"lower --batch-size (now {size}); no checkpoint was written"
        )
        print(f"error: {line}", file=sys.stderr)
        return 1


def _train(args: argparse.Namespace) -> int:
    from ..pretrained import save_checkpoint

    command = _command_line(args)
    overrides = _overrides(args)

    if args.model == "classifier":
        from ..metrics import ClassifierTrainConfig, train_classifier

        cfg = dataclasses.replace(ClassifierTrainConfig(device=args.device), **overrides)
        model, metadata = train_classifier(cfg, progress=not args.no_progress)
        metadata["command"] = command
        weights, config = save_checkpoint(args.out, model, metadata=metadata)
        print(
            f"held-out accuracy {metadata['results']['heldout_accuracy']:.4f}, "
            f"{metadata['results']['wall_time_s']:.0f} s; wrote {weights} and {config}"
        )
        return 0

    from ..train import PRESETS, train, training_metadata

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
