"""The table of samplers: each sampler is one :class:`SamplerKind` in :data:`SAMPLER_TABLE`.

An entry holds the sampler's name, how it picks the timesteps it visits (a *plan*), its
step function (or, for an ODE solver, its walk), the options that apply to it, which steps
draw noise, and whether the CUDA-graph step can run it. A walk that draws noise (EDM's
churn) is also given the noise source and the spec. The loop (:mod:`.loop`), the CLI's
choices and help, the exact moments and every error message read this table; nothing else
lists sampler names. The built-in samplers are registered in :mod:`.samplers`; adding one
is one :func:`register` call plus its step function (``tests/test_registry.py`` registers a
toy one).

:class:`SamplerSpec` is the settings object: a sampler and its options, with the
library's one set of defaults. ``sample(model, schedule, shape, **spec.kwargs())``
runs it; the generation config, the CLI's presets and the benchmarks' settings are
built from it. An option given for a sampler it does not apply to is refused, in one
line naming the option and the samplers it applies to.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
from torch import Tensor

from ..schedule import FINAL_ALPHAS, FinalAlpha, NoiseSchedule, check_eta
from .checks import check_choice
from .ode import SIGMA_SCHEDULES, DenoiseFn, NoiseFn, OdeStep, OdeWalk, SigmaSchedule
from .spacing import SPACINGS, Spacing
from .steps import VARIANCES, X0_MODES, StepOutput, Variance, X0Mode

Sampler = Literal["ddpm", "ddim", "naive_strided", "euler", "heun", "dpmpp_2m", "edm"]
"""The built-in samplers, for type checkers; :data:`SAMPLER_TABLE` is the live list."""

OPTIONS: tuple[str, ...] = (
    "spacing",
    "variance",
    "eta",
    "x0_mode",
    "rederive_eps",
    "final_alpha",
    "sigma_schedule",
    "s_churn",
    "s_tmin",
    "s_tmax",
    "s_noise",
)
"""The sampler-specific options of :class:`SamplerSpec` (``sampler`` and ``steps`` apply
to every sampler)."""


class Plan(NamedTuple):
    """What a run walks: the schedule its step indices index, and the indices in order."""

    schedule: NoiseSchedule
    """The schedule the steps use: respaced for DDPM/DDIM, the original otherwise."""
    visit: list[int]
    """Step indices into ``schedule``, noisiest first."""


def _never(plan: Plan, spec: SamplerSpec) -> list[bool]:
    return [False] * len(plan.visit)


StepFn = Callable[
    [NoiseSchedule, Tensor, "int | Tensor", Tensor, "Tensor | None", "SamplerSpec"], StepOutput
]
"""``step(schedule, x_t, i, ε̂, z, spec) -> StepOutput``: one step at index ``i`` of the plan's
schedule (an int, or a (B,) tensor inside a CUDA graph); ``z`` is ``None`` where the
step draws no noise."""

NoisyOdeWalk = Callable[
    [Tensor, np.ndarray, np.ndarray, DenoiseFn, NoiseFn, "SamplerSpec"], Iterator[OdeStep]
]
"""``walk(x̃_T, timesteps, sigmas, denoise, noise, spec)``: an ODE walk (:data:`~.ode.OdeWalk`)
that draws noise: ``noise(index)`` gives the z of walk step ``index`` (per-sample seeded, or
the caller's ``step_noise``), at exactly the steps ``kind.noisy`` marks."""


@dataclass(frozen=True)
class SamplerKind:
    """One entry of the sampler table."""

    name: str
    summary: str
    """One line for help texts."""
    plan: Callable[[NoiseSchedule, SamplerSpec], Plan]
    """Which timesteps a run visits."""
    options: frozenset[str]
    """The options of :data:`OPTIONS` that apply to this sampler."""
    step: StepFn | None = None
    """A discrete step, for samplers that walk the plan one step at a time."""
    walk: OdeWalk | NoisyOdeWalk | None = None
    """An ODE walk (:mod:`.ode`), for the probability-flow ODE solvers; a sampler with a
    ``noisy`` rule gets a :data:`NoisyOdeWalk` (also given the noise and the spec)."""
    noisy: Callable[[Plan, SamplerSpec], list[bool]] = _never
    """Which steps of the plan (one bool per ``plan.visit``) draw a z (default: none: a
    deterministic sampler)."""
    graphable: bool = False
    """Whether ``cuda_graph=True`` can run it (one discrete step, no host reads)."""
    label: Callable[[SamplerSpec], str] | None = None
    """A short label for tables (default: the name)."""
    prepare: Callable[[NoiseSchedule, SamplerSpec], object] | None = None
    """Work to do once per run before the first step (outside any CUDA-graph capture), e.g.
    the step's coefficient table (:func:`~.steps.step_table`)."""

    def __post_init__(self) -> None:
        if (self.step is None) == (self.walk is None):
            raise ValueError(f"sampler {self.name!r} needs exactly one of step= and walk=")
        unknown = set(self.options) - set(OPTIONS)
        if unknown:
            raise ValueError(
                f"sampler {self.name!r}: unknown options {sorted(unknown)}; "
                f"valid: {', '.join(OPTIONS)}"
            )

    @property
    def deterministic(self) -> bool:
        """No step draws noise whatever the options (x_T is all it draws). DDIM and EDM
        are not (they draw noise for η > 0, s_churn > 0): :attr:`noisy` says where."""
        return self.noisy is _never


SAMPLER_TABLE: dict[str, SamplerKind] = {}
"""Every sampler by name, in registration order."""


def register(kind: SamplerKind) -> SamplerKind:
    """Add ``kind`` to :data:`SAMPLER_TABLE` (a name may be registered once)."""
    if kind.name in SAMPLER_TABLE:
        raise ValueError(f"a sampler named {kind.name!r} is already registered")
    SAMPLER_TABLE[kind.name] = kind
    return kind


def unregister(name: str) -> None:
    """Remove a sampler from :data:`SAMPLER_TABLE` (for tests that register their own)."""
    SAMPLER_TABLE.pop(name, None)


def sampler_names() -> tuple[str, ...]:
    """The names of the registered samplers, in table order."""
    return tuple(SAMPLER_TABLE)


def sampler_kind(name: object) -> SamplerKind:
    """The table entry of ``name``, or a ``ValueError`` naming the valid samplers."""
    check_choice("sampler", name, sampler_names())
    return SAMPLER_TABLE[name]  # type: ignore[index]


def applies_to(option: str) -> tuple[str, ...]:
    """The samplers that ``option`` applies to."""
    return tuple(k.name for k in SAMPLER_TABLE.values() if option in k.options)


def refuse_options(sampler: str, given: Mapping[str, object]) -> None:
    """Raise ``ValueError`` for the first option in ``given`` that ``sampler`` does not use."""
    kind = sampler_kind(sampler)
    for option in given:
        if option in OPTIONS and option not in kind.options:
            users = _listed(applies_to(option)) if applies_to(option) else "no sampler"
            raise ValueError(
                f"{option} does not apply to sampler={sampler!r}; it applies to {users}"
            )


def applicable_options(sampler: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The items of ``options`` that apply to ``sampler`` (for a caller that sets an option
    wherever it applies, e.g. one spacing for every sampler of a table)."""
    used = sampler_kind(sampler).options
    return {k: v for k, v in options.items() if k in used}


# ------------------------------------------------------------------ the settings object
def _check_bool(name: str) -> Callable[[object], None]:
    def check(value: object) -> None:
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be True or False, got {value!r}")

    return check


def _check_number(
    name: str, valid: str, ok: Callable[[float], bool], allow_inf: bool = False
) -> Callable[[object], float]:
    """A check of a real option: ``TypeError`` for a non-number (a bool, a string),
    ``ValueError`` naming ``valid`` for NaN, ±inf (unless ``allow_inf``) or ``not ok``."""

    def check(value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"{name} must be {valid}, got {type(value).__name__} {value!r}")
        number = float(value)
        if math.isnan(number) or (math.isinf(number) and not allow_inf) or not ok(number):
            raise ValueError(f"{name} must be {valid}, got {value!r}")
        return number

    return check


_CHURN_CHECKS: dict[str, Callable[[object], float]] = {
    "s_churn": _check_number(
        "s_churn",
        "a finite number >= 0 (EDM's churn: 0 = no fresh noise, i.e. Heun; Karras et al. "
        "use 0 … 100)",
        lambda v: v >= 0.0,
    ),
    "s_tmin": _check_number(
        "s_tmin",
        "a finite number >= 0 (the smallest σ that EDM churns; 0 = from the start)",
        lambda v: v >= 0.0,
    ),
    "s_tmax": _check_number(
        "s_tmax",
        "a number >= 0 or inf (the largest σ that EDM churns; inf = no limit)",
        lambda v: v >= 0.0,
        allow_inf=True,
    ),
    "s_noise": _check_number(
        "s_noise",
        "a finite number > 0 (the scale of EDM's fresh noise: 1 exact, Karras et al. "
        "use 1.003 … 1.007)",
        lambda v: v > 0.0,
    ),
}

_CHECKS: dict[str, Callable[[Any], object]] = {
    "spacing": lambda v: check_choice("spacing", v, SPACINGS),
    "variance": lambda v: check_choice("variance", v, VARIANCES),
    "eta": check_eta,
    "x0_mode": lambda v: check_choice("x0_mode", v, X0_MODES),
    "rederive_eps": _check_bool("rederive_eps"),
    "final_alpha": lambda v: check_choice("final_alpha", v, FINAL_ALPHAS),
    "sigma_schedule": lambda v: check_choice("sigma_schedule", v, SIGMA_SCHEDULES),
    **_CHURN_CHECKS,
}
"""The check of each option's value, on its own (``ValueError``/``TypeError`` naming it)."""


@dataclass(frozen=True)
class SamplerSpec:
    """A sampler and its options: what :func:`~diffusion_lib.sampling.sample` is told.

    The defaults here are the library's one set of defaults (``sample()`` uses them).
    Options that do not apply to ``sampler`` must keep their default; a changed one is
    refused (:func:`refuse_options`).

    Attributes:
        sampler: a name of :data:`SAMPLER_TABLE` (``"ddpm"``, ``"ddim"``, …).
        steps: steps to take, 1 … T; ``None`` = all T.
        spacing: which timesteps fewer steps keep (:mod:`.spacing`).
        eta: DDIM's η in [0, 1].
        variance: DDPM's σ², β (``"beta"``) or β̃ (``"beta_tilde"``).
        x0_mode: x̂0 processing, ``"none"``, ``"clip"`` or ``"dynamic"``.
        rederive_eps: use the ε̂ consistent with the processed x̂0 (DDIM, ODE solvers).
        final_alpha: DDIM's ᾱ_prev of the last step, ``"one"`` or ``"first"``.
        sigma_schedule: the ODE solvers' timesteps, ``"karras"`` or ``"uniform"``.
        s_churn: EDM's S_churn >= 0: each step's σ is raised by γ = min(S_churn/N, √2 − 1)
            (N steps) with fresh noise before its Heun step; 0 (default) = Heun.
        s_tmin, s_tmax: EDM churns only steps with σ in [s_tmin, s_tmax] (0, inf).
        s_noise: EDM's S_noise > 0, the scale of its fresh noise (1).
    """

    sampler: str = "ddpm"
    steps: int | None = None
    spacing: Spacing = "trailing"
    eta: float = 0.0
    variance: Variance = "beta_tilde"
    x0_mode: X0Mode = "clip"
    rederive_eps: bool = True
    final_alpha: FinalAlpha = "one"
    sigma_schedule: SigmaSchedule = "karras"
    s_churn: float = 0.0
    s_tmin: float = 0.0
    s_tmax: float = math.inf
    s_noise: float = 1.0

    def __post_init__(self) -> None:
        kind = sampler_kind(self.sampler)
        if self.steps is not None and (
            isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1
        ):
            raise ValueError(
                f"steps must be an int >= 1 (at most the model's T) or None, got {self.steps!r}"
            )
        for option, check in _CHECKS.items():
            check(getattr(self, option))
        object.__setattr__(self, "eta", check_eta(self.eta))
        for option, to_float in _CHURN_CHECKS.items():
            object.__setattr__(self, option, to_float(getattr(self, option)))
        changed = {o: v for o, v in self.options().items() if v != _DEFAULTS[o]}
        refuse_options(kind.name, changed)
        if self.s_tmin > self.s_tmax:
            raise ValueError(
                f"s_tmin ({self.s_tmin:g}) must be <= s_tmax ({self.s_tmax:g}): EDM churns the "
                "steps with σ in [s_tmin, s_tmax]"
            )

    @classmethod
    def from_kwargs(cls, sampler: str = "ddpm", **given: Any) -> SamplerSpec:
        """A spec from keyword arguments, where ``None`` means "the default"; an option
        given (not ``None``) for a sampler it does not apply to is refused."""
        given = {k: v for k, v in given.items() if v is not None}
        sampler_kind(sampler)
        for option, value in given.items():  # each value first: "unknown spacing 'x'"
            if option in _CHECKS:
                _CHECKS[option](value)
        refuse_options(sampler, given)
        return cls(sampler=sampler, **given)

    @property
    def kind(self) -> SamplerKind:
        return SAMPLER_TABLE[self.sampler]

    def options(self) -> dict[str, Any]:
        """Every sampler-specific option and its value."""
        return {o: getattr(self, o) for o in OPTIONS}

    def kwargs(self) -> dict[str, Any]:
        """``sampler``, ``steps`` and the options that apply to the sampler: what
        :func:`~diffusion_lib.sampling.sample` takes."""
        used = self.kind.options
        return {
            "sampler": self.sampler,
            "steps": self.steps,
            **{o: v for o, v in self.options().items() if o in used},
        }

    def replace(self, **changes: Any) -> SamplerSpec:
        return dataclasses.replace(self, **changes)

    @property
    def label(self) -> str:
        """A short label for a table row, e.g. ``DDPM σ²=β`` or ``DDIM η=0.5``."""
        return self.kind.label(self) if self.kind.label is not None else self.sampler


_DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(SamplerSpec)}


# ------------------------------------------------------------------ listing the table
def _listed(names: tuple[str, ...] | list[str]) -> str:
    """``'a', 'b' and 'c'``."""
    quoted = [repr(n) for n in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def samplers_help() -> str:
    """One line per sampler, for ``--help``."""
    return "; ".join(f"{k.name}: {k.summary}" for k in SAMPLER_TABLE.values())


def ode_samplers() -> tuple[str, ...]:
    """The samplers that walk the probability-flow ODE in the σ-form (an ODE walk). They
    draw no noise, except EDM's with s_churn > 0 (at its default 0 it is Heun)."""
    return tuple(k.name for k in SAMPLER_TABLE.values() if k.walk is not None)


def stepped_samplers() -> tuple[str, ...]:
    """The samplers that take one discrete step at a time (DDPM, DDIM, the chapter's)."""
    return tuple(k.name for k in SAMPLER_TABLE.values() if k.step is not None)


__all__ = [
    "OPTIONS",
    "SAMPLER_TABLE",
    "NoisyOdeWalk",
    "Plan",
    "Sampler",
    "SamplerKind",
    "SamplerSpec",
    "StepFn",
    "applicable_options",
    "applies_to",
    "ode_samplers",
    "refuse_options",
    "register",
    "sampler_kind",
    "sampler_names",
    "samplers_help",
    "stepped_samplers",
    "unregister",
]
