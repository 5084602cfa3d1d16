"""The samplers' numerics: float64 references, precision.

An independent float64 implementation of DDPM and DDIM (written from the papers,
sharing no code with the library) is run on the same x_T and the same per-step
noise as the library's float32 loop; they must agree to float32 rounding.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffusion_lib.exact.oracle import GaussianOracle
from diffusion_lib.sampling import sample, sampling_schedule
from diffusion_lib.sampling.spacing import timestep_spacing
from diffusion_lib.sampling.steps import predict_eps_from_x0, predict_x0_from_eps
from diffusion_lib.schedule import cosine_schedule, linear_schedule

MU, S = 0.1, 0.5


# --------------------------------------------------- a float64 reference loop
def eps_oracle64(a_bar: float, x: np.ndarray) -> np.ndarray:
    """E[ε | x_t] for data N(MU, S²), as the float32 oracle returns it (ε̂ rounded).

    :class:`~diffusion_lib.exact.oracle.GaussianOracle` computes in float64 and
    returns x_t's dtype. The rounding matters: at the cosine schedule's t = 999, x̂0
    divides by √ᾱ ≈ 5·10⁻⁵, so the 6·10⁻⁸ rounding of a float32 ε̂ alone moves a
    10-step DDIM result by 1e-4. Rounded here too, the two loops agree to ~4e-6.
    """
    a = float(a_bar)
    eps = np.sqrt(1 - a) * (x - np.sqrt(a) * MU) / (a * S**2 + 1 - a)
    return eps.astype(np.float32).astype(np.float64)


def reference_run(
    a_bar_full, kept, x_T, noises, sampler, variance="beta_tilde", eta=0.0, clip=False
):
    """DDPM (Ho et al. Alg. 2 on the kept steps) or DDIM (Song et al. eq. 12), float64."""
    x = x_T.astype(np.float64)
    a_kept = a_bar_full[kept]
    z_iter = iter(noises)
    for k in range(len(kept) - 1, -1, -1):
        a, a_prev = a_kept[k], (a_kept[k - 1] if k > 0 else 1.0)
        eps = eps_oracle64(a, x)
        x0 = (x - np.sqrt(1 - a) * eps) / np.sqrt(a)
        if clip:
            x0 = np.clip(x0, -1, 1)
            eps = (x - np.sqrt(a) * x0) / np.sqrt(1 - a)
        beta = 1 - a / a_prev
        if sampler == "ddpm":
            mean = (np.sqrt(a_prev) * beta / (1 - a)) * x0 + (
                np.sqrt(1 - beta) * (1 - a_prev) / (1 - a)
            ) * x
            var = beta if variance == "beta" else beta * (1 - a_prev) / (1 - a)
            x = mean + (np.sqrt(var) * next(z_iter) if k > 0 else 0.0)
        else:
            sigma = eta * np.sqrt((1 - a_prev) / (1 - a) * beta)
            x = np.sqrt(a_prev) * x0 + np.sqrt(1 - a_prev - sigma**2) * eps
            if eta > 0 and k > 0:
                x = x + sigma * next(z_iter)
    return x


CASES = [
    dict(sampler="ddpm", variance="beta_tilde"),
    dict(sampler="ddpm", variance="beta"),
    dict(sampler="ddim", eta=0.0),
    dict(sampler="ddim", eta=0.5),
    dict(sampler="ddim", eta=1.0),
]


@pytest.mark.parametrize("schedule_fn", [linear_schedule, cosine_schedule])
@pytest.mark.parametrize(
    "steps, spacing", [(None, "trailing"), (50, "leading"), (37, "linspace"), (10, "trailing")]
)
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c.values())))
@pytest.mark.parametrize("clip", [False, True])
def test_library_equals_float64_reference(schedule_fn, steps, spacing, case, clip):
    schedule = schedule_fn(1000)
    n = steps or 1000
    kept = np.arange(1000) if steps is None else timestep_spacing(1000, n, spacing)
    rng = np.random.default_rng(0)
    x_T = rng.standard_normal((64, 2)).astype(np.float32).astype(np.float64)
    noises = rng.standard_normal((n, 64, 2)).astype(np.float32).astype(np.float64)
    noisy = n - 1 if (case["sampler"] == "ddpm" or case.get("eta", 0) > 0) else 0
    ref = reference_run(schedule.alphas_cumprod_f64, kept, x_T, noises[:noisy], clip=clip, **case)
    got = sample(
        GaussianOracle(schedule, MU, S),
        schedule,
        (64, 2),
        steps=steps,
        spacing=spacing,
        x0_mode="clip" if clip else "none",
        x_T=torch.tensor(x_T, dtype=torch.float32),
        step_noise=torch.tensor(noises[:noisy], dtype=torch.float32),
        progress=False,
        **case,
    )
    # float32 against float64 over up to 1000 steps: a few 1e-6 (the inputs are rounded too)
    np.testing.assert_allclose(got.numpy(), ref, rtol=0, atol=2e-5)


@pytest.mark.parametrize("schedule_fn", [linear_schedule, cosine_schedule])
@pytest.mark.parametrize("steps", [10, 100, pytest.param(1000, marks=pytest.mark.slow)])
def test_ddim_eta_one_is_respaced_ddpm_with_posterior_variance(schedule_fn, steps):
    # Same steps, same noise: DDIM(η = 1) and DDPM(σ² = β̃) are one sampler (Song et al. §4.1)
    schedule = schedule_fn(1000)
    model = GaussianOracle(schedule, MU, S)
    g = torch.Generator().manual_seed(1)
    x_T, z = torch.randn(128, 3, generator=g), torch.randn(steps - 1, 128, 3, generator=g)
    kw = dict(steps=steps, x_T=x_T, step_noise=z, progress=False, x0_mode="none")
    ddim = sample(model, schedule, (128, 3), sampler="ddim", eta=1.0, **kw)
    ddpm = sample(model, schedule, (128, 3), sampler="ddpm", variance="beta_tilde", **kw)
    # measured: 2e-7 (10 steps) … 3e-6 (1000 steps); before float64 coefficients, 3–5e-4
    torch.testing.assert_close(ddim, ddpm, rtol=0, atol=1e-5)


# --------------------------------------------------------------- precision
def test_x0_keeps_its_digits_at_the_cosine_end():
    schedule = cosine_schedule(1000)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(4096, 1, generator=g, dtype=torch.float64) * 2 - 1
    eps = torch.randn(4096, 1, generator=g, dtype=torch.float64)
    a = float(schedule.alphas_cumprod_f64[-1])  # 2.4e-9
    x_t = (a**0.5 * x0 + (1 - a) ** 0.5 * eps).float()
    got = predict_x0_from_eps(schedule, x_t, 999, eps.float()).double()
    ref = (x_t.double() - (1 - a) ** 0.5 * eps.float().double()) / a**0.5
    # the old x_t/√ᾱ − √(1/ᾱ − 1) ε̂ form: 3.8e-3 here; subtract-then-divide: 8e-5
    assert (got - ref).abs().max() < 2e-4
    back = predict_eps_from_x0(schedule, x_t, 999, got.float())
    assert (back.double() - eps).abs().max() < 1e-5


def test_ddim_coefficients_do_not_cancel():
    schedule = cosine_schedule(1000)
    walk = sampling_schedule(schedule, 10)
    a = walk.alphas_cumprod_f64
    a_prev = np.append(1.0, a[:-1])
    for eta in (0.0, 0.5, 1.0):
        coef = walk.ddim_coefficients(eta)
        var = eta**2 * (1 - a_prev) / (1 - a) * (1 - a / a_prev)
        direction = np.sqrt(1 - a_prev - var)
        np.testing.assert_allclose(coef.c_eps.double().numpy(), direction, rtol=1e-6)
        np.testing.assert_allclose(coef.sigma.double().numpy(), np.sqrt(var), rtol=1e-6)
        np.testing.assert_allclose(coef.c_x0.double().numpy(), np.sqrt(a_prev), rtol=1e-6)
    # the last step of η = 1 (t = 999 → 899): float32 arithmetic got this 11 % off or 0
    assert coef.c_eps[-1].item() > 0
    assert walk.ddim_coefficients(1.0) is walk.ddim_coefficients(1.0)  # cached
