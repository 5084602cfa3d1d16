"""The sampler: what an engineer lifts out of this project.

- :mod:`.registry`: the table of samplers, and :class:`SamplerSpec`, the settings
  object (one set of defaults);
- :mod:`.loop`: :func:`sample_progressive` (every step) and :func:`sample`;
- :mod:`.steps`: one reverse step (DDPM, DDIM, the chapter's naive one), x̂0 and ε̂,
  clipping and thresholding, the step API by timestep;
- :mod:`.spacing`: which timesteps a run visits;
- :mod:`.ode`: the probability-flow ODE solvers (Euler, Heun, DPM-Solver++(2M)),
  EDM's stochastic sampler (Heun with churn), DDIM inversion;
- :mod:`.guidance`: classifier-free guidance;
- :mod:`.noise`: per-sample seeded noise;
- :mod:`.checks`: the loop's input checks and its per-step finite check;
- :mod:`.graph`: one whole step as a CUDA graph.
"""

from .checks import StepNoise, check_choice
from .loop import SampleStep, sample, sample_progressive
from .registry import SAMPLER_TABLE, Sampler, SamplerKind, SamplerSpec, register, sampler_names
from .samplers import RECOMMENDED, step_at
from .spacing import (
    DEFAULT_SPACING,
    SPACINGS,
    Spacing,
    naive_strided_timesteps,
    sampling_schedule,
    timestep_spacing,
)
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
)

__all__ = [
    "DEFAULT_SPACING",
    "RECOMMENDED",
    "SAMPLERS",
    "SAMPLER_TABLE",
    "SPACINGS",
    "VARIANCES",
    "X0_MODES",
    "SampleStep",
    "Sampler",
    "SamplerKind",
    "SamplerSpec",
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
    "register",
    "sample",
    "sample_progressive",
    "sampler_names",
    "sampling_schedule",
    "step_at",
    "timestep_spacing",
]


def __getattr__(name: str) -> object:
    if name == "SAMPLERS":  # the live list of names: a registered sampler is in it
        return sampler_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
