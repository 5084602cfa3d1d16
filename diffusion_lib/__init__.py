"""diffusion_lib: DDPM / DDIM sampling, step by step.

The notebooks in ``notebooks/`` teach it; this package is their single source
of truth. Start with :func:`diffusion_lib.sampling.sample`.
"""

from .cli import _startup  # noqa: F401  (first: Ctrl-C while the CLI imports torch)
from .device import default_device
from .exact.oracle import (
    GaussianMixtureOracle,
    GaussianOracle,
    analytic_variance,
    eight_gaussians,
    exact_moments,
    moons_mixture,
)
from .model_api import EpsModel, ModelAdapter
from .sampling import (
    SampleStep,
    StepOutput,
    ddim_step,
    ddpm_step,
    predict_eps_from_x0,
    predict_x0_from_eps,
    process_x0,
    sample,
    sample_progressive,
    sampling_schedule,
    step_at,
    timestep_spacing,
)
from .sampling.guidance import make_eps_fn
from .sampling.noise import SampleNoise, resolve_seeds
from .schedule import (
    NoiseSchedule,
    cosine_schedule,
    linear_schedule,
    make_schedule,
    sigmoid_schedule,
)

__version__ = "0.1.0"

__all__ = [
    "EpsModel",
    "GaussianMixtureOracle",
    "GaussianOracle",
    "ModelAdapter",
    "NoiseSchedule",
    "SampleNoise",
    "SampleStep",
    "StepOutput",
    "analytic_variance",
    "cosine_schedule",
    "ddim_step",
    "ddpm_step",
    "default_device",
    "eight_gaussians",
    "exact_moments",
    "linear_schedule",
    "make_eps_fn",
    "make_schedule",
    "moons_mixture",
    "predict_eps_from_x0",
    "predict_x0_from_eps",
    "process_x0",
    "resolve_seeds",
    "sample",
    "sample_progressive",
    "sampling_schedule",
    "sigmoid_schedule",
    "step_at",
    "timestep_spacing",
]
