"""What only the notebooks use: figures (:mod:`.plots`, :mod:`.viz`), the timestep scrubber
(:mod:`.widgets`, needs the ``lessons`` extra), the precision lesson (:mod:`.precision`) and
the checker for a sampling loop written by hand (:mod:`.checker`, torch only), re-exported
here: ``from diffusion_lib.lessons import compare_samplers``."""

from .checker import (
    Comparison,
    SamplerFn,
    Trajectory,
    compare_samplers,
    library_sampler,
    trace_sampler,
)

__all__ = [
    "Comparison",
    "SamplerFn",
    "Trajectory",
    "compare_samplers",
    "library_sampler",
    "trace_sampler",
]
