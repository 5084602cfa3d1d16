"""The sampling loop: :func:`sample_progressive` (every step) and :func:`sample`.

Which sampler runs, which timesteps it visits and which of its steps draw noise come
from the sampler table (:mod:`.registry`); this module only walks the plan: the model
call (with guidance, :mod:`.guidance`), the step, the noise (:mod:`.noise`), and one
:class:`SampleStep` per step. Three walks share that bookkeeping: the eager loop, the
same step replayed as a CUDA graph (:mod:`.graph`), and an ODE walk (:mod:`.ode`).

Guarantees, stated exactly:

- *Per-sample noise.* Sample i draws x_T and every z from its own seed
  (:mod:`diffusion_lib.sampling.noise`), so its *noise* is the same in any batch. Its
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
from typing import cast

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..model_api import (
    EpsModel,
    ModelOutputError,
    ModelOutputTypeError,
    check_model_output,
)
from ..schedule import FinalAlpha, NoiseSchedule
from .checks import (
    FiniteWatch,
    StepNoise,
    as_labels,
    as_shape,
    check_device,
    check_steps,
    noise_source,
)
from .graph import StepGraph
from .guidance import CfgMode, EpsParts, make_eps_parts_fn
from .noise import SampleNoise, resolve_seeds
from .ode import OdeStep, OdeWalk, SigmaSchedule, sigmas_of
from .registry import (
    NoisyOdeWalk,
    Plan,
    Sampler,
    SamplerKind,
    SamplerSpec,
    _listed,
    sampler_kind,
    sampler_names,
)
from .spacing import Spacing
from .steps import StepOutput, Variance, X0Mode, process_x0


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
    """The step's mean (x_prev before the noise term); ``None`` for an EDM step that adds
    noise (its z comes before the model call, so x_prev is not mean + σ z)."""
    sigma: Tensor | None = None
    """σ of the noise term, broadcastable to x_t; 0 where no noise is added; ``None`` for
    an EDM step that adds noise."""
    model_output: Tensor | None = None
    """The model's ε̂ as returned (guided ε̃ under guidance), before any re-derivation."""
    eps_cond: Tensor | None = None
    """Under guidance, ε(x_t, t, c); else ``None``."""
    eps_uncond: Tensor | None = None
    """Under guidance, ε(x_t, t, ∅); else ``None``."""
    noise: Tensor | None = None
    """The z of this step, or ``None`` where none was added. EDM (``s_churn > 0``): the z
    of its churn, x̂ = x̃ + S_noise √(σ̂² − σ²) z in the σ-form before the model call at the
    raised timestep t̂ (``x0``, ``eps`` and the model outputs are those at t̂; ``t`` and
    ``x_t`` stay the step's own)."""


