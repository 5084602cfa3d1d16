"""EDM's stochastic sampler (Karras et al. 2022, Algorithm 2), ``sampler="edm"``: Heun with
churn. Without churn it is Heun bit for bit; its fresh noise is per-sample seeded like DDPM's;
on Gaussian data with the exact ε̂ its output converges to the data as the steps grow."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import ClassOracle

from diffusion_lib.exact.oracle import GaussianOracle
from diffusion_lib.exact.outputs import CallCounter, exact_ode_output, exact_output
from diffusion_lib.sampling import SamplerSpec, sample, sample_progressive
from diffusion_lib.sampling.ode import churn_timesteps, edm_walk, ode_timesteps, sigmas_of
from diffusion_lib.sampling.registry import (
    applies_to,
    ode_samplers,
    sampler_kind,
    sampler_names,
    samplers_help,
)
from diffusion_lib.schedule import cosine_schedule, linear_schedule

MU, S = 0.1, 0.5
LINEAR = linear_schedule(1000)
ORACLE = GaussianOracle(LINEAR, MU, S)
X_T = torch.randn(256, 2, generator=torch.Generator().manual_seed(0))
CHURN = dict(sampler="edm", s_churn=10.0)


def run(model=ORACLE, schedule=LINEAR, shape=(256, 2), **kw):
    kw.setdefault("progress", False)
    return sample(model, schedule, shape, **kw)


# ------------------------------------------------------------ (a) no churn: Heun exactly
@pytest.mark.parametrize("grid", ["karras", "uniform"])
@pytest.mark.parametrize("x0_mode", ["none", "clip"])
@pytest.mark.parametrize("steps", [1, 7, 20])
def test_without_churn_it_is_heun_bit_for_bit(grid, x0_mode, steps):
    kw = dict(steps=steps, x_T=X_T, sigma_schedule=grid, x0_mode=x0_mode)
    heun = list(sample_progressive(ORACLE, LINEAR, (256, 2), sampler="heun", progress=False, **kw))
    edm = list(sample_progressive(ORACLE, LINEAR, (256, 2), sampler="edm", progress=False, **kw))
    assert len(heun) == len(edm)
    for h, e in zip(heun, edm, strict=True):
        assert h.t == e.t and e.noise is None and torch.all(e.sigma == 0)
        for field in ("x_t", "x0", "eps", "x_prev", "mean"):
            assert torch.equal(getattr(h, field), getattr(e, field)), (field, h.t)


def test_without_churn_guided_and_by_its_defaults_it_is_heun():
    model = ClassOracle(LINEAR)
    kw = dict(steps=12, labels=[0, 1, 2], guidance_scale=2.0, seed=3)
    heun = run(model, shape=(3, 2), sampler="heun", **kw)
    for extra in ({}, {"s_churn": 0.0}, {"s_churn": 50.0, "s_tmin": 1e6}, {"s_noise": 1.007}):
        assert torch.equal(run(model, shape=(3, 2), sampler="edm", **kw, **extra), heun), extra


def test_without_churn_it_converges_at_heuns_order():
    # the exact PF-ODE output for N(μ, s²) data (tests/test_ode.py); measured 2.0e-2, 4.3e-3,
    # 9.6e-4: the error falls ~4.6x when the steps double
    errors = []
    for n in (20, 40, 80):
        exact = exact_ode_output(LINEAR, int(ode_timesteps(LINEAR, n)[0]), X_T, MU, S)
        out = run(sampler="edm", steps=n, x_T=X_T, x0_mode="none")
        errors.append((out.double() - exact).abs().mean().item())
    ratios = [errors[0] / errors[1], errors[1] / errors[2]]
    assert all(3.0 < r < 6.5 for r in ratios), (errors, ratios)
    assert errors[-1] < 2e-3


def test_it_makes_heuns_model_calls_with_or_without_churn():
    for kw in (dict(sampler="heun"), dict(sampler="edm"), CHURN):
        counted = CallCounter(ORACLE)
        run(counted, shape=(4, 2), steps=20, seed=0, **kw)
        assert counted.calls == 39, kw  # 2 a step, 1 at the last
    assert exact_output(LINEAR, "edm", 20, mean=MU, std=S) == exact_output(
        LINEAR, "heun", 20, mean=MU, std=S
    )


# ------------------------------------------------------------ (b) per-sample seeded noise
@pytest.mark.parametrize("grid", ["karras", "uniform"])
def test_a_sample_does_not_depend_on_its_batch(grid):
    model = ClassOracle(LINEAR)
    kw = dict(steps=15, sigma_schedule=grid, **CHURN)
    shape = (1, 2, 2)
    full = run(model, shape=(8, *shape), seed=100, labels=[i % 3 for i in range(8)], **kw)
    one = run(model, shape=(1, *shape), seeds=[105], labels=[5 % 3], **kw)
    three = run(model, shape=(3, *shape), seeds=[103, 104, 105], labels=[0, 1, 2], **kw)
    assert torch.equal(full[5], one[0])
    assert torch.equal(full[3:6], three)


def test_same_seeds_same_output_other_seeds_another():
    a = run(shape=(64, 2), steps=20, seeds=list(range(64)), **CHURN)
    b = run(shape=(64, 2), steps=20, seeds=list(range(64)), **CHURN)
    assert torch.equal(a, b)
    x_T = torch.randn(64, 2, generator=torch.Generator().manual_seed(9))
    c = run(shape=(64, 2), steps=20, x_T=x_T, seed=0, **CHURN)
    d = run(shape=(64, 2), steps=20, x_T=x_T, seed=1000, **CHURN)
    assert not torch.equal(c, d)  # the same x_T, other fresh noise
    assert not torch.equal(c, run(shape=(64, 2), steps=20, x_T=x_T, sampler="heun"))


def test_a_run_is_fixed_from_outside_by_x_T_and_step_noise():
    steps = list(
        sample_progressive(ORACLE, LINEAR, (3, 2), steps=10, seed=5, progress=False, **CHURN)
    )
    zs = [s.noise for s in steps if s.noise is not None]
    assert 0 < len(zs) < len(steps)  # the first step, at t = T − 1, cannot churn
    x_T, last = steps[0].x_t, steps[-1].x_prev
    kw = dict(shape=(3, 2), steps=10, x_T=x_T, **CHURN)
    assert torch.equal(run(step_noise=zs, seed=999, **kw), last)
    assert torch.equal(run(step_noise=torch.stack(zs), seed=1, **kw), last)
    assert torch.equal(run(step_noise=lambda i: steps[i].noise, seed=2, **kw), last)
    with pytest.raises(
        ValueError, match=f"holds 2 noise tensors; this run adds noise at {len(zs)}"
    ):
        run(step_noise=zs[:2], **kw)
    # a churned step reports its z; it is not mean + σ z (the z came before the model call)
    churned = [s for s in steps if s.noise is not None]
    assert all(s.mean is None and s.sigma is None for s in churned)
    assert all(s.mean is not None and torch.all(s.sigma == 0) for s in steps if s.noise is None)


# ------------------------------------------------------------ the churn itself
def test_churn_timesteps_follow_algorithm_2():
    sig = sigmas_of(LINEAR)
    ts = ode_timesteps(LINEAR, 20)
    assert np.array_equal(churn_timesteps(ts, sig, 0.0), ts)
    hat = churn_timesteps(ts, sig, 10.0)
    assert np.all(hat >= ts) and hat[0] == ts[0] == 999  # σ cannot rise above σ(T − 1)
    for s_churn in (10.0, 1e6):  # γ = min(S_churn/N, √2 − 1): 0.5 and 1e6/20 are capped
        gamma = min(s_churn / len(ts), math.sqrt(2) - 1)
        hat = churn_timesteps(ts, sig, s_churn)
        wanted = sig[ts] * (1 + gamma)
        within = wanted <= sig[-1]
        assert np.all(hat[~within] == 999)  # clamped at σ(T − 1)
        # snapped to the nearest timestep in log σ: within 0.05 here (0.048 at t = 0)
        off = np.abs(np.log(sig[hat[within]] / wanted[within]))
        assert within.sum() >= 15 and np.all(off < 0.05), off
    # only σ in [s_tmin, s_tmax] is churned
    window = churn_timesteps(ts, sig, 10.0, s_tmin=0.5, s_tmax=5.0)
    inside = (sig[ts] >= 0.5) & (sig[ts] <= 5.0)
    assert inside.any() and (~inside).any()
    assert np.array_equal(window[~inside], ts[~inside]) and np.all(window[inside] > ts[inside])


def test_the_walk_adds_s_noise_times_the_missing_sd_and_calls_the_model_at_t_hat():
    sig = sigmas_of(LINEAR)
    ts = np.array([500, 200])
    churn = np.array([600, 200])
    seen = []

    def denoise(x, t):
        seen.append((x.clone(), t))
        return torch.zeros_like(x), torch.zeros_like(x), None

    x = torch.zeros(2, 3)
    list(edm_walk(x, ts, sig, denoise, lambda i: torch.ones(2, 3), churn=churn, s_noise=1.5))
    first_x, first_t = seen[0]
    assert first_t == 600
    expected = 1.5 * math.sqrt(sig[600] ** 2 - sig[500] ** 2)
    torch.testing.assert_close(first_x, torch.full((2, 3), expected), rtol=1e-6, atol=0)
    assert [t for _, t in seen] == [600, 200, 200]  # Heun: t̂, then the next t; Euler last
    with pytest.raises(ValueError, match="needs a noise source"):
        list(edm_walk(x, ts, sig, denoise, churn=churn))


def test_only_steps_in_the_sigma_window_draw_noise():
    sig = sigmas_of(LINEAR)
    steps = list(
        sample_progressive(
            ORACLE,
            LINEAR,
            (2, 2),
            steps=20,
            seed=0,
            s_tmin=0.5,
            s_tmax=5.0,
            progress=False,
            **CHURN,
        )
    )
    for s in steps:
        assert (s.noise is not None) == (0.5 <= sig[s.t] <= 5.0), s.t


# ------------------------------------------------------------ (c) it samples the data
def test_with_churn_the_output_converges_to_the_data():
    # N(0.1, 0.5²) with the exact ε̂, 20,000 samples (the sd of the sd ≈ 0.0025, of the mean
    # ≈ 0.0035); measured |sd − s| at 20, 40, 80, 160 steps: 0.054, 0.014, 0.0057, 0.0010;
    # |mean − μ| ≤ 0.0035
    sd_errors = {}
    for n in (20, 40, 160):
        x = run(shape=(20_000, 1), steps=n, seed=0, x0_mode="none", **CHURN).double()
        sd_errors[n] = abs(x.std().item() - S)
        assert abs(x.mean().item() - MU) < 0.015, (n, x.mean().item())
    assert sd_errors[20] > 0.03 and sd_errors[160] < 0.012, sd_errors
    assert sd_errors[20] > sd_errors[40] > sd_errors[160], sd_errors
    heun = run(shape=(20_000, 1), steps=20, seed=0, x0_mode="none", sampler="heun")
    churned = run(shape=(20_000, 1), steps=20, seed=0, x0_mode="none", **CHURN)
    assert not torch.allclose(heun, churned)


def test_the_large_sigma_guard_applies_to_the_raised_sigma():
    # cosine schedule, 10 uniform steps: Heun's trapezoid across σ 2e4 → 6.4 diverged (error
    # 3.7); EDM's first step is Heun's (t = 999 cannot churn) and takes the same Euler step
    cosine = cosine_schedule(1000)
    oracle = GaussianOracle(cosine, MU, S)
    kw = dict(steps=10, sigma_schedule="uniform", x0_mode="none", progress=False)
    x = sample(oracle, cosine, (20_000, 1), seed=0, **CHURN, **kw).double()
    assert abs(x.mean().item() - MU) < 0.02 and abs(x.std().item() - S) < 0.05


# ------------------------------------------------------------ (e) the table and the CLI list it
def test_the_table_lists_it_with_its_options():
    assert "edm" in sampler_names() and "edm" in ode_samplers()
    kind = sampler_kind("edm")
    assert not kind.deterministic and kind.walk is not None and not kind.graphable
    assert "edm: EDM stochastic sampler (Karras 2022 Alg. 2): Heun with churn" in samplers_help()
    for option in ("s_churn", "s_tmin", "s_tmax", "s_noise"):
        assert applies_to(option) == ("edm",)
    spec = SamplerSpec("edm", 20, s_churn=40, s_noise=1.003)
    assert spec.kwargs() == {
        "sampler": "edm",
        "steps": 20,
        "spacing": "trailing",
        "x0_mode": "clip",
        "rederive_eps": True,
        "sigma_schedule": "karras",
        "s_churn": 40.0,
        "s_tmin": 0.0,
        "s_tmax": math.inf,
        "s_noise": 1.003,
    }
    assert isinstance(spec.s_churn, float) and spec.label == "EDM S_churn=40"
    assert SamplerSpec() == SamplerSpec(s_churn=0, s_tmin=0, s_tmax=float("inf"), s_noise=1)


def test_the_cli_offers_it():
    from diffusion_lib.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    generate = sub.choices["generate"]
    assert "edm: EDM stochastic sampler" in " ".join(generate.format_help().split())
    assert generate.parse_args(["--model", "m", "--out", "o", "-n", "1", "--sampler", "edm"])
