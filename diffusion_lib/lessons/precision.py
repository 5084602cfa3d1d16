"""A DDPM loop with every operation in a chosen dtype (notebook 02, "half precision").

The library's own sampler always keeps its arithmetic in float32 (:mod:`diffusion_lib.speed`
wraps a half-precision network so ε̂ comes back as float32). To *show* why:

- :func:`schedule_in_dtype` hands any loop that reads a schedule's tensors (the learner's
  loop of notebook 02) those tensors in fp16, bf16 or fp32, so the loop's arithmetic runs
  in that dtype;
- :func:`chapter_loop_in_dtype` runs the chapter's loop (σ² = β, its ε-form or its clip
  form) end to end in a dtype, on Gaussian data N(μ, s²) with the exact ε̂, so every error
  is the arithmetic's. Runs with the same ``seed`` share x_T and every z, so the paired
  difference of two runs isolates the arithmetic.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch
from torch import Tensor

from ..schedule import NoiseSchedule

__all__ = ["chapter_loop_in_dtype", "precision_summary", "schedule_in_dtype"]


def _constants(schedule: NoiseSchedule, schedule_dtype: torch.dtype) -> dict[str, Tensor]:
    """The loop's per-step constants, computed in ``schedule_dtype`` from float64 ᾱ."""
    a = torch.tensor(schedule.alphas_cumprod_f64).to(schedule_dtype)  # ᾱ_t, (T,)
    a_prev = torch.cat([torch.ones(1, dtype=a.dtype), a[:-1]])  # ᾱ_{t−1}
    beta = 1 - a / a_prev
    return {
        "a": a, "1/√ᾱ": (1 / a).sqrt(), "√(1/ᾱ−1)": (1 / a - 1).sqrt(),
        "coef1": beta * a_prev.sqrt() / (1 - a),
        "coef2": (1 - a_prev) * (1 - beta).sqrt() / (1 - a),
        "1/√α": (1 - beta).rsqrt(), "β/√(1−ᾱ)": beta / (1 - a).sqrt(), "σ": beta.sqrt(),
    }  # fmt: skip


def schedule_in_dtype(
    schedule: NoiseSchedule, dtype: torch.dtype, alpha_bar_dtype: torch.dtype = torch.float64
) -> SimpleNamespace:
    """The tensors a DDPM loop reads from ``schedule``, every one in ``dtype``.

    ᾱ is first stored in ``alpha_bar_dtype`` and everything else is derived from it in that
    dtype, then rounded to ``dtype``: float64 (the default) gives the schedule's exact
    values rounded once, float16 what a schedule kept in half precision computes.

    Returns:
        a namespace with the :class:`~diffusion_lib.schedule.NoiseSchedule` names ``betas``,
        ``alphas``, ``alphas_cumprod``, ``sqrt_alphas_cumprod``,
        ``sqrt_one_minus_alphas_cumprod``, ``posterior_variance``, ``posterior_mean_coef1``,
        ``posterior_mean_coef2`` (each (T,) in ``dtype``), and ``num_steps`` and
        ``timesteps`` as the schedule has them.
    """
    a = torch.tensor(schedule.alphas_cumprod_f64).to(alpha_bar_dtype)  # ᾱ_t, (T,)
    a_prev = torch.cat([torch.ones(1, dtype=a.dtype), a[:-1]])  # ᾱ_{t−1}
    beta = 1 - a / a_prev
    derived = {
        "betas": beta, "alphas": 1 - beta, "alphas_cumprod": a,
        "sqrt_alphas_cumprod": a.sqrt(), "sqrt_one_minus_alphas_cumprod": (1 - a).sqrt(),
        "posterior_variance": beta * (1 - a_prev) / (1 - a),
        "posterior_mean_coef1": beta * a_prev.sqrt() / (1 - a),
        "posterior_mean_coef2": (1 - a_prev) * (1 - beta).sqrt() / (1 - a),
    }  # fmt: skip
    return SimpleNamespace(
        num_steps=schedule.num_steps,
        timesteps=schedule.timesteps.cpu(),
        **{name: value.to(dtype) for name, value in derived.items()},
    )


@torch.no_grad()
def chapter_loop_in_dtype(
    schedule: NoiseSchedule,
    n: int,
    dtype: torch.dtype,
    eps_dtype: torch.dtype,
    clip: bool,
    schedule_dtype: torch.dtype = torch.float64,
    seed: int = 0,
    mean: float = 0.3,
    std: float = 0.2,
) -> Tensor:
    """All T steps of the chapter's DDPM loop (σ² = β) for data N(mean, std²), in ``dtype``.

    Args:
        schedule: the training schedule (all T steps are taken).
        n: how many scalar samples.
        dtype: the sampler's arithmetic (every operation of the update).
        eps_dtype: ε̂ is rounded to this dtype first, like a network's output.
        clip: the clip form (x̂0 = clamp((x_t − √(1−ᾱ) ε̂)/√ᾱ), then the posterior mean)
            instead of the ε-form x_{t−1} = (x_t − β/√(1−ᾱ) ε̂)/√α + σ z.
        schedule_dtype: the dtype ᾱ is stored in before the constants are derived
            (float64: constants derived exactly and then rounded to ``dtype``).
        seed: x_T and every z; runs with the same seed share them.

    Returns:
        (n,) float32 samples (NaN/inf where the arithmetic broke down).
    """
    g = torch.Generator().manual_seed(seed)
    c = {k: v.to(dtype) for k, v in _constants(schedule, schedule_dtype).items()}
    a64 = torch.tensor(schedule.alphas_cumprod_f64)
    x = torch.randn(n, generator=g).to(dtype)
    for t in reversed(range(len(a64))):
        at = a64[t]  # the exact ε̂ of N(mean, std²), in float64
        eps = (1 - at).sqrt() * (x.double() - at.sqrt() * mean) / (at * std**2 + 1 - at)
        eps = eps.to(eps_dtype).to(dtype)  # the "model output", rounded like the network's
        if clip:
            x0 = (c["1/√ᾱ"][t] * x - c["√(1/ᾱ−1)"][t] * eps).clamp(-1, 1)
            step_mean = c["coef1"][t] * x0 + c["coef2"][t] * x
        else:
            step_mean = c["1/√α"][t] * (x - c["β/√(1−ᾱ)"][t] * eps)
        z = torch.randn(n, generator=g).to(dtype)
        x = step_mean + c["σ"][t] * z if t > 0 else step_mean
    return x.float()


def precision_summary(x: Tensor, reference: Tensor) -> tuple[float, float, float, float]:
    """(non-finite share, mean and sd of the finite samples, paired Δ mean vs ``reference``).

    NaN for the last three when no sample is finite.
    """
    ok = torch.isfinite(x)
    if not bool(ok.any()):
        return 1.0, math.nan, math.nan, math.nan
    finite = x[ok]
    delta = (x - reference)[ok].mean().item()
    return 1 - ok.float().mean().item(), finite.mean().item(), finite.std().item(), delta
