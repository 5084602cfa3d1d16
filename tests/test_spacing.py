"""Timestep spacings: which timesteps a sampler visits when it takes fewer than T steps.

Every spacing is checked for every step count 1 ≤ n ≤ T at T = 1000 and T = 999, as
the docstring of :mod:`diffusion_lib.sampling.spacing` says; then reference values,
the respaced schedule a sampler walks, and where a default run starts.
"""

from __future__ import annotations

import numpy as np
import pytest

from diffusion_lib.exact.oracle import GaussianOracle
from diffusion_lib.sampling import naive_strided_timesteps, sample_progressive, sampling_schedule
from diffusion_lib.sampling.spacing import SPACINGS, timestep_spacing
from diffusion_lib.schedule import linear_schedule


# ------------------------------------------------------------- every step count
@pytest.mark.parametrize("T", [1000, 999])
@pytest.mark.parametrize("spacing", SPACINGS)
def test_every_step_count_gives_valid_timesteps(T, spacing):
    for n in range(1, T + 1):
        kept = timestep_spacing(T, n, spacing)
        assert kept.dtype == np.int64 and kept.shape == (n,), (spacing, n)
        assert kept[0] >= 0 and kept[-1] <= T - 1, (spacing, n, kept[0], kept[-1])
        assert np.all(np.diff(kept) > 0), (spacing, n)  # strictly increasing, so unique
        first = {"leading": (n - 1) * (T // n), "linspace": T - 1, "trailing": T - 1}[spacing]
        assert kept[-1] == first, (spacing, n, kept[-1])


@pytest.mark.parametrize("T", [1000, 999])
def test_every_step_count_gives_valid_naive_strided_timesteps(T):
    # the seed's range(0, T, T // n), descending: at least n steps, the last one t = 0
    for n in range(1, T + 1):
        visit = naive_strided_timesteps(T, n)
        assert len(visit) == -(-T // (T // n)) >= n, (n, len(visit))
        assert visit[0] <= T - 1 and visit[-1] == 0, (n, visit[0], visit[-1])
        assert np.all(np.diff(visit) < 0), n


# ------------------------------------------------------------ reference values
@pytest.mark.parametrize(
    "spacing, steps, expected",
    [
        ("leading", 4, [0, 250, 500, 750]),
        ("linspace", 4, [0, 333, 666, 999]),
        ("trailing", 4, [249, 499, 749, 999]),
        ("leading", 3, [0, 333, 666]),
        ("trailing", 3, [332, 666, 999]),
        ("linspace", 1, [999]),  # one step starts at T − 1 (numpy linspace would give 0)
        ("trailing", 1, [999]),
    ],
)
def test_timestep_spacing_reference(spacing, steps, expected):
    assert timestep_spacing(1000, steps, spacing).tolist() == expected


def test_trailing_no_longer_breaks_where_the_float_step_overshot():
    # np.arange(T, 0, -T/n) added t = -1 for these n (61, 103, 121, 122, 201, 206, ...)
    for n in (61, 103, 121, 122, 201, 206):
        kept = timestep_spacing(1000, n, "trailing")
        assert kept[0] >= 0 and kept[-1] == 999 and len(set(kept.tolist())) == n


def test_trailing_matches_the_usual_formula_where_it_is_exact():
    for n in (1, 2, 4, 5, 8, 10, 20, 25, 40, 50, 100, 125, 200, 250, 500, 1000):
        expected = np.round(np.arange(1000, 0, -1000 / n)).astype(np.int64)[::-1] - 1
        assert timestep_spacing(1000, n, "trailing").tolist() == expected.tolist()


def test_naive_strided_timesteps_match_seed():
    assert naive_strided_timesteps(1000, 250)[:3] == [996, 992, 988]
    assert naive_strided_timesteps(1000, 250)[-1] == 0
    assert len(naive_strided_timesteps(1000, 300)) == 334  # stride 3: more steps than asked


# ------------------------------------------------- the schedule a sampler walks
def test_ddim_previous_timestep_is_next_entry_for_every_spacing():
    base = linear_schedule(1000)
    for spacing in SPACINGS:
        for steps in [7, 30, 50]:
            r = sampling_schedule(base, steps, spacing)
            kept = timestep_spacing(1000, steps, spacing)
            a = base.alphas_cumprod_f64
            np.testing.assert_allclose(
                r.alphas_cumprod_prev.numpy()[1:], a[kept[:-1]].astype(np.float32), rtol=1e-5
            )
            assert r.alphas_cumprod_prev[0].item() == 1.0


def test_the_default_run_starts_at_pure_noise():
    schedule = linear_schedule(1000)
    model = GaussianOracle(schedule, 0.1, 0.5)
    for steps in (10, 501, 999):
        first = next(
            sample_progressive(
                model, schedule, (1, 1), sampler="ddim", steps=steps, seed=0, progress=False
            )
        )
        assert first.t == 999, steps
    # the leading spacing, asked for by name, starts far below (documented)
    first = next(
        sample_progressive(
            model,
            schedule,
            (1, 1),
            sampler="ddim",
            steps=501,
            spacing="leading",
            seed=0,
            progress=False,
        )
    )
    assert first.t == 500 and first.alpha_bar < 0.08
