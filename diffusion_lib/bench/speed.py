"""The speed benchmark behind ``python -m diffusion_lib bench``.

For the shipped ``digits`` model and each batch size it times, side by side in one
run (variants interleaved round-robin, a warm-up first, the median of several
repeats, the device synchronised around every timing):

- ``forward``: N bare model calls on a fixed input, the floor the loop is measured against;
- ``chapter``: the seed chapter's loop as written (:mod:`.chapter_loop`);
- ``eager``: :func:`diffusion_lib.sampling.sample_progressive`, DDPM σ² = β, x̂0 clipped
  (the chapter's settings);
- ``graph``: the same with ``cuda_graph=True`` (one CUDA-graph replay per step; on the
  CPU the static-buffer step runs without capture);
- ``compiled``, ``compiled+graph``: the model through ``torch.compile``;
- ``bf16``, ``bf16+graph``: the model under bf16 autocast, sampler arithmetic in fp32;
- ``channels-last``: a copy of the model with NHWC weights (``torch.channels_last``);
- ``cfg two-pass`` / ``cfg batched``: guidance w = 3, two calls of B vs one of 2B;
- ``ddim-50``: a whole 50-step DDIM run, against DDPM-1000 (``eager`` scaled to 1000 steps);
- ``dpmpp_2m-50``: a whole 50-step DPM-Solver++(2M) run (Karras σ);
- the peers (:mod:`.peers`), same model, batch and seeds: ``diffusers DDPM`` over the eager
  row's steps, ``diffusers DPM-Solver++(2M)-50``, ``diffusers DDIM-50`` and
  ``k-diffusion DPM-Solver++(2M)-50`` (whole runs); a peer whose package is missing is one
  note row. The table gives library ÷ peer for each.

In the same round robin, every loop once more with a near-free model
(:class:`~.opcount.FreeModel`: ε̂ is a cached zero tensor), whole runs (1,000 DDPM steps,
50 DDIM / DPM-Solver steps): the loop's own cost per step. After the timings,
:func:`~.opcount.bench_counts` counts the operators of one step of each loop (and on CUDA
the kernels and launch calls, from the profiler), with the model and with the free one.

N is ``steps`` (1,000 by default on CUDA; fewer on a CPU, where 1,000 steps at batch
1024 take minutes); every "per 1000 steps" figure is then the measured time × 1000/N,
said so in the table. Each variant's final sample is compared with the eager one's
(same seeds): ``max |Δ|`` in the table.

It then times the generation CLI in a fresh process for two run sizes (default 1,000 and
10,000 images): images/s and peak memory (peak RSS on the CPU, peak CUDA allocation on a
GPU), to show that memory is bounded by the batch size, not the run size.

Results: ``diffusion_lib/results/<device>.json`` and ``.md`` (``cpu``, ``cuda-nvidia-h200``, …).
"""

from __future__ import annotations

import copy
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..data import NUM_DIGIT_CLASSES
from ..pretrained import git_commit, load_pretrained
from ..sampling import SampleStep, sample, sample_progressive
from ..speed import AutocastModel, compile_model
from .chapter_loop import chapter_ddpm_sample
from .opcount import DDIM, DDPM, FreeModel, bench_counts
from .peers import PEER_STEPS, all_peers
from .report import markdown, render, write
from .timing import round_robin

"""The baseline; present in a source checkout, absent from an installed wheel."""

TARGETS = {
    "loop_overhead_max": 1.03,
    "ddim50_speedup_min": 18.0,
    "cfg_batched_speedup_min": 1.5,
    "cuda_s_per_1000_steps_max": {64: 0.25, 1024: 0.5},
    "generation_memory_ratio_max": 1.10,
}
"""The speed targets of the project (docs/speed.md), checked in the Markdown summary (a
benchmark, not a test)."""


NO_GUIDANCE = (
    "eager",
    "graph",
    "compiled",
    "compiled+graph",
    "bf16",
    "bf16+graph",
    "channels-last",
)
"""The 1000-step DDPM variants without guidance, compared for the CUDA targets."""

FREE = "free model: "
"""Prefix of the near-free-model variants in the round robin (the loop-cost rows)."""

FREE_DDPM_STEPS = 1000
"""Steps of a near-free-model DDPM run: the whole run, so its set-up (seeds, the first noise
chunk) is spread as in real use."""


@dataclass
class BenchConfig:
    """What to measure.

    ``steps``: DDPM steps timed per run, one number for every batch size or a
    ``{batch: steps}`` dict; ``None``: 1000 on CUDA, 100 on other devices.
    """

    model: str = "digits"
    batch_sizes: tuple[int, ...] = (64, 1024)
    steps: int | dict[int, int] | None = None
    repeats: int = 3
    warmup: int = 1
    compile: bool = True
    generation_sizes: tuple[int, ...] = (1000, 10000)
    generation_steps: int = 50
    generation_batch: int = 256
    threads: int | None = None
    device: str = "auto"
    guidance: float = 3.0
    peers: bool = True
    """Time the peers (diffusers, k-diffusion) where they import."""


