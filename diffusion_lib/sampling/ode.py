"""The probability-flow ODE view: Euler, Heun, DPM-Solver++(2M), EDM's stochastic sampler
(Heun with churn), and DDIM inversion.

Write x_t = √ᾱ_t (x0 + σ_t ε) with σ_t = √((1 − ᾱ_t)/ᾱ_t), and let x̃ = x_t/√ᾱ_t.
Then x̃ = x0 + σ ε: data plus Gaussian noise of standard deviation σ, the
"variance exploding" form of Karras et al. 2022 (EDM). The probability-flow
ODE of the diffusion is, with the denoiser D(x̃; σ) = E[x0 | x̃] = x̂0,

    dx̃/dσ = (x̃ − D(x̃; σ)) / σ = ε̂(x_t, t).

Sampling integrates it from σ_max (x̃ = x_T/√ᾱ_{T−1}) down to σ = 0:

- **Euler**: x̃' = x̃ + (σ' − σ) ε̂ — exactly DDIM with η = 0 on the same steps
  (Song et al. 2021 §4.3);
- **Heun** (EDM, Algorithm 1): an Euler step, then the average of the slopes at
  both ends; second order, two model calls per step (one at the last step, and one at
  a step across a σ ratio above :data:`HEUN_MAX_SIGMA_RATIO`, which is Euler's);
- **EDM's stochastic sampler** (Karras et al. 2022, Algorithm 2): Heun, but each step
  first raises σ_i to σ̂ = σ_i (1 + γ_i) by adding fresh noise of variance σ̂² − σ_i²
  ("churn"), then takes the Heun step from σ̂; with no churn it is Heun exactly;
- **DPM-Solver++(2M)** (Lu et al. 2022): with λ = −log σ and h = λ' − λ, the
  exact solution for a constant D is x̃' = (σ'/σ) x̃ + (1 − σ'/σ) D (DDIM again);
  2M replaces D by the extrapolation (1 + 1/2r) D_i − (1/2r) D_{i−1},
  r = h_{i−1}/h_i: second order, one model call per step.

The models here are trained on integer timesteps, so every σ a solver visits
is the σ of one training timestep: a σ schedule (uniform in t with a
:mod:`~diffusion_lib.sampling.spacing`, or Karras et al.'s ρ = 7 schedule, each σ snapped
to the nearest timestep in log σ) gives the timesteps, and the solver uses
their exact σ_t. The last step goes to σ = 0, where x̃ = x0. EDM's raised σ̂ is
snapped the same way (:func:`churn_timesteps`).

Clipping (``x0_mode``) acts on D = x̂0, as in the DDPM/DDIM steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any, Literal, NamedTuple, get_args

import numpy as np
import torch
from torch import Tensor

from ..schedule import NoiseSchedule
from .checks import check_choice, check_steps
from .spacing import DEFAULT_SPACING, SPACINGS, Spacing, timestep_spacing

SigmaSchedule = Literal["uniform", "karras"]
SIGMA_SCHEDULES: tuple[str, ...] = get_args(SigmaSchedule)
KARRAS_RHO = 7.0
HEUN_MAX_SIGMA_RATIO = 100.0
"""Heun (and EDM) take an Euler step, one model call instead of two, on a step from σ to
σ' with σ/σ' above this. Across a huge ratio the trapezoid of the two slopes weights the
slope at σ' over the whole interval [σ', σ], where ε̂ is nearly constant except close to σ':
the cosine schedule's first step with 10 uniform steps (σ 2.0e4 → 6.4, ratio 3188) gave a
mean error of 3.7 against the exact PF-ODE output for Gaussian data, 1.3e-2 with an Euler
first step. The largest ratio of the standard grids of the linear schedule (T = 1000), none
of which this changes: Karras ρ = 7, 10 … 1000 steps: 7.3 (5 … 9 steps: 49); uniform t, 10 …
1000 steps: trailing 2.6, leading 34, linspace 38 (5 … 9 steps: 6.2, 72, 96). The cosine
schedule's first uniform step is above it up to 160 steps (ratio 190 there, 380 at 80)."""


