"""The probability-flow ODE samplers (diffusion_lib.sampling.ode), against exact answers.

For data N(μ, s²) the PF-ODE has a closed-form solution: in the σ-form
x̃ = x0 + σ ε, p_σ = N(μ, s² + σ²) and dx̃/dσ = σ (x̃ − μ)/(s² + σ²), so
x̃(σ) − μ ∝ √(s² + σ²) and the exact output is μ + s (x̃_T − μ)/√(s² + σ_max²).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ClassOracle

from diffusion_lib.exact.oracle import GaussianOracle
from diffusion_lib.exact.outputs import CallCounter
from diffusion_lib.sampling import sample, sample_progressive
from diffusion_lib.sampling.ode import (
    HEUN_MAX_SIGMA_RATIO,
    OdeStep,
    ddim_invert,
    karras_sigmas,
    ode_timesteps,
    sigmas_of,
    slerp,
)
from diffusion_lib.sampling.registry import SamplerKind, ode_samplers, register, unregister
from diffusion_lib.sampling.samplers import ode_plan
from diffusion_lib.schedule import cosine_schedule, linear_schedule

MU, S = 0.1, 0.5
LINEAR = linear_schedule(1000)
ORACLE = GaussianOracle(LINEAR, MU, S)
X_T = torch.randn(256, 2, generator=torch.Generator().manual_seed(0))


def exact_ode_output(schedule, timesteps, x_T):
    s_max = sigmas_of(schedule)[timesteps[0]]
    x_tilde = x_T.double() * np.sqrt(1 + s_max**2)
    return MU + S / np.sqrt(S**2 + s_max**2) * (x_tilde - MU)


@pytest.mark.parametrize("schedule_fn", [linear_schedule, cosine_schedule])
@pytest.mark.parametrize("spacing", ["trailing", "leading", "linspace"])
@pytest.mark.parametrize("x0_mode", ["none", "clip"])
def test_euler_on_the_steps_of_a_ddim_run_is_ddim(schedule_fn, spacing, x0_mode):
    schedule = schedule_fn(1000)
    model = GaussianOracle(schedule, MU, S)
    kw = dict(steps=20, spacing=spacing, x_T=X_T, x0_mode=x0_mode, progress=False)
    ddim = sample(model, schedule, (256, 2), sampler="ddim", **kw)
    euler = sample(model, schedule, (256, 2), sampler="euler", sigma_schedule="uniform", **kw)
    # the same update in two coordinate systems (x_t vs x̃ = x_t/√ᾱ): float32 rounding
    torch.testing.assert_close(euler, ddim, rtol=0, atol=5e-4)


# measured (mean |error| on the linear schedule, Karras σ's, n = 20, 40, 80):
#   euler 5.9e-2, 3.0e-2, 1.5e-2; heun 2.0e-2, 4.3e-3, 9.6e-4; dpmpp_2m 2.1e-2, 4.6e-3, 1.0e-3
@pytest.mark.parametrize("sampler, order", [("euler", 1), ("heun", 2), ("dpmpp_2m", 2)])
def test_each_solver_converges_at_its_order(sampler, order):
    ns, errors = [20, 40, 80], []
    for n in ns:
        exact = exact_ode_output(LINEAR, ode_timesteps(LINEAR, n, "karras"), X_T)
        out = sample(
            ORACLE,
            LINEAR,
            (256, 2),
            sampler=sampler,
            steps=n,
            x_T=X_T,
            x0_mode="none",
            progress=False,
        )
        errors.append((out.double() - exact).abs().mean().item())
    slope = -np.polyfit(np.log(ns), np.log(errors), 1)[0]
    assert abs(slope - order) < 0.35, (sampler, errors, slope)
    assert errors[-1] < (2e-2 if order == 1 else 2e-3)


def test_second_order_beats_euler_at_equal_model_calls():
    # Heun spends two calls a step: compare at ~40 calls each
    calls = {}
    outs = {}
    for sampler, steps in (("euler", 40), ("heun", 20), ("dpmpp_2m", 40)):
        counted = []

        def model(x, t, labels=None, counted=counted):
            counted.append(1)
            return ORACLE(x, t)

        model.null_label = None
        outs[sampler] = sample(
            model,
            LINEAR,
            (256, 2),
            sampler=sampler,
            steps=steps,
            x_T=X_T,
            x0_mode="none",
            progress=False,
        )
        calls[sampler] = len(counted)
        exact = exact_ode_output(LINEAR, ode_timesteps(LINEAR, steps, "karras"), X_T)
        outs[sampler] = (outs[sampler].double() - exact).abs().mean().item()
    assert calls == {"euler": 40, "heun": 39, "dpmpp_2m": 40}
    # measured: euler 0.030, heun 0.020 (its big first steps dominate), dpmpp_2m 0.0046
    assert outs["heun"] < outs["euler"] and outs["dpmpp_2m"] < outs["euler"] / 5


def test_karras_timesteps_descend_inside_the_schedule():
    sig = sigmas_of(LINEAR)
    for n in (1, 2, 5, 10, 50, 200, 1000):
        ts = ode_timesteps(LINEAR, n, "karras")
        assert (ts[0] == 999 and ts[-1] == 0) or n == 1, (n, ts[:3], ts[-3:])
        assert np.all(np.diff(ts) < 0) and ts.min() >= 0 and len(ts) <= n
    wanted = karras_sigmas(float(sig[0]), float(sig[-1]), 10)
    assert wanted[0] == pytest.approx(sig[-1]) and wanted[-1] == pytest.approx(sig[0])
    assert np.all(np.diff(wanted) < 0)


def test_ode_samplers_share_the_sample_arguments():
    model = ClassOracle(LINEAR)
    for sampler in ode_samplers():
        steps = list(
            sample_progressive(
                model,
                LINEAR,
                (3, 2),
                sampler=sampler,
                steps=6,
                labels=[0, 1, 2],
                guidance_scale=2.0,
                seed=4,
                progress=False,
            )
        )
        assert steps[0].t == 999 and steps[-1].t == 0
        assert all(s.noise is None and torch.all(s.sigma == 0) for s in steps)
        assert steps[0].eps_cond is not None
        again = sample(
            model,
            LINEAR,
            (3, 2),
            sampler=sampler,
            steps=6,
            labels=[0, 1, 2],
            guidance_scale=2.0,
            seed=4,
            progress=False,
        )
        assert torch.equal(again, steps[-1].x_prev)  # seeds fix x_T; the rest is deterministic
    with pytest.raises(ValueError, match="cuda_graph=True supports sampler='ddpm' and 'ddim'"):
        sample(ORACLE, LINEAR, (2, 2), sampler="heun", cuda_graph=True, progress=False)
    with pytest.raises(ValueError, match="is deterministic: it takes no step_noise"):
        sample(ORACLE, LINEAR, (2, 2), sampler="euler", step_noise=[], progress=False)
    with pytest.raises(ValueError, match="unknown sigma_schedule 'edm'"):
        sample(ORACLE, LINEAR, (2, 2), sampler="euler", sigma_schedule="edm", progress=False)


def test_ddim_inversion_round_trip_shrinks_with_steps():
    x0 = MU + S * torch.randn(512, 2, generator=torch.Generator().manual_seed(1))
    errors = []
    for n in (10, 50, 250):
        x_T = ddim_invert(ORACLE, LINEAR, x0, n)
        assert abs(x_T.std().item() - 1) < 0.05  # the noise it encodes to is N(0, I)-like
        back = sample(
            ORACLE,
            LINEAR,
            (512, 2),
            sampler="ddim",
            steps=n,
            x_T=x_T,
            x0_mode="none",
            progress=False,
        )
        errors.append((back - x0).abs().mean().item())
    # measured: 0.113, 0.037, 0.0087 (first order in the step size)
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.02


def test_slerp_keeps_the_ends_and_the_norm():
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(4, 1, 8, 8, generator=g), torch.randn(4, 1, 8, 8, generator=g)
    assert torch.allclose(slerp(a, b, 0.0), a, atol=1e-5)
    assert torch.allclose(slerp(a, b, 1.0), b, atol=1e-5)
    mid_s, mid_l = slerp(a, b, 0.5), 0.5 * (a + b)
    # the great circle keeps |x| ≈ √D = 8; the straight line shrinks it by ~√2
    assert (mid_s.flatten(1).norm(dim=1) - 8).abs().max() < 2.5
    assert (mid_l.flatten(1).norm(dim=1) < mid_s.flatten(1).norm(dim=1)).all()
    assert torch.allclose(slerp(a, a, 0.3), a, atol=1e-5)  # parallel: falls back to a line


# ------------------------------------------------------------ Heun across a huge σ ratio
def _heun_unguarded(x_tilde, timesteps, sigmas, denoise):
    """Heun as it was before the guard: the trapezoid at every step but the last."""
    x = x_tilde
    for i, t in enumerate(timesteps.tolist()):
        t_next = int(timesteps[i + 1]) if i + 1 < len(timesteps) else None
        s_next = float(sigmas[t_next]) if t_next is not None else 0.0
        s = float(sigmas[t])
        d, eps, raw = denoise(x, t)
        x_next = x + (s_next - s) * eps
        if t_next is not None:
            _, eps_next, _ = denoise(x_next, t_next)
            x_next = x + (s_next - s) * 0.5 * (eps + eps_next)
        yield OdeStep(i, t, x, x_next, d, eps, raw)
        x = x_next


@pytest.fixture
def unguarded():
    kind = register(
        SamplerKind(
            "heun_unguarded",
            "Heun without the σ-ratio guard (a test's sampler)",
            ode_plan,
            frozenset({"spacing", "x0_mode", "rederive_eps", "sigma_schedule"}),
            walk=_heun_unguarded,
        )
    )
    yield kind.name
    unregister(kind.name)


def test_heun_takes_an_euler_step_across_a_huge_sigma_ratio(unguarded):
    # cosine: σ(999) = 2.0e4 (β clipped at 0.999), σ(899) = 6.4 with 10 uniform steps; the
    # trapezoid weights the slope at 6.4 over the whole interval. Measured: 3.7 unguarded
    # (as in diffusers and k-diffusion), 1.3e-2 with an Euler first step
    cosine = cosine_schedule(1000)
    oracle = GaussianOracle(cosine, MU, S)
    exact = exact_ode_output(cosine, ode_timesteps(cosine, 10, "uniform"), X_T)
    errors, calls = {}, {}
    for sampler in ("heun", unguarded):
        counted = CallCounter(oracle)
        out = sample(
            counted,
            cosine,
            (256, 2),
            sampler=sampler,
            steps=10,
            sigma_schedule="uniform",
            x_T=X_T,
            x0_mode="none",
            progress=False,
        )
        errors[sampler] = (out.double() - exact).abs().mean().item()
        calls[sampler] = counted.calls
    assert errors[unguarded] > 1.0 and errors["heun"] < 0.05, errors
    assert calls == {"heun": 18, unguarded: 19}  # the Euler step saves one model call


def test_the_guard_leaves_the_linear_schedules_grids_alone(unguarded):
    sig = sigmas_of(LINEAR)
    worst = {}
    for grid, spacing in (
        ("karras", "trailing"),
        ("uniform", "trailing"),
        ("uniform", "leading"),
        ("uniform", "linspace"),
    ):
        ratios = []
        for n in range(5, 1001):
            s = sig[ode_timesteps(LINEAR, n, grid, spacing)]
            ratios.append((s[:-1] / s[1:]).max())
        worst[grid, spacing] = max(ratios)
    # HEUN_MAX_SIGMA_RATIO's comment quotes these: 49, 6.2, 72, 96 (the largest at 5 steps)
    assert max(worst.values()) < HEUN_MAX_SIGMA_RATIO, worst
    for grid in ("karras", "uniform"):
        for n in (10, 25, 50, 200):
            kw = dict(steps=n, sigma_schedule=grid, x_T=X_T, progress=False)
            heun = sample(ORACLE, LINEAR, (256, 2), sampler="heun", **kw)
            assert torch.equal(heun, sample(ORACLE, LINEAR, (256, 2), sampler=unguarded, **kw))
