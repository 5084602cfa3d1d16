"""One reverse step x_t → x_{t−1}: DDPM, DDIM and the seed chapter's naive one.

Layers, from the paper's formulas up (names follow improved-diffusion):

- :func:`predict_x0_from_eps` / :func:`predict_eps_from_x0` — invert
  x_t = √ᾱ_t x̂0 + √(1 − ᾱ_t) ε̂ for one unknown;
- :func:`process_x0` — none, clip to [−1, 1], or dynamic thresholding;
- :func:`q_posterior_mean` — μ̃_t(x̂0, x_t), the mean of q(x_{t−1} | x_t, x̂0);
- :func:`ddpm_step`, :func:`ddim_step` — one reverse step by *step index*;
- :func:`~.samplers.step_at` — the same by *original timestep* (diffusers' ``step(t)``).

Every step returns a :class:`StepOutput` with its mean and σ, so
x_prev = mean + σ·z can be read (and reproduced) without passing zeros.

Step indices ``t`` index the schedule given, which may be respaced; the model
is always called with the *original* timestep ``schedule.timesteps[t]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple, get_args
from weakref import WeakKeyDictionary

import torch
from torch import Tensor

from ..schedule import FinalAlpha, NoiseSchedule, check_eta, extract
from .checks import check_choice

Variance = Literal["beta", "beta_tilde"]
X0Mode = Literal["none", "clip", "dynamic"]
VARIANCES: tuple[str, ...] = get_args(Variance)
X0_MODES: tuple[str, ...] = get_args(X0Mode)


# ------------------------------------------------------------------ x̂0 and ε̂
def predict_x0_from_eps(
    schedule: NoiseSchedule, x_t: Tensor, t: Tensor | int, eps: Tensor
) -> Tensor:
    """x̂0 = (x_t − √(1 − ᾱ_t) ε̂) / √ᾱ_t  (DDPM eq. 15).  Shapes (B, ...).

    Subtract first, then divide: the algebraically equal x_t/√ᾱ_t − √(1/ᾱ_t − 1) ε̂
    multiplies by ~2·10⁴ before subtracting at the cosine schedule's t = T − 1
    and loses four digits of x̂0 in float32.
    """
    return (x_t - extract(schedule.sqrt_one_minus_alphas_cumprod, t, x_t.shape) * eps) / extract(
        schedule.sqrt_alphas_cumprod, t, x_t.shape
    )


def predict_eps_from_x0(
    schedule: NoiseSchedule, x_t: Tensor, t: Tensor | int, x0: Tensor
) -> Tensor:
    """ε̂ = (x_t − √ᾱ_t x̂0) / √(1 − ᾱ_t).  Shapes (B, ...)."""
    return (x_t - extract(schedule.sqrt_alphas_cumprod, t, x_t.shape) * x0) / extract(
        schedule.sqrt_one_minus_alphas_cumprod, t, x_t.shape
    )


def dynamic_threshold(x0: Tensor, percentile: float = 0.995) -> Tensor:
    """Imagen's dynamic thresholding (Saharia et al. 2022, §2.3).

    Per sample, s = max(1, the ``percentile`` quantile of |x̂0|); then x̂0 is
    clamped to [−s, s] and divided by s, so it lies in [−1, 1]. Samples already
    inside [−1, 1] (s = 1) are only clamped, i.e. unchanged.
    """
    if not 0.0 < percentile <= 1.0:
        raise ValueError(f"percentile must be in (0, 1], got {percentile}")
    flat = x0.reshape(x0.shape[0], -1).abs().float()  # (B, D)
    s = torch.quantile(flat, percentile, dim=1).clamp(min=1.0).to(x0.dtype)  # (B,)
    s = s.reshape((-1,) + (1,) * (x0.ndim - 1))
    return torch.maximum(torch.minimum(x0, s), -s) / s


def process_x0(x0: Tensor, mode: X0Mode = "clip", percentile: float = 0.995) -> Tensor:
    """Keep x̂0 in the data range: ``"none"``, ``"clip"`` to [−1, 1], or ``"dynamic"``."""
    check_choice("x0_mode", mode, X0_MODES)
    if mode == "none":
        return x0
    if mode == "clip":
        return x0.clamp(-1.0, 1.0)
    return dynamic_threshold(x0, percentile)


def q_posterior_mean(schedule: NoiseSchedule, x0: Tensor, x_t: Tensor, t: Tensor | int) -> Tensor:
    """μ̃_t(x_t, x̂0) = coef1_t x̂0 + coef2_t x_t  (DDPM eq. 7).  Shapes (B, ...)."""
    return (
        extract(schedule.posterior_mean_coef1, t, x_t.shape) * x0
        + extract(schedule.posterior_mean_coef2, t, x_t.shape) * x_t
    )


@dataclass
class StepOutput:
    """What one reverse step produced. Tensors are (B, ...) unless said otherwise."""

    x_prev: Tensor
    """x_{t−1} = mean + σ z (just ``mean`` when no noise was given)."""
    x0: Tensor
    """x̂0 after processing (clipping or thresholding)."""
    eps: Tensor
    """The ε̂ the update used: re-derived from the processed x̂0 when processing
    changed it (unless ``rederive_eps=False``)."""
    mean: Tensor
    """The step's mean, x_prev before the noise term."""
    sigma: Tensor
    """σ of the noise term, broadcastable to x_t ((B, 1, …) or (1, …)); 0 at the last step."""


