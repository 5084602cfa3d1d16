"""Closed forms and properties of the noise schedules."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from diffusion_lib.schedule import (
    NoiseSchedule,
    cosine_schedule,
    linear_schedule,
    make_schedule,
    sigmoid_schedule,
)

ALL = [linear_schedule, cosine_schedule, sigmoid_schedule]


def test_linear_matches_ddpm_reference_values():
    s = linear_schedule(1000)
    assert s.num_steps == 1000
    assert s.betas[0].item() == pytest.approx(1e-4)
    assert s.betas[-1].item() == pytest.approx(0.02)
    # ᾱ_{T-1} = ∏(1 − β_t): 4.04e-5 for DDPM's schedule (closed form in float64)
    expected = np.prod(1 - np.linspace(1e-4, 0.02, 1000))
    assert s.alphas_cumprod[-1].item() == pytest.approx(expected, rel=1e-5)
    assert expected == pytest.approx(4.04e-5, rel=1e-2)
    # 1/√ᾱ at t = T−1: ~157, the fp16 warning in DESIGN.md
    assert s.sqrt_recip_alphas_cumprod[-1].item() == pytest.approx(157.3, rel=1e-2)


def test_cosine_reference_values():
    s = cosine_schedule(1000)
    assert s.betas.max().item() == pytest.approx(0.999)
    assert s.betas[-1].item() == pytest.approx(0.999)
    # ᾱ_t = f(t+1)/f(0) before clipping; check a middle value against the closed form
    f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    assert s.alphas_cumprod[499].item() == pytest.approx(f(0.5) / f(0.0), rel=1e-5)
    # 1/√ᾱ at T−1 reaches ~2e4 (fp16 overflows past 65504 when squared)
    assert 1e4 < s.sqrt_recip_alphas_cumprod[-1].item() < 5e4


@pytest.mark.parametrize("make", ALL)
def test_derived_quantities_closed_forms(make):
    s = make(200)
    b = s.betas.double()
    a_bar = torch.cumprod(1 - b, 0)
    a_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), a_bar[:-1]])
    torch.testing.assert_close(s.alphas_cumprod.double(), a_bar, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(s.alphas_cumprod_prev.double(), a_bar_prev, rtol=1e-5, atol=1e-7)
    post = b * (1 - a_bar_prev) / (1 - a_bar)
    torch.testing.assert_close(s.posterior_variance.double(), post, rtol=1e-5, atol=1e-9)
    assert s.posterior_variance[0].item() == 0.0
    assert s.posterior_log_variance_clipped[0].item() == pytest.approx(
        math.log(s.posterior_variance[1].item()), rel=1e-5
    )
    assert torch.isfinite(s.posterior_log_variance_clipped).all()
    # posterior mean coefficients, DDPM eq. 7
    c1 = b * a_bar_prev.sqrt() / (1 - a_bar)
    c2 = (1 - a_bar_prev) * (1 - b).sqrt() / (1 - a_bar)
    torch.testing.assert_close(s.posterior_mean_coef1.double(), c1, rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(s.posterior_mean_coef2.double(), c2, rtol=1e-5, atol=1e-8)
    for name in ["betas", "alphas_cumprod", "posterior_variance", "sqrt_recip_alphas_cumprod"]:
        assert getattr(s, name).dtype == torch.float32


@pytest.mark.parametrize("make", ALL)
def test_alpha_bar_strictly_decreasing_and_betas_in_range(make):
    s = make(1000)
    a = s.alphas_cumprod_f64
    assert np.all(np.diff(a) < 0)
    assert (s.betas > 0).all() and (s.betas <= 0.999 + 1e-7).all()


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(["linear", "cosine", "sigmoid"]),
    T=st.integers(min_value=2, max_value=1500),
)
def test_property_schedules_valid(name, T):
    if name == "linear" and T < 21:  # β_end·1000/T would reach 1: refused (next test)
        with pytest.raises(ValueError, match="after the 1000/T scaling"):
            make_schedule(name, T)
        return
    s = make_schedule(name, T)
    a = s.alphas_cumprod_f64
    assert np.all(np.diff(a) < 0)
    assert np.all(s._betas64 > 0) and np.all(s._betas64 <= 0.999)


@settings(max_examples=30, deadline=None)
@given(name=st.sampled_from(["linear", "cosine", "sigmoid"]), T=st.integers(2, 400))
def test_property_respace_all_kept_reproduces_schedule(name, T):
    if name == "linear":
        T = max(T, 21)
    s = make_schedule(name, T)
    r = s.respace(list(range(T)))
    np.testing.assert_allclose(r._betas64, s._betas64, rtol=1e-9, atol=1e-12)
    for field in ["betas", "alphas_cumprod", "posterior_variance", "posterior_mean_coef1"]:
        torch.testing.assert_close(getattr(r, field), getattr(s, field), rtol=1e-5, atol=1e-7)
    assert torch.equal(r.timesteps, s.timesteps)


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(["linear", "cosine", "sigmoid"]),
    kept=st.lists(st.integers(0, 299), min_size=1, max_size=60, unique=True).map(sorted),
)
def test_property_respaced_alpha_bar_matches_at_kept_steps(name, kept):
    s = make_schedule(name, 300)
    r = s.respace(kept)
    # 1 − (1 − ᾱ) loses ~1e-16/ᾱ relative precision in float64 when ᾱ is tiny
    np.testing.assert_allclose(r.alphas_cumprod_f64, s.alphas_cumprod_f64[kept], rtol=1e-7)
    assert r.timesteps.tolist() == kept
    assert r.num_steps == len(kept)
    assert r.num_train_timesteps == kept[-1] + 1


def test_respace_of_respaced_maps_to_original_timesteps():
    s = linear_schedule(1000)
    r = s.respace(list(range(0, 1000, 10)))  # 100 steps
    rr = r.respace([0, 50, 99])
    assert rr.timesteps.tolist() == [0, 500, 990]
    np.testing.assert_allclose(rr.alphas_cumprod_f64, s.alphas_cumprod_f64[[0, 500, 990]])


def test_q_sample_closed_form_and_empirical_moments():
    s = linear_schedule(1000)
    gen = torch.Generator().manual_seed(0)
    n = 200_000
    for t_val in [0, 100, 500, 999]:
        x0 = torch.full((n, 1), 0.7)
        t = torch.full((n,), t_val, dtype=torch.long)
        noise = torch.randn(n, 1, generator=gen)
        xt = s.q_sample(x0, t, noise)
        a = s.alphas_cumprod_f64[t_val]
        # exact given the noise
        torch.testing.assert_close(
            xt, math.sqrt(a) * 0.7 + math.sqrt(1 - a) * noise, rtol=1e-5, atol=1e-6
        )
        # empirical mean/variance: √ᾱ x0 and 1 − ᾱ, within 5 standard errors
        se_mean = math.sqrt((1 - a) / n)
        assert abs(xt.mean().item() - math.sqrt(a) * 0.7) < 5 * se_mean + 1e-6
        assert xt.var().item() == pytest.approx(1 - a, rel=0.02, abs=1e-6)


def test_q_sample_per_sample_timesteps():
    s = linear_schedule(100)
    x0 = torch.ones(3, 2)
    noise = torch.zeros(3, 2)
    t = torch.tensor([0, 50, 99])
    xt = s.q_sample(x0, t, noise)
    torch.testing.assert_close(xt[:, 0], s.sqrt_alphas_cumprod[t])


def test_snr():
    s = cosine_schedule(100)
    a = s.alphas_cumprod_f64
    torch.testing.assert_close(s.snr(), torch.tensor(a / (1 - a), dtype=torch.float32))
    assert s.snr(torch.tensor([3])).shape == (1,)
    assert np.all(np.diff(s.snr().numpy()) < 0)


def test_to_returns_new_object_and_does_not_mutate():
    s = cosine_schedule(10)
    before = s.betas
    m = s.to("meta")
    assert m is not s
    assert m.betas.device.type == "meta"
    assert s.betas is before and s.betas.device.type == "cpu"
    assert s.device.type == "cpu"


def test_cosine_keeps_more_signal_early_than_linear():
    lin, cos = linear_schedule(1000), cosine_schedule(1000)
    # at a quarter of the way, cosine has much more of ᾱ left
    assert cos.alphas_cumprod[250] > lin.alphas_cumprod[250]
    assert lin.alphas_cumprod[250].item() < 0.55 < cos.alphas_cumprod[250].item()


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda: make_schedule("quadratic"),
            "unknown schedule 'quadratic'.*linear, cosine, sigmoid",
        ),
        (lambda: linear_schedule(0), "num_timesteps must be a positive int"),
        (lambda: NoiseSchedule([0.1, 1.5]), r"open interval \(0, 1\)"),
        (lambda: NoiseSchedule([]), "non-empty"),
        (lambda: cosine_schedule(10).respace([3, 3]), "strictly increasing"),
        (lambda: cosine_schedule(10).respace([0, 10]), r"\[0, 9\]"),
        (lambda: cosine_schedule(10).respace([]), "non-empty"),
        (lambda: sigmoid_schedule(10, tau=0), "tau must be > 0"),
        (lambda: linear_schedule(20), r"β = 1 after the 1000/T scaling.*num_timesteps >= 21"),
        (lambda: linear_schedule(10, beta_end=0.5), r"every β must be <= 0.999"),
        (
            lambda: cosine_schedule(10).q_sample(
                torch.zeros(2, 1), torch.zeros(3, dtype=torch.long)
            ),
            r"t must have shape \(B,\)",
        ),
    ],
)
def test_bad_input_raises_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_float_t_is_a_type_error():
    with pytest.raises(TypeError, match="integer"):
        cosine_schedule(10).q_sample(torch.zeros(2, 1), torch.zeros(2))
