"""The reverse step and the loop: reference forms, equivalences, oracles."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from conftest import ClassOracle
from test_numerics import CASES

from diffusion_lib.exact.moments import exact_moments
from diffusion_lib.exact.oracle import GaussianOracle
from diffusion_lib.sampling import (
    SPACINGS,
    ddim_step,
    ddpm_step,
    dynamic_threshold,
    predict_eps_from_x0,
    predict_x0_from_eps,
    process_x0,
    sample,
    sample_progressive,
    sampling_schedule,
    timestep_spacing,
)
from diffusion_lib.schedule import cosine_schedule, linear_schedule


def seed_chapter_mean(schedule, x_t, t: int, eps):
    """The chapter's ε-form: (1/√α_t)(x_t − β_t/√(1−ᾱ_t) ε̂), typed independently."""
    alpha = schedule.alphas[t]
    alpha_bar = schedule.alphas_cumprod[t]
    beta = schedule.betas[t]
    return (1 / torch.sqrt(alpha)) * (x_t - (beta / torch.sqrt(1 - alpha_bar)) * eps)


def test_x0_eps_round_trip():
    s = cosine_schedule(1000)
    gen = torch.Generator().manual_seed(0)
    x_t, eps = torch.randn(4, 3, generator=gen), torch.randn(4, 3, generator=gen)
    for t in [0, 10, 500, 990]:
        x0 = predict_x0_from_eps(s, x_t, t, eps)
        torch.testing.assert_close(predict_eps_from_x0(s, x_t, t, x0), eps, rtol=1e-4, atol=1e-4)
        # and x_t is rebuilt by the forward formula
        rebuilt = s.sqrt_alphas_cumprod[t] * x0 + s.sqrt_one_minus_alphas_cumprod[t] * eps
        torch.testing.assert_close(rebuilt, x_t, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("t", [1, 10, 250, 999])
def test_posterior_mean_equals_seed_eps_form_when_not_clipped(t):
    s = linear_schedule(1000)
    gen = torch.Generator().manual_seed(t)
    x_t, eps = torch.randn(8, 1, 8, 8, generator=gen), torch.randn(8, 1, 8, 8, generator=gen)
    out = ddpm_step(s, x_t, t, eps, noise=torch.zeros_like(x_t), x0_mode="none")
    expected = seed_chapter_mean(s, x_t, t, eps)
    torch.testing.assert_close(out.x_prev, expected, rtol=1e-4, atol=1e-4 * expected.abs().max())


@pytest.mark.parametrize("variance", ["beta", "beta_tilde"])
def test_ddpm_step_noise_scale(variance):
    s = linear_schedule(1000)
    x_t, eps = torch.zeros(1, 4), torch.zeros(1, 4)
    z = torch.ones(1, 4)
    t = 300
    out = ddpm_step(s, x_t, t, eps, z, variance=variance, x0_mode="none")
    var = s.betas[t] if variance == "beta" else s.posterior_variance[t]
    torch.testing.assert_close(out.x_prev, var.sqrt() * z)


def test_ddpm_last_step_adds_no_noise_and_returns_clipped_x0():
    s = linear_schedule(1000)
    gen = torch.Generator().manual_seed(1)
    x_t, eps = 2 * torch.randn(5, 4, generator=gen), torch.randn(5, 4, generator=gen)
    out = ddpm_step(s, x_t, 0, eps, noise=100 * torch.ones_like(x_t), x0_mode="clip")
    # at t = 0 the posterior mean is exactly x̂0 (coef1 = 1, coef2 = 0)
    torch.testing.assert_close(out.x_prev, out.x0)
    assert out.x_prev.abs().max() <= 1.0
    assert ddpm_step(s, x_t, 0, eps, noise=None).x_prev.shape == x_t.shape


def test_ddpm_step_with_per_sample_t_tensor_matches_int():
    s = linear_schedule(100)
    gen = torch.Generator().manual_seed(2)
    x_t, eps, z = (torch.randn(3, 2, generator=gen) for _ in range(3))
    t = torch.tensor([0, 40, 99])
    batched = ddpm_step(s, x_t, t, eps, z)
    for i, ti in enumerate(t.tolist()):
        single = ddpm_step(s, x_t[i : i + 1], ti, eps[i : i + 1], z[i : i + 1])
        torch.testing.assert_close(batched.x_prev[i : i + 1], single.x_prev)


def test_clip_rederives_eps_consistently():
    s = linear_schedule(1000)
    x_t = torch.full((1, 4), 3.0)
    eps = torch.full((1, 4), -1.0)
    t = 900
    out = ddpm_step(s, x_t, t, eps, torch.zeros(1, 4), x0_mode="clip")
    assert out.x0.abs().max() <= 1.0
    rebuilt = s.sqrt_alphas_cumprod[t] * out.x0 + s.sqrt_one_minus_alphas_cumprod[t] * out.eps
    torch.testing.assert_close(rebuilt, x_t, rtol=1e-4, atol=1e-4)


def test_dynamic_threshold_reference():
    x0 = torch.tensor([[0.5, -0.2, 0.1, 0.9], [4.0, -2.0, 1.0, 0.0]])
    out = dynamic_threshold(x0, percentile=1.0)
    # first sample already in range: unchanged; second: s = 4, divided by 4
    torch.testing.assert_close(out[0], x0[0])
    torch.testing.assert_close(out[1], x0[1] / 4)
    # a lower percentile clamps the outlier before dividing
    q = torch.quantile(x0[1].abs(), 0.5).item()  # 1.5
    out = dynamic_threshold(x0, percentile=0.5)
    torch.testing.assert_close(out[1], x0[1].clamp(-q, q) / q)
    assert process_x0(x0, "none") is x0


def test_ddim_eta_one_equals_ddpm_beta_tilde_step():
    s = linear_schedule(1000).respace(list(range(0, 1000, 20)))
    gen = torch.Generator().manual_seed(3)
    x_t, eps, z = (torch.randn(6, 5, generator=gen) for _ in range(3))
    for t in [1, 17, 49]:
        a = ddim_step(s, x_t, t, eps, z, eta=1.0, x0_mode="clip")
        b = ddpm_step(s, x_t, t, eps, z, variance="beta_tilde", x0_mode="clip")
        torch.testing.assert_close(a.x_prev, b.x_prev, rtol=1e-4, atol=1e-5)


def test_ddim_eta_zero_is_the_deterministic_formula():
    s = linear_schedule(1000).respace([0, 500, 999])
    x_t, eps = torch.randn(2, 3), torch.randn(2, 3)
    out = ddim_step(s, x_t, 2, eps, None, eta=0.0, x0_mode="none")
    a, a_prev = s.alphas_cumprod[2], s.alphas_cumprod[1]
    x0 = (x_t - (1 - a).sqrt() * eps) / a.sqrt()
    torch.testing.assert_close(out.x_prev, a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps)


# ----------------------------------------------------------- oracle sampling
MU, S = 0.3, 0.2


def exact_chain_moments(schedule, mu, s, sampler, variance="beta_tilde", eta=0.0, steps=None):
    """Mean and std of x_0 after the whole chain, for data N(mu, s²) and the exact ε̂.

    Every step is linear-Gaussian in x_t (x̂0 = mu + k_t (x_t − √ᾱ_t mu)), so the chain's
    output is Gaussian with moments given by a short recursion, written here in float64
    independently of the library. ``schedule`` is the schedule walked (respaced) for
    DDPM and DDIM; for ``"naive_strided"`` it is the training schedule, and ``steps``
    sets the seed's stride T // steps.
    """
    a = schedule.alphas_cumprod_f64
    mean, var = 0.0, 1.0  # x_T ~ N(0, 1)
    if sampler == "naive_strided":  # x_next = √ᾱ_next x̂0 + √(1 − ᾱ_next) z, every step
        stride = len(a) // (steps or len(a))
        for t in reversed(range(0, len(a), stride)):
            k = math.sqrt(a[t]) * s**2 / (a[t] * s**2 + 1 - a[t])
            a_next = a[max(t - stride, 0)]
            mean = math.sqrt(a_next) * (mu + k * (mean - math.sqrt(a[t]) * mu))
            var = a_next * k**2 * var + (1 - a_next)
        return mean, math.sqrt(var)
    a_prev = np.append(1.0, a[:-1])
    beta = 1 - a / a_prev
    for i in reversed(range(len(a))):
        k = math.sqrt(a[i]) * s**2 / (a[i] * s**2 + 1 - a[i])  # ∂x̂0/∂x_t
        x0_mean = mu + k * (mean - math.sqrt(a[i]) * mu)  # E[x̂0]
        eps_mean = (mean - math.sqrt(a[i]) * x0_mean) / math.sqrt(1 - a[i])  # E[ε̂]
        if sampler == "ddpm":
            c1 = beta[i] * math.sqrt(a_prev[i]) / (1 - a[i])
            c2 = (1 - a_prev[i]) * math.sqrt(1 - beta[i]) / (1 - a[i])
            slope = c1 * k + c2
            new_mean = c1 * x0_mean + c2 * mean
            noise_var = (
                0.0
                if i == 0
                else (beta[i] if variance == "beta" else beta[i] * (1 - a_prev[i]) / (1 - a[i]))
            )
        else:
            sig2 = eta**2 * (1 - a_prev[i]) / (1 - a[i]) * (1 - a[i] / a_prev[i])
            d = math.sqrt(max(1 - a_prev[i] - sig2, 0.0))
            slope = math.sqrt(a_prev[i]) * k + d * (1 - math.sqrt(a[i]) * k) / math.sqrt(1 - a[i])
            new_mean = math.sqrt(a_prev[i]) * x0_mean + d * eps_mean
            noise_var = sig2
        mean, var = new_mean, slope**2 * var + noise_var
    return mean, math.sqrt(var)


MOMENT_CASES = [*CASES, dict(sampler="naive_strided")]  # DDPM β/β̃, DDIM η = 0, 0.5, 1


@pytest.mark.parametrize("schedule_fn", [linear_schedule, cosine_schedule])
@pytest.mark.parametrize("case", MOMENT_CASES, ids=lambda c: "-".join(map(str, c.values())))
def test_exact_moments_equal_the_independent_recursion(schedule_fn, case):
    # The library's exact_moments (what the Monte-Carlo smoke test in test_oracle.py checks
    # sample() against) equals this file's recursion for every step count and spacing:
    # deterministic, so no DDPM-1000 sampling run is needed to check the moments.
    schedule = schedule_fn(1000)
    sampler = case["sampler"]
    variance, eta = case.get("variance", "beta_tilde"), case.get("eta", 0.0)
    for steps in (1, 10, 25, 100, None):
        # the naive sampler has its own stride; with all steps every spacing is the same
        spacings = ["leading"] if sampler == "naive_strided" or steps is None else SPACINGS
        if steps == 1 and sampler != "naive_strided":
            spacings = ["linspace", "trailing"]  # one leading step starts at t = 0: refused
        for spacing in spacings:
            for mu, s in [(MU, S), (-0.5, 1.0)]:
                walked = (
                    schedule
                    if sampler == "naive_strided"
                    else sampling_schedule(schedule, steps, spacing)
                )
                expected = exact_chain_moments(walked, mu, s, sampler, variance, eta, steps)
                got = exact_moments(
                    schedule,
                    sampler,
                    steps=steps,
                    spacing=spacing,
                    mean=mu,
                    std=s,
                    **{k: v for k, v in case.items() if k != "sampler"},
                )
                assert got == pytest.approx(expected, rel=1e-10), (steps, spacing, mu, s)


@pytest.mark.parametrize("variance", ["beta", "beta_tilde"])
def test_ddpm_1000_recovers_the_data(variance):
    # with all 1000 steps the chain itself recovers the data distribution
    mean, std = exact_chain_moments(linear_schedule(1000), MU, S, "ddpm", variance)
    assert mean == pytest.approx(MU, abs=1e-3)
    assert std == pytest.approx(S, abs=0.005)


def test_beta_tilde_under_disperses_at_50_leading_steps():
    # One row of a table that has no single answer: at 50 leading steps on data of sd 0.2,
    # σ² = β̃ is too small and β slightly too large; at 10 leading steps β overshoots more
    # than β̃ undershoots (notebook 02 prints the whole table from exact_moments).
    walked = sampling_schedule(linear_schedule(1000), 50, "leading")
    _, std_tilde = exact_chain_moments(walked, MU, S, "ddpm", "beta_tilde")
    _, std_beta = exact_chain_moments(walked, MU, S, "ddpm", "beta")
    assert std_tilde < 0.17 < S < std_beta


def test_oracle_ddim_eta0_is_the_exact_linear_map_of_x_T():
    # With η = 0 and Gaussian data every step is affine, so x_0 = intercept + slope · x_T
    # exactly (the recursion's mean and std when x_T ~ N(0, 1)); close to mu + s·x_T.
    schedule = linear_schedule(1000)
    model = GaussianOracle(schedule, MU, S)
    x_T = torch.linspace(-2, 2, 9).reshape(9, 1)
    x0 = sample(
        model,
        schedule,
        (9, 1),
        sampler="ddim",
        steps=200,
        spacing="leading",
        x0_mode="none",
        x_T=x_T,
        seed=0,
        progress=False,
    )
    walked = sampling_schedule(schedule, 200, "leading")
    intercept, slope = exact_chain_moments(walked, MU, S, "ddim")
    torch.testing.assert_close(x0, intercept + slope * x_T, rtol=0, atol=2e-4)
    torch.testing.assert_close(x0, MU + S * x_T, rtol=0, atol=0.02)


def test_naive_strided_sampler_runs_and_adds_noise_at_the_end():
    schedule = linear_schedule(1000)
    model = GaussianOracle(schedule, MU, S)
    steps = list(
        sample_progressive(
            model, schedule, (2000, 2), sampler="naive_strided", steps=50, seed=0, progress=False
        )
    )
    assert len(steps) == 50 and steps[-1].t == 0
    last = steps[-1]
    # the last update re-noises clip(x̂0) with √(1−ᾱ_0) = 0.01 fresh noise: not equal to x̂0
    residual = (last.x_prev - schedule.sqrt_alphas_cumprod[0] * last.x0) / math.sqrt(1e-4)
    assert residual.std().item() == pytest.approx(1.0, rel=0.1)


def test_progressive_yields_every_step_in_order():
    schedule = linear_schedule(1000)
    model = GaussianOracle(schedule, MU, S)
    seen = []
    kw = dict(sampler="ddim", steps=10, spacing="trailing", seed=0, progress=False)
    steps = list(
        sample_progressive(model, schedule, (3, 2), callback=lambda st: seen.append(st.t), **kw)
    )
    assert [st.t for st in steps] == timestep_spacing(1000, 10, "trailing")[::-1].tolist()
    assert seen == [st.t for st in steps]
    assert [st.index for st in steps] == list(range(10))
    for a, b in itertools.pairwise(steps):
        assert torch.equal(a.x_prev, b.x_t)
        assert a.alpha_bar < b.alpha_bar
    assert torch.equal(sample(model, schedule, (3, 2), **kw), steps[-1].x_prev)


def test_model_is_called_with_original_timesteps():
    schedule = linear_schedule(1000)
    calls = []

    class Spy(GaussianOracle):
        def forward(self, x_t, t, labels=None):
            calls.append(t.clone())
            return super().forward(x_t, t, labels)

    sample(Spy(schedule, 0.0, 1.0), schedule, (2, 1), steps=4, spacing="leading", progress=False)
    assert [c.tolist() for c in calls] == [[750, 750], [500, 500], [250, 250], [0, 0]]
    assert all(c.dtype == torch.long for c in calls)


def test_ddim_eta0_is_deterministic_and_seed_independent():
    schedule = linear_schedule(1000)
    model = ClassOracle(schedule)
    x_T = torch.randn(4, 1, 2, 2)
    kw = dict(sampler="ddim", steps=20, labels=[0, 1, 2, 1], x_T=x_T, progress=False)
    a = sample(model, schedule, (4, 1, 2, 2), seed=0, **kw)
    b = sample(model, schedule, (4, 1, 2, 2), seed=123, **kw)
    assert torch.equal(a, b)


def test_ddpm_same_x_T_different_seeds_differ():
    schedule = linear_schedule(1000)
    model = GaussianOracle(schedule, 0.0, 0.5)
    x_T = torch.randn(4, 3)
    a = sample(model, schedule, (4, 3), steps=50, x_T=x_T, seed=0, progress=False)
    b = sample(model, schedule, (4, 3), steps=50, x_T=x_T, seed=1, progress=False)
    assert not torch.allclose(a, b)


def test_progressive_does_not_leak_no_grad_into_caller():
    schedule = linear_schedule(50)
    gen = sample_progressive(GaussianOracle(schedule, 0, 1), schedule, (1, 1), progress=False)
    next(gen)
    assert torch.is_grad_enabled()
    gen.close()
