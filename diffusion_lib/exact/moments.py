"""Exact output moments of every sampler for Gaussian data, with no Monte Carlo.

With data x_0 ~ N(μ, s²) (per dimension) and the oracle ε̂
(:class:`diffusion_lib.exact.oracle.GaussianOracle`), the predicted
x̂0 = E[x_0 | x_t] = μ + A_t (x_t − √ᾱ_t μ), A_t = √ᾱ_t s² / v_t,
v_t = ᾱ_t s² + 1 − ᾱ_t, is affine in x_t. So is every update here, plus
independent Gaussian noise:

    x_prev = k_t x_t + c_t + σ_t z   ⇒   m ← k_t m + c_t,   V ← k_t² V + σ_t²,

starting from x_T ~ N(0, 1) (m = 0, V = 1), exactly as :func:`sample` does.
The recursion runs in float64 on the schedule's float64 ᾱ.

Samplers (matching :func:`diffusion_lib.sampling.sample_progressive`):

- ``"ddpm"``: x_prev = coef1 x̂0 + coef2 x_t + σ z (Ho et al. 2020, eqs. 6–7),
  σ² = β_t, β̃_t = β_t (1 − ᾱ_prev)/(1 − ᾱ_t), or ``"analytic"``; no noise at
  the last step (except ``"analytic"``, see below). With fewer steps the
  schedule is respaced: β_t = 1 − ᾱ_t / ᾱ_prev between kept steps.
- ``"ddim"``: x_prev = √ᾱ_prev x̂0 + √(1 − ᾱ_prev − σ²) ε̂ + σ z with
  σ² = η² (1 − ᾱ_prev)/(1 − ᾱ_t) (1 − ᾱ_t/ᾱ_prev) (Song et al. 2021, eqs. 12, 16).
- ``"naive_strided"``: the seed chapter's x_next = √ᾱ_next x̂0 + √(1 − ᾱ_next) z
  on the un-respaced schedule, t_next = max(0, t − stride), noise added at
  every step including the last. It is the σ² = 1 − ᾱ_prev member of the DDIM
  family, but its variance lacks ᾱ_next Var[x_0 | x_t], a term that does not
  vanish as the stride shrinks, so it does not converge as steps → T.

The true reverse transition for Gaussian data is itself Gaussian with variance
β̃_t + coef1_t² Var[x_0 | x_t] (Bao et al. 2022, Analytic-DPM, with
Var[x_0 | x_t] = s² (1 − ᾱ_t)/v_t, the same for every x_t). ``"analytic"`` uses
it, by default at every step including the last (where it is
Var[x_0 | x_{t_0}]); it is then exact at any step count, up to the start
x_T ~ N(0, 1) differing from the true marginal at the first visited step.
``last_step_noise`` overrides the last step for any DDPM variance:
``last_step_noise=False`` puts ``"analytic"`` on the footing of β and β̃ (and
of :func:`sample`), which add none there. With few trailing steps the last
step is a big jump, and dropping its Var[x_0 | x_{t_0}] costs more than the
per-step choice of σ²: data sd 0.2, linear schedule, trailing spacing, sd
0.102 / 0.164 / 0.187 / 0.195 at 10 / 25 / 50 / 100 steps (σ² = β: 0.155 /
0.210 / 0.212 / 0.208), pinned in ``tests/test_moments_last_step.py``.

Worked numbers (linear schedule, leading spacing, pinned in ``tests/test_oracle.py``):

- data sd 0.2, naive strided: sd 0.0890 / 0.1305 / 0.1391 after 10 / 100 /
  1000 steps (never 0.2; N(0, 1) data ends at 0.703 ≈ 1/√2);
- data sd 0.2, DDPM at 10 / 25 / 50 / 100 steps: σ² = β gives sd 0.358 /
  0.252 / 0.225 / 0.212, σ² = β̃ gives 0.094 / 0.138 / 0.159 / 0.175: β̃ is
  closer up to 17 steps, β from 18 on (cosine schedule: up to 8 steps);
- data sd 1: σ² = β is exact (0.9999, the start x_T) at every step count,
  β̃ gives 0.740 / 0.868 / 0.926 / 0.960.

Not modelled: x̂0 clipping (``x0_mode="clip"``/``"dynamic"``) is non-linear, so
these moments are those of ``x0_mode="none"``. The naive strided sampler always
clips; for data well inside [−1, 1] (e.g. sd 0.2) that clipping almost never
acts and the moments still match.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from ..sampling import (
    DEFAULT_SPACING,
    SPACINGS,
    Sampler,
    Spacing,
    check_choice,
    naive_strided_timesteps,
    sampling_schedule,
)
from ..sampling.registry import sampler_kind
from ..schedule import NoiseSchedule

__all__ = ["MOMENT_VARIANCES", "analytic_variance", "exact_moments"]

MOMENT_SAMPLERS: tuple[str, ...] = ("ddpm", "ddim", "naive_strided")
"""The samplers of the sampler table with an exact moment recursion here (the ODE
solvers: :func:`~.outputs.exact_output`)."""
MomentVariance = Literal["beta", "beta_tilde", "analytic"]
MOMENT_VARIANCES: tuple[str, ...] = ("beta", "beta_tilde", "analytic")

Scalar = float | np.ndarray


def _x0_affine(a_bar: float, mean: np.ndarray, var: np.ndarray) -> tuple[np.ndarray, ...]:
    """x̂0 = A x_t + c and Var[x_0 | x_t] for data N(mean, var) at ᾱ_t = ``a_bar``."""
    v_t = a_bar * var + (1.0 - a_bar)
    gain = np.sqrt(a_bar) * var / v_t  # A_t
    return gain, mean - gain * np.sqrt(a_bar) * mean, var * (1.0 - a_bar) / v_t


def analytic_variance(
    schedule: NoiseSchedule,
    std: Scalar = 1.0,
    steps: int | None = None,
    spacing: Spacing = DEFAULT_SPACING,
) -> np.ndarray:
    """Analytic-DPM's optimal DDPM variance σ*² for Gaussian data of sd ``std``.

    σ*²_i = β̃_i + coef1_i² Var[x_0 | x_{t_i}] on the sampling schedule
    (:func:`diffusion_lib.sampling.sampling_schedule`), Bao et al. 2022, Thm 1
    for q(x_0) Gaussian, where E[Var[x_0 | x_t]] = Var[x_0 | x_t].

    Returns:
        (S, *shape of std) float64, step 0 (the last step taken) first.
    """
    sched = sampling_schedule(schedule, steps, spacing)
    var = np.asarray(std, dtype=np.float64) ** 2
    a_bar = sched.alphas_cumprod_f64
    a_prev = np.append(1.0, a_bar[:-1])
    beta = 1.0 - a_bar / a_prev
    coef1 = beta * np.sqrt(a_prev) / (1.0 - a_bar)
    out = []
    for i in range(sched.num_steps):
        _, _, post_var = _x0_affine(a_bar[i], np.zeros_like(var), var)
        out.append(beta[i] * (1.0 - a_prev[i]) / (1.0 - a_bar[i]) + coef1[i] ** 2 * post_var)
    return np.stack(out)


def exact_moments(
    schedule: NoiseSchedule,
    sampler: Sampler = "ddpm",
    steps: int | None = None,
    spacing: Spacing = DEFAULT_SPACING,
    variance: MomentVariance = "beta_tilde",
    eta: float = 0.0,
    mean: Scalar = 0.0,
    std: Scalar = 1.0,
    last_step_noise: bool | None = None,
) -> tuple[Scalar, Scalar]:
    """The exact mean and sd of ``sample(GaussianOracle(schedule, mean, std), schedule, …)``.

    Args:
        schedule: the training schedule (T steps).
        sampler: ``"ddpm"``, ``"ddim"`` or ``"naive_strided"``.
        steps: steps taken (1 … T); ``None`` = all T.
        spacing: ``"trailing"`` (default, as :func:`~diffusion_lib.sampling.sample`),
            ``"linspace"`` or ``"leading"`` (DDPM, DDIM);
            the naive strided sampler has its own ``range(0, T, T // steps)``.
        variance: DDPM's σ²: ``"beta"``, ``"beta_tilde"`` or ``"analytic"``
            (Analytic-DPM, not a :func:`sample` option; see the module docstring).
        eta: DDIM's η ≥ 0 (η > 1 is computed, with 1 − ᾱ_prev − σ² clamped at 0
            like the step; :func:`sample` may accept only [0, 1]).
        mean, std: μ and s of the data, floats or arrays (elementwise).
        last_step_noise: DDPM only: whether the last step (to x_0) adds its σ² z.
            ``None``: as each variance's default, none for ``"beta"`` and
            ``"beta_tilde"`` (as :func:`sample`), Var[x_0 | x_{t_0}] for
            ``"analytic"``.

    Returns:
        (mean, sd) of the output x_0, float64, shaped like ``broadcast(mean, std)``
        (floats for float inputs). Clipping is not modelled (``x0_mode="none"``).
    """
    sampler_kind(sampler)  # a name of the sampler table
    check_choice("sampler", sampler, MOMENT_SAMPLERS)
    check_choice("spacing", spacing, SPACINGS)
    check_choice("variance", variance, MOMENT_VARIANCES)
    if not eta >= 0.0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    if sampler != "ddim" and eta != 0.0:
        raise ValueError(f"eta only applies to sampler='ddim', got eta={eta} with {sampler!r}")
    if variance == "analytic" and sampler != "ddpm":
        raise ValueError("variance='analytic' applies to sampler='ddpm' only")
    if last_step_noise is not None and sampler != "ddpm":
        raise ValueError(f"last_step_noise applies to sampler='ddpm' only, got {sampler!r}")
    if last_step_noise is None:
        last_step_noise = variance == "analytic"
    mu = np.asarray(mean, dtype=np.float64)
    var = np.asarray(std, dtype=np.float64) ** 2
    if np.any(var <= 0):
        raise ValueError("std must be > 0")
    m = np.zeros(np.broadcast_shapes(mu.shape, var.shape))  # x_T ~ N(0, 1)
    v = np.ones_like(m)

    if sampler == "naive_strided":
        num_timesteps = schedule.num_steps
        a_bar = schedule.alphas_cumprod_f64
        visit = naive_strided_timesteps(num_timesteps, steps or num_timesteps)
        stride = visit[0] - visit[1] if len(visit) > 1 else num_timesteps
        for t in visit:
            gain, const, _ = _x0_affine(a_bar[t], mu, var)
            a_next = a_bar[max(0, t - stride)]
            # x_next = √ᾱ_next x̂0 + √(1 − ᾱ_next) z
            m = np.sqrt(a_next) * (gain * m + const)
            v = a_next * gain**2 * v + (1.0 - a_next)
        return _out(m, v)

    sched = sampling_schedule(schedule, steps, spacing)
    a_bar = sched.alphas_cumprod_f64
    a_prev = np.append(1.0, a_bar[:-1])
    beta = 1.0 - a_bar / a_prev
    for i in range(sched.num_steps - 1, -1, -1):
        # 1. x̂0 = A x_t + c (the oracle's ε̂ turned into x̂0)
        gain, const, post_var = _x0_affine(a_bar[i], mu, var)
        if sampler == "ddpm":
            # 2. posterior mean coef1 x̂0 + coef2 x_t (DDPM eq. 7)
            coef1 = beta[i] * np.sqrt(a_prev[i]) / (1.0 - a_bar[i])
            coef2 = (1.0 - a_prev[i]) * np.sqrt(1.0 - beta[i]) / (1.0 - a_bar[i])
            k, c = coef1 * gain + coef2, coef1 * const
            # 3. σ²: β, β̃ or Analytic-DPM's; at the last step only if last_step_noise
            beta_tilde = beta[i] * (1.0 - a_prev[i]) / (1.0 - a_bar[i])
            if i == 0 and not last_step_noise:
                noise = 0.0
            elif variance == "analytic":
                noise = beta_tilde + coef1**2 * post_var
            else:
                noise = beta[i] if variance == "beta" else beta_tilde
        else:
            # 2. σ(η) (DDIM eq. 16) and the direction √(1 − ᾱ_prev − σ²) ε̂
            noise = eta**2 * (1.0 - a_prev[i]) / (1.0 - a_bar[i]) * (1.0 - a_bar[i] / a_prev[i])
            direction = np.sqrt(max(1.0 - a_prev[i] - noise, 0.0))
            # ε̂ = (x_t − √ᾱ_t x̂0) / √(1 − ᾱ_t), affine in x_t as well
            k_eps = (1.0 - np.sqrt(a_bar[i]) * gain) / np.sqrt(1.0 - a_bar[i])
            c_eps = -np.sqrt(a_bar[i]) * const / np.sqrt(1.0 - a_bar[i])
            k = np.sqrt(a_prev[i]) * gain + direction * k_eps
            c = np.sqrt(a_prev[i]) * const + direction * c_eps
        m = k * m + c
        v = k**2 * v + noise
    return _out(m, v)


def _out(m: np.ndarray, v: np.ndarray) -> tuple[Scalar, Scalar]:
    sd = np.sqrt(v)
    if m.ndim == 0:
        return float(m), float(sd)
    return m, sd
