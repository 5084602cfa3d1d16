"""The samplers against diffusers' DDPMScheduler and DDIMScheduler.

Same model (an exact Gaussian oracle), same x_T, same per-step noise: where both
libraries mean the same thing they must agree to float32 rounding; where they
differ, a test pins the difference and docs/diffusers.md says which is right.
The table in docs/diffusers.md lists every configuration tested here.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from diffusion_lib.exact.oracle import GaussianOracle
from diffusion_lib.interop import schedule_from_diffusers
from diffusion_lib.sampling import sample
from diffusion_lib.schedule import NoiseSchedule, cosine_schedule, linear_schedule

diffusers = pytest.importorskip("diffusers")  # a dev dependency (pyproject's [dev])

T, B, SHAPE = 1000, 64, (64, 2)
MU, S = 0.1, 0.5
OURS = {"linear": linear_schedule, "squaredcos_cap_v2": cosine_schedule}
ATOL = {"linear": 2e-5, "squaredcos_cap_v2": 2e-5}


def diffusers_alpha_bar(name: str) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return diffusers.DDPMScheduler(num_train_timesteps=T, beta_schedule=name).alphas_cumprod


def same_alpha_bar(name: str) -> NoiseSchedule:
    """Our schedule holding diffusers' ᾱ exactly (it keeps ᾱ as a float32 cumprod of
    float32 betas; ours are float64): the comparisons then test the samplers alone."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return schedule_from_diffusers(
            diffusers.DDPMScheduler(num_train_timesteps=T, beta_schedule=name)
        )


SCHEDULES = {name: (lambda n=name: same_alpha_bar(n)) for name in OURS}


def z_of(index: int) -> torch.Tensor:
    """The noise of loop step ``index``, the same for both libraries."""
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(1000 + index))


def x_T() -> torch.Tensor:
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(7))


def run_diffusers(scheduler, model, steps: int, **step_kw) -> torch.Tensor:
    scheduler.set_timesteps(steps)
    x = x_T()
    for k, t in enumerate(scheduler.timesteps):
        eps = model(x, t.repeat(B))
        if isinstance(scheduler, diffusers.DDIMScheduler):
            out = scheduler.step(eps, t, x, variance_noise=z_of(k), **step_kw)
        else:  # DDPMScheduler draws its noise from the generator: the same z_of(k)
            out = scheduler.step(eps, t, x, generator=torch.Generator().manual_seed(1000 + k))
        x = out.prev_sample
    return x


