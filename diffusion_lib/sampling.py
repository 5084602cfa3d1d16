"""The sampling loop: :func:`sample_progressive` (every step) and :func:`sample`.

The pieces live in their own modules and are re-exported here:

- :mod:`diffusion_lib.steps` — one reverse step (DDPM, DDIM, the chapter's naive one),
  x̂0 and ε̂, clipping and thresholding, the step API by timestep;
- :mod:`diffusion_lib.spacing` — which timesteps a run visits;
- :mod:`diffusion_lib.guidance` — classifier-free guidance.

Guarantees, stated exactly:

- *Per-sample noise.* Sample i draws x_T and every z from its own seed
  (:mod:`diffusion_lib.noise`), so its *noise* is the same in any batch. Its
  *result* is bit-identical across batch sizes only when the model computes
  each sample independently of the batch size; real networks do not quite
  (CPU and GPU kernels pick other algorithms for other batch shapes, ~1e-6).
  For bit-identical images whatever the batch, call the model with a fixed
  batch, as the CLI does (``generate --model-batch``).
- *Checked every step.* The model output must keep x_t's shape and be finite
  at every step; the first step where it is not raises, naming the step and t
  (on a CPU at once; on an accelerator, without a per-step host sync, when the
  loop ends).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from .guidance import CfgMode, EpsParts, make_eps_parts_fn
from .model_api import EpsModel, check_model_output
from .noise import SampleNoise, resolve_seeds
from .ode import ODE_SAMPLERS, SIGMA_SCHEDULES, SigmaSchedule, ode_timesteps, ode_walk, sigmas_of
from .sample_checks import (
    FiniteWatch,
    StepNoise,
    as_labels,
    as_shape,
    check_device,
    noise_source,
)
from .schedule import FINAL_ALPHAS, FinalAlpha, NoiseSchedule, check_eta
from .spacing import (
    DEFAULT_SPACING,
    SPACINGS,
    Spacing,
    check_choice,
    check_steps,
    naive_strided_timesteps,
    sampling_schedule,
    timestep_spacing,
)
from .speed import StepGraph
from .steps import (
    VARIANCES,
    X0_MODES,
    StepOutput,
    Variance,
    X0Mode,
    ddim_step,
    ddpm_step,
    dynamic_threshold,
    naive_strided_step,
    predict_eps_from_x0,
    predict_x0_from_eps,
    process_x0,
    q_posterior_mean,
    step_at,
)

Sampler = Literal["ddpm", "ddim", "naive_strided", "euler", "heun", "dpmpp_2m"]
SAMPLERS: tuple[str, ...] = get_args(Sampler)



@dataclass
class SampleStep:
    """One step of the reverse process, as yielded by :func:`sample_progressive`.

    Tensors are (B, ...) unless said otherwise.
    """

    index: int
    """Position in the loop, 0 for the first (noisiest) step."""
    t: int
    """The original timestep the model was called with."""
    alpha_bar: float
    """ᾱ_t at this step."""
    x_t: Tensor
    """The input of this step."""
    x0: Tensor
    """The predicted (processed) x̂0."""
    eps: Tensor
    """The ε̂ the update used (guided, and re-derived from a clipped x̂0 where that applies)."""
    x_prev: Tensor
    """The output, x_{t−1} = mean + σ z; after the last step, the sample."""
    mean: Tensor | None = None
    """The step's mean (x_prev before the noise term)."""
    sigma: Tensor | None = None
    """σ of the noise term, broadcastable to x_t; 0 where no noise is added."""
    model_output: Tensor | None = None
    """The model's ε̂ as returned (guided ε̃ under guidance), before any re-derivation."""
    eps_cond: Tensor | None = None
    """Under guidance, ε(x_t, t, c); else ``None``."""
    eps_uncond: Tensor | None = None
    """Under guidance, ε(x_t, t, ∅); else ``None``."""
    noise: Tensor | None = None
    """The z of this step, or ``None`` where none was added."""


