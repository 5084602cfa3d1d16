"""Error vs steps of the ODE samplers against the exact PF-ODE solution (no Monte Carlo).

Data N(0.1, 0.5²) with its exact ε̂ (an oracle), the linear and cosine schedules, 256
fixed x_T; the exact output is μ + s (x̃_T − μ)/√(s² + σ_max²) (tests/test_ode.py).
Prints mean |x_0 − exact| and the model calls (NFE) per run, as a markdown table.

    python benchmarks/ode_orders.py
"""

from __future__ import annotations

import numpy as np
import torch

from diffusion_lib import sample
from diffusion_lib.exact.oracle import GaussianOracle
from diffusion_lib.sampling.ode import ode_timesteps, sigmas_of
from diffusion_lib.schedule import cosine_schedule, linear_schedule

MU, S, STEPS = 0.1, 0.5, (5, 10, 20, 40, 80)


def main() -> None:
    x_T = torch.randn(256, 2, generator=torch.Generator().manual_seed(0))
    print("| schedule | σ grid | sampler | " + " | ".join(f"{n} steps" for n in STEPS) + " |")
    print("|---|---|---|" + "---|" * len(STEPS))
    for name, schedule in (("linear", linear_schedule(1000)), ("cosine", cosine_schedule(1000))):
        oracle = GaussianOracle(schedule, MU, S)
        for grid in ("karras", "uniform"):
            for sampler in ("euler", "heun", "dpmpp_2m"):
                cells = []
                for n in STEPS:
                    calls = []

                    def model(x, t, labels=None, calls=calls, oracle=oracle):
                        calls.append(1)
                        return oracle(x, t)

                    model.null_label = None
                    ts = ode_timesteps(schedule, n, grid)
                    s_max = sigmas_of(schedule)[ts[0]]
                    exact = MU + S / np.sqrt(S**2 + s_max**2) * (
                        x_T.double() * np.sqrt(1 + s_max**2) - MU
                    )
                    out = sample(
                        model,
                        schedule,
                        (256, 2),
                        sampler=sampler,
                        steps=n,
                        x_T=x_T,
                        x0_mode="none",
                        sigma_schedule=grid,
                        progress=False,
                    )
                    err = (out.double() - exact).abs().mean().item()
                    cells.append(f"{err:.1e} ({len(calls)})")
                print(f"| {name} | {grid} | {sampler} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
