"""The probability-flow ODE view: Euler, Heun and DPM-Solver++(2M), and DDIM inversion.

Write x_t = √ᾱ_t (x0 + σ_t ε) with σ_t = √((1 − ᾱ_t)/ᾱ_t), and let x̃ = x_t/√ᾱ_t.
Then x̃ = x0 + σ ε: data plus Gaussian noise of standard deviation σ, the
"variance exploding" form of Karras et al. 2022 (EDM). The probability-flow
ODE of the diffusion is, with the denoiser D(x̃; σ) = E[x0 | x̃] = x̂0,

    dx̃/dσ = (x̃ − D(x̃; σ)) / σ = ε̂(x_t, t).

Sampling integrates it from σ_max (x̃ = x_T/√ᾱ_{T−1}) down to σ = 0:

- **Euler**: x̃' = x̃ + (σ' − σ) ε̂ — exactly DDIM with η = 0 on the same steps
  (Song et al. 2021 §4.3);
- **Heun** (EDM, Algorithm 1): an Euler step, then the average of the slopes at
  both ends; second order, two model calls per step (one at the last step);
- **DPM-Solver++(2M)** (Lu et al. 2022): with λ = −log σ and h = λ' − λ, the
  exact solution for a constant D is x̃' = (σ'/σ) x̃ + (1 − σ'/σ) D (DDIM again);
  2M replaces D by the extrapolation (1 + 1/2r) D_i − (1/2r) D_{i−1},
  r = h_{i−1}/h_i: second order, one model call per step.

The models here are trained on integer timesteps, so every σ a solver visits
is the σ of one training timestep: a σ schedule (uniform in t with a
:mod:`~diffusion_lib.sampling.spacing`, or Karras et al.'s ρ = 7 schedule, each σ snapped
to the nearest timestep in log σ) gives the timesteps, and the solver uses
their exact σ_t. The last step goes to σ = 0, where x̃ = x0.

Clipping (``x0_mode``) acts on D = x̂0, as in the DDPM/DDIM steps.
"""

from __future__ import annotations

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
    wanted = karras_sigmas(float(sig[0]), float(sig[-1]), n)
    log_sig = np.log(sig)  # increasing in t
    idx = np.clip(np.searchsorted(log_sig, np.log(wanted)), 1, T - 1)
    nearer_low = np.abs(log_sig[idx - 1] - np.log(wanted)) <= np.abs(log_sig[idx] - np.log(wanted))
    ts = np.where(nearer_low, idx - 1, idx)
    _, first = np.unique(ts, return_index=True)
    return ts[np.sort(first)].astype(np.int64)


DenoiseFn = Callable[[Tensor, int], tuple[Tensor, Tensor, Any]]
"""``denoise(x̃, t) -> (D = processed x̂0, ε̂ consistent with it, what the model returned)``."""


class OdeStep(NamedTuple):
    """One step of an ODE walk, in the σ-form x̃ = x_t/√ᾱ_t = x_t·√(1 + σ²)."""

    index: int
    """Position in the walk, 0 for the noisiest step."""
    t: int
    """The timestep of x̃ (the model was called there)."""
    x: Tensor
    """x̃_i, (B, ...)."""
    x_next: Tensor
    """x̃_{i+1}, at the next timestep, or the sample (σ = 0) after the last step."""
    denoised: Tensor
    """D_i = x̂0 (processed)."""
    eps: Tensor
    """ε̂_i, consistent with D_i."""
    model_output: Any
    """What the model returned at (x̃_i, t_i) (:class:`~.guidance.EpsParts` in the loop)."""


OdeWalk = Callable[[Tensor, np.ndarray, np.ndarray, DenoiseFn], Iterator[OdeStep]]
"""``walk(x̃_T, timesteps, sigmas, denoise)``: integrate the PF-ODE over ``timesteps``
(descending) and then to σ = 0. ``sigmas[t]`` is σ of timestep t (float64)."""


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
    """Heun (EDM, Algorithm 1): an Euler step, then the mean of the slopes at both ends;
    the last step (to σ = 0) is Euler's."""
    x = x_tilde
    for i, t in enumerate(timesteps.tolist()):
        t_next, s_next = _next_sigma(timesteps, i, sigmas)
        s = float(sigmas[t])
        d, eps, raw = denoise(x, t)
        x_next = x + (s_next - s) * eps
        if t_next is not None:
            _, eps_next, _ = denoise(x_next, t_next)
            x_next = x + (s_next - s) * 0.5 * (eps + eps_next)
        yield OdeStep(i, t, x, x_next, d, eps, raw)
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
    "KARRAS_RHO",
    "SIGMA_SCHEDULES",
    "DenoiseFn",
    "OdeStep",
    "OdeWalk",
    "SigmaSchedule",
    "ddim_invert",
    "dpmpp_2m_walk",
    "euler_walk",
    "heun_walk",
    "karras_sigmas",
    "ode_timesteps",
    "sigmas_of",
    "slerp",
]
