"""The built-in samplers, registered in :data:`~.registry.SAMPLER_TABLE`.

DDPM and DDIM respace the schedule and take one discrete step per kept timestep; the
chapter's strided sampler walks ``range(0, T, T // n)``; Euler, Heun, DPM-Solver++(2M) and
EDM walk the probability-flow ODE in the σ-form (:mod:`.ode`). Each is its plan, its noise
rule (which steps draw a z) and its step or walk, adapted to the table's signatures. Also
here: :data:`RECOMMENDED`, the CLI's default, and :func:`step_at`, one step by original
timestep.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from torch import Tensor

from ..schedule import NoiseSchedule
from .ode import (
    DenoiseFn,
    NoiseFn,
    OdeStep,
    churn_timesteps,
    dpmpp_2m_walk,
    edm_walk,
    euler_walk,
    heun_walk,
    ode_timesteps,
    sigmas_of,
)
from .registry import SAMPLER_TABLE, Plan, SamplerKind, SamplerSpec, register, sampler_kind
from .spacing import naive_strided_timesteps, sampling_schedule
from .steps import StepOutput, ddim_step, ddpm_step, naive_strided_step, step_table


# ------------------------------------------------------------------ plans and noise rules
def respaced_plan(schedule: NoiseSchedule, spec: SamplerSpec) -> Plan:
    """The schedule respaced to ``spec.steps`` timesteps (``spec.spacing``), every index."""
    walked = sampling_schedule(schedule, spec.steps, spec.spacing)
    return Plan(walked, list(range(walked.num_steps))[::-1])


def strided_plan(schedule: NoiseSchedule, spec: SamplerSpec) -> Plan:
    """The chapter's ``range(0, T, T // n)[::-1]`` on the original schedule."""
    T = schedule.num_steps
    return Plan(schedule, naive_strided_timesteps(T, spec.steps or T))


def ode_plan(schedule: NoiseSchedule, spec: SamplerSpec) -> Plan:
    """The original schedule and :func:`~.ode.ode_timesteps` (Karras σ's or a spacing)."""
    visit = ode_timesteps(schedule, spec.steps, spec.sigma_schedule, spec.spacing)
    return Plan(schedule, visit.tolist())


def _all_but_last(plan: Plan, spec: SamplerSpec) -> list[bool]:
    return [i > 0 for i in plan.visit]


def _ddim_noisy(plan: Plan, spec: SamplerSpec) -> list[bool]:
    if spec.eta == 0.0:
        return [False] * len(plan.visit)
    return [i > 0 or spec.final_alpha == "first" for i in plan.visit]


def _every(plan: Plan, spec: SamplerSpec) -> list[bool]:
    return [True] * len(plan.visit)


def _churn(plan: Plan, spec: SamplerSpec) -> np.ndarray:
    """EDM's raised timestep t̂ of every step of an ODE plan (:func:`~.ode.churn_timesteps`)."""
    sig = sigmas_of(plan.schedule)
    return churn_timesteps(np.asarray(plan.visit), sig, spec.s_churn, spec.s_tmin, spec.s_tmax)


def _edm_noisy(plan: Plan, spec: SamplerSpec) -> list[bool]:
    """EDM draws a z where the churn raises the timestep (none at s_churn = 0)."""
    return (_churn(plan, spec) != np.asarray(plan.visit)).tolist()


def _edm(
    x_tilde: Tensor,
    timesteps: np.ndarray,
    sigmas: np.ndarray,
    denoise: DenoiseFn,
    noise: NoiseFn,
    spec: SamplerSpec,
) -> Iterator[OdeStep]:
    churn = churn_timesteps(timesteps, sigmas, spec.s_churn, spec.s_tmin, spec.s_tmax)
    return edm_walk(x_tilde, timesteps, sigmas, denoise, noise, churn=churn, s_noise=spec.s_noise)


# ------------------------------------------------------------------ the built-in steps
def _ddpm(
    sched: NoiseSchedule,
    x: Tensor,
    i: int | Tensor,
    eps: Tensor,
    z: Tensor | None,
    spec: SamplerSpec,
) -> StepOutput:
    if z is None and isinstance(i, Tensor):  # inside a graph every step takes a z; σ = 0 here
        z = x.new_zeros(x.shape)
    return ddpm_step(sched, x, i, eps, z, spec.variance, spec.x0_mode)


def _ddim(
    sched: NoiseSchedule,
    x: Tensor,
    i: int | Tensor,
    eps: Tensor,
    z: Tensor | None,
    spec: SamplerSpec,
) -> StepOutput:
    return ddim_step(
        sched,
        x,
        i,
        eps,
        z,
        spec.eta,
        spec.x0_mode,
        rederive_eps=spec.rederive_eps,
        final_alpha=spec.final_alpha,
    )


def _naive(
    sched: NoiseSchedule,
    x: Tensor,
    i: int | Tensor,
    eps: Tensor,
    z: Tensor | None,
    spec: SamplerSpec,
) -> StepOutput:
    assert z is not None and isinstance(i, int)
    stride = sched.num_steps // (spec.steps or sched.num_steps)
    return naive_strided_step(sched, x, i, max(0, i - stride), eps, z)