def device_slug(device: torch.device) -> str:
    """``cpu``, or ``cuda-`` + the card's name in lower case, e.g. ``cuda-nvidia-h200``."""
    if device.type != "cuda":
        return device.type
    name = torch.cuda.get_device_name(device)
    return "cuda-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _last(steps: Iterator[SampleStep], n: int) -> Tensor:
    """Run the first ``n`` steps of a sampler generator; the last x_prev (cloned)."""
    x: Tensor | None = None
    for k, step in enumerate(steps):
        x = step.x_prev
        if k + 1 == n:
            x = x.clone()
            break
    steps.close()  # type: ignore[attr-defined]
    assert x is not None
    return x


def bench_batch(
    model: Any,
    schedule: Any,
    batch: int,
    steps: int,
    cfg: BenchConfig,
    device: torch.device,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Time every variant at one batch size; return rows and the derived ratios."""
    shape = (batch, 1, 8, 8)
    ddpm = dict(sampler="ddpm", variance="beta", x0_mode="clip", seed=0, progress=False)
    labels = [i % NUM_DIGIT_CLASSES for i in range(batch)]

    def loop(m: Any, **kw: Any) -> Callable[[], Tensor]:
        def run() -> Tensor:
            args = {**ddpm, **kw}
            return _last(sample_progressive(m, schedule, shape, _copy_steps=False, **args), steps)

        return run

    x_fixed = torch.randn(shape, device=device)
    t_fixed = torch.full((batch,), 500, device=device, dtype=torch.long)

    @torch.no_grad()
    def forward() -> None:
        for _ in range(steps):
            model(x_fixed, t_fixed)

    variants: dict[str, Callable[[], Tensor | None]] = {"forward": forward}
    notes: dict[str, str] = {}

    def run_chapter() -> Tensor:
        torch.manual_seed(0)
        return chapter_ddpm_sample(model, schedule, shape, device, max_steps=steps)

    variants["chapter"] = run_chapter
    variants["eager"] = loop(model)
    variants["graph"] = loop(model, cuda_graph=True)
    if device.type != "cuda":
        notes["graph"] = "no CUDA: the static-buffer step runs without capture"
    compiled_model = None  # for the operator counts
    if cfg.compile:
        t0 = time.perf_counter()
        compiled, status = compile_model(model, (x_fixed, t_fixed))
        log(f"  torch.compile: {status} ({time.perf_counter() - t0:.1f} s)")
        if status == "compiled":
            compiled_model = compiled
            variants["compiled"] = loop(compiled)
            if device.type == "cuda":
                variants["compiled+graph"] = loop(compiled, cuda_graph=True)
        else:
            notes["compiled"] = status
    bf16 = AutocastModel(model, "bf16", device_type=device.type, check_finite=False)
    variants["bf16"] = loop(bf16)
    nhwc = copy.deepcopy(model).to(memory_format=torch.channels_last)
    variants["channels-last"] = loop(nhwc)
    if device.type == "cuda":
        variants["bf16+graph"] = loop(bf16, cuda_graph=True)
    variants["cfg two-pass"] = loop(
        model, labels=labels, guidance_scale=cfg.guidance, cfg_mode="two_pass"
    )
    variants["cfg batched"] = loop(
        model, labels=labels, guidance_scale=cfg.guidance, cfg_mode="batched"
    )
    if device.type == "cuda":
        variants["cfg batched+graph"] = loop(
            model, labels=labels, guidance_scale=cfg.guidance, cfg_mode="batched", cuda_graph=True
        )

    def ddim50() -> Tensor:
        return sample(model, schedule, shape, sampler="ddim", steps=50, seed=0, progress=False)

    variants["ddim-50"] = ddim50
    if device.type == "cuda":
        variants["ddim-50+graph"] = lambda: sample(
            model,
            schedule,
            shape,
            sampler="ddim",
            steps=50,
            seed=0,
            progress=False,
            cuda_graph=True,
        )
    variants["dpmpp_2m-50"] = lambda: sample(
        model, schedule, shape, sampler="dpmpp_2m", steps=PEER_STEPS, seed=0, progress=False
    )
    peers, missing = all_peers(schedule, shape, device) if cfg.peers else ([], [])
    whole = {"ddim-50", "ddim-50+graph", "dpmpp_2m-50"} | {p.name for p in peers if p.steps}
    for peer in peers:
        variants[peer.name] = lambda p=peer: p.run(model, p.steps or steps)
        notes[peer.name] = peer.note
    free = FreeModel()
    free_steps = {
        "eager": FREE_DDPM_STEPS,
        "graph": FREE_DDPM_STEPS,
        "ddim-50": 50,
        "dpmpp_2m-50": 50,
        **{p.name: p.steps or FREE_DDPM_STEPS for p in peers},
    }
    free_runs: dict[str, Callable[[], Tensor]] = {
        "eager": lambda: sample(free, schedule, shape, seed=0, progress=False, **DDPM),
        "graph": lambda: sample(
            free, schedule, shape, seed=0, progress=False, cuda_graph=True, **DDPM
        ),
        "ddim-50": lambda: sample(free, schedule, shape, seed=0, progress=False, **DDIM),
        "dpmpp_2m-50": lambda: sample(
            free, schedule, shape, sampler="dpmpp_2m", steps=PEER_STEPS, seed=0, progress=False
        ),
        **{p.name: (lambda p=p: p.run(free)) for p in peers},
    }
    for name, run in free_runs.items():
        variants[FREE + name] = run

    times, outputs = round_robin(variants, device, cfg.repeats, cfg.warmup, log)
    median = {k: statistics.median(v) for k, v in times.items()}
    scale = 1000 / steps
    ref = outputs["eager"]
    rows = []
    for name, seconds in median.items():
        if name.startswith(FREE):
            continue  # the loop-cost rows, below
        out = outputs.get(name)
        diff = (
            float((out.float() - ref.float()).abs().max())
            if name in NO_GUIDANCE and out is not None and ref is not None
            else None
        )
        whole_run = name in whole
        rows.append(
            {
                "variant": name,
                "seconds": seconds,
                "all_seconds": times[name],
                "steps_timed": PEER_STEPS if whole_run else steps,
                "per_1000_steps": None if whole_run else seconds * scale,
                "vs_chapter": (median["chapter"] / seconds) if "chapter" in median else None,
                "max_abs_diff_vs_eager": diff,
                "note": notes.get(name, ""),
            }
        )
    for name, note in notes.items():
        if name not in median:
            rows.append({"variant": name, "seconds": None, "note": note})
    ddpm1000 = median["eager"] * scale
    derived = {
        "loop_overhead": median["eager"] / median["forward"],
        "graph_loop_overhead": median["graph"] / median["forward"],
        "ddpm1000_seconds": ddpm1000,
        "ddim50_speedup": ddpm1000 / median["ddim-50"],
        "cfg_batched_speedup": median["cfg two-pass"] / median["cfg batched"],
        "forward_ms": median["forward"] / steps * 1e3,
    }
    if "chapter" in median:
        derived["eager_vs_chapter"] = median["chapter"] / median["eager"]
    best = min((k for k in median if k in NO_GUIDANCE), key=median.__getitem__)
    derived["best_variant"] = best
    derived["best_per_1000_steps"] = median[best] * scale
    versus = [
        {
            "library": p.versus,
            "peer": p.name,
            "steps": p.steps or steps,
            "library_seconds": median[p.versus],
            "peer_seconds": median[p.name],
            "ratio": median[p.versus] / median[p.name],
        }
        for p in peers
    ]
    loop_cost = [
        {
            "loop": name,
            "library": name in ("eager", "graph", "ddim-50", "dpmpp_2m-50"),
            "steps": free_steps[name],
            "seconds": median[FREE + name],
            "all_seconds": times[FREE + name],
            "ms_per_step": median[FREE + name] / free_steps[name] * 1e3,
        }
        for name in free_runs
    ]
    log("  counting the operators of one step")
    counts = bench_counts(model, schedule, shape, device, compiled_model, peers)
    return {
        "batch": batch,
        "steps": steps,
        "rows": rows,
        "derived": derived,
        "peers": versus,
        "peer_notes": missing,
        "loop_cost": loop_cost,
        "op_counts": counts,
    }


_GEN_CHILD = r"""
import json, sys, time, torch
from diffusion_lib.cli import main
from diffusion_lib.bench.memory import peak_rss_mib
argv = json.loads(sys.argv[1])
t0 = time.perf_counter()
code = main(argv)
seconds = time.perf_counter() - t0
cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
print("BENCH_RESULT " + json.dumps({
    "code": code, "seconds": seconds,
    "peak_rss_mib": peak_rss_mib(),
    "peak_cuda_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
}))
"""


def bench_generation(
    cfg: BenchConfig, device: torch.device, log: Callable[[str], None]
) -> list[dict[str, Any]]:
    """Run the generate CLI in a fresh process per run size; images/s and peak memory."""
    rows = []
    for n in cfg.generation_sizes:
        with tempfile.TemporaryDirectory(prefix="bench-gen-") as out:
            argv = [
                "generate",
                "--model",
                cfg.model,
                "-n",
                str(n),
                "--sampler",
                "ddim",
                "--steps",
                str(cfg.generation_steps),
                "--labels",
                "0-9",
                "--guidance",
                "3",
                "--batch-size",
                str(cfg.generation_batch),
                "--out",
                out,
                "--no-progress",
                "--device",
                str(device),
            ]
            if cfg.threads is not None:
                argv += ["--threads", str(cfg.threads)]
            if device.type == "cuda":
                argv += ["--cuda-graph"]
            proc = subprocess.run(
                [sys.executable, "-c", _GEN_CHILD, json.dumps(argv)],
                capture_output=True,
                text=True,
                check=False,
            )
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH_RESULT ")]
            if proc.returncode != 0 or not lines:
                raise RuntimeError(f"generation of {n} images failed:\n{proc.stderr[-2000:]}")
            result = json.loads(lines[-1].removeprefix("BENCH_RESULT "))
            files = sum(1 for p in Path(out).glob("sample_*.png"))
        row = {"n": n, "files": files, **result, "images_per_s": n / result["seconds"]}
        log(
            f"  generate {n}: {row['seconds']:.1f} s, {row['images_per_s']:.1f} images/s, "
            f"peak RSS {row['peak_rss_mib']:.0f} MiB"
            + (f", peak CUDA {row['peak_cuda_mib']:.0f} MiB" if row["peak_cuda_mib"] else "")
        )
        rows.append(row)
    return rows


def cpu_name() -> str:
    """The CPU's model name and the vector unit torch's CPU kernels use (e.g. AVX2, AVX512):
    bf16 on a CPU is fast only with native bf16 units, so a CPU table needs both."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {torch.backends.cpu.get_cpu_capability()}"


def environment(device: torch.device) -> dict[str, Any]:
    """Where the numbers come from."""
    env = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "device": str(device),
        "git": git_commit()[:12],
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def run_bench(cfg: BenchConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the whole benchmark and return its JSON payload (nothing written)."""
    from ..device import set_threads, usable_device

    if cfg.threads is not None:  # a speed table keeps torch's default unless told
        set_threads(cfg.threads)
    device = usable_device(cfg.device)
    default = 1000 if device.type == "cuda" else 100
    if isinstance(cfg.steps, dict):
        missing = sorted(set(cfg.batch_sizes) - set(cfg.steps))
        if missing:
            raise ValueError(f"steps names no count for batch sizes {missing}")
        per_batch = {b: int(cfg.steps[b]) for b in cfg.batch_sizes}
    else:
        per_batch = {b: int(default if cfg.steps is None else cfg.steps) for b in cfg.batch_sizes}
    for steps in per_batch.values():
        if not 1 <= steps <= 1000:
            raise ValueError(f"steps must be between 1 and 1000, got {steps}")
    model, schedule = load_pretrained(cfg.model, device=device)
    config = getattr(model, "config", None)
    if (getattr(config, "image_channels", None), getattr(config, "image_size", None)) != (1, 8):
        raise ValueError(
            f"bench needs an image model of 8×8 digits such as digits or digits_cosine; "
            f"{cfg.model!r} makes {type(model).__name__} samples"
        )
    batches = []
    for batch in cfg.batch_sizes:
        steps = per_batch[batch]
        log(f"batch {batch}, {steps} of 1000 DDPM steps")
        batches.append(bench_batch(model, schedule, batch, steps, cfg, device, log))
    log("generation")
    generation = bench_generation(cfg, device, log) if cfg.generation_sizes else []
    return {
        "config": asdict(cfg),
        "env": environment(device),
        "device_slug": device_slug(device),
        "batches": batches,
        "generation": generation,
        "targets": {
            k: (v if not isinstance(v, dict) else {str(b): s for b, s in v.items()})
            for k, v in TARGETS.items()
        },
    }


def parse_ints(spec: str, what: str) -> tuple[int, ...]:
    """``"64,1024"`` → (64, 1024); every value must be >= 1."""
    try:
        values = tuple(int(v) for v in spec.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{what} must be comma-separated integers, got {spec!r}") from None
    if not values or min(values) < 1:
        raise ValueError(f"{what} must be integers >= 1, got {spec!r}")
    return values


def parse_steps(spec: str) -> int | dict[int, int]:
    """``"100"`` → 100; ``"64:100,1024:10"`` → {64: 100, 1024: 10}."""
    hint = "use one count (100) or batch:count pairs (64:100,1024:10)"
    try:
        if ":" not in spec:
            return int(spec)
        return {int(b): int(n) for b, n in (part.split(":") for part in spec.split(","))}
    except ValueError:
        raise ValueError(f"invalid --steps {spec!r}: {hint}") from None


__all__ = [
    "TARGETS",
    "BenchConfig",
    "bench_batch",
    "bench_generation",
    "device_slug",
    "markdown",
    "parse_ints",
    "parse_steps",
    "render",
    "run_bench",
    "write",
]
