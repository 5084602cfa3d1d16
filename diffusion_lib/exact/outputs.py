"""Exact outputs of the samplers on Gaussian data, and the numbers read off them.

- :func:`exact_output`: the exact output distribution N(m, sd²) of any sampler here on
  Gaussian data with its exact ε̂ (:class:`~diffusion_lib.exact.oracle.GaussianOracle`), and
  how many model calls (NFE) it took. DDPM goes through
  :func:`~diffusion_lib.exact.moments.exact_moments`; every deterministic sampler (DDIM η = 0
  and the ODE solvers) is an affine map x_T ↦ k x_T + c for that ε̂, so two runs, from
  x_T = 0 and x_T = 1, give c and k, and x_T ~ N(0, 1) gives N(c, k²): no Monte Carlo;
- :func:`exact_ode_output`: the exact solution of the probability-flow ODE for data
  N(μ, s²), x̃(σ) − μ ∝ √(s² + σ²) in the σ-form x̃ = x/√ᾱ (see :mod:`diffusion_lib.sampling.ode`);
- :func:`gaussian_w2`, :func:`fitted_order`: the 2-Wasserstein distance between two 1-D
  Gaussians and the slope of a log-log error-vs-NFE fit;
- :class:`CallCounter`: counts a model's calls;
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from ..sampling import sample
from ..sampling.checks import check_choice
from ..sampling.ode import SigmaSchedule, sigmas_of
from ..sampling.registry import applicable_options, ode_samplers
from ..sampling.spacing import DEFAULT_SPACING, Spacing
from ..schedule import NoiseSchedule
from .moments import exact_moments
from .oracle import GaussianOracle

EXACT_SAMPLERS: tuple[str, ...] = ("ddpm", "ddim", *ode_samplers())
"""DDPM (through its moments) and the samplers run without noise here: DDIM η = 0 and the
probability-flow ODE solvers of the sampler table."""


class CallCounter(nn.Module):
    """``model`` with a count of its calls in ``calls`` (one batched call = one NFE)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.null_label = getattr(model, "null_label", None)
        self.num_classes = getattr(model, "num_classes", 0)
        self.calls = 0

    def forward(self, x_t: Tensor, t: Tensor, labels: Tensor | None = None) -> Tensor:
        self.calls += 1
        return self.model(x_t, t, labels)


class ExactOutput(NamedTuple):
    """The exact output distribution N(mean, sd²) of a sampler, and its model calls."""

    mean: float
    sd: float
    nfe: int


def exact_output(
    schedule: NoiseSchedule,
    sampler: str,
    steps: int,
    *,
    mean: float,
    std: float,
    sigma_schedule: SigmaSchedule = "karras",
    spacing: Spacing = DEFAULT_SPACING,
) -> ExactOutput:
    """The exact output of ``sample(GaussianOracle(schedule, mean, std), …)`` from x_T ~ N(0, 1).

    Args:
        sampler: ``"ddpm"`` (σ² = β̃), ``"ddim"`` (η = 0) or an ODE solver.
        steps: the steps asked for (Heun makes about two calls a step; a Karras grid
            may visit fewer steps than asked, see :func:`~..sampling.ode.ode_timesteps`).
        mean, std: μ and s of the data.
        sigma_schedule: the ODE solvers' σ grid; DDIM always uses ``spacing``.

    Returns:
        ExactOutput(mean, sd, nfe), without clipping (``x0_mode="none"``).
    """
    check_choice("sampler", sampler, EXACT_SAMPLERS)
    if sampler == "ddpm":
        m, sd = exact_moments(schedule, "ddpm", steps, spacing, mean=mean, std=std)
        return ExactOutput(float(m), float(sd), steps)
    model = CallCounter(GaussianOracle(schedule, mean, std))
    x_T = torch.tensor([[0.0], [1.0]])  # (2, 1): the map's offset and offset + slope
    options = applicable_options(
        sampler, dict(spacing=spacing, sigma_schedule=sigma_schedule, x0_mode="none")
    )
    out = sample(
        model, schedule, (2, 1), sampler=sampler, steps=steps, x_T=x_T, progress=False, **options
    ).double()
    offset, slope = float(out[0, 0]), float(out[1, 0] - out[0, 0])
    return ExactOutput(offset, abs(slope), model.calls)


def exact_ode_output(
    schedule: NoiseSchedule, t_start: int, x_T: Tensor, mean: float, std: float
) -> Tensor:
    """The exact PF-ODE solution at σ = 0 from x_T at timestep ``t_start``, data N(μ, s²).

    In the σ-form p_σ = N(μ, s² + σ²) and dx̃/dσ = σ (x̃ − μ)/(s² + σ²), so
    x_0 = μ + s (x̃_T − μ)/√(s² + σ_max²) with x̃_T = x_T √(1 + σ_max²). Float64.
    """
    s_max = float(sigmas_of(schedule)[t_start])
    x_tilde = x_T.double() * np.sqrt(1.0 + s_max**2)
    return mean + std / np.sqrt(std**2 + s_max**2) * (x_tilde - mean)


def gaussian_w2(mean_a: Any, sd_a: Any, mean_b: Any, sd_b: Any) -> float:
    """W₂ between two Gaussians with diagonal covariance: √Σ_i ((m_a − m_b)² + (s_a − s_b)²).

    Floats (1-D) or arrays of per-coordinate means and sds (e.g. (64,) for 8×8 pixels).
    """
    sq = np.square(np.subtract(mean_a, mean_b)) + np.square(np.subtract(sd_a, sd_b))
    return float(np.sqrt(np.sum(sq)))


def fitted_order(nfe: np.ndarray | list[int], errors: np.ndarray | list[float]) -> float:
    """p in error ≈ C · NFE^(−p): minus the slope of a least-squares line in log-log."""
    calls, errs = np.asarray(nfe, dtype=float), np.asarray(errors, dtype=float)
    if errs.size < 2 or not np.all(np.isfinite(errs) & (errs > 0)):
        raise ValueError("fitted_order needs at least two positive, finite errors")
    return float(-np.polyfit(np.log(calls), np.log(errs), 1)[0])


__all__ = [
    "EXACT_SAMPLERS",
    "CallCounter",
    "ExactOutput",
    "exact_ode_output",
    "exact_output",
    "fitted_order",
    "gaussian_w2",
]