def sigmas_of(schedule: NoiseSchedule) -> np.ndarray:
    """σ_t = √((1 − ᾱ_t)/ᾱ_t) for every step of ``schedule``, float64, (T,)."""
    a = schedule.alphas_cumprod_f64
    return np.sqrt((1.0 - a) / a)


def karras_sigmas(
    sigma_min: float, sigma_max: float, n: int, rho: float = KARRAS_RHO
) -> np.ndarray:
    """Karras et al. 2022, eq. 5: n σ's from σ_max down to σ_min, uniform in σ^(1/ρ)."""
    ramp = np.linspace(0.0, 1.0, n) if n > 1 else np.zeros(1)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (hi + ramp * (lo - hi)) ** rho


def ode_timesteps(
    schedule: NoiseSchedule,
    steps: int | None = None,
    sigma_schedule: SigmaSchedule = "karras",
    spacing: Spacing = DEFAULT_SPACING,
) -> np.ndarray:
    """The training timesteps an ODE sampler visits, descending (noisiest first).

    ``"uniform"``: the :func:`~diffusion_lib.sampling.spacing.timestep_spacing` of
    ``spacing``. ``"karras"``: Karras' ρ = 7 σ's between σ(0) and σ(T − 1),
    each snapped to the nearest timestep in log σ; duplicates (many steps over a
    short σ range) are dropped, so a run may visit fewer than ``steps``.
    """
    check_choice("sigma_schedule", sigma_schedule, SIGMA_SCHEDULES)
    check_choice("spacing", spacing, SPACINGS)
    T = schedule.num_steps
    n = T if steps is None else check_steps(steps, T)
    if sigma_schedule == "uniform":
        return timestep_spacing(T, n, spacing)[::-1].copy()
    if T == 1:  # one σ: the search below needs two timesteps to choose between
        return np.zeros(1, dtype=np.int64)
    sig = sigmas_of(schedule)
    ts = nearest_timesteps(sig, karras_sigmas(float(sig[0]), float(sig[-1]), n))
    _, first = np.unique(ts, return_index=True)
    return ts[np.sort(first)].astype(np.int64)


