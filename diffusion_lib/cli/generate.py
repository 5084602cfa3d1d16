"""``python -m diffusion_lib generate``: many samples to PNG files + a manifest.

    python -m diffusion_lib generate --model digits -n 10000 --guidance 3 --labels 0-9 \\
        --seed 0 --batch-size 256 --out samples/digits

    # the same on 4 GPUs (or 4 CPU processes): each rank makes its share
    torchrun --nproc_per_node=4 -m diffusion_lib generate ...same arguments...

(-n, --num-images and --n are the same option, but torchrun's own parser
rejects --n as an ambiguous abbreviation of its options: use -n there.)

Writes DIR/run.json (the settings), DIR/sample_00000.png … and DIR/manifest.csv
(file, index, seed, label). Image i uses seed + i and label labels[i % len];
it is the same whatever the batch size or the number of processes. Re-run the
same command after an interruption (even kill -9) to finish the set.

Exit codes: 0 done; 2 a bad argument, or the directory is in use by another run
or holds another run's settings (nothing written); 1 the run failed (a full disk,
NaN samples, out of memory: lower --batch-size or --model-batch; one line says
what and where); 130 Ctrl-C; 143 SIGTERM (a batch scheduler's stop, handled like
Ctrl-C: every finished image is whole, re-run the same command to finish).

Under torchrun every rank waits at most DIFFUSION_LIB_DIST_TIMEOUT seconds (default
300) for the others to start, saying after 10 s what it waits for, and then
gives up with exit code 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from ..device import (
    THREADS_HELP,
    is_out_of_memory,
    out_of_memory_line,
    set_threads,
    usable_device,
)
from ..files import os_error_line
from ..generate import (
    DEFAULT_MODEL_BATCH,
    MAX_IMAGES,
    PRECISIONS,
    GenerateConfig,
    RunConflict,
    Workers,
    check_settings,
    parse_indices,
    parse_labels,
    prepare,
    run_plan,
)
from ..pretrained import available_models
from ..sampling import SPACINGS, VARIANCES, X0_MODES
from ..sampling.guidance import CFG_MODES
from ..sampling.ode import SIGMA_SCHEDULES
from ..sampling.registry import SamplerSpec, refuse_options, sampler_names, samplers_help
from ..sampling.samplers import RECOMMENDED
from ._signals import exit_code, stopped

PRESETS: dict[str, SamplerSpec] = {"recommended": RECOMMENDED}
"""Named sampler settings (``--preset``); ``recommended`` is also what a run gets when it
names no sampler setting at all."""
SAMPLER_FLAGS = (
    "sampler",
    "steps",
    "spacing",
    "eta",
    "variance",
    "x0_mode",
    "sigma_schedule",
    "s_churn",
    "s_tmin",
    "s_tmax",
    "s_noise",
)


def sampler_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The sampler settings of a run: ``--preset``, else the recommended preset changed by
    the sampler flags given; a run that names ``--sampler`` starts from that sampler's
    defaults (:class:`~diffusion_lib.sampling.SamplerSpec`) with the preset's step count.
    A flag that does not apply to the sampler is refused."""
    given = {k: getattr(args, k) for k in SAMPLER_FLAGS if getattr(args, k, None) is not None}
    preset = getattr(args, "preset", None)
    if preset is not None:
        if given:
            flags = ", ".join(f"--{k.replace('_', '-')}" for k in given)
            raise ValueError(
                f"--preset {preset} sets the sampler settings itself; drop {flags} "
                f"or drop --preset (it means {PRESETS[preset].kwargs()})"
            )
        spec = PRESETS[preset]
    elif "sampler" in given:
        refuse_options(given["sampler"], given)
        spec = SamplerSpec(given["sampler"], RECOMMENDED.steps).replace(**given)
    else:
        spec = RECOMMENDED.replace(**given)
    return {k: getattr(spec, k) for k in SAMPLER_FLAGS}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``generate`` on an ``argparse`` subparsers object."""
    parser = subparsers.add_parser(
        "generate",
        help="generate many samples to PNG files with a manifest (resumable, torchrun-aware)",
        description=__doc__.replace("``", ""),  # plain text in --help
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model",
        required=True,
        help=f"a shipped model ({', '.join(available_models())}), or the path "
        "of a checkpoint (<stem>.json next to the weights it names)",
    )
    parser.add_argument("--out", required=True, help="output directory (created if needed)")
    parser.add_argument(
        "-n",
        "--num-images",
        "--n",
        dest="n",
        required=True,
        type=int,
        help=f"number of images, indices 0…n-1, at most {MAX_IMAGES:,} (under torchrun write -n "
        "or --num-images: torchrun's own parser rejects --n as an ambiguous abbreviation)",
    )
    parser.add_argument("--seed", type=int, default=0, help="base seed; image i uses seed+i")
    rec = RECOMMENDED
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help=f"recommended ({rec.label}, {rec.steps} {rec.spacing} steps; the default): the "
        "best kind measured at <= 50 model calls for guided digits, see "
        "diffusion_lib/results/samplers.md. It sets --sampler/--steps/--spacing/--eta/"
        "--variance/--x0-mode/--sigma-schedule/--s-churn/--s-tmin/--s-tmax/--s-noise, so give "
        "none of those with it",
    )
    parser.add_argument(
        "--sampler",
        default=None,
        choices=sampler_names(),
        help=f"default {rec.sampler} (the recommended preset). {samplers_help()}",
    )
    parser.add_argument(
        "--steps", type=int, default=None, help=f"sampling steps, 1…T (default {rec.steps})"
    )
    parser.add_argument(
        "--spacing",
        default=None,
        choices=SPACINGS,
        help=f"which of the T timesteps the steps visit (default {rec.spacing}: it starts at T-1)",
    )
    parser.add_argument(
        "--sigma-schedule",
        default=None,
        choices=SIGMA_SCHEDULES,
        help=f"timesteps of the ODE samplers (euler, heun, dpmpp_2m, edm): {rec.sigma_schedule} "
        "(default, Karras et al.'s rho = 7 sigmas) or uniform (the --spacing timesteps)",
    )
    parser.add_argument(
        "--eta",
        type=float,
        default=None,
        help="DDIM's η in [0, 1]: 0 deterministic (default), 1 DDPM-like noise",
    )
    parser.add_argument(
        "--variance",
        default=None,
        choices=VARIANCES,
        help=f"DDPM's σ² (default {rec.variance} with the recommended preset, "
        f"{SamplerSpec().variance} with --sampler ddpm)",
    )
    parser.add_argument("--x0-mode", default=None, choices=X0_MODES, help=f"default {rec.x0_mode}")
    spec = SamplerSpec()
    parser.add_argument(
        "--s-churn",
        type=float,
        default=None,
        help=f"edm's S_churn >= 0: fresh noise before each step, σ raised by "
        f"min(S_churn/steps, √2 − 1) (default {spec.s_churn:g}: Heun, no noise)",
    )
    parser.add_argument(
        "--s-tmin",
        type=float,
        default=None,
        help=f"edm: churn only steps with σ >= this (default {spec.s_tmin:g})",
    )
    parser.add_argument(
        "--s-tmax",
        type=float,
        default=None,
        help=f"edm: churn only steps with σ <= this (default {spec.s_tmax:g}: no limit)",
    )
    parser.add_argument(
        "--s-noise",
        type=float,
        default=None,
        help=f"edm's S_noise > 0, the scale of its fresh noise (default {spec.s_noise:g})",
    )
    parser.add_argument(
        "--labels",
        help="classes cycled over the images: 3, 1,4,7 or 0-9 (image i gets labels[i %% len]); "
        "omit for unconditional samples",
    )
    parser.add_argument("--guidance", type=float, help="classifier-free guidance scale w")
    parser.add_argument("--cfg-mode", default="batched", choices=CFG_MODES, help="default batched")
    parser.add_argument(
        "--batch-size", type=int, default=256, help="images per batch (memory; default 256)"
    )
    parser.add_argument(
        "--model-batch",
        type=int,
        default=DEFAULT_MODEL_BATCH,
        help="rows per model call, fixed so images do not depend on the batch size "
        f"(default {DEFAULT_MODEL_BATCH}; 0 = whole batches, faster on big GPUs but then "
        "the last bits may depend on the batch size); recorded in run.json",
    )
    parser.add_argument(
        "--indices",
        help="make only START:STOP of the n images in this call (split a run into parts)",
    )
    parser.add_argument(
        "--device",
        default="auto",
        help="cpu, cuda, cuda:N, mps or auto (default); under torchrun, cuda means cuda:LOCAL_RANK",
    )
    parser.add_argument("--threads", type=int, help=THREADS_HELP)
    parser.add_argument(
        "--precision",
        default="fp32",
        choices=PRECISIONS,
        help="run the network in fp32 (default), bf16 (CPU or CUDA) or fp16 (CUDA) autocast; "
        "the sampler stays fp32; recorded in run.json (it changes the images a little)",
    )
    parser.add_argument(
        "--cuda-graph",
        action="store_true",
        help="replay each sampling step as one CUDA graph (same images; faster on a GPU)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=handler)
    return parser


def _device(spec: str, workers: Workers) -> torch.device:
    """The device of this process: ``auto``/``cuda`` → ``cuda:LOCAL_RANK`` under torchrun."""
    device = usable_device(spec)
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", workers.local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    return device


def _load_model(name: str, device: torch.device) -> tuple[Any, Any, str]:
    """(model, schedule, recorded name) for a shipped model name or a checkpoint path."""
    from ..pretrained import load_checkpoint, load_pretrained, schedule_from_info

    path = Path(name)
    if path.suffix in (".json", ".safetensors") or len(path.parts) > 1:
        model, info = load_checkpoint(path, device=device)
        if not info.get("schedule"):
            raise ValueError(f"{name} is not a diffusion model (its checkpoint has no schedule)")
        return model, schedule_from_info(info), path.with_suffix("").name
    model, schedule = load_pretrained(name, device=device)
    return model, schedule, name


def _config(args: argparse.Namespace) -> GenerateConfig:
    """The run's settings from the command line, every number checked (no model needed)."""
    if args.model_batch < 0:
        raise ValueError(f"--model-batch must be >= 0 (0 = off), got {args.model_batch}")
    config = GenerateConfig(
        n=args.n,
        seed=args.seed,
        **sampler_settings(args),
        labels=None if args.labels is None else parse_labels(args.labels),
        guidance=args.guidance,
        cfg_mode=args.cfg_mode,
        model_batch=args.model_batch or None,
        precision=args.precision,
    )
    check_settings(config)
    return config


