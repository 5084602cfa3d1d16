"""``python -m diffusion_lib bench``: the sampling speed table for this machine.

    python -m diffusion_lib bench                      # batch 64 and 1024, writes results
    python -m diffusion_lib bench --steps 20 --batch-sizes 64 --no-write   # a quick look

Writes diffusion_lib/results/<device>.json and .md (cpu, cuda-nvidia-h200, …) in a
source checkout; see diffusion_lib/bench/speed.py for what each row measures.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from ..bench.speed import BenchConfig, parse_ints, parse_steps, run_bench, write
from ..bench.tables import RESULTS_DIR
from ..device import (
    check_threads,
    is_out_of_memory,
    max_threads,
    out_of_memory_line,
    usable_device,
)
from ..files import check_file_stem, check_writable_dir, os_error_line


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``bench`` on an ``argparse`` subparsers object."""
    parser = subparsers.add_parser(
        "bench",
        help="time the sampler's fast paths against the chapter's loop; write a results table",
        description=__doc__.replace("``", ""),  # plain text in --help
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", default="digits", help="shipped image model (default digits)")
    parser.add_argument(
        "--batch-sizes", default="64,1024", help="comma-separated batch sizes (default 64,1024)"
    )
    parser.add_argument(
        "--steps",
        help="DDPM steps to time of the 1000: one count or batch:count pairs such as "
        "64:100,1024:10 (default 1000 on CUDA, 100 elsewhere; per-1000-step figures are "
        "scaled and say so)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per variant (median)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    parser.add_argument(
        "--no-peers",
        action="store_true",
        help="skip the peer rows (diffusers, k-diffusion; timed where they import)",
    )
    parser.add_argument(
        "--generation-sizes",
        default="1000,10000",
        help="images per generation run, comma-separated; 0 skips (default 1000,10000)",
    )
    parser.add_argument(
        "--generation-steps", type=int, default=50, help="DDIM steps for generation (default 50)"
    )
    parser.add_argument(
        "--generation-batch", type=int, default=256, help="--batch-size of generation (256)"
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    parser.add_argument(
        "--threads",
        type=int,
        help=f"torch CPU threads, 1 to {max_threads()} (4 × the cores) (default: torch's)",
    )
    parser.add_argument("--name", help="results file stem (default: the device, e.g. cpu)")
    parser.add_argument("--out", help="directory for the results (default diffusion_lib/results)")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    parser.set_defaults(func=handler)
    return parser


def handler(args: argparse.Namespace) -> int:
    """Handler of ``bench``; 2 on a bad argument, 1 out of memory (one line naming
    --batch-sizes)."""
    try:
        if args.repeats < 1:
            raise ValueError(f"--repeats must be >= 1, got {args.repeats}")
        check_threads(args.threads)
        usable_device(args.device)
        out = None if args.out is None else Path(args.out)
        if args.name is not None:
            check_file_stem(args.name, "--name")
        if not args.no_write:  # checked before the benchmark runs, not after
            check_writable_dir(RESULTS_DIR if args.out is None else args.out, "--out directory")
        if args.generation_steps < 1 or args.generation_batch < 1:
            raise ValueError("--generation-steps and --generation-batch must be >= 1")
        gen = (
            ()
            if args.generation_sizes.strip() == "0"
            else parse_ints(args.generation_sizes, "--generation-sizes")
        )
        cfg = BenchConfig(
            model=args.model,
            batch_sizes=parse_ints(args.batch_sizes, "--batch-sizes"),
            steps=None if args.steps is None else parse_steps(args.steps),
            repeats=args.repeats,
            compile=not args.no_compile,
            peers=not args.no_peers,
            generation_sizes=gen,
            generation_steps=args.generation_steps,
            generation_batch=args.generation_batch,
            threads=args.threads,
            device=args.device,
        )
        payload = run_bench(cfg, log=lambda line: print(line, file=sys.stderr, flush=True))
    except (ValueError, FileNotFoundError) as err:
        print("error: " + " ".join(str(err).split()), file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as err:
        if not is_out_of_memory(err):
            raise
        line = out_of_memory_line(
            err,
            f"lower --batch-sizes (now {args.batch_sizes}) or --generation-batch "
            f"(now {args.generation_batch}); nothing was written",
        )
        print(f"error: {line}", file=sys.stderr)
        return 1
    command = "python -m diffusion_lib " + shlex.join(getattr(args, "argv", ["bench"]))
    from ..bench.speed import markdown

    if args.no_write:
        print(markdown(payload, command.strip()))
    else:
        try:
            path = write(payload, command.strip(), args.name, out)
        except OSError as err:
            print(f"error: writing the results failed: {os_error_line(err)}", file=sys.stderr)
            return 1
        print(path.with_suffix(".md").read_text())
        print(f"wrote {path} and {path.with_suffix('.md')}", file=sys.stderr)
    return 0
