"""diffusion_lib.exact.outputs (notebook 07's helpers) against independent references."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from diffusion_lib.exact.moments import exact_moments
from diffusion_lib.exact.oracle import GaussianOracle
from diffusion_lib.exact.outputs import (
    CallCounter,
    exact_ode_output,
    exact_output,
    fitted_order,
    gaussian_w2,
)
from diffusion_lib.interop import hub_reachable
from diffusion_lib.sampling import sample
from diffusion_lib.sampling.ode import ode_timesteps
from diffusion_lib.schedule import cosine_schedule, linear_schedule, rescale_zero_terminal_snr

MU, S = 0.1, 0.5
LINEAR = linear_schedule(1000)


@pytest.mark.parametrize("steps", [5, 20, 100])
def test_the_affine_trick_equals_the_ddim_moment_recursion(steps):
    m, sd, nfe = exact_output(LINEAR, "ddim", steps, mean=MU, std=S)
    ref_m, ref_sd = exact_moments(LINEAR, "ddim", steps, mean=MU, std=S)
    assert nfe == steps
    assert m == pytest.approx(ref_m, abs=1e-6) and sd == pytest.approx(ref_sd, abs=1e-6)


def test_ode_output_matches_a_monte_carlo_run_and_the_exact_ode_solution():
    x_T = torch.randn(20_000, 1, generator=torch.Generator().manual_seed(0))
    oracle = GaussianOracle(LINEAR, MU, S)
    out = sample(
        oracle,
        LINEAR,
        (20_000, 1),
        sampler="heun",
        steps=20,
        x_T=x_T,
        x0_mode="none",
        progress=False,
    ).double()
    m, sd, nfe = exact_output(LINEAR, "heun", 20, mean=MU, std=S)
    assert nfe == 39  # two calls a step, one at the last
    # the map is affine: the same k, c on every x_T (float32 rounding)
    torch.testing.assert_close(out, m + sd * x_T.double(), rtol=0, atol=1e-5)
    # many steps approach the exact ODE solution from the same x_T
    fine = exact_output(LINEAR, "dpmpp_2m", 400, mean=MU, std=S)
    ends = torch.tensor([[0.0], [1.0]])
    exact = exact_ode_output(LINEAR, int(ode_timesteps(LINEAR, 400)[0]), ends, MU, S)
    assert fine.mean == pytest.approx(float(exact[0, 0]), abs=1e-4)
    assert fine.sd == pytest.approx(float(exact[1, 0] - exact[0, 0]), abs=1e-4)


def test_ddpm_goes_through_exact_moments_and_unknown_samplers_are_named():
    assert exact_output(LINEAR, "ddpm", 10, mean=MU, std=S)[:2] == pytest.approx(
        exact_moments(LINEAR, "ddpm", 10, mean=MU, std=S)
    )
    with pytest.raises(ValueError, match="unknown sampler 'naive_strided'"):
        exact_output(LINEAR, "naive_strided", 10, mean=MU, std=S)


def test_w2_and_fitted_order():
    assert gaussian_w2(0.0, 1.0, 0.3, 1.4) == pytest.approx(0.5)
    nfe = np.array([10, 20, 40, 80])
    assert fitted_order(nfe, 3.0 * nfe**-2.0) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="at least two positive"):
        fitted_order([10, 20], [0.1, 0.0])


def test_zero_terminal_snr_rescale():
    a_bar = cosine_schedule(1000).alphas_cumprod_f64
    rescaled = rescale_zero_terminal_snr(a_bar)
    assert rescaled[-1] == 0.0 and rescaled[0] == pytest.approx(a_bar[0], rel=1e-12)
    assert np.all(np.diff(rescaled) < 0)


def test_call_counter_counts_and_keeps_the_null_label():
    counted = CallCounter(GaussianOracle(LINEAR, MU, S))
    sample(counted, LINEAR, (3, 1), sampler="ddim", steps=7, seed=0, progress=False)
    assert counted.calls == 7 and counted.null_label is None


def test_hub_check_is_fast_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    assert hub_reachable() is False
    assert time.perf_counter() - start < 0.1
    monkeypatch.delenv("HF_HUB_OFFLINE")
    start = time.perf_counter()
    assert hub_reachable("unreachable.invalid", timeout=0.5) is False
    assert time.perf_counter() - start < 1.5
