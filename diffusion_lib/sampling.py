"""Reverse-process sampling: one step at a time, then the one loop.

Layers, from the paper's formulas up (names follow improved-diffusion):

- :func:`predict_x0_from_eps` / :func:`predict_eps_from_x0` — invert
  x_t = √ᾱ_t x̂0 + √(1 − ᾱ_t) ε̂ for one unknown;
- :func:`process_x0` — none, clip to [−1, 1], or dynamic thresholding;
- :func:`q_posterior_mean` — μ̃_t(x̂0, x_t), the mean of q(x_{t−1} | x_t, x̂0);
- :func:`ddpm_step`, :func:`ddim_step` — one reverse step;
- :func:`timestep_spacing`, :func:`sampling_schedule` — which steps to visit;
- :func:`sample_progressive` — the one loop, as a generator of every step;
- :func:`sample` — the loop run to the end.

The seed chapter's naive strided sampler is kept as :func:`naive_strided_step`
(``sampler="naive_strided"``) only to compare against: it is the wrong way to
skip steps (see its docstring).

Step indices ``t`` in the step functions index the schedule they are given,
which may be a respaced one; the model is always called with the *original*
timestep ``schedule.timesteps[t]``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from .device import model_device, resolve_device
from .guidance import CfgMode, make_eps_fn
from .model_api import EpsModel, check_model_output, null_label_of
from .noise import SampleNoise, resolve_seeds
from .schedule import NoiseSchedule, extract
from .speed import StepGraph

Sampler = Literal["ddpm", "ddim", "naive_strided"]
Spacing = Literal["leading", "linspace", "trailing"]
Variance = Literal["beta", "beta_tilde"]
X0Mode = Literal["none", "clip", "dynamic"]

SAMPLERS: tuple[str, ...] = get_args(Sampler)
SPACINGS: tuple[str, ...] = get_args(Spacing)
VARIANCES: tuple[str, ...] = get_args(Variance)
X0_MODES: tuple[str, ...] = get_args(X0Mode)


def check_choice(name: str, value: object, valid: Sequence[str]) -> None:
    """Raise ``ValueError`` naming ``value`` and the valid choices when it is not one of them."""
    if value not in valid:
        raise ValueError(
            f"unknown {name} {value!r}; valid values are {', '.join(map(repr, valid))}"
        )


# ------------------------------------------------------------------ x̂0 and ε̂
def predict_x0_from_eps(
    schedule: NoiseSchedule, x_t: Tensor, t: Tensor | int, eps: Tensor
) -> Tensor:
    """x̂0 = (x_t − √(1 − ᾱ_t) ε̂) / √ᾱ_t  =  x_t/√ᾱ_t − √(1/ᾱ_t − 1) ε̂.  Shapes (B, ...)."""
    return (
        extract(schedule.sqrt_recip_alphas_cumprod, t, x_t.shape) * x_t
        - extract(schedule.sqrt_recipm1_alphas_cumprod, t, x_t.shape) * eps
    )


def predict_eps_from_x0(
    schedule: NoiseSchedule, x_t: Tensor, t: Tensor | int, x0: Tensor
) -> Tensor:
    """ε̂ = (x_t − √ᾱ_t x̂0) / √(1 − ᾱ_t)  =  (x_t/√ᾱ_t − x̂0) / √(1/ᾱ_t − 1).  Shapes (B, ...)."""
    return (extract(schedule.sqrt_recip_alphas_cumprod, t, x_t.shape) * x_t - x0) / extract(
        schedule.sqrt_recipm1_alphas_cumprod, t, x_t.shape
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
    if mode == "none":
        return x0
    if mode == "clip":
        return x0.clamp(-1.0, 1.0)
    if mode == "dynamic":
        return dynamic_threshold(x0, percentile)
    check_choice("x0_mode", mode, X0_MODES)
    raise AssertionError("unreachable")


def q_posterior_mean(schedule: NoiseSchedule, x0: Tensor, x_t: Tensor, t: Tensor | int) -> Tensor:
    """μ̃_t(x_t, x̂0) = coef1_t x̂0 + coef2_t x_t  (DDPM eq. 7).  Shapes (B, ...)."""
    return (
        extract(schedule.posterior_mean_coef1, t, x_t.shape) * x0
        + extract(schedule.posterior_mean_coef2, t, x_t.shape) * x_t
    )


def _nonzero_mask(t: Tensor | int, x_t: Tensor) -> Tensor | float:
    """1 where t > 0 and 0 at t = 0 (no noise is added by the last step)."""
    if isinstance(t, int):
        return 1.0 if t > 0 else 0.0
    return (t > 0).to(x_t.dtype).reshape((-1,) + (1,) * (x_t.ndim - 1))


@dataclass
class StepOutput:
    """What one reverse step produced. All tensors (B, ...)."""

    x_prev: Tensor
    """x_{t−1}."""
    x0: Tensor
    """x̂0 after processing (clipping or thresholding)."""
    eps: Tensor
    """ε̂, re-derived from the processed x̂0 when processing changed it."""


def _x0_and_eps(
    schedule: NoiseSchedule, x_t: Tensor, t: Tensor | int, eps: Tensor, x0_mode: X0Mode
) -> tuple[Tensor, Tensor]:
    # x̂0 from ε̂, processed; ε̂ re-derived so that (x̂0, ε̂) stay consistent with x_t
    x0 = predict_x0_from_eps(schedule, x_t, t, eps)
    if x0_mode == "none":
        return x0, eps
    x0 = process_x0(x0, x0_mode)
    return x0, predict_eps_from_x0(schedule, x_t, t, x0)


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
        noise: z ~ N(0, I), (B, ...); unused (may be ``None``) at t = 0.
        variance: σ_t² = β_t (``"beta"``, the upper bound) or β̃_t
            (``"beta_tilde"``, the posterior variance, the lower bound).
        x0_mode: how x̂0 is kept in range before it is used.

    Returns:
        x_{t−1} = μ̃_t(x̂0, x_t) + σ_t z, with no noise at t = 0.

    With ``x0_mode="none"`` the posterior mean equals the familiar ε-form
    (1/√α_t)(x_t − β_t/√(1 − ᾱ_t) ε̂); the posterior form is used because it
    stays correct when x̂0 is clipped.
    """
    check_choice("variance", variance, VARIANCES)
    check_choice("x0_mode", x0_mode, X0_MODES)
    # 1. x̂0 from ε̂ (eq. 15), processed
    x0, eps = _x0_and_eps(schedule, x_t, t, eps, x0_mode)
    # 2. mean of q(x_{t-1} | x_t, x̂0) (eq. 7)
    mean = q_posterior_mean(schedule, x0, x_t, t)
    # 3. σ_t² = β_t or β̃_t (section 3.2)
    var = schedule.betas if variance == "beta" else schedule.posterior_variance
    # 4. add noise, except at the last step
    mask = _nonzero_mask(t, x_t)
    if noise is None:
        if not (isinstance(mask, float) and mask == 0.0):
            raise ValueError("ddpm_step needs `noise` at every step but the last (t = 0)")
        return StepOutput(mean, x0, eps)
    x_prev = mean + mask * extract(var, t, x_t.shape).sqrt() * noise
    return StepOutput(x_prev, x0, eps)


