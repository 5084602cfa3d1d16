"""Which sampler gets within 15 % of DDPM-1000's FD in ≤ 50 model calls?

    python benchmarks/samplers.py --seeds 0,1,2,3,4,5,6,7,8,9 --publish  # the committed table
    python benchmarks/samplers.py --n 50 --seeds 0,1            # a quick look (runs/tables/)

Guided digits (w = 3, batched CFG, classes 0…9 in turn, x̂0 clipped where the sampler
clips) from the shipped ``digits`` model: DDPM-1000 against DDPM, DDIM (η = 0, ½, 1) and the
ODE samplers (Euler, Heun, DPM-Solver++(2M)) at ≤ 50 model calls. FD in the shipped
classifier's features against held-out digits, on several seeds; the ratio to DDPM-1000 is
taken seed by seed (same seeds, same real reference) and reported as mean ± 2 SE.
Writes runs/tables/samplers.{json,md} (``--out DIR`` elsewhere); with ``--publish``, the
committed diffusion_lib/results/samplers.{json,md} (package data).
"""

from __future__ import annotations

import sys
from typing import Any

import torch
from torch import nn

from diffusion_lib import sample
from diffusion_lib.bench.sweeps import SamplerSetting, sampler_grid
from diffusion_lib.bench.tables import markdown_table, publish_table, table_parser
from diffusion_lib.exact.outputs import CallCounter
from diffusion_lib.metrics import load_classifier, over_seeds
from diffusion_lib.pretrained import load_pretrained

W = 3.0
TARGET = 1.15  # FD within 15 % of DDPM-1000's


def _ode(sampler: str, steps: int, sigmas: str, label: str) -> SamplerSetting:
    return SamplerSetting(
        sampler, steps, spacing="trailing", label=label, extra={"sigma_schedule": sigmas}
    )


SETTINGS = [
    SamplerSetting("ddpm", 1000, label="DDPM σ²=β̃"),
    SamplerSetting("ddim", 50, spacing="leading", label="DDIM η=0 (leading)"),
    SamplerSetting("ddim", 50, spacing="trailing", label="DDIM η=0"),
    SamplerSetting("ddim", 50, spacing="trailing", eta=0.5, label="DDIM η=0.5"),
    SamplerSetting("ddim", 50, spacing="trailing", eta=1.0, label="DDIM η=1"),
    SamplerSetting("ddpm", 50, spacing="trailing", label="DDPM σ²=β̃"),
    SamplerSetting("ddpm", 50, spacing="trailing", variance="beta", label="DDPM σ²=β"),
    SamplerSetting("ddpm", 25, spacing="trailing", label="DDPM σ²=β̃"),
    SamplerSetting("ddpm", 25, spacing="trailing", variance="beta", label="DDPM σ²=β"),
    _ode("euler", 50, "karras", "Euler (Karras σ)"),
    _ode("heun", 25, "karras", "Heun (Karras σ)"),
    _ode("heun", 25, "uniform", "Heun (uniform t)"),
    _ode("dpmpp_2m", 50, "karras", "DPM-Solver++(2M) (Karras σ)"),
    _ode("dpmpp_2m", 25, "karras", "DPM-Solver++(2M) (Karras σ)"),
    _ode("dpmpp_2m", 50, "uniform", "DPM-Solver++(2M) (uniform t)"),
]


def model_calls(model: nn.Module, schedule: Any, setting: SamplerSetting) -> int:
    counter = CallCounter(model)
    sample(
        counter,
        schedule,
        (2, 1, 8, 8),
        labels=[1, 2],
        guidance_scale=W,
        seed=0,
        progress=False,
        **setting.kwargs(),
    )
    return counter.calls


COLUMNS = [
    ("name", "sampler", "s"),
    ("steps", "steps", "d"),
    ("spacing_shown", "grid", "s"),
    ("nfe", "model calls", "d"),
    ("seconds", "wall s", ".1f"),
    ("fd_ci", "FD ± 2 SE", "s"),
    ("ratio_ci", "FD ÷ DDPM-1000 ± 2 SE", "s"),
    ("meets", "within 15 %?", "s"),
    ("fd_floor", "floor", ".1f"),
    ("accuracy", "accuracy", ".1%"),
    ("diversity_ci", "diversity ± 2 SE", "s"),
]