def _ddpm_table(sched: NoiseSchedule, spec: SamplerSpec) -> object:
    return step_table(sched, ("ddpm", spec.variance))  # cached per schedule


def _ddim_coefficients(sched: NoiseSchedule, spec: SamplerSpec) -> object:
    return step_table(sched, ("ddim", spec.eta, spec.final_alpha))  # ddim_coefficients, cached


def _ddpm_label(spec: SamplerSpec) -> str:
    return f"DDPM σ²={'β̃' if spec.variance == 'beta_tilde' else 'β'}"


_ODE_OPTIONS = frozenset({"spacing", "x0_mode", "rederive_eps", "sigma_schedule"})

register(
    SamplerKind(
        "ddpm",
        "ancestral DDPM (Ho et al. 2020), σ² = β or β̃",
        respaced_plan,
        frozenset({"spacing", "variance", "x0_mode"}),
        step=_ddpm,
        noisy=_all_but_last,
        graphable=True,
        label=_ddpm_label,
        prepare=_ddpm_table,
    )
)
register(
    SamplerKind(
        "ddim",
        "DDIM (Song et al. 2021), η = 0 deterministic … 1",
        respaced_plan,
        frozenset({"spacing", "eta", "x0_mode", "rederive_eps", "final_alpha"}),
        step=_ddim,
        noisy=_ddim_noisy,
        graphable=True,
        label=lambda spec: f"DDIM η={spec.eta:g}",
        prepare=_ddim_coefficients,
    )
)
register(
    SamplerKind(
        "naive_strided",
        "the chapter's strided sampler, deliberately wrong (for comparison)",
        strided_plan,
        frozenset(),
        step=_naive,
        noisy=_every,
        label=lambda spec: "naive strided (chapter)",
    )
)
register(
    SamplerKind(
        "euler",
        "probability-flow ODE, Euler (= DDIM η = 0)",
        ode_plan,
        _ODE_OPTIONS,
        walk=euler_walk,
        label=lambda spec: "Euler",
    )
)
register(
    SamplerKind(
        "heun",
        "probability-flow ODE, Heun (EDM; 2 model calls a step, 1 on the last and "
        "on a step across a σ ratio > 100)",
        ode_plan,
        _ODE_OPTIONS,
        walk=heun_walk,
        label=lambda spec: "Heun",
    )
)
register(
    SamplerKind(
        "dpmpp_2m",
        "probability-flow ODE, DPM-Solver++(2M)",
        ode_plan,
        _ODE_OPTIONS,
        walk=dpmpp_2m_walk,
        label=lambda spec: "DPM-Solver++(2M)",
    )
)
register(
    SamplerKind(
        "edm",
        "EDM stochastic sampler (Karras 2022 Alg. 2): Heun with churn",
        ode_plan,
        _ODE_OPTIONS | {"s_churn", "s_tmin", "s_tmax", "s_noise"},
        walk=_edm,
        noisy=_edm_noisy,
        label=lambda spec: f"EDM S_churn={spec.s_churn:g}",
    )
)


RECOMMENDED = SamplerSpec("ddpm", steps=50, spacing="trailing", variance="beta")
"""The sampler the project's own measurements recommend at ≤ 50 model calls for the
guided digits (``diffusion_lib/results/samplers.md``): the CLI's default."""


def step_at(
    schedule: NoiseSchedule,
    x_t: Tensor,
    timestep: int,
    model_output: Tensor,
    noise: Tensor | None = None,
    *,
    sampler: str = "ddim",
    **options: Any,
) -> StepOutput:
    """One step by *original timestep*, like diffusers' ``scheduler.step(ε̂, t, x_t)``.

    ``schedule`` is the schedule being walked (e.g. ``sampling_schedule(s, 50)``),
    ``timestep`` one of its ``timesteps``; the step goes to the timestep before
    it in that schedule (or to x_0 after the first one). ``sampler`` is one whose
    plan respaces the schedule (DDPM, DDIM); ``options`` are its
    :class:`SamplerSpec` options (``variance=``, ``eta=``, ``x0_mode=``, …).

    Example:
        >>> import torch
        >>> from diffusion_lib.schedule import linear_schedule
        >>> from diffusion_lib.sampling import sampling_schedule
        >>> walk = sampling_schedule(linear_schedule(1000), 10)   # trailing: 99, 199, …, 999
        >>> out = step_at(walk, torch.zeros(2, 3), 999, torch.zeros(2, 3))
        >>> out.x_prev.shape
        torch.Size([2, 3])
    """
    kind = sampler_kind(sampler)
    stepwise = tuple(k.name for k in SAMPLER_TABLE.values() if k.plan is respaced_plan)
    if kind.plan is not respaced_plan:
        raise ValueError(
            f"step_at takes sampler={', '.join(map(repr, stepwise))}, not "
            f"{sampler!r} (its steps are not one per timestep of a schedule)"
        )
    i = schedule.index_of(timestep)
    spec = SamplerSpec.from_kwargs(sampler, **options)
    assert kind.step is not None
    return kind.step(schedule, x_t, i, model_output, noise, spec)


__all__ = ["RECOMMENDED", "ode_plan", "respaced_plan", "step_at", "strided_plan"]