@torch.no_grad()
def sample_progressive(
    model: EpsModel,
    schedule: NoiseSchedule,
    shape: Sequence[int],
    *,
    sampler: Sampler = "ddpm",
    steps: int | None = None,
    spacing: Spacing = DEFAULT_SPACING,
    variance: Variance = "beta_tilde",
    eta: float = 0.0,
    x0_mode: X0Mode = "clip",
    rederive_eps: bool = True,
    final_alpha: FinalAlpha = "one",
    sigma_schedule: SigmaSchedule = "karras",
    labels: Tensor | Sequence[int] | int | None = None,
    guidance_scale: float | None = None,
    cfg_mode: CfgMode = "batched",
    guidance_rescale: float = 0.0,
    guidance_interval: tuple[int, int] | None = None,
    seed: int | None = None,
    seeds: Sequence[int] | None = None,
    x_T: Tensor | None = None,
    step_noise: StepNoise | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    callback: Callable[[SampleStep], None] | None = None,
    cuda_graph: bool = False,
    _copy_steps: bool = True,
) -> Iterator[SampleStep]:
    """Run the reverse process from x_T ~ N(0, I), yielding every step.

    Args:
        model: ``model(x_t, t, labels=None) -> ε̂`` (see :mod:`diffusion_lib.model_api`),
            float32 (wrap a half-precision model in
            :class:`~diffusion_lib.speed.AutocastModel`: the sampler stays fp32).
        schedule: the schedule the model was trained with (T steps).
        shape: (B, ...) of the batch to generate, e.g. (16, 1, 8, 8).
        sampler: ``"ddpm"`` (ancestral), ``"ddim"``, ``"naive_strided"`` (the seed
            chapter's, for comparison only), or an ODE solver (:mod:`diffusion_lib.ode`):
            ``"euler"`` (= DDIM η = 0), ``"heun"`` (2 model calls a step) or
            ``"dpmpp_2m"`` (DPM-Solver++(2M)); these are deterministic.
        steps: how many steps to take (1 … T); ``None`` = all T. DDPM and DDIM
            respace the schedule (:func:`~diffusion_lib.spacing.sampling_schedule`).
        spacing: which steps to keep when ``steps`` < T: ``"trailing"`` (default;
            always starts at T − 1), ``"linspace"`` or ``"leading"`` (the DDIM
            paper's; starts well below T − 1 when T/2 < steps < T). See
            :mod:`diffusion_lib.spacing`.
        variance: DDPM's σ² = ``"beta"`` or ``"beta_tilde"``.
        eta: DDIM's η in [0, 1].
        x0_mode: ``"none"``, ``"clip"`` or ``"dynamic"`` processing of x̂0.
        rederive_eps: DDIM: use the ε̂ consistent with the clipped x̂0 (default;
            diffusers' ``use_clipped_model_output=True``) or the raw one.
        final_alpha: DDIM: ᾱ_prev of the last step, ``"one"`` or ``"first"``
            (diffusers' ``set_alpha_to_one``).
        sigma_schedule: ODE samplers: ``"karras"`` (ρ = 7, the default) or
            ``"uniform"`` (the timesteps of ``spacing``); see
            :func:`~diffusion_lib.ode.ode_timesteps`.
        labels: an int, or (B,) class labels; ``None`` = unconditional.
        guidance_scale: classifier-free guidance w (finite); ``None`` = no guidance.
        cfg_mode: ``"batched"`` (one 2B call) or ``"two_pass"``.
        guidance_rescale: φ in [0, 1], rescale the guided ε̃ towards ε(c)'s scale
            (Lin et al. 2024); 0 = off.
        guidance_interval: (lo, hi): guide only at original timesteps in [lo, hi]
            (Kynkäänniemi et al. 2024); elsewhere the conditional ε(c) is used.
        seed, seeds: per-sample integer seeds (:func:`diffusion_lib.noise.resolve_seeds`):
            sample i gets the same x_T and z whatever the batch.
        x_T: start from this x_T (B, ...) instead of drawing it; it is converted
            to float32 on the sampling device (a half x_T is upcast, the caller's
            tensor is not changed). Must be finite.
        step_noise: take the per-step noise from outside instead of the seeds:
            one z (B, ...) per step that adds noise, in order, as a tensor
            (S_noisy, B, ...), a sequence, or a callable ``index -> z``. DDPM and
            DDIM (η > 0) add noise at every step but the last (S − 1), the
            naive sampler at every step (S), DDIM with ``final_alpha="first"``
            at every step. With ``x_T`` as well, a run is fully fixed from outside.
        device: where to sample; default and otherwise: the model's device (a
            model's weights and ``device`` must agree).
        progress: show a ``tqdm`` progress bar.
        callback: called with every :class:`SampleStep`.
        cuda_graph: run each step as one replay of a CUDA graph
            (:class:`diffusion_lib.speed.StepGraph`): the model call, x̂0, the
            update and the noise term in one launch. ``"ddpm"`` and ``"ddim"``
            only. Same samples as the eager loop (bit-identical on the CPU, where
            the static-buffer step runs without capture; on CUDA up to the
            kernels cuBLAS picks). The model must not read tensors back to the
            host; the library's models and :class:`~diffusion_lib.speed.AutocastModel`
            comply.

    Yields:
        :class:`SampleStep` for every step, noisiest first.

    Raises:
        ValueError / TypeError: for any bad argument, naming it and what is valid.
        FloatingPointError: the model returned NaN/inf; names the first such step and t.
    """
    check_choice("sampler", sampler, SAMPLERS)
    check_choice("spacing", spacing, SPACINGS)
    check_choice("variance", variance, VARIANCES)
    check_choice("x0_mode", x0_mode, X0_MODES)
    check_choice("final_alpha", final_alpha, FINAL_ALPHAS)
    check_choice("sigma_schedule", sigma_schedule, SIGMA_SCHEDULES)
    eta = check_eta(eta)
    if cuda_graph and sampler not in ("ddpm", "ddim"):
        raise ValueError(
            f"cuda_graph=True supports sampler='ddpm' and 'ddim', not {sampler!r} "
            "(the ODE solvers and the chapter's 'naive_strided' sampler run eagerly)"
        )
    if sampler != "ddim" and eta != 0.0:
        raise ValueError(
            f"eta only applies to sampler='ddim', got eta={eta} with sampler={sampler!r}"
        )
    shape = as_shape(shape)
    batch = shape[0]
    num_timesteps = schedule.num_steps
    if steps is not None:
        steps = check_steps(steps, num_timesteps)
    model_T = getattr(model, "num_timesteps", None)
    if model_T is not None and int(model_T) != schedule.num_train_timesteps:
        raise ValueError(
            f"the model was trained with T = {model_T} timesteps but the schedule has "
            f"T = {schedule.num_train_timesteps}; pass the schedule it was trained with "
            "(load_pretrained returns both) and choose fewer steps with `steps=`"
        )

    dev = check_device(model, device)
    y = as_labels(labels, batch, model, dev)
    eps_fn = make_eps_parts_fn(model, y, guidance_scale, cfg_mode, guidance_rescale,
                               guidance_interval)
    if x_T is not None:
        if not isinstance(x_T, Tensor):
            raise TypeError(f"x_T must be a tensor of shape {shape}, got {type(x_T).__name__}")
        if tuple(x_T.shape) != shape:
            raise ValueError(f"x_T has shape {tuple(x_T.shape)}, expected {shape}")
        if x_T.device.type != "meta" and not bool(torch.isfinite(x_T).all()):
            raise ValueError(f"x_T holds {int((~torch.isfinite(x_T)).sum())} NaN/inf value(s)")

    if sampler in ODE_SAMPLERS:
        if step_noise is not None:
            raise ValueError(f"sampler={sampler!r} is deterministic: it takes no step_noise")
        sched = schedule.to(dev)  # not respaced: the solvers step between timesteps directly
        visit = ode_timesteps(schedule, steps, sigma_schedule, spacing).tolist()
    elif sampler == "naive_strided":
        sched = schedule.to(dev)
        visit = naive_strided_timesteps(num_timesteps, steps or num_timesteps)
        stride = visit[0] - visit[1] if len(visit) > 1 else num_timesteps
    else:
        sched = sampling_schedule(schedule, steps, spacing).to(dev)
        visit = list(range(sched.num_steps))[::-1]
    # which steps add noise (and so draw a z)
    if sampler == "naive_strided":
        noisy = [True] * len(visit)
    elif sampler in ODE_SAMPLERS or (sampler == "ddim" and eta == 0.0):
        noisy = [False] * len(visit)
    else:
        last_too = sampler == "ddim" and final_alpha == "first"
        noisy = [i > 0 or last_too for i in visit]
    uses_noise = any(noisy)
    noise = SampleNoise(
        resolve_seeds(batch, seed, seeds), shape[1:], dev,
        total=sum(noisy) if step_noise is None else 0,
    )
    x = noise.initial() if x_T is None else x_T.to(device=dev, dtype=torch.float32)
    next_z = noise_source(step_noise, noise, shape, dev, sum(noisy))
    watch = FiniteWatch(dev, sched.timesteps_numpy, visit)
    if sampler in ODE_SAMPLERS:
        noise.close()  # x_T is all the solvers draw
        yield from _ode_loop(sampler, sched, x, eps_fn, watch, x0_mode, rederive_eps,
                             np.asarray(visit), progress, callback)
        return
    if sampler == "ddim":
        sched.ddim_coefficients(eta, final_alpha)  # computed once, before any capture
    original_t = sched.timesteps_numpy
    alpha_bars = sched.alphas_cumprod_f64

    def update(x: Tensor, i: int | Tensor, parts: EpsParts, z: Tensor | None) -> StepOutput:
        eps = parts.eps.float()
        if sampler == "ddpm":
            if z is None and isinstance(i, Tensor):  # the graph's one-step run: σ = 0 here
                z = torch.zeros_like(x)
            return ddpm_step(sched, x, i, eps, z, variance, x0_mode)
        return ddim_step(sched, x, i, eps, z, eta, x0_mode,
                         rederive_eps=rederive_eps, final_alpha=final_alpha)

    if cuda_graph:
        yield from _graphed_loop(
            sched, eps_fn, update, watch, x, noise, next_z, visit, noisy, uses_noise,
            sampler, progress, callback, _copy_steps,
        )
        return
    t_batches = sched.timesteps.unsqueeze(1).expand(-1, batch)  # (S, B), no per-step allocation

    try:
        for index, i in enumerate(tqdm(visit, desc=sampler, disable=not progress, leave=False)):
            t_model = t_batches[i]
            parts = _checked_call(eps_fn, x, t_model, index == 0,
                                  f"step {index} (t = {original_t[i]})")
            watch.update(parts.eps, t_model)
            z = next_z(index) if noisy[index] else None
            if sampler == "naive_strided":
                assert z is not None
                out = naive_strided_step(sched, x, i, max(0, i - stride), parts.eps.float(), z)
            else:
                out = update(x, i, parts, z)
            step = SampleStep(
                index=index, t=int(original_t[i]), alpha_bar=float(alpha_bars[i]),
                x_t=x, x0=out.x0, eps=out.eps, x_prev=out.x_prev, mean=out.mean,
                sigma=out.sigma, model_output=parts.eps, eps_cond=parts.eps_cond,
                eps_uncond=parts.eps_uncond, noise=z,
            )
            if callback is not None:
                callback(step)
            yield step
            x = out.x_prev
    finally:
        noise.close()  # stops its worker threads, if any
    watch.check()