# ------------------------------------------------------------------ per-step coefficients
class StepCoefficients(NamedTuple):
    """The five numbers one DDPM or DDIM step reads, each broadcastable to x_t:
    (1, 1, …) for an int step index, (B, 1, …) for a (B,) tensor of them."""

    sqrt_one_minus_alpha_bar: Tensor
    """√(1 − ᾱ_t): x̂0 from ε̂ and back."""
    sqrt_alpha_bar: Tensor
    """√ᾱ_t."""
    c_x0: Tensor
    """The mean's weight of x̂0: DDPM's posterior_mean_coef1, DDIM's √ᾱ_prev."""
    c_rest: Tensor
    """The mean's other weight: of x_t in DDPM (posterior_mean_coef2), of ε̂ in DDIM (c_eps)."""
    sigma: Tensor
    """σ_t of the noise term; 0 at step index 0 for DDPM (no noise at the last step)."""


_TABLES: WeakKeyDictionary[NoiseSchedule, dict[tuple[object, ...], Tensor]] = WeakKeyDictionary()
"""Per schedule: the step tables of :func:`step_table`, by step kind (and by ndim, shaped)."""


def step_table(schedule: NoiseSchedule, key: tuple[object, ...]) -> Tensor:
    """The :class:`StepCoefficients` of every step index of ``schedule``, stacked (T, 5);
    built once per schedule and kind, then cached.

    ``key``: ``("ddpm", variance)`` or ``("ddim", eta, final_alpha)``. The columns are the
    schedule's own float32 values (σ = √var taken in float32, as the step did, and 0 at
    index 0 for DDPM), so a step that reads them computes bit for bit what it computed with
    :func:`~diffusion_lib.schedule.extract`; it reads all five with one select (int index)
    or one gather ((B,) index) instead of one per coefficient. The sampler builds the table
    before a CUDA graph is captured (the sampler table's ``prepare``).
    """
    tables = _TABLES.setdefault(schedule, {})
    if key not in tables:
        if key[0] == "ddpm":
            var = schedule.betas if key[1] == "beta" else schedule.posterior_variance
            sigma = var.sqrt()
            sigma[0] = 0.0  # the last step adds no noise
            rest = (schedule.posterior_mean_coef1, schedule.posterior_mean_coef2, sigma)
        else:
            coef = schedule.ddim_coefficients(key[1], key[2])  # type: ignore[arg-type]
            rest = (coef.c_x0, coef.c_eps, coef.sigma)
        tables[key] = torch.stack(
            (schedule.sqrt_one_minus_alphas_cumprod, schedule.sqrt_alphas_cumprod, *rest), dim=1
        )
    return tables[key]


def step_coefficients(
    schedule: NoiseSchedule, key: tuple[object, ...], t: Tensor | int, x_t: Tensor
) -> StepCoefficients:
    """The :class:`StepCoefficients` at step index ``t`` (an int or a (B,) tensor) from
    :func:`step_table`, shaped to broadcast against ``x_t``."""
    tables = _TABLES.get(schedule)
    shaped_key = (*key, x_t.ndim)
    shaped = None if tables is None else tables.get(shaped_key)
    if shaped is None:
        flat = step_table(schedule, key)
        shaped = flat.view(flat.shape[0], 5, *(1,) * x_t.ndim)  # (T, 5, 1, …)
        _TABLES[schedule][shaped_key] = shaped
    if isinstance(t, int):
        return StepCoefficients(*shaped[t].unbind(0))  # each (1, 1, …)
    rows = shaped.index_select(0, t.to(shaped.device))  # (B, 5, 1, …)
    return StepCoefficients(*rows.squeeze(2).unbind(1))  # each (B, 1, …)