def ddim_step(
    schedule: NoiseSchedule,
    x_t: Tensor,
    t: Tensor | int,
    eps: Tensor,
    noise: Tensor | None,
    eta: float = 0.0,
    x0_mode: X0Mode = "clip",
) -> StepOutput:
    """One DDIM step x_t → x_{t_prev} (Song et al. 2021, eq. 12).

    The previous timestep is the step before ``t`` in ``schedule``: respace the
    schedule to the timesteps you want to visit (:func:`sampling_schedule`)
    and ᾱ_{prev} is simply ``schedule.alphas_cumprod_prev[t]``, right for any
    spacing and any step count.

    Args:
        eta: η ≥ 0. σ_t = η √((1 − ᾱ_prev)/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_prev);
            η = 0 is deterministic, η = 1 matches DDPM with σ² = β̃.
        noise: z, (B, ...); may be ``None`` when η = 0.

    Returns:
        x_prev = √ᾱ_prev x̂0 + √(1 − ᾱ_prev − σ_t²) ε̂ + σ_t z.
    """
    if not eta >= 0.0:
        raise ValueError(f"eta must be >= 0 (0 = deterministic DDIM, 1 = DDPM-like), got {eta}")
    check_choice("x0_mode", x0_mode, X0_MODES)
    # 1. x̂0 ("predicted x_0") and the ε̂ consistent with it
    x0, eps = _x0_and_eps(schedule, x_t, t, eps, x0_mode)
    # 2. ᾱ_t and ᾱ_prev
    a_bar = extract(schedule.alphas_cumprod, t, x_t.shape)
    a_bar_prev = extract(schedule.alphas_cumprod_prev, t, x_t.shape)
    # 3. σ_t(η) (eq. 16)
    sigma = eta * ((1 - a_bar_prev) / (1 - a_bar) * (1 - a_bar / a_bar_prev)).sqrt()
    # 4. "direction pointing to x_t" and the new sample
    direction = (1 - a_bar_prev - sigma**2).clamp(min=0.0).sqrt() * eps
    x_prev = a_bar_prev.sqrt() * x0 + direction
    if eta > 0:
        if noise is not None:
            x_prev = x_prev + sigma * noise  # σ = 0 at the last step (ᾱ_prev = 1)
        elif not (isinstance(t, int) and t == 0):
            raise ValueError("ddim_step with eta > 0 needs `noise` at every step but the last")
    return StepOutput(x_prev, x0, eps)


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

    This is the wrong way to skip steps, on three counts:

    - it throws away ε̂: x_t's own noise is replaced by *fresh* noise z, so
      the "direction pointing to x_t" of DDIM is dropped;
    - it re-noises to the full marginal q(x_{t_next} | x̂0), which is not the
      posterior q(x_{t_next} | x_t, x̂0) that DDPM samples;
    - at the last step t_next = max(0, t − stride) = 0, so it still adds
      √(1 − ᾱ_0) z (≈ 0.01 for the linear schedule) to the final image.

    ``t`` and ``t_next`` index ``schedule`` (an un-respaced one).
    """
    x0 = predict_x0_from_eps(schedule, x_t, t, eps).clamp(-1.0, 1.0)
    a_bar_next = schedule.alphas_cumprod[t_next]
    x_next = a_bar_next.sqrt() * x0 + (1 - a_bar_next).sqrt() * noise
    return StepOutput(x_next, x0, predict_eps_from_x0(schedule, x_t, t, x0))


def naive_strided_timesteps(num_timesteps: int, num_inference_steps: int) -> list[int]:
    """The seed's timesteps, descending: ``range(0, T, T // n)[::-1]``.

    When n does not divide T this visits more than n steps (T = 1000, n = 300
    gives a stride of 3 and 334 steps), as the seed does.
    """
    stride = num_timesteps // num_inference_steps
    return list(range(0, num_timesteps, stride))[::-1]


# --------------------------------------------------------- which steps to visit
def timestep_spacing(num_timesteps: int, steps: int, spacing: Spacing = "leading") -> np.ndarray:
    """The ``steps`` step indices in [0, T−1] to visit, ascending.

    - ``"leading"``: 0, k, 2k, … with k = T // steps (DDIM paper; starts at 0,
      may stop well short of T − 1 when steps does not divide T);
    - ``"linspace"``: ``round(linspace(0, T−1, steps))`` (includes both ends);
    - ``"trailing"``: ``round(arange(T, 0, −T/steps)) − 1`` (always includes
      T − 1, where x_T is pure noise; Lin et al. 2024 recommend it).
    """
    check_choice("spacing", spacing, SPACINGS)
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)):
        raise TypeError(f"steps must be an int, got {type(steps).__name__}")
    if not 1 <= steps <= num_timesteps:
        raise ValueError(f"steps must be between 1 and T = {num_timesteps}, got {steps}")
    if spacing == "leading":
        kept = np.arange(steps, dtype=np.int64) * (num_timesteps // steps)
    elif spacing == "linspace":
        kept = np.round(np.linspace(0, num_timesteps - 1, steps)).astype(np.int64)
    else:  # trailing
        kept = np.round(np.arange(num_timesteps, 0, -num_timesteps / steps)).astype(np.int64) - 1
        kept = kept[::-1].copy()
    return kept


def sampling_schedule(
    schedule: NoiseSchedule, steps: int | None = None, spacing: Spacing = "leading"
) -> NoiseSchedule:
    """The schedule a sampler walks: ``schedule`` itself, or respaced to ``steps``."""
    check_choice("spacing", spacing, SPACINGS)
    if steps is None or steps == schedule.num_steps:
        return schedule
    return schedule.respace(timestep_spacing(schedule.num_steps, steps, spacing))


# -------------------------------------------------------------------- the loop
@dataclass
class SampleStep:
    """One step of the reverse process, as yielded by :func:`sample_progressive`."""

    index: int
    """Position in the loop, 0 for the first (noisiest) step."""
    t: int
    """The original timestep the model was called with."""
    alpha_bar: float
    """ᾱ_t at this step."""
    x_t: Tensor
    """The input of this step, (B, ...)."""
    x0: Tensor
    """The predicted (processed) x̂0, (B, ...)."""
    eps: Tensor
    """The predicted ε̂ (guided, if guidance is on), (B, ...)."""
    x_prev: Tensor
    """The output, x_{t−1}; after the last step, the sample."""


def _as_labels(
    labels: Tensor | Sequence[int] | int | None, batch: int, model: object, device: torch.device
) -> Tensor | None:
    if labels is None:
        return None
    null_label = null_label_of(model)
    if null_label is None:
        raise ValueError(
            "labels were given but the model is unconditional (it has no `null_label`)"
        )
    if isinstance(labels, int):
        y = torch.full((batch,), labels, dtype=torch.long)
    else:
        y = torch.as_tensor(labels)
        if y.dtype.is_floating_point or y.dtype == torch.bool:
            raise TypeError(f"labels must be integers, got dtype {y.dtype}")
        y = y.long().reshape(-1)
    if y.shape[0] != batch:
        raise ValueError(
            f"got {y.shape[0]} labels for a batch of {batch}; pass one label per sample"
        )
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi > null_label:
        raise ValueError(
            f"labels must lie in [0, {null_label}] (0..{null_label - 1} are classes, "
            f"{null_label} is the null label); got min {lo}, max {hi}"
        )
    return y.to(device)


@torch.no_grad()
def sample_progressive(
    model: EpsModel,
    schedule: NoiseSchedule,
    shape: Sequence[int],
    *,
    sampler: Sampler = "ddpm",
    steps: int | None = None,
    spacing: Spacing = "leading",
    variance: Variance = "beta_tilde",
    eta: float = 0.0,
    x0_mode: X0Mode = "clip",
    labels: Tensor | Sequence[int] | int | None = None,
    guidance_scale: float | None = None,
    cfg_mode: CfgMode = "batched",
    seed: int | None = None,
    seeds: Sequence[int] | None = None,
    x_T: Tensor | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    callback: Callable[[SampleStep], None] | None = None,
    cuda_graph: bool = False,
    _copy_steps: bool = True,
) -> Iterator[SampleStep]:
    """Run the reverse process from x_T ~ N(0, I), yielding every step.

    Args:
        model: ``model(x_t, t, labels=None) -> ε̂`` (see :mod:`diffusion_lib.model_api`).
        schedule: the schedule the model was trained with (T steps).
        shape: (B, ...) of the batch to generate, e.g. (16, 1, 8, 8).
        sampler: ``"ddpm"`` (ancestral), ``"ddim"``, or ``"naive_strided"``
            (the seed chapter's, for comparison only).
        steps: how many steps to take (1 … T); ``None`` = all T. DDPM and DDIM
            respace the schedule (:func:`sampling_schedule`).
        spacing: which steps to keep: ``"leading"``, ``"linspace"``, ``"trailing"``.
        variance: DDPM's σ² = ``"beta"`` or ``"beta_tilde"``.
        eta: DDIM's η ≥ 0.
        x0_mode: ``"none"``, ``"clip"`` or ``"dynamic"`` processing of x̂0.
        labels: an int, or (B,) class labels; ``None`` = unconditional.
        guidance_scale: classifier-free guidance w; ``None`` = no guidance.
        cfg_mode: ``"batched"`` (one 2B call) or ``"two_pass"``.
        seed, seeds: per-sample seeds (:func:`diffusion_lib.noise.resolve_seeds`):
            sample i is the same whatever the batch size.
        x_T: start from this x_T (B, ...) instead of drawing it; the per-step
            noise still comes from the seeds.
        device: where to sample; default: the model's device (CPU for a
            model without parameters).
        progress: show a ``tqdm`` progress bar.
        callback: called with every :class:`SampleStep`.
        cuda_graph: run each step as one replay of a CUDA graph
            (:class:`diffusion_lib.speed.StepGraph`): the model call, x̂0, the
            update and the noise term in one launch. ``"ddpm"`` and ``"ddim"``
            only. Same samples as the eager loop (bit-identical on the CPU, where
            the static-buffer step runs without capture; on CUDA up to the
            kernels cuBLAS picks). The model must not read tensors back to the
            host; the library's models and :class:`~diffusion_lib.speed.AutocastModel`
            comply, and the final sample is checked for NaN/inf.

    Yields:
        :class:`SampleStep` for every step, noisiest first.
    """
    check_choice("sampler", sampler, SAMPLERS)
    check_choice("spacing", spacing, SPACINGS)
    check_choice("variance", variance, VARIANCES)
    check_choice("x0_mode", x0_mode, X0_MODES)
    if not eta >= 0.0:
        raise ValueError(f"eta must be >= 0 (0 = deterministic DDIM, 1 = DDPM-like), got {eta}")
    if cuda_graph and sampler == "naive_strided":
        raise ValueError(
            "cuda_graph=True supports sampler='ddpm' and 'ddim'; "
            "the chapter's 'naive_strided' sampler is kept eager, for comparison only"
        )
    if sampler != "ddim" and eta != 0.0:
        raise ValueError(
            f"eta only applies to sampler='ddim', got eta={eta} with sampler={sampler!r}"
        )
    shape = tuple(int(d) for d in shape)
    if len(shape) < 2 or min(shape) < 1:
        raise ValueError(f"shape must be (B, ...) with every size >= 1, got {shape}")
    batch = shape[0]
    num_timesteps = schedule.num_steps
    if steps is not None:
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)):
            raise TypeError(f"steps must be an int or None, got {type(steps).__name__}")
        if not 1 <= steps <= num_timesteps:
            raise ValueError(f"steps must be between 1 and T = {num_timesteps}, got {steps}")

    dev = resolve_device(device) if device is not None else model_device(model)
    y = _as_labels(labels, batch, model, dev)
    eps_fn = make_eps_fn(model, y, guidance_scale, cfg_mode)
    uses_noise = sampler != "ddim" or eta > 0
    # step noises the loop will draw (none for deterministic DDIM: no workers drawing ahead)
    total_z = (steps or num_timesteps) - (0 if sampler == "naive_strided" else 1)
    total_z = max(total_z, 1) if uses_noise else 0
    noise = SampleNoise(resolve_seeds(batch, seed, seeds), shape[1:], dev, total=total_z)
    x = noise.initial()
    if x_T is not None:
        if tuple(x_T.shape) != shape:
            raise ValueError(f"x_T has shape {tuple(x_T.shape)}, expected {shape}")
        x = x_T.to(device=dev, dtype=torch.float32)

    if sampler == "naive_strided":
        sched = schedule.to(dev)
        visit = naive_strided_timesteps(num_timesteps, steps or num_timesteps)
        stride = visit[0] - visit[1] if len(visit) > 1 else num_timesteps
    else:
        sched = sampling_schedule(schedule, steps, spacing).to(dev)
        visit = list(range(sched.num_steps))[::-1]
    original_t = sched.timesteps_numpy
    alpha_bars = sched.alphas_cumprod_f64
    if cuda_graph:
        yield from _graphed_loop(
            sched, eps_fn, x, noise, visit, sampler, variance, eta, x0_mode, uses_noise,
            progress, callback, _copy_steps,
        )
        return
    t_batches = sched.timesteps.unsqueeze(1).expand(-1, batch)  # (S, B), no per-step allocation

    try:
        for index, i in enumerate(tqdm(visit, desc=sampler, disable=not progress, leave=False)):
            t_model = t_batches[i]
            if index == 0:
                eps = check_model_output(lambda: eps_fn(x, t_model), x)  # noqa: B023
            else:
                eps = eps_fn(x, t_model)
            eps = eps.float()
            if sampler == "ddpm":
                z = noise.next() if i > 0 else None
                out = ddpm_step(sched, x, i, eps, z, variance, x0_mode)
            elif sampler == "ddim":
                z = noise.next() if (i > 0 and eta > 0) else None
                out = ddim_step(sched, x, i, eps, z, eta, x0_mode)
            else:
                out = naive_strided_step(sched, x, i, max(0, i - stride), eps, noise.next())
            step = SampleStep(
                index=index,
                t=int(original_t[i]),
                alpha_bar=float(alpha_bars[i]),
                x_t=x,
                x0=out.x0,
                eps=out.eps,
                x_prev=out.x_prev,
            )
            if callback is not None:
                callback(step)
            yield step
            x = out.x_prev
    finally:
        noise.close()  # stops its worker threads, if any


def _graphed_loop(
    sched: NoiseSchedule,
    eps_fn: Callable[[Tensor, Tensor], Tensor],
    x_T: Tensor,
    noise: SampleNoise,
    visit: list[int],
    sampler: Sampler,
    variance: Variance,
    eta: float,
    x0_mode: X0Mode,
    uses_noise: bool,
    progress: bool,
    callback: Callable[[SampleStep], None] | None,
    copy_steps: bool,
) -> Iterator[SampleStep]:
    """The loop of :func:`sample_progressive` through a :class:`~diffusion_lib.speed.StepGraph`.

    The step takes its index as a (B,) tensor, so every schedule value is
    gathered on the device and the noise term is masked rather than skipped.
    """
    def step_fn(x: Tensor, i: Tensor, z: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        eps = eps_fn(x, sched.timesteps[i]).float()
        if sampler == "ddpm":
            out = ddpm_step(sched, x, i, eps, z, variance, x0_mode)
        else:
            out = ddim_step(sched, x, i, eps, z if eta > 0 else None, eta, x0_mode)
        return out.x_prev, out.x0, out.eps

    original_t = sched.timesteps_numpy
    alpha_bars = sched.alphas_cumprod_f64
    graph = StepGraph(step_fn, x_T, visit[0], uses_noise, first_call=check_model_output)
    copy_steps = copy_steps or callback is not None
    try:
        for index, i in enumerate(tqdm(visit, desc=sampler, disable=not progress, leave=False)):
            x_t = graph.x.clone() if copy_steps else graph.x
            z = noise.next() if (uses_noise and i > 0) else None
            x_prev, x0, eps = graph.step(z)
            if copy_steps:
                x_prev, x0, eps = x_prev.clone(), x0.clone(), eps.clone()
            elif i == 0:
                x_prev = x_prev.clone()  # the caller keeps the sample; the buffer is reused
            step = SampleStep(index, int(original_t[i]), float(alpha_bars[i]), x_t, x0, eps, x_prev)
            if callback is not None:
                callback(step)
            yield step
    finally:
        noise.close()
    if not bool(torch.isfinite(graph.x).all()):
        raise FloatingPointError(
            "the sample holds NaN/inf after the CUDA-graph loop; run with cuda_graph=False "
            "to find the step (AutocastModel checks every call there)"
        )


def sample(
    model: EpsModel, schedule: NoiseSchedule, shape: Sequence[int], **kwargs: object
) -> Tensor:
    """Generate a batch: :func:`sample_progressive` run to the end.

    Takes the same arguments. Returns x_0, shape ``shape``, in about [−1, 1].

    Example:
        >>> from diffusion_lib.pretrained import load_pretrained      # doctest: +SKIP
        >>> model, schedule = load_pretrained("digits")              # doctest: +SKIP
        >>> x = sample(model, schedule, (16, 1, 8, 8), labels=3, guidance_scale=3.0,
        ...            sampler="ddim", steps=50, seed=0)             # doctest: +SKIP
    """
    x: Tensor | None = None
    kwargs.setdefault("_copy_steps", False)  # only the last x_prev is kept
    for step in sample_progressive(model, schedule, shape, **kwargs):  # type: ignore[arg-type]
        x = step.x_prev
    assert x is not None
    return x