def annotate(rows: list[dict[str, Any]], model: nn.Module, schedule: Any) -> None:
    ref = rows[0]
    for r, setting in zip(rows, SETTINGS, strict=True):
        r["nfe"] = model_calls(model, schedule, setting)
        r["sigma_schedule"] = setting.extra.get("sigma_schedule")
        r["spacing_shown"] = "Karras σ" if r["sigma_schedule"] == "karras" else f"{r['spacing']} t"
        r["fd_ci"] = f"{r['fd']:.1f} ± {2 * r['fd_se']:.1f}"
        r["diversity_ci"] = f"{r['diversity']:.2f} ± {2 * r['diversity_se']:.2f}"
        ratio = over_seeds([a / b for a, b in zip(r["fd_seeds"], ref["fd_seeds"], strict=True)])
        r["ratio"], r["ratio_se"] = ratio.value, ratio.se
        r["ratio_ci"] = f"{ratio.value:.3f} ± {2 * ratio.se:.3f}"
        if r is ref:
            r["meets"] = "reference"
        elif ratio.value + 2 * ratio.se <= TARGET:
            r["meets"] = "yes"
        elif ratio.value - 2 * ratio.se > TARGET:
            r["meets"] = "no"
        else:
            r["meets"] = "undecided"


def render(payload: dict[str, Any]) -> str:
    """The Markdown table of a samplers.json payload."""
    return (
        "# Samplers at ≤ 50 model calls vs DDPM-1000 (guided digits, w = 3)\n\n"
        f"Command: `{payload['command']}`\n\n{payload['env']}. n = {payload['n']} digits per "
        f"row and seed (classes 0…9), seeds {payload['seeds']}, batched CFG at "
        f"w = {payload['guidance_scale']:g}, x̂0 clipped (DDPM/DDIM).\n\n"
        "- **model calls**: guided ε̂ evaluations (each is one batched call of 2n).\n"
        "- **grid**: the timesteps visited: a spacing of t, or Karras et al.'s ρ = 7 σ "
        "schedule.\n"
        "- **FD ± 2 SE**: mean over the seeds, ± 2 standard errors over the seeds.\n"
        "- **FD ÷ DDPM-1000**: the ratio taken seed by seed, ± 2 SE. **within 15 %?** is "
        "*yes* when the whole interval is ≤ 1.15, *no* when it is all above, else "
        "*undecided*. With k seeds ± 2 SE is a normal-theory interval; Student's t "
        "(k − 1 degrees of freedom: ± 2.26 SE for 10 seeds) is wider: read a *yes* or *no* "
        "whose interval ends within 0.3 SE of 1.15 as close to undecided.\n"
        "- **floor**: real-vs-real FD at the same n and class balance; small-n FD rewards "
        "low variance, so guided samples can score near it.\n"
        f"- **diversity**: mean pixel distance between two samples of the same class "
        f"(real held-out digits: {payload['rows'][0]['diversity_real']:.2f}); "
        "lower = less varied.\n"
        "- wall s: mean per seed, on a shared 2-core machine: rough; the model calls are "
        "the cost.\n\n" + markdown_table(payload["rows"], COLUMNS)
    )


def main(argv: list[str] | None = None) -> int:
    parser = table_parser(__doc__, n=300)
    args = parser.parse_args(argv)
    seeds = args.seeds
    torch.set_num_threads(args.threads)
    model, schedule = load_pretrained("digits")
    rows = sampler_grid(
        model,
        schedule,
        SETTINGS,
        n=args.n,
        seed=seeds,
        guidance_scale=W,
        classifier=load_classifier(),
        cache=args.cache,
    )
    annotate(rows, model, schedule)
    publish_table(
        "samplers",
        "benchmarks/samplers.py",
        argv,
        args,
        render,
        guidance_scale=W,
        target=TARGET,
        rows=rows,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