def _x0_and_eps(
    c: StepCoefficients,
    x_t: Tensor,
    eps: Tensor,
    x0_mode: X0Mode,
    rederive_eps: bool = True,
) -> tuple[Tensor, Tensor]:
    # x̂0 from ε̂, processed; ε̂ re-derived so that (x̂0, ε̂) stay consistent with x_t.
    # The formulas of predict_x0_from_eps and predict_eps_from_x0, on the gathered c.
    x0 = (x_t - c.sqrt_one_minus_alpha_bar * eps) / c.sqrt_alpha_bar
    if x0_mode == "none":
        return x0, eps
    x0 = process_x0(x0, x0_mode)
    if not rederive_eps:
        return x0, eps
    return x0, (x_t - c.sqrt_alpha_bar * x0) / c.sqrt_one_minus_alpha_bar


def _add_noise(
    mean: Tensor, sigma: Tensor, noise: Tensor | None, needed: bool, name: str
) -> Tensor:
    if noise is None:
        if needed:
            raise ValueError(f"{name} needs `noise` (z ~ N(0, I), shape of x_t) at this step")
        return mean
    if noise.shape != mean.shape:
        raise ValueError(f"noise has shape {tuple(noise.shape)}, expected {tuple(mean.shape)}")
    return mean + sigma * noise


# ------------------------------------------------------------------ the steps
def ddpm_step(
    schedule: NoiseSchedule,
    x_t: Tensor,
    t: Tensor | int,
    eps: Tensor,
    noise: Tensor | None,
    variance: Variance = "beta_tilde",
    x0_mode: X0Mode = "clip",
) -> StepOutput:
    """One ancestral DDPM step x_t → x_{t−1} (Ho et al. 2020, Algorithm 2).

    Args:
        schedule: the (possibly respaced) schedule; ``t`` indexes it.
        x_t: (B, ...).
        t: step index, an int or a (B,) tensor.
        eps: ε̂_θ(x_t, t), (B, ...).
        noise: z ~ N(0, I), (B, ...); may be ``None`` only at t = 0 (σ = 0
            there). The result carries ``mean`` and ``sigma`` as well, so
            x_prev = mean + sigma·z can be read and reproduced.
        variance: σ_t² = β_t (``"beta"``) or β̃_t (``"beta_tilde"``, the
            posterior variance). Neither is the exact reverse variance with few
            steps (Bao et al. 2022): which is closer depends on the step count
            and the data.
        x0_mode: how x̂0 is kept in range before it is used.

    Returns:
        :class:`StepOutput` with x_{t−1} = μ̃_t(x̂0, x_t) + σ_t z, no noise at t = 0.

    With ``x0_mode="none"`` the posterior mean equals the familiar ε-form
    (1/√α_t)(x_t − β_t/√(1 − ᾱ_t) ε̂); the posterior form is used because it
    stays correct when x̂0 is clipped.
    """
    check_choice("variance", variance, VARIANCES)
    check_choice("x0_mode", x0_mode, X0_MODES)
    c = step_coefficients(schedule, ("ddpm", variance), t, x_t)  # one gather for all five
    # 1. x̂0 from ε̂ (eq. 15), processed
    x0, eps = _x0_and_eps(c, x_t, eps, x0_mode)
    # 2. mean of q(x_{t-1} | x_t, x̂0) (eq. 7): q_posterior_mean's formula
    mean = c.c_x0 * x0 + c.c_rest * x_t
    # 3. σ_t = √β_t or √β̃_t (section 3.2), 0 at the last step (precomputed: step_table)
    sigma = c.sigma
    last = isinstance(t, int) and t == 0
    return StepOutput(_add_noise(mean, sigma, noise, not last, "ddpm_step"), x0, eps, mean, sigma)


