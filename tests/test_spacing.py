"""Timestep spacings: which timesteps a sampler visits when it takes fewer than T steps.

Every spacing is checked for every step count 1 ≤ n ≤ T at T = 1000 and T = 999, as
the docstring of :mod:`diffusion_lib.sampling.spacing` says, and against diffusers'
``set_timesteps`` for every n at T = 1000 and T = 100; then the refused one-step leading
plan, reference values, the respaced schedule a sampler walks, and where a default run
starts.
"""

from __future__ import annotations

import numpy as np
import pytest

from diffusion_lib.exact.oracle import GaussianOracle
from diffusion_lib.sampling import (
    naive_strided_timesteps,
    sample,
    sample_progressive,
    sampling_schedule,
)
from diffusion_lib.sampling.spacing import SPACINGS, timestep_spacing
from diffusion_lib.schedule import linear_schedule


# ------------------------------------------------------------- every step count
@pytest.mark.parametrize("T", [1000, 999])
@pytest.mark.parametrize("spacing", SPACINGS)
def test_every_step_count_gives_valid_timesteps(T, spacing):
    for n in range(1, T + 1):
        if spacing == "leading" and n == 1:  # would start at t = 0: refused (below)
            with pytest.raises(ValueError, match="steps=1 with spacing='leading'"):
                timestep_spacing(T, n, spacing)
            continue
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


# ------------------------------------------------------------ diffusers' timesteps
TRAILING_16 = "999 937 874 811 749 687 624 561 499 437 374 311 249 187 124 61"
LINSPACE_25 = (
    "999 957 916 874 832 791 749 708 666 624 583 541 500 458 416 375 333 291 250 208 166 "
    "125 83 42 0"
)


@pytest.mark.parametrize(
    "spacing, steps, expected_descending",
    [
        # 1000/16 = 62.5: T − i·62.5 ends in .5 for odd i, and numpy rounds halves to even
        # (812.5 → 812, so t = 811; rounding halves up gave 812, 562, 312, 62)
        ("trailing", 16, TRAILING_16),
        # i·999/24 = 166.5 (i = 4) and 832.5 (i = 20) round to 166 and 832, not up
        ("linspace", 25, LINSPACE_25),
    ],
)
def test_exact_halves_round_to_even_as_in_diffusers(spacing, steps, expected_descending):
    expected = [int(t) for t in expected_descending.split()]
    assert timestep_spacing(1000, steps, spacing)[::-1].tolist() == expected


@pytest.mark.parametrize("T", [1000, 100])
@pytest.mark.parametrize("spacing", SPACINGS)
def test_every_step_count_visits_diffusers_timesteps(T, spacing):
    # diffusers' DDIMScheduler.set_timesteps (DDPMScheduler's is the same code), for every
    # n, except the two documented differences: one linspace step ([0] there, [T − 1]
    # here) and trailing's float overshoot (n + 1 timesteps there, the extra one t = −1)
    diffusers = pytest.importorskip("diffusers")
    scheduler = diffusers.DDIMScheduler(num_train_timesteps=T, timestep_spacing=spacing)
    overshoots = []
    for n in range(1, T + 1):
        scheduler.set_timesteps(n)
        theirs = scheduler.timesteps.numpy()[::-1].tolist()
        if spacing == "leading" and n == 1:  # theirs starts (and ends) at t = 0: refused
            assert theirs == [0]
            with pytest.raises(ValueError, match="steps=1"):
                timestep_spacing(T, n, spacing)
            continue
        ours = timestep_spacing(T, n, spacing).tolist()
        if spacing == "linspace" and n == 1:
            assert theirs == [0] and ours == [T - 1]
        elif spacing == "trailing" and len(theirs) == n + 1:
            assert theirs[0] == -1 and ours == theirs[1:], n
            overshoots.append(n)
        else:
            assert ours == theirs, (n, ours, theirs)
    if spacing == "trailing":  # docs/diffusers.md quotes the first ones
        assert overshoots[:3] == {1000: [61, 103, 121], 100: [29, 31, 58]}[T]


# ------------------------------------------------ a plan that would start at t = 0
def test_one_leading_step_is_refused_with_what_works_instead():
    msg = (
        r"steps=1 with spacing='leading' would start sampling at t = 0 .* "
        r"\[0, 999\].* spacing='trailing' or spacing='linspace' .*T − 1 = 999"
    )
    with pytest.raises(ValueError, match=msg):
        timestep_spacing(1000, 1, "leading")
    with pytest.raises(ValueError, match=msg):
        sampling_schedule(linear_schedule(1000), 1, "leading")
    schedule = linear_schedule(1000)
    model = GaussianOracle(schedule, 0.1, 0.5)
    for sampler in ("ddpm", "ddim"):
        with pytest.raises(ValueError, match=msg):
            sample(model, schedule, (1, 1), sampler=sampler, steps=1, spacing="leading")
    # what the message offers works, and starts at T − 1
    for spacing in ("trailing", "linspace"):
        assert timestep_spacing(1000, 1, spacing).tolist() == [999]
        sample(model, schedule, (1, 1), steps=1, spacing=spacing, seed=0, progress=False)


def test_leading_starts_at_or_above_the_middle_for_two_steps_or_more():
    # (n − 1)·(T // n) >= (T − 1)/2 for every n >= 2, so only steps=1 is refused: leading
    # 2 at T = 1000 starts at 500 (tests/test_oracle.py uses it), at T = 999 at 499
    assert timestep_spacing(1000, 2, "leading").tolist() == [0, 500]
    assert timestep_spacing(999, 2, "leading").tolist() == [0, 499]
    assert timestep_spacing(999, 500, "leading")[-1] == 499
    for T in range(2, 130):
        with pytest.raises(ValueError, match="steps=1"):
            timestep_spacing(T, 1, "leading")
        for n in range(2, T + 1):
            assert 2 * int(timestep_spacing(T, n, "leading")[-1]) >= T - 1, (T, n)
    assert timestep_spacing(1, 1, "leading").tolist() == [0]  # T = 1: t = 0 is T − 1


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