@torch.no_grad()
def sample_progressive(
    model: EpsModel,
    schedule: NoiseSchedule,
    shape: Sequence[int],
    *,
    sampler: Sampler | str = "ddpm",
    steps: int | None = None,
    spacing: Spacing | None = None,
    variance: Variance | None = None,
    eta: float | None = None,
    x0_mode: X0Mode | None = None,
    rederive_eps: bool | None = None,
    final_alpha: FinalAlpha | None = None,
    sigma_schedule: SigmaSchedule | None = None,
    s_churn: float | None = None,
    s_tmin: float | None = None,
    s_tmax: float | None = None,
    s_noise: float | None = None,
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

    The sampler options (``spacing`` … ``s_noise``) default to
    :class:`~.registry.SamplerSpec`'s defaults; one given for a sampler it does not
    apply to is refused (``ValueError`` naming the samplers it applies to).
    ``sample(model, schedule, shape, **spec.kwargs())`` runs a ``SamplerSpec``.

    Args:
        model: ``model(x_t, t, labels=None) -> ε̂`` (see :mod:`diffusion_lib.model_api`),
            float32 (wrap a half-precision model in
            :class:`~diffusion_lib.speed.AutocastModel`: the sampler stays fp32).
        schedule: the schedule the model was trained with (T steps).
        shape: (B, ...) of the batch to generate, e.g. (16, 1, 8, 8).
        sampler: a name of the sampler table (:mod:`.registry`): ``"ddpm"``
            (ancestral), ``"ddim"``, ``"naive_strided"`` (the seed chapter's, for
            comparison only), a probability-flow ODE solver (:mod:`.ode`, deterministic):
            ``"euler"`` (= DDIM η = 0), ``"heun"`` (2 model calls a step), ``"dpmpp_2m"``,
            or ``"edm"``: EDM's stochastic sampler, Heun with fresh noise (``s_churn``).
        steps: how many steps to take (1 … T); ``None`` = all T. DDPM and DDIM
            respace the schedule (:func:`~.spacing.sampling_schedule`).
        spacing: which steps to keep when ``steps`` < T: ``"trailing"`` (default;
            always starts at T − 1), ``"linspace"`` or ``"leading"`` (:mod:`.spacing`).
            DDPM, DDIM, and the ODE solvers with ``sigma_schedule="uniform"``.
        variance: DDPM's σ² = ``"beta"`` or ``"beta_tilde"`` (default).
        eta: DDIM's η in [0, 1] (default 0).
        x0_mode: ``"none"``, ``"clip"`` (default) or ``"dynamic"`` processing of x̂0
            (the chapter's sampler always clips).
        rederive_eps: DDIM and the ODE solvers: use the ε̂ consistent with the clipped
            x̂0 (default; diffusers' ``use_clipped_model_output=True``) or the raw one.
        final_alpha: DDIM: ᾱ_prev of the last step, ``"one"`` (default) or ``"first"``
            (diffusers' ``set_alpha_to_one``).
        sigma_schedule: ODE solvers: ``"karras"`` (ρ = 7, the default) or
            ``"uniform"`` (the timesteps of ``spacing``); see :func:`~.ode.ode_timesteps`.
        s_churn: EDM's S_churn >= 0 (default 0 = Heun exactly): before each step with σ in
            [s_tmin, s_tmax], σ is raised to σ (1 + γ), γ = min(s_churn/N, √2 − 1), by
            adding fresh per-sample noise; σ̂ is snapped to a training timestep
            (:func:`~.ode.churn_timesteps`), so a small γ may add none.
        s_tmin, s_tmax: EDM: the σ range that is churned (default 0 and inf: every step).
        s_noise: EDM's S_noise > 0, the scale of the fresh noise (default 1).
        labels: an int, or (B,) class labels; ``None`` = unconditional.
        guidance_scale: classifier-free guidance w (finite); ``None`` = no guidance.
        cfg_mode: ``"batched"`` (one 2B call) or ``"two_pass"``.
        guidance_rescale: φ in [0, 1], rescale the guided ε̃ towards ε(c)'s scale
            (Lin et al. 2024); 0 = off.
        guidance_interval: (lo, hi): guide only at original timesteps in [lo, hi]
            (Kynkäänniemi et al. 2024); elsewhere the conditional ε(c) is used. Both
            ends must lie in [0, T − 1], and the interval must hold a visited timestep.
            Both ends are included (a visited timestep equal to lo or hi is guided); the
            paper's interval is half-open, σ ∈ (σ_lo, σ_hi], i.e. lo < t ≤ hi: pass (lo + 1, hi)
            to match it.
        seed, seeds: per-sample integer seeds (:func:`~.noise.resolve_seeds`):
            sample i gets the same x_T and z whatever the batch.
        x_T: start from this x_T (B, ...) instead of drawing it; it is converted
            to float32 on the sampling device (a half or float64 x_T is converted, the
            caller's tensor is not changed). Must be finite and floating-point (an
            integer, bool or complex x_T is a ``TypeError``).
        step_noise: take the per-step noise from outside instead of the seeds:
            one z (B, ...) per step that adds noise, in order, as a tensor
            (S_noisy, B, ...), a sequence, or a callable ``index -> z``. DDPM and
            DDIM (η > 0) add noise at every step but the last (S − 1), the
            naive sampler at every step (S), DDIM with ``final_alpha="first"``
            at every step, EDM at the steps its churn raises (``SampleStep.noise``).
            With ``x_T`` as well, a run is fully fixed from outside.
        device: where to sample; default and otherwise: the model's device (a
            model's weights and ``device`` must agree).
        progress: show a ``tqdm`` progress bar.
        callback: called with every :class:`SampleStep`.
        cuda_graph: run each step as one replay of a CUDA graph
            (:class:`~.graph.StepGraph`): the model call, x̂0, the update and the
            noise term in one launch; the samplers the table marks ``graphable``
            (DDPM, DDIM). Same samples as the eager loop (bit-identical on the CPU,
            where the static-buffer step runs without capture; on CUDA up to the
            kernels cuBLAS picks). The model must not read tensors back to the
            host; the library's models and :class:`~diffusion_lib.speed.AutocastModel`
            comply.

    Yields:
        :class:`SampleStep` for every step, noisiest first.

    Raises:
        ValueError / TypeError: for any bad argument, naming it and what is valid; a model
            output of the wrong shape or dtype, or a model that writes into its input
            x_t (checked at the first call).
        FloatingPointError: the model returned NaN/inf; names the first such step and t.
    """
    spec = SamplerSpec.from_kwargs(
        sampler,
        spacing=spacing,
        variance=variance,
        eta=eta,
        x0_mode=x0_mode,
        rederive_eps=rederive_eps,
        final_alpha=final_alpha,
        sigma_schedule=sigma_schedule,
        s_churn=s_churn,
        s_tmin=s_tmin,
        s_tmax=s_tmax,
        s_noise=s_noise,
    )
    kind = spec.kind
    if cuda_graph and not kind.graphable:
        graphable = [k for k in sampler_names() if sampler_kind(k).graphable]
        raise ValueError(
            f"cuda_graph=True supports sampler={_listed(graphable)}, not "
            f"{sampler!r} (the others run eagerly)"
        )
    if step_noise is not None and kind.deterministic:
        raise ValueError(f"sampler={sampler!r} is deterministic: it takes no step_noise")
    shape = as_shape(shape)
    batch = shape[0]
    if steps is not None:
        spec = spec.replace(steps=check_steps(steps, schedule.num_steps))
    model_T = getattr(model, "num_timesteps", None)
    if model_T is not None and int(model_T) != schedule.num_train_timesteps:
        raise ValueError(
            f"the model was trained with T = {model_T} timesteps but the schedule has "
            f"T = {schedule.num_train_timesteps}; pass the schedule it was trained with "
            "(load_pretrained returns both) and choose fewer steps with `steps=`"
        )

    dev = check_device(model, device)
    y = as_labels(labels, batch, model, dev)
    eps_fn = make_eps_parts_fn(
        model,
        y,
        guidance_scale,
        cfg_mode,
        guidance_rescale,
        guidance_interval,
        schedule.num_train_timesteps,
    )
    if x_T is not None:
        _check_x_T(x_T, shape, dev)

    plan = kind.plan(schedule, spec)
    plan = Plan(plan.schedule.to(dev), plan.visit)
    if guidance_interval is not None:
        _check_interval_visited(guidance_interval, plan)
    noisy = kind.noisy(plan, spec)
    noise = SampleNoise(
        resolve_seeds(batch, seed, seeds),
        shape[1:],
        dev,
        total=sum(noisy) if step_noise is None else 0,
    )
    x = noise.initial() if x_T is None else x_T.to(device=dev, dtype=torch.float32)
    next_z = noise_source(step_noise, noise, shape, dev, sum(noisy))
    watch = FiniteWatch(dev, plan.schedule.timesteps_numpy, plan.visit)
    if kind.prepare is not None:
        kind.prepare(plan.schedule, spec)  # e.g. DDIM's coefficients, before any capture
    if kind.walk is not None:
        if kind.deterministic:
            noise.close()  # x_T is all the solvers draw
        walk = _ode_walk(kind, spec, plan, x, eps_fn, watch, None if kind.deterministic else next_z)
    elif cuda_graph:
        walk = _graphed_walk(
            kind, spec, plan, x, eps_fn, watch, next_z, noisy, _copy_steps or callback is not None
        )
    else:
        walk = _eager_walk(kind, spec, plan, x, eps_fn, watch, next_z, noisy)
    try:
        for step in tqdm(
            walk, total=len(plan.visit), desc=kind.name, disable=not progress, leave=False
        ):
            if callback is not None:
                callback(step)
            yield step
    finally:
        noise.close()  # stops its worker threads, if any
    watch.check()


def _check_x_T(x_T: object, shape: tuple[int, ...], dev: torch.device) -> None:
    """x_T: a finite floating-point tensor of ``shape`` with data; else an error naming it."""
    if not isinstance(x_T, Tensor):
        raise TypeError(f"x_T must be a tensor of shape {shape}, got {type(x_T).__name__}")
    if not x_T.dtype.is_floating_point:
        raise TypeError(
            f"x_T must be a floating-point tensor (float32; float16, bfloat16 and float64 are "
            f"converted to float32), got dtype {x_T.dtype}: x_T is Gaussian noise, not "
            "integers, booleans or complex numbers"
        )
    if tuple(x_T.shape) != shape:
        raise ValueError(f"x_T has shape {tuple(x_T.shape)}, expected {shape}")
    if x_T.device.type == "meta":
        if dev.type != "meta":
            raise ValueError(
                f"x_T is on the meta device: it holds no data; pass a tensor on {dev} (or the "
                "CPU), e.g. torch.randn(shape)"
            )
        return
    if not bool(torch.isfinite(x_T).all()):
        raise ValueError(f"x_T holds {int((~torch.isfinite(x_T)).sum())} NaN/inf value(s)")


def _check_interval_visited(interval: tuple[int, int], plan: Plan) -> None:
    """A ``guidance_interval`` that holds none of the visited timesteps would guide nowhere."""
    visited = plan.schedule.timesteps_numpy[plan.visit]
    lo, hi = int(interval[0]), int(interval[1])
    if not ((visited >= lo) & (visited <= hi)).any():
        shown = sorted(int(t) for t in visited)
        listed = shown if len(shown) <= 8 else [*shown[:4], "…", *shown[-3:]]
        raise ValueError(
            f"guidance_interval ({lo}, {hi}) holds none of the {len(shown)} timesteps this run "
            f"visits ({', '.join(map(str, listed))}), so guidance would never apply; widen it, "
            "or leave it out (guidance_interval=None) to guide at every step"
        )


def _sample_step(
    plan: Plan,
    index: int,
    i: int,
    x_t: Tensor,
    out: StepOutput,
    parts: EpsParts,
    z: Tensor | None,
) -> SampleStep:
    """The one place a :class:`SampleStep` is built: step ``index`` of the walk, at index
    ``i`` of ``plan.schedule``, from the step's output and the model's."""
    return SampleStep(
        index=index,
        t=int(plan.schedule.timesteps_numpy[i]),
        alpha_bar=float(plan.schedule.alphas_cumprod_f64[i]),
        x_t=x_t,
        x0=out.x0,
        eps=out.eps,
        x_prev=out.x_prev,
        mean=out.mean,
        sigma=out.sigma,
        model_output=parts.eps,
        eps_cond=parts.eps_cond,
        eps_uncond=parts.eps_uncond,
        noise=z,
    )


def _eager_walk(
    kind: SamplerKind,
    spec: SamplerSpec,
    plan: Plan,
    x: Tensor,
    eps_fn: Callable[[Tensor, Tensor], EpsParts],
    watch: FiniteWatch,
    next_z: Callable[[int], Tensor],
    noisy: list[bool],
) -> Iterator[SampleStep]:
    """One model call and one ``kind.step`` per visited index."""
    assert kind.step is not None
    sched = plan.schedule
    t_batches = sched.timesteps.unsqueeze(1).expand(-1, x.shape[0])  # (S, B), no allocation
    for index, i in enumerate(plan.visit):
        t_model = t_batches[i]
        parts = _checked_call(
            eps_fn, x, t_model, index == 0, f"step {index} (t = {sched.timesteps_numpy[i]})"
        )
        watch.update(parts.eps, t_model, (parts.eps_cond, parts.eps_uncond))
        z = next_z(index) if noisy[index] else None
        out = kind.step(sched, x, i, parts.eps.float(), z, spec)
        yield _sample_step(plan, index, i, x, out, parts, z)
        x = out.x_prev


def _graphed_walk(
    kind: SamplerKind,
    spec: SamplerSpec,
    plan: Plan,
    x_T: Tensor,
    eps_fn: Callable[[Tensor, Tensor], EpsParts],
    watch: FiniteWatch,
    next_z: Callable[[int], Tensor],
    noisy: list[bool],
    copy_steps: bool,
) -> Iterator[SampleStep]:
    """The eager walk's step through a :class:`~.graph.StepGraph`.

    The step takes its index as a (B,) tensor, so every schedule value is
    gathered on the device and the noise term is masked rather than skipped.
    """
    assert kind.step is not None
    step_of = kind.step
    sched = plan.schedule
    guided = False

    def step_fn(x: Tensor, i: Tensor, z: Tensor | None) -> tuple[Tensor, ...]:
        nonlocal guided
        t = sched.timesteps[i]
        parts = eps_fn(x, t)
        watch.update(parts.eps, t)
        out = step_of(sched, x, i, parts.eps.float(), z, spec)
        extra = (parts.eps_cond, parts.eps_uncond) if parts.eps_cond is not None else ()
        guided = bool(extra)
        return (out.x_prev, out.x0, out.eps, out.mean, out.sigma, parts.eps, *extra)

    graph = StepGraph(step_fn, x_T, plan.visit[0], any(noisy), first_call=check_model_output)
    for index, i in enumerate(plan.visit):
        x_t = graph.x.clone() if copy_steps else graph.x
        z = next_z(index) if noisy[index] else None
        outs = graph.step(z)
        if copy_steps:
            outs = tuple(o.clone() for o in outs)
        elif i == 0:
            outs = (outs[0].clone(), *outs[1:])  # the caller keeps the sample
        cond, uncond = (outs[6], outs[7]) if guided else (None, None)
        out = StepOutput(x_prev=outs[0], x0=outs[1], eps=outs[2], mean=outs[3], sigma=outs[4])
        yield _sample_step(plan, index, i, x_t, out, EpsParts(outs[5], cond, uncond), z)


def _checked_call(
    eps_fn: Callable[[Tensor, Tensor], EpsParts],
    x: Tensor,
    t_model: Tensor,
    first: bool,
    where: str,
) -> EpsParts:
    """One model call of a walk: the first through :func:`check_model_output`, every later
    one checked to keep x_t's shape (``where`` names the step in the error)."""
    if first:
        return check_model_output(lambda: eps_fn(x, t_model), x)
    try:
        parts = eps_fn(x, t_model)
    except (ModelOutputError, ModelOutputTypeError) as err:  # the output checks: name the step
        raise type(err)(f"{err} (at {where})") from None
    if not isinstance(parts.eps, Tensor) or parts.eps.shape != x.shape:
        got = tuple(parts.eps.shape) if isinstance(parts.eps, Tensor) else parts.eps
        raise ValueError(
            f"the model returned shape {got} at {where}; it returned {tuple(x.shape)} "
            "before: ε̂ must keep x_t's shape"
        )
    return parts


def _ode_walk(
    kind: SamplerKind,
    spec: SamplerSpec,
    plan: Plan,
    x_T: Tensor,
    eps_fn: Callable[[Tensor, Tensor], EpsParts],
    watch: FiniteWatch,
    next_z: Callable[[int], Tensor] | None = None,
) -> Iterator[SampleStep]:
    """``kind.walk`` (:mod:`.ode`) in the σ-form x̃ = x_t·√(1 + σ²), as :class:`SampleStep` s.

    A walk that draws noise (``next_z`` given: a sampler with a ``noisy`` rule, EDM) is
    called as ``walk(x̃, timesteps, σ, denoise, next_z, spec)``; it asks ``next_z`` for the
    z of exactly the steps the rule marks, in order, so the per-sample seeded stream (or
    the caller's ``step_noise``) is consumed as by DDPM's steps."""
    assert kind.walk is not None
    sched = plan.schedule
    sig = sigmas_of(sched)
    timesteps = np.asarray(plan.visit)
    batch = x_T.shape[0]
    calls = 0

    def denoise(x_tilde: Tensor, t: int) -> tuple[Tensor, Tensor, EpsParts]:
        nonlocal calls
        s = float(sig[t])
        x_t = x_tilde / (1.0 + s * s) ** 0.5
        t_model = torch.full((batch,), t, dtype=torch.long, device=x_T.device)
        parts = _checked_call(eps_fn, x_t, t_model, calls == 0, f"t = {t}")
        calls += 1
        watch.update(parts.eps, t_model, (parts.eps_cond, parts.eps_uncond))
        raw = parts.eps.float()
        x0 = process_x0(x_tilde - s * raw, spec.x0_mode)
        eps = (x_tilde - x0) / s if (spec.x0_mode != "none" and spec.rederive_eps) else raw
        return x0, eps, parts

    def to_x(x_tilde: Tensor, t: int | None) -> Tensor:
        return x_tilde if t is None else x_tilde / (1.0 + float(sig[t]) ** 2) ** 0.5

    x_tilde = x_T * (1.0 + float(sig[timesteps[0]]) ** 2) ** 0.5
    zero = torch.zeros((), device=x_T.device)
    steps: Iterator[OdeStep]
    if next_z is None:
        steps = cast(OdeWalk, kind.walk)(x_tilde, timesteps, sig, denoise)
    else:
        steps = cast(NoisyOdeWalk, kind.walk)(x_tilde, timesteps, sig, denoise, next_z, spec)
    for step in steps:
        i = step.index
        t_next = int(timesteps[i + 1]) if i + 1 < len(timesteps) else None
        x_prev = to_x(step.x_next, t_next)
        out = StepOutput(x_prev=x_prev, x0=step.denoised, eps=step.eps, mean=x_prev, sigma=zero)
        x_t = to_x(step.x, step.t)
        result = _sample_step(plan, i, step.t, x_t, out, step.model_output, step.noise)
        if step.noise is not None:  # the churn's z came before the model call
            result.mean = result.sigma = None  # x_prev is not mean + σ z
        yield result


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


__all__ = ["SampleStep", "Sampler", "sample", "sample_progressive"]