def ddim_step(
    schedule: NoiseSchedule,
    x_t: Tensor,
    t: Tensor | int,
    eps: Tensor,
    noise: Tensor | None,
    eta: float = 0.0,
    x0_mode: X0Mode = "clip",
    *,
    rederive_eps: bool = True,
    final_alpha: FinalAlpha = "one",
) -> StepOutput:
    """One DDIM step x_t → x_{t_prev} (Song et al. 2021, eq. 12).

    The previous timestep is the step before ``t`` in ``schedule``: respace the
    schedule to the timesteps you want to visit (:func:`~.spacing.sampling_schedule`)
    and ᾱ_prev is ``schedule.alphas_cumprod_prev[t]``, right for any spacing
    and step count. The coefficients come from
    :meth:`~diffusion_lib.schedule.NoiseSchedule.ddim_coefficients` (float64,
    cached).

    Args:
        eta: η in [0, 1]. σ_t = η √((1 − ᾱ_prev)/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_prev);
            η = 0 is deterministic, η = 1 is DDPM with σ² = β̃ on the same steps.
        noise: z, (B, ...); may be ``None`` when σ = 0 (η = 0, or the last step).
        rederive_eps: after clipping x̂0, use the ε̂ consistent with it
            (diffusers' ``use_clipped_model_output=True``; the default) or the
            model's raw ε̂ (``False``).
        final_alpha: ᾱ_prev of the last step, ``"one"`` or ``"first"``
            (diffusers' ``set_alpha_to_one`` True / False).

    Returns:
        :class:`StepOutput` with x_prev = √ᾱ_prev x̂0 + √(1 − ᾱ_prev − σ²) ε̂ + σ z.
    """
    eta = check_eta(eta)
    check_choice("x0_mode", x0_mode, X0_MODES)
    c = step_coefficients(schedule, ("ddim", eta, final_alpha), t, x_t)  # ddim_coefficients
    # 1. x̂0 ("predicted x_0") and the ε̂ the update uses
    x0, eps = _x0_and_eps(c, x_t, eps, x0_mode, rederive_eps)
    # 2. √ᾱ_prev x̂0 + "direction pointing to x_t"; 3. σ_t(η) (eq. 16)
    mean = c.c_x0 * x0 + c.c_rest * eps
    sigma = c.sigma
    needed = eta > 0 and not (isinstance(t, int) and t == 0 and final_alpha == "one")
    return StepOutput(
        _add_noise(mean, sigma, noise, needed, "ddim_step with eta > 0"), x0, eps, mean, sigma
    )


def naive_strided_step(
    schedule: NoiseSchedule,
    x_t: Tensor,
    t: int,
    t_next: int,
    eps: Tensor,
    noise: Tensor,
) -> StepOutput:
    """The seed chapter's "reduced steps" update, kept as-is for comparison.

    x_next = √ᾱ_{t_next} clip(x̂0) + √(1 − ᾱ_{t_next}) z

    This is the σ² = 1 − ᾱ_next member of the DDIM family with the *mean* x̂0
    in place of a draw from p(x0 | x_t): it drops ε̂ (the "direction pointing
    to x_t") and re-noises to the full marginal q(x_{t_next} | x̂0), so it loses
    Var[x0 | x_t] at every step and does not converge as the step count grows.
    At the last step t_next = max(0, t − stride) = 0, so it still adds
    √(1 − ᾱ_0) z (≈ 0.01 for the linear schedule) to the final image.

    ``t`` and ``t_next`` index ``schedule`` (an un-respaced one).
    """
    x0 = predict_x0_from_eps(schedule, x_t, t, eps).clamp(-1.0, 1.0)
    a_bar_next = schedule.alphas_cumprod[t_next]
    mean = a_bar_next.sqrt() * x0
    sigma = (1 - a_bar_next).sqrt().reshape((1,) * x_t.ndim)
    x_next = mean + sigma * noise
    return StepOutput(x_next, x0, predict_eps_from_x0(schedule, x_t, t, x0), mean, sigma)


__all__ = [
    "VARIANCES",
    "X0_MODES",
    "StepCoefficients",
    "StepOutput",
    "Variance",
    "X0Mode",
    "ddim_step",
    "ddpm_step",
    "dynamic_threshold",
    "naive_strided_step",
    "predict_eps_from_x0",
    "predict_x0_from_eps",
    "process_x0",
    "q_posterior_mean",
    "step_coefficients",
    "step_table",
]