def _graphed_loop(
    sched: NoiseSchedule,
    eps_fn: Callable[[Tensor, Tensor], EpsParts],
    update: Callable[[Tensor, Tensor, EpsParts, Tensor | None], StepOutput],
    watch: FiniteWatch,
    x_T: Tensor,
    noise: SampleNoise,
    next_z: Callable[[int], Tensor],
    visit: list[int],
    noisy: list[bool],
    uses_noise: bool,
    sampler: Sampler,
    progress: bool,
    callback: Callable[[SampleStep], None] | None,
    copy_steps: bool,
) -> Iterator[SampleStep]:
    """The loop of :func:`sample_progressive` through a :class:`~diffusion_lib.speed.StepGraph`.

    The step takes its index as a (B,) tensor, so every schedule value is
    gathered on the device and the noise term is masked rather than skipped.
    """
    guided = [False]

    def step_fn(x: Tensor, i: Tensor, z: Tensor | None) -> tuple[Tensor, ...]:
        t = sched.timesteps[i]
        parts = eps_fn(x, t)
        watch.update(parts.eps, t)
        out = update(x, i, parts, z)
        extra = (parts.eps_cond, parts.eps_uncond) if parts.eps_cond is not None else ()
        guided[0] = bool(extra)
        return (out.x_prev, out.x0, out.eps, out.mean, out.sigma, parts.eps, *extra)

    original_t = sched.timesteps_numpy
    alpha_bars = sched.alphas_cumprod_f64
    graph = StepGraph(step_fn, x_T, visit[0], uses_noise, first_call=check_model_output)
    copy_steps = copy_steps or callback is not None
    try:
        for index, i in enumerate(tqdm(visit, desc=sampler, disable=not progress, leave=False)):
            x_t = graph.x.clone() if copy_steps else graph.x
            z = next_z(index) if noisy[index] else None
            outs = graph.step(z)
            if copy_steps:
                outs = tuple(o.clone() for o in outs)
            elif i == 0:
                outs = (outs[0].clone(), *outs[1:])  # the caller keeps the sample
            cond, uncond = (outs[6], outs[7]) if guided[0] else (None, None)
            step = SampleStep(
                index, int(original_t[i]), float(alpha_bars[i]), x_t, outs[1], outs[2],
                outs[0], mean=outs[3], sigma=outs[4], model_output=outs[5], eps_cond=cond,
                eps_uncond=uncond, noise=z,
            )
            if callback is not None:
                callback(step)
            yield step
    finally:
        noise.close()
    watch.check()


