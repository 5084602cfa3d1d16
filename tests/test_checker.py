"""The notebooks' loop checker (diffusion_lib.lessons.checker): a correct loop matches the
library bit for bit, and each deliberate bug is reported at its step, t and sample."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from conftest import ClassOracle

from diffusion_lib.exact.oracle import GaussianOracle
from diffusion_lib.lessons.checker import (
    Comparison,
    Trajectory,
    compare_samplers,
    library_sampler,
    trace_sampler,
)
from diffusion_lib.sampling.guidance import combine
from diffusion_lib.sampling.spacing import sampling_schedule
from diffusion_lib.schedule import linear_schedule

T = 50
SCHEDULE = linear_schedule(T)
MODEL = GaussianOracle(SCHEDULE, mean=0.1, std=0.5)
_gen = torch.Generator().manual_seed(0)
X_T = torch.randn(6, 1, 4, 4, generator=_gen)
NOISES = torch.randn(T, 6, 1, 4, 4, generator=_gen)
RUN = dict(model=MODEL, schedule=SCHEDULE, x_T=X_T, noises=NOISES)


@torch.no_grad()
def ddpm_loop(
    model,
    schedule,
    x_T,
    noises,
    labels=None,
    *,
    variance="beta_tilde",
    last_noise=False,
    bug_at=None,
    skip_last=False,
    model_t_plus_one=False,
):
    """The notebook's loop (σ² = β̃, x̂0 clipped), with switches for the bugs under test."""
    s, x = schedule, x_T
    var = s.posterior_variance if variance == "beta_tilde" else s.betas
    for t in range(s.num_steps - 1, 0 if skip_last else -1, -1):
        t_model = min(t + 1, s.num_steps - 1) if model_t_plus_one else t
        eps = model(x, torch.full((x.shape[0],), int(s.timesteps[t_model])), labels)
        x0 = ((x - s.sqrt_one_minus_alphas_cumprod[t] * eps) / s.sqrt_alphas_cumprod[t]).clamp(
            -1, 1
        )
        mean = s.posterior_mean_coef1[t] * x0 + s.posterior_mean_coef2[t] * x
        x = mean + var[t].sqrt() * noises[t] if (t > 0 or last_noise) else mean
        if t == bug_at:
            x = x.clone()
            x[3] += 1e-3
    return x


def test_a_correct_loop_matches_the_library_bit_for_bit():
    report = compare_samplers(ddpm_loop, library_sampler(), **RUN)
    assert isinstance(report, Comparison) and report.matches
    assert report.max_abs_diff == 0.0 and report.steps == T and report.first_step is None
    assert report.step_diffs.shape == (T,) and not bool(report.step_diffs.any())
    assert str(report) == (
        f"your loop matches the library bit for bit at every one of {T} steps (t = {T - 1} … 0)."
    )


def test_noise_at_the_last_step_is_found_at_the_last_step():
    beta = library_sampler(variance="beta")
    report = compare_samplers(partial(ddpm_loop, variance="beta", last_noise=True), beta, **RUN)
    assert not report.matches
    assert (report.first_step, report.first_t) == (T - 1, 0)
    expected = (SCHEDULE.betas[0].sqrt() * NOISES[0]).abs().max().item()
    assert report.first_diff == pytest.approx(expected, rel=1e-5)
    assert "at step 49 (t = 0), in the returned x_0" in str(report)
    # with σ² = β̃ the "noise" at t = 0 is 0 · z: nothing to find
    same = compare_samplers(partial(ddpm_loop, last_noise=True), library_sampler(), **RUN)
    assert same.matches and same.max_abs_diff == 0.0


def test_a_wrong_sigma_is_found_at_the_first_step_and_its_growth_reported():
    report = compare_samplers(partial(ddpm_loop, variance="beta"), library_sampler(), **RUN)
    assert (report.first_step, report.first_t) == (0, T - 1)
    assert 0 < report.first_diff < 1e-4  # β̃/β is within 1e-5 of 1 at t = T − 1
    assert report.max_abs_diff > 100 * report.first_diff  # β̃ ≪ β only near t = 0
    assert int(report.step_diffs.argmax()) > T // 2
    assert "grows to" in str(report) and "after the last step" in str(report)


def test_a_bug_at_one_step_and_one_sample_is_located_there():
    report = compare_samplers(partial(ddpm_loop, bug_at=20), library_sampler(), **RUN)
    assert (report.first_step, report.first_t, report.sample) == (T - 1 - 20, 20, 3)
    assert report.first_diff == pytest.approx(1e-3, rel=1e-3)
    assert not bool(report.step_diffs[: T - 1 - 20].any())  # bit for bit before it
    assert "at step 29 (t = 20)" in str(report) and "at sample 3" in str(report)


def test_a_wrong_timestep_is_reported_as_such():
    report = compare_samplers(partial(ddpm_loop, model_t_plus_one=True), library_sampler(), **RUN)
    assert not report.matches and (report.first_step, report.first_t) == (1, T - 1)
    assert str(report) == (
        f"at step 1 your loop calls the model at t = {T - 1}, the library at t = {T - 2}; the "
        "step before it matches bit for bit."
    )


def test_a_missing_last_step_is_reported_with_both_step_counts():
    report = compare_samplers(partial(ddpm_loop, skip_last=True), library_sampler(), **RUN)
    assert not report.matches and report.first_step == T - 1 and report.steps == T - 1
    assert str(report).startswith(
        f"the library takes {T} steps, your loop {T - 1}: the library also steps at t = 0. "
        f"The {T - 1} steps both take match bit for bit"
    )