def ddpm_scheduler(name: str, variance: str, clip: bool, spacing: str = "leading"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return diffusers.DDPMScheduler(
            num_train_timesteps=T,
            beta_schedule=name,
            variance_type=variance,
            clip_sample=clip,
            timestep_spacing=spacing,
        )


def ddim_scheduler(name: str, clip: bool, spacing: str = "leading", alpha_one: bool = True):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return diffusers.DDIMScheduler(
            num_train_timesteps=T,
            beta_schedule=name,
            clip_sample=clip,
            timestep_spacing=spacing,
            set_alpha_to_one=alpha_one,
        )


def ours(name: str, steps: int, **kw) -> torch.Tensor:
    schedule = SCHEDULES[name]()
    return sample(
        GaussianOracle(schedule, MU, S),
        schedule,
        SHAPE,
        steps=steps,
        x_T=x_T(),
        step_noise=z_of,
        progress=False,
        **kw,
    )


def oracle(name: str) -> GaussianOracle:
    return GaussianOracle(SCHEDULES[name](), MU, S)


# ------------------------------------------------------------- they agree
@pytest.mark.parametrize("name", OURS)
def test_the_schedules_are_the_same_up_to_diffusers_float32_cumprod(name):
    ours_ = OURS[name](T).alphas_cumprod_f64
    theirs = diffusers_alpha_bar(name).double().numpy()
    rel = np.abs(theirs / ours_ - 1)
    # float32 betas and a float32 running product: ~1e-7 early, up to ~1e-5 at t = 999
    assert rel.max() < 5e-5 and rel[:100].max() < 1e-6, rel.max()


@pytest.mark.parametrize(
    "name, steps",
    [("linear", 1000), ("linear", 50), ("squaredcos_cap_v2", 50), ("squaredcos_cap_v2", 10)],
)
@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large"])
@pytest.mark.parametrize("clip", [False, True])
def test_ddpm_equals_diffusers(name, variance, clip, steps):
    ref = run_diffusers(ddpm_scheduler(name, variance, clip), oracle(name), steps)
    got = ours(
        name,
        steps,
        sampler="ddpm",
        spacing="leading",
        variance="beta_tilde" if variance == "fixed_small" else "beta",
        x0_mode="clip" if clip else "none",
    )
    torch.testing.assert_close(got, ref, rtol=0, atol=ATOL[name] * (3 if steps == 1000 else 1))


@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("clip, rederive", [(False, True), (True, True), (True, False)])
@pytest.mark.parametrize(
    "spacing, steps", [("leading", 50), ("leading", 10), ("trailing", 50), ("trailing", 8)]
)
@pytest.mark.parametrize("alpha_one", [True, False])
def test_ddim_equals_diffusers(name, eta, clip, rederive, spacing, steps, alpha_one):
    sched = ddim_scheduler(name, clip, spacing, alpha_one)
    ref = run_diffusers(sched, oracle(name), steps, eta=eta, use_clipped_model_output=rederive)
    got = ours(
        name,
        steps,
        sampler="ddim",
        eta=eta,
        spacing=spacing,
        x0_mode="clip" if clip else "none",
        rederive_eps=rederive,
        final_alpha="one" if alpha_one else "first",
    )
    torch.testing.assert_close(got, ref, rtol=0, atol=ATOL[name])


@pytest.mark.parametrize("name", SCHEDULES)
def test_ddpm_trailing_with_posterior_variance_equals_diffusers(name):
    # diffusers adds noise at its last trailing step too, but with σ² = β̃ = 0 there
    # (clamped to 1e-20): the same samples
    ref = run_diffusers(ddpm_scheduler(name, "fixed_small", False, "trailing"), oracle(name), 50)
    got = ours(name, 50, sampler="ddpm", spacing="trailing", variance="beta_tilde", x0_mode="none")
    torch.testing.assert_close(got, ref, rtol=0, atol=ATOL[name])


# --------------------------------------------- where they differ, pinned
@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large"])
def test_diffusers_ddpm_loses_digits_at_the_cosine_start(variance):
    # diffusers forms the step's β as 1 − ᾱ_t/ᾱ_{t−1} and (1 − ᾱ_{t−1})/(1 − ᾱ_t) in
    # float32 at run time. Over the cosine schedule's first steps β ≈ 4e-5, so those
    # cancel (relative error ~1e-3) and the last ten steps move the sample by ~4e-4.
    # Ours are precomputed in float64: it stays within float32 rounding of a float64
    # reference loop on the same ᾱ, x_T and noise.
    from test_numerics import reference_run

    name, steps = "squaredcos_cap_v2", 1000
    theirs = run_diffusers(ddpm_scheduler(name, variance, False), oracle(name), steps)
    got = ours(
        name,
        steps,
        sampler="ddpm",
        spacing="leading",
        x0_mode="none",
        variance="beta_tilde" if variance == "fixed_small" else "beta",
    )
    a_bar = SCHEDULES[name]().alphas_cumprod_f64
    ref = reference_run(
        a_bar,
        np.arange(T),
        x_T().double().numpy(),
        [z_of(k).double().numpy() for k in range(steps - 1)],
        "ddpm",
        variance="beta_tilde" if variance == "fixed_small" else "beta",
    )
    err_ours = np.abs(got.double().numpy() - ref).max()
    err_theirs = np.abs(theirs.double().numpy() - ref).max()
    assert err_ours < 3e-5 and err_theirs > 1e-4 and err_theirs > 5 * err_ours


def test_ddpm_trailing_with_beta_variance_adds_noise_at_the_end_in_diffusers():
    # The last trailing step is t = T/n − 1 > 0, and diffusers adds noise whenever t > 0:
    # with σ² = β ("fixed_large") that is √(1 − ᾱ_t) z at the very end, i.e. a noisy sample.
    # Ours adds none at the last step (x_0 is the mean), as DDPM's Algorithm 2 does.
    name, steps = "linear", 50
    sched = ddpm_scheduler(name, "fixed_large", False, "trailing")
    ref = run_diffusers(sched, oracle(name), steps)
    got = ours(name, steps, sampler="ddpm", spacing="trailing", variance="beta", x0_mode="none")
    t_last = int(sched.timesteps[-1])
    assert t_last == T // steps - 1 == 19
    a_bar = float(SCHEDULES[name]().alphas_cumprod_f64[t_last])
    extra = (1 - a_bar) ** 0.5 * z_of(steps - 1)
    torch.testing.assert_close(ref - got, extra, rtol=0, atol=1e-5)
    assert round((1 - a_bar) ** 0.5, 3) == 0.076  # docs/diffusers.md quotes it
    assert extra.std() > 0.05  # the noise diffusers leaves in the sample is not small


@pytest.mark.parametrize("spacing, steps", [("linspace", 10), ("trailing", 7)])
def test_diffusers_ddim_steps_to_the_wrong_previous_timestep(spacing, steps):
    # diffusers' DDIM takes prev_t = t − T // n. That is the next visited timestep only
    # for "leading", and for "trailing" when n divides T. Otherwise x_prev is built for
    # ᾱ(t − T//n) but the model is next called at another t: the two disagree.
    name = "linear"
    sched = ddim_scheduler(name, False, spacing)
    sched.set_timesteps(steps)
    visited = sched.timesteps.tolist()
    assert np.any(-np.diff(visited) != T // steps)
    ref = run_diffusers(sched, oracle(name), steps, eta=0.0)
    got = ours(name, steps, sampler="ddim", spacing=spacing, x0_mode="none")
    assert (ref - got).abs().max() > 1e-2
    # ours walks exactly the visited timesteps (test_numerics checks it against a
    # float64 loop); diffusers' differs from that by the mismatch above
