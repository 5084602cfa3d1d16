"""Which timesteps a sampler visits when it takes fewer than T steps.

Three spacings are common (Lin et al. 2024, "Common diffusion noise schedules
and sample steps are flawed", Table 2); with T = 1000 and 10 steps:

========== ======================================= ====================
spacing    kept step indices (ascending)           first step (noisiest)
========== ======================================= ====================
leading    0, 100, …, 900                          900 (not T − 1)
linspace   round(linspace(0, T − 1, n))            999
trailing   round(T − i·T/n) − 1 for i = n − 1 … 0  999 (always T − 1)
========== ======================================= ====================

``"trailing"`` is the library's default: it always starts at T − 1, where x_T
is pure noise. ``"leading"`` (the DDIM paper's, and diffusers' default) starts
at (n − 1)·(T // n), and for T/2 < n < T it starts far below T − 1 (n = 501:
t = 500, ᾱ ≈ 0.078, so x_T ~ N(0, I) is not a sample of q(x_500)). With one
step it would start (and end) at t = 0 and return x_T nearly unchanged: that
plan is refused (:func:`~.checks.check_first_timestep`).

The timesteps are diffusers' (``DDPMScheduler``/``DDIMScheduler.set_timesteps``),
computed the same way: ``"linspace"`` and ``"trailing"`` on the same float64
values, rounded by numpy's ``round``, which takes an exact .5 to the even
neighbour (25 linspace steps at T = 1000: 4·999/24 = 166.5 → 166; 16 trailing
steps: 812.5 − 1 → 811). ``tests/test_spacing.py`` checks every n for T = 1000
and T = 100 against diffusers. Two deliberate differences: one ``"linspace"``
step is [T − 1] (diffusers: [0], a single step at t = 0), and where diffusers'
float step of ``"trailing"`` overshoots (T = 1000: n = 61, 103, 121, …) it
returns n + 1 timesteps, the last t = −1; here that extra entry is dropped.
Every spacing is strictly increasing, has n entries and lies in [0, T − 1] for
every 1 ≤ n ≤ T (checked for all n at T = 1000 and T = 999).
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

from ..schedule import NoiseSchedule
from .checks import check_choice, check_first_timestep, check_steps

Spacing = Literal["leading", "linspace", "trailing"]
SPACINGS: tuple[str, ...] = get_args(Spacing)
DEFAULT_SPACING: Spacing = "trailing"


def timestep_spacing(
    num_timesteps: int, steps: int, spacing: Spacing = DEFAULT_SPACING
) -> np.ndarray:
    """The ``steps`` step indices in [0, T−1] to visit, ascending, int64: diffusers'.

    - ``"leading"``: 0, k, 2k, … with k = T // steps (DDIM paper, diffusers'
      default). Starts the reverse process at (steps − 1)·k, which is far below
      T − 1 when T/2 < steps < T; ``steps=1`` (start at t = 0) is refused.
    - ``"linspace"``: round(linspace(0, T − 1, steps)) (both ends; one step is
      T − 1).
    - ``"trailing"``: round(arange(T, 0, −T/steps)) − 1, the first ``steps``
      values (always ends at T − 1; the gap to 0 is the last step). Recommended
      by Lin et al. 2024.

    Rounding is numpy's (exact halves to even) on diffusers' own float64
    arithmetic, so the result equals diffusers' ``set_timesteps`` (reversed)
    except for one ``"linspace"`` step and ``"trailing"``'s overshoot (module
    docstring).

    Raises:
        ValueError: ``spacing`` unknown, ``steps`` outside [1, T], or a plan whose
            first (noisiest) timestep is below the middle of [0, T − 1], which
            only ``"leading"`` with ``steps=1`` gives (T ≥ 2).
    """
    check_choice("spacing", spacing, SPACINGS)
    n = check_steps(steps, num_timesteps)
    T = int(num_timesteps)
    if spacing == "leading":
        kept = np.arange(n, dtype=np.int64) * (T // n)
    elif spacing == "linspace":
        if n == 1:
            kept = np.array([T - 1], dtype=np.int64)
        else:
            kept = np.linspace(0, T - 1, n).round().astype(np.int64)
    else:
        # diffusers' expression, descending; its float step can overshoot and add an
        # (n + 1)-th value ≈ 0 (t = −1), so only the first n are kept
        kept = (np.round(np.arange(T, 0, -T / n)[:n]).astype(np.int64) - 1)[::-1].copy()
    check_first_timestep(int(kept[-1]), T, n, spacing)
    return kept


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