def nearest_timesteps(sigmas: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """For each σ of ``wanted``, the timestep whose σ_t (``sigmas``, increasing in t) is
    nearest in log σ; a σ beyond the schedule's ends gives 0 or T − 1. The models here know
    only their training timesteps, so this is how a solver's σ becomes one."""
    T = len(sigmas)
    if T == 1:
        return np.zeros(len(wanted), dtype=np.int64)
    log_sig = np.log(sigmas)  # increasing in t
    idx = np.clip(np.searchsorted(log_sig, np.log(wanted)), 1, T - 1)
    nearer_low = np.abs(log_sig[idx - 1] - np.log(wanted)) <= np.abs(log_sig[idx] - np.log(wanted))
    return np.where(nearer_low, idx - 1, idx)


def churn_timesteps(
    timesteps: np.ndarray,
    sigmas: np.ndarray,
    s_churn: float,
    s_tmin: float = 0.0,
    s_tmax: float = math.inf,
) -> np.ndarray:
    """EDM's raised timesteps t̂_i ≥ t_i, one per step of ``timesteps`` (Karras et al. 2022,
    Algorithm 2): σ̂_i = σ_i (1 + γ_i), γ_i = min(S_churn/N, √2 − 1) where
    S_tmin ≤ σ_i ≤ S_tmax and 0 elsewhere, N = ``len(timesteps)``; each σ̂_i snapped to a
    training timestep (:func:`nearest_timesteps`, never below t_i).

    Where t̂_i = t_i (no churn there, or too little to reach the next timestep) the step
    adds no noise. σ cannot rise above σ(T − 1), the noisiest σ the model was trained on,
    so a step at t = T − 1 (the first one of most grids) never churns.
    """
    ts = np.asarray(timesteps, dtype=np.int64)
    if s_churn == 0.0 or len(ts) == 0:
        return ts.copy()
    s = sigmas[ts]
    gamma = min(s_churn / len(ts), math.sqrt(2.0) - 1.0)
    churned = (s >= s_tmin) & (s <= s_tmax)
    hat = nearest_timesteps(sigmas, s * (1.0 + gamma))
    return np.where(churned, np.maximum(hat, ts), ts).astype(np.int64)


DenoiseFn = Callable[[Tensor, int], tuple[Tensor, Tensor, Any]]
"""``denoise(x̃, t) -> (D = processed x̂0, ε̂ consistent with it, what the model returned)``."""


class OdeStep(NamedTuple):
    """One step of an ODE walk, in the σ-form x̃ = x_t/√ᾱ_t = x_t·√(1 + σ²)."""

    index: int
    """Position in the walk, 0 for the noisiest step."""
    t: int
    """The timestep of x̃ (the model was called there, or at ``t_hat`` after EDM's churn)."""
    x: Tensor
    """x̃_i, (B, ...)."""
    x_next: Tensor
    """x̃_{i+1}, at the next timestep, or the sample (σ = 0) after the last step."""
    denoised: Tensor
    """D_i = x̂0 (processed)."""
    eps: Tensor
    """ε̂_i, consistent with D_i."""
    model_output: Any
    """What the model returned at (x̃_i, t_i), or at (x̂, t̂) after EDM's churn
    (:class:`~.guidance.EpsParts` in the loop)."""
    noise: Tensor | None = None
    """EDM's churn: the z of x̂ = x̃_i + S_noise √(σ̂² − σ_i²) z, added before the model
    call; ``None`` where the step adds no noise (every step of the ODE solvers)."""
    t_hat: int | None = None
    """EDM's churn: the raised timestep t̂ of x̂, where the model was called (and
    ``denoised``, ``eps`` and ``model_output`` belong); ``None`` where it is ``t``."""


OdeWalk = Callable[[Tensor, np.ndarray, np.ndarray, DenoiseFn], Iterator[OdeStep]]
"""``walk(x̃_T, timesteps, sigmas, denoise)``: integrate the PF-ODE over ``timesteps``
(descending) and then to σ = 0. ``sigmas[t]`` is σ of timestep t (float64)."""

NoiseFn = Callable[[int], Tensor]
"""``noise(index) -> z`` (B, ...): the fresh noise of walk step ``index``, per-sample seeded
(:mod:`.noise`) or given from outside; called once per step that adds noise, in order."""


def _next_sigma(timesteps: np.ndarray, i: int, sigmas: np.ndarray) -> tuple[int | None, float]:
    """(t_{i+1}, σ_{i+1}), or (None, 0) after the last timestep."""
    if i + 1 < len(timesteps):
        t_next = int(timesteps[i + 1])
        return t_next, float(sigmas[t_next])
    return None, 0.0


def euler_walk(
    x_tilde: Tensor, timesteps: np.ndarray, sigmas: np.ndarray, denoise: DenoiseFn
) -> Iterator[OdeStep]:
    """Euler: x̃' = x̃ + (σ' − σ) ε̂, exactly DDIM η = 0 on the same steps."""
    x = x_tilde
    for i, t in enumerate(timesteps.tolist()):
        _, s_next = _next_sigma(timesteps, i, sigmas)
        d, eps, raw = denoise(x, t)
        x_next = x + (s_next - float(sigmas[t])) * eps
        yield OdeStep(i, t, x, x_next, d, eps, raw)
        x = x_next


def heun_walk(
    x_tilde: Tensor, timesteps: np.ndarray, sigmas: np.ndarray, denoise: DenoiseFn
) -> Iterator[OdeStep]:
    """Heun (EDM, Algorithm 1): an Euler step, then the mean of the slopes at both ends.

    The last step (to σ = 0) is Euler's, and so is a step from σ to σ' with
    σ/σ' > :data:`HEUN_MAX_SIGMA_RATIO` (where the trapezoid diverges): one model call
    there, two at every other step.
    """
    return edm_walk(x_tilde, timesteps, sigmas, denoise)


def edm_walk(
    x_tilde: Tensor,
    timesteps: np.ndarray,
    sigmas: np.ndarray,
    denoise: DenoiseFn,
    noise: NoiseFn | None = None,
    *,
    churn: np.ndarray | None = None,
    s_noise: float = 1.0,
) -> Iterator[OdeStep]:
    """EDM's stochastic sampler (Karras et al. 2022, Algorithm 2): churn, then a Heun step.

    At step i, where ``churn[i]`` = t̂ > t_i (:func:`churn_timesteps`), x̂ = x̃_i +
    ``s_noise`` · √(σ̂² − σ_i²) · z with z = ``noise(i)``, σ̂ = σ(t̂); then Heun from
    (x̂, σ̂) to σ_{i+1} (:func:`heun_walk`: Euler on the last step and across a σ ratio
    above :data:`HEUN_MAX_SIGMA_RATIO`). Model calls: as Heun's, 2 a step but 1 on those.
    Without churn (``churn=None`` or t̂ = t everywhere) it is Heun, bit for bit.
    """
    x = x_tilde
    for i, t in enumerate(timesteps.tolist()):
        t_next, s_next = _next_sigma(timesteps, i, sigmas)
        t_hat = t if churn is None else int(churn[i])
        x_hat, z = x, None
        if t_hat != t:
            if noise is None:
                raise ValueError("edm_walk with churn needs a noise source (noise=)")
            z = noise(i)
            x_hat = x + s_noise * math.sqrt(float(sigmas[t_hat]) ** 2 - float(sigmas[t]) ** 2) * z
        s = float(sigmas[t_hat])
        d, eps, raw = denoise(x_hat, t_hat)
        x_next = x_hat + (s_next - s) * eps
        if t_next is not None and s <= HEUN_MAX_SIGMA_RATIO * s_next:
            _, eps_next, _ = denoise(x_next, t_next)
            x_next = x_hat + (s_next - s) * 0.5 * (eps + eps_next)
        yield OdeStep(i, t, x, x_next, d, eps, raw, z, None if t_hat == t else t_hat)
        x = x_next


def dpmpp_2m_walk(
    x_tilde: Tensor, timesteps: np.ndarray, sigmas: np.ndarray, denoise: DenoiseFn
) -> Iterator[OdeStep]:
    """DPM-Solver++(2M), data prediction, λ = −log σ: x̃' = (σ'/σ) x̃ + (1 − σ'/σ) D̂ with
    D̂ = (1 + 1/2r) D_i − (1/2r) D_{i−1}, r = h_{i−1}/h_i; the last step gives x̃' = D."""
    x = x_tilde
    old_d: Tensor | None = None
    for i, t in enumerate(timesteps.tolist()):
        t_next, s_next = _next_sigma(timesteps, i, sigmas)
        s = float(sigmas[t])
        d, eps, raw = denoise(x, t)
        if t_next is None:
            x_next = d  # σ' = 0: x̃' = D
        else:
            ratio = s_next / s  # e^{−h}
            d_hat = d
            if old_d is not None:
                h = np.log(s / s_next)
                h_last = np.log(float(sigmas[int(timesteps[i - 1])]) / s)
                r = h_last / h
                d_hat = (1 + 1 / (2 * r)) * d - (1 / (2 * r)) * old_d
            x_next = ratio * x + (1 - ratio) * d_hat
        old_d = d
        yield OdeStep(i, t, x, x_next, d, eps, raw)
        x = x_next


def slerp(x0: Tensor, x1: Tensor, alpha: float | Tensor) -> Tensor:
    """Spherical interpolation between two noises x_T (B, ...), per sample.

    Gaussian noise of dimension D has norm ≈ √D; a straight line between two
    draws passes through lower norms (a blurry, atypical x_T), the great circle
    does not. ``alpha`` in [0, 1] (a float or a (B,) tensor).
    """
    ones = [1] * (x0.ndim - 1)
    a = torch.as_tensor(alpha, dtype=x0.dtype, device=x0.device).reshape(-1, *ones)
    flat0, flat1 = x0.flatten(1), x1.flatten(1)
    cos = (flat0 * flat1).sum(1) / (flat0.norm(dim=1) * flat1.norm(dim=1))
    theta = torch.arccos(cos.clamp(-1.0, 1.0)).reshape(-1, *ones)
    sin = torch.sin(theta)
    linear = (1 - a) * x0 + a * x1
    safe = torch.where(sin.abs() > 1e-6, sin, torch.ones_like(sin))
    spherical = (torch.sin((1 - a) * theta) * x0 + torch.sin(a * theta) * x1) / safe
    return torch.where(sin.abs() > 1e-6, spherical, linear)


@torch.no_grad()
def ddim_invert(
    model: Callable[..., Tensor],
    schedule: NoiseSchedule,
    x0: Tensor,
    steps: int | None = 50,
    spacing: Spacing = DEFAULT_SPACING,
    labels: Tensor | None = None,
) -> Tensor:
    """Deterministic encoding x_0 → x_T: DDIM η = 0 run backwards (Song et al. 2021 §4.3).

    On the timesteps t_1 < … < t_n of ``spacing``, in the σ-form,
    x̃_{i+1} = x̃_i + (σ_{i+1} − σ_i) ε̂(x_{t_i}, t_i), starting from x̃ = x_0 at
    σ = 0 with the model evaluated at t_1 (it cannot be called at σ = 0). ε̂ is
    taken at the start of each step, not its end, so ``sample(..., sampler="ddim",
    x_T=ddim_invert(...))`` on the same steps gives x_0 back only approximately;
    the error shrinks as steps grow (``tests/test_ode.py`` measures it).

    Args:
        model: ``model(x_t, t, labels=None) -> ε̂``.
        x0: (B, ...) clean samples in the data range.
        labels: (B,) labels for a conditional model, or ``None``.

    Returns:
        x_T, (B, ...), in the x_t scale of the noisiest visited timestep.
    """
    check_choice("spacing", spacing, SPACINGS)
    T = schedule.num_steps
    n = T if steps is None else check_steps(steps, T)
    ts = timestep_spacing(T, n, spacing)  # ascending
    sig = sigmas_of(schedule)
    x = x0.float()
    s_prev = 0.0
    for i, t in enumerate(ts.tolist()):
        s_t = float(sig[t])
        s_eval = s_t if i == 0 else s_prev
        t_eval = t if i == 0 else int(ts[i - 1])
        t_model = torch.full((x.shape[0],), t_eval, dtype=torch.long, device=x.device)
        eps = model(x / (1.0 + s_eval**2) ** 0.5, t_model, labels).float()
        x = x + (s_t - s_prev) * eps
        s_prev = s_t
    return x / (1.0 + s_prev**2) ** 0.5


__all__ = [
    "HEUN_MAX_SIGMA_RATIO",
    "KARRAS_RHO",
    "SIGMA_SCHEDULES",
    "DenoiseFn",
    "NoiseFn",
    "OdeStep",
    "OdeWalk",
    "SigmaSchedule",
    "churn_timesteps",
    "ddim_invert",
    "dpmpp_2m_walk",
    "edm_walk",
    "euler_walk",
    "heun_walk",
    "karras_sigmas",
    "nearest_timesteps",
    "ode_timesteps",
    "sigmas_of",
    "slerp",
]
