"""Helpers for notebook 07, "beyond the chapter": exact sampler errors, zero terminal SNR.

- :func:`exact_output`: the exact output distribution N(m, sd²) of any sampler here on
  Gaussian data with its exact ε̂ (:class:`~diffusion_lib.oracle.GaussianOracle`), and
  how many model calls (NFE) it took. DDPM goes through
  :func:`~diffusion_lib.moments.exact_moments`; every deterministic sampler (DDIM η = 0
  and the ODE solvers) is an affine map x_T ↦ k x_T + c for that ε̂, so two runs, from
  x_T = 0 and x_T = 1, give c and k, and x_T ~ N(0, 1) gives N(c, k²): no Monte Carlo;
- :func:`exact_ode_output`: the exact solution of the probability-flow ODE for data
  N(μ, s²), x̃(σ) − μ ∝ √(s² + σ²) in the σ-form x̃ = x/√ᾱ (see :mod:`diffusion_lib.ode`);
- :func:`gaussian_w2`, :func:`fitted_order`: the 2-Wasserstein distance between two 1-D
  Gaussians and the slope of a log-log error-vs-NFE fit;
- :func:`rescale_zero_terminal_snr`: Lin et al. 2024, Algorithm 1 (ᾱ_{T−1} = 0 exactly);
- :class:`CallCounter`: counts a model's calls;
- :func:`hub_reachable`: whether the Hugging Face Hub answers, within a hard time limit.
"""

from __future__ import annotations

import os
import socket
import threading
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from .moments import exact_moments
from .ode import ODE_SAMPLERS, SigmaSchedule, sigmas_of
from .oracle import GaussianOracle
from .sampling import sample
from .schedule import NoiseSchedule
from .spacing import DEFAULT_SPACING, Spacing, check_choice

EXACT_SAMPLERS: tuple[str, ...] = ("ddpm", "ddim", *ODE_SAMPLERS)


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
            may visit fewer steps than asked, see :func:`~diffusion_lib.ode.ode_timesteps`).
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
    out = sample(model, schedule, (2, 1), sampler=sampler, steps=steps, spacing=spacing,
                 sigma_schedule=sigma_schedule, x_T=x_T, x0_mode="none",
                 progress=False).double()
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


def rescale_zero_terminal_snr(alphas_cumprod: np.ndarray) -> np.ndarray:
    """Lin et al. 2024, Algorithm 1: shift and scale √ᾱ so that ᾱ_{T−1} = 0, ᾱ_0 kept.

    √ᾱ' = (√ᾱ − √ᾱ_{T−1}) · √ᾱ_0 / (√ᾱ_0 − √ᾱ_{T−1}). Returns ᾱ' (T,) float64; its last
    β is 1, which :class:`~diffusion_lib.schedule.NoiseSchedule` (β ≤ 0.999) refuses.
    """
    root = np.sqrt(np.asarray(alphas_cumprod, dtype=np.float64))
    first, last = root[0], root[-1]
    return ((root - last) * first / (first - last)) ** 2


def hub_reachable(host: str = "huggingface.co", port: int = 443, timeout: float = 2.0) -> bool:
    """Whether a TCP connection to the Hub opens within ``timeout`` seconds.

    False at once when ``HF_HUB_OFFLINE`` is set to a true value. The name lookup has no
    timeout of its own, so the attempt runs in a daemon thread that is abandoned after
    ``timeout``: the call never takes much longer than that.
    """
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    opened: list[bool] = []

    def attempt() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            opened.append(True)
        except OSError:
            pass

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout + 0.5)
    return bool(opened)


__all__ = [
    "EXACT_SAMPLERS",
    "CallCounter",
    "ExactOutput",
    "exact_ode_output",
    "exact_output",
    "fitted_order",
    "gaussian_w2",
    "hub_reachable",
    "rescale_zero_terminal_snr",
]