def test_atol_accepts_rounding_and_names_the_largest_difference():
    @torch.no_grad()
    def eps_form(model, schedule, x_T, noises):  # the ε-form of the σ² = β step, no clip
        x = x_T
        for t in reversed(range(schedule.num_steps)):
            eps = model(x, torch.full((x.shape[0],), t))
            a, a_bar, b = schedule.alphas[t], schedule.alphas_cumprod[t], schedule.betas[t]
            mean = (x - b / torch.sqrt(1 - a_bar) * eps) / torch.sqrt(a)
            x = mean + torch.sqrt(b) * noises[t] if t > 0 else mean
        return x

    reference = trace_sampler(library_sampler(variance="beta", x0_mode="none"), **RUN)
    exact = compare_samplers(eps_form, reference, **RUN)
    assert not exact.matches and exact.first_diff < 1e-5  # equal algebra, other rounding
    close = compare_samplers(eps_form, reference, **RUN, atol=1e-5)
    assert close.matches and 0 < close.max_abs_diff <= 1e-5
    assert "matches the library to" in str(close) and "within atol = 1e-05" in str(close)


def test_a_recorded_trajectory_serves_as_either_side():
    reference = trace_sampler(library_sampler(), **RUN)
    assert isinstance(reference, Trajectory) and len(reference.xs) == T
    assert torch.equal(reference.xs[0], X_T) and len(reference.states) == T + 1
    assert torch.equal(reference.ts[0], torch.full((6,), T - 1))
    mine = trace_sampler(ddpm_loop, **RUN, name="mine")
    assert compare_samplers(mine, reference, **RUN).matches
    assert compare_samplers(reference, mine, **RUN).matches


def test_a_respaced_loop_lines_up_with_the_library_at_fewer_steps():
    steps = 10
    noises = NOISES[:steps]  # noises[i]: the z of the step at index i of the respaced schedule

    def respaced(model, schedule, x_T, noises):
        return ddpm_loop(model, sampling_schedule(schedule, steps), x_T, noises)

    run = dict(RUN, noises=noises)
    report = compare_samplers(respaced, library_sampler(steps=steps), **run)
    assert report.matches and report.max_abs_diff == 0.0 and report.steps == steps
    assert f"(t = {T - 1} … " in str(report)


def test_two_pass_guidance_lines_up_with_the_batched_library():
    model = ClassOracle(SCHEDULE)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    x_T, noises = torch.randn(6, 3, generator=_gen), torch.randn(T, 6, 3, generator=_gen)

    @torch.no_grad()
    def guided(model, schedule, x_T, noises, w=3.0):
        x, s, null = x_T, schedule, torch.full_like(labels, model.null_label)
        for t in reversed(range(s.num_steps)):
            t_batch = torch.full((x.shape[0],), t)
            eps = combine(model(x, t_batch, null), model(x, t_batch, labels), w)  # two passes
            x0 = (x - s.sqrt_one_minus_alphas_cumprod[t] * eps) / s.sqrt_alphas_cumprod[t]
            mean = s.posterior_mean_coef1[t] * x0.clamp(-1, 1) + s.posterior_mean_coef2[t] * x
            x = mean + s.posterior_variance[t].sqrt() * noises[t] if t > 0 else mean
        return x

    batched = library_sampler(labels=labels, guidance_scale=3.0, cfg_mode="batched")
    report = compare_samplers(guided, batched, model, SCHEDULE, x_T, noises, atol=1e-6)
    assert report.matches and report.steps == T  # 2 calls a step here, one 2B call there


def test_loops_that_break_the_convention_are_told_so():
    with pytest.raises(ValueError, match="returns the final x_0"):
        compare_samplers(lambda m, s, x, z: [x], library_sampler(), **RUN)
    with pytest.raises(ValueError, match="never called the model"):
        compare_samplers(lambda m, s, x, z: x, library_sampler(), **RUN)

    def own_start(model, schedule, x_T, noises):
        return ddpm_loop(model, schedule, torch.randn_like(x_T), noises)

    report = compare_samplers(own_start, library_sampler(), **RUN)
    assert not report.matches and "starts from a different x_T" in str(report)


def test_the_caller_s_x_T_and_noises_are_not_changed():
    def writes_into_its_input(model, schedule, x_T, noises):
        out = ddpm_loop(model, schedule, x_T, noises)
        x_T.zero_()
        noises.zero_()
        return out

    before = (X_T.clone(), NOISES.clone())
    assert compare_samplers(writes_into_its_input, library_sampler(), **RUN).matches
    assert torch.equal(X_T, before[0]) and torch.equal(NOISES, before[1])


def test_a_nan_is_a_difference_unless_both_runs_have_it():
    def poisoned(model, schedule, x_T, noises):  # sample 2's ε̂ is NaN at t = 10
        def model_with_nan(x, t, labels=None):
            eps = model(x, t, labels).clone()
            if int(t[0]) == 10:
                eps[2] = torch.nan
            return eps

        return ddpm_loop(model_with_nan, schedule, x_T, noises)

    report = compare_samplers(poisoned, library_sampler(), **RUN)
    assert (report.first_step, report.first_t, report.sample) == (T - 1 - 10, 10, 2)
    assert report.first_diff == float("inf") and "|difference| inf" in str(report)
    both = trace_sampler(poisoned, **RUN)
    assert compare_samplers(both, both, **RUN).matches
