"""Which timesteps a sampler visits when it takes fewer than T steps.

Three spacings are common (Lin et al. 2024, "Common diffusion noise schedules
and sample steps are flawed", Table 2); with T = 1000 and 10 steps:

========== ======================================= ====================
spacing    kept step indices (ascending)           first step (noisiest)
========== ======================================= ====================
leading    0, 100, …, 900                          900 (not T − 1)
linspace   round(linspace(0, T − 1, n))            999
trailing   round(T·j/n) − 1 for j = 1 … n          999 (always T − 1)
========== ======================================= ====================

``"trailing"`` is the library's default: it always starts at T − 1, where x_T
is pure noise. ``"leading"`` (the DDIM paper's, and diffusers' default) starts
at (n − 1)·(T // n), and for T/2 < n < T it starts far below T − 1 (n = 501:
t = 500, ᾱ ≈ 0.078, so x_T ~ N(0, I) is not a sample of q(x_500)).

Every spacing here is computed with integer arithmetic (no float step that can
overshoot), is strictly increasing and lies in [0, T − 1] for every
1 ≤ n ≤ T; ``tests/test_spacing.py`` checks all n for T = 1000 and T = 999.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

from ..schedule import NoiseSchedule
from .checks import check_choice, check_steps

Spacing = Literal["leading", "linspace", "trailing"]
SPACINGS: tuple[str, ...] = get_args(Spacing)
DEFAULT_SPACING: Spacing = "trailing"


def _round_half_up(numerator: np.ndarray, denominator: int) -> np.ndarray:
    """round(numerator / denominator), halves up, in exact integer arithmetic."""
    return (2 * numerator + denominator) // (2 * denominator)


def timestep_spacing(
    num_timesteps: int, steps: int, spacing: Spacing = DEFAULT_SPACING
) -> np.ndarray:
    """The ``steps`` step indices in [0, T−1] to visit, ascending, int64.

    - ``"leading"``: 0, k, 2k, … with k = T // steps (DDIM paper, diffusers'
      default). Starts the reverse process at (steps − 1)·k, which is far below
      T − 1 when T/2 < steps < T.
    - ``"linspace"``: round(j (T − 1)/(steps − 1)), j = 0 … steps − 1 (both
      ends; one step is T − 1).
    - ``"trailing"``: round(j T/steps) − 1, j = 1 … steps (always ends at T − 1;
      the gap to 0 is the last step). Recommended by Lin et al. 2024.
    """
    check_choice("spacing", spacing, SPACINGS)
    n = check_steps(steps, num_timesteps)
    T = int(num_timesteps)
    j = np.arange(n, dtype=np.int64)
    if spacing == "leading":
        return j * (T // n)
    if spacing == "linspace":
        if n == 1:
            return np.array([T - 1], dtype=np.int64)
        return _round_half_up(j * (T - 1), n - 1)
    return _round_half_up((j + 1) * T, n) - 1


def naive_strided_timesteps(num_timesteps: int, num_inference_steps: int) -> list[int]:
    """The seed chapter's timesteps, descending: ``range(0, T, T // n)[::-1]``.

    When n does not divide T this visits more than n steps (T = 1000, n = 300
    gives a stride of 3 and 334 steps), as the seed does.
    """
    stride = num_timesteps // num_inference_steps
    return list(range(0, num_timesteps, stride))[::-1]


def sampling_schedule(
    schedule: NoiseSchedule, steps: int | None = None, spacing: Spacing = DEFAULT_SPACING
) -> NoiseSchedule:
    """The schedule a sampler walks: ``schedule`` itself (``steps`` None or T), or respaced."""
    check_choice("spacing", spacing, SPACINGS)
    if steps is None or steps == schedule.num_steps:
        return schedule
    return schedule.respace(timestep_spacing(schedule.num_steps, steps, spacing))


__all__ = [
    "DEFAULT_SPACING",
    "SPACINGS",
    "Spacing",
    "naive_strided_timesteps",
    "sampling_schedule",
    "timestep_spacing",
]