def _checked_call(
    eps_fn: Callable[[Tensor, Tensor], EpsParts], x: Tensor, t_model: Tensor, first: bool,
    where: str,
) -> EpsParts:
    """One model call of a loop: the first through :func:`check_model_output`, every later
    one checked to keep x_t's shape (``where`` names the step in the error)."""
    if first:
        return check_model_output(lambda: eps_fn(x, t_model), x)
    parts = eps_fn(x, t_model)
    if not isinstance(parts.eps, Tensor) or parts.eps.shape != x.shape:
        got = tuple(parts.eps.shape) if isinstance(parts.eps, Tensor) else parts.eps
        raise ValueError(
            f"the model returned shape {got} at {where}; it returned {tuple(x.shape)} "
            "before: ε̂ must keep x_t's shape"
        )
    return parts


def _ode_loop(
    sampler: str,
    sched: NoiseSchedule,
    x_T: Tensor,
    eps_fn: Callable[[Tensor, Tensor], EpsParts],
    watch: FiniteWatch,
    x0_mode: X0Mode,
    rederive_eps: bool,
    timesteps: np.ndarray,
    progress: bool,
    callback: Callable[[SampleStep], None] | None,
) -> Iterator[SampleStep]:
    """The ODE solvers of :mod:`diffusion_lib.ode` as :class:`SampleStep` s."""
    sig = sigmas_of(sched)
    alpha_bars = sched.alphas_cumprod_f64
    batch = x_T.shape[0]
    calls = [0]

    def denoise(x_tilde: Tensor, t: int) -> tuple[Tensor, Tensor, Tensor]:
        s = float(sig[t])
        x_t = x_tilde / (1.0 + s * s) ** 0.5
        t_model = torch.full((batch,), t, dtype=torch.long, device=x_T.device)
        parts = _checked_call(eps_fn, x_t, t_model, calls[0] == 0, f"t = {t}")
        calls[0] += 1
        watch.update(parts.eps, t_model)
        raw = parts.eps.float()
        x0 = process_x0(x_tilde - s * raw, x0_mode)
        eps = (x_tilde - x0) / s if (x0_mode != "none" and rederive_eps) else raw
        return x0, eps, parts

    def to_x(x_tilde: Tensor, t: int | None) -> Tensor:
        return x_tilde if t is None else x_tilde / (1.0 + float(sig[t]) ** 2) ** 0.5

    x_tilde = x_T * (1.0 + float(sig[timesteps[0]]) ** 2) ** 0.5
    walk = ode_walk(sampler, x_tilde, timesteps, sig, denoise)  # type: ignore[arg-type]
    zero = torch.zeros((), device=x_T.device)
    for i, t, x_i, x_next, d, eps, parts in tqdm(walk, total=len(timesteps), desc=sampler,
                                                 disable=not progress, leave=False):
        t_next = int(timesteps[i + 1]) if i + 1 < len(timesteps) else None
        x_prev = to_x(x_next, t_next)
        step = SampleStep(
            index=i, t=t, alpha_bar=float(alpha_bars[t]), x_t=to_x(x_i, t), x0=d, eps=eps,
            x_prev=x_prev, mean=x_prev, sigma=zero, model_output=parts.eps,
            eps_cond=parts.eps_cond, eps_uncond=parts.eps_uncond, noise=None,
        )
        if callback is not None:
            callback(step)
        yield step
    watch.check()


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


__all__ = [
    "DEFAULT_SPACING",
    "SAMPLERS",
    "SPACINGS",
    "VARIANCES",
    "X0_MODES",
    "SampleStep",
    "Sampler",
    "Spacing",
    "StepNoise",
    "StepOutput",
    "Variance",
    "X0Mode",
    "check_choice",
    "ddim_step",
    "ddpm_step",
    "dynamic_threshold",
    "naive_strided_step",
    "naive_strided_timesteps",
    "predict_eps_from_x0",
    "predict_x0_from_eps",
    "process_x0",
    "q_posterior_mean",
    "sample",
    "sample_progressive",
    "sampling_schedule",
    "step_at",
    "timestep_spacing",
]