def handler(args: argparse.Namespace) -> int:
    """Handler of ``generate``: check everything, then generate.

    Exit codes: 0 done; 2 a bad argument or an output directory in use by another
    run (nothing written); 1 the run failed (a full disk, NaN samples: one line
    says which images; every image already written is whole; out of memory: one
    line naming --batch-size and --model-batch); 130 Ctrl-C; 143 SIGTERM.
    """
    try:
        set_threads(args.threads)
        config = _config(args)
        indices = None if args.indices is None else parse_indices(args.indices, args.n)
        workers = Workers.from_env()
        device = _device(args.device, workers)
        model, schedule, name = _load_model(args.model, device)
        plan = prepare(
            model,
            schedule,
            args.out,
            config,
            model_name=name,
            batch_size=args.batch_size,
            indices=indices,
            workers=workers,
        )
    except (ValueError, FileNotFoundError) as err:
        return _fail(err, 2)
    except (MemoryError, RuntimeError) as err:
        if not is_out_of_memory(err):
            raise
        return _fail(
            out_of_memory_line(
                err, f"loading the model {args.model} took more than there is; nothing was written"
            ),
            1,
        )
    try:
        result = run_plan(plan, progress=not args.no_progress, cuda_graph=args.cuda_graph)
    except KeyboardInterrupt as err:
        print(
            f"{stopped(err)}: every finished image in {args.out} is whole; "
            "re-run the same command to finish the set",
            file=sys.stderr,
        )
        return exit_code(err)
    except MemoryError as err:
        return _fail(_oom(err, args), 1)
    except RunConflict as err:
        return _fail(err, 2)
    except OSError as err:
        return _fail(
            f"writing into {args.out} failed: {os_error_line(err)}; every image already there "
            "is whole: fix that and re-run the same command to finish the set",
            1,
        )
    except (ValueError, FloatingPointError, RuntimeError) as err:
        return _fail(_oom(err, args) if is_out_of_memory(err) else err, 1)
    if workers.rank == 0:
        print(result.summary())
    return 0


def _oom(err: BaseException, args: argparse.Namespace) -> str:
    """The out-of-memory line of a run: the batch options to lower, with their values."""
    rows = args.model_batch or "0, whole batches"
    return out_of_memory_line(
        err,
        f"lower --batch-size (now {args.batch_size}; a resume may change it) or --model-batch "
        f"(now {rows}; recorded in run.json, so for a new --out); every image already "
        "written is whole",
    )


def _fail(err: object, code: int) -> int:
    """Print ``error: ...`` as one line on stderr; return ``code``."""
    print("error: " + " ".join(str(err).split()), file=sys.stderr)
    return code
