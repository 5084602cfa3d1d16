"""exact_moments(last_step_noise=...): Analytic-DPM on the footing of β and β̃.

The numbers are the ones notebook 02 (section 7) prints and quotes.
"""

import numpy as np
import pytest

from diffusion_lib import linear_schedule, sample
from diffusion_lib.exact.oracle import GaussianOracle, analytic_variance, exact_moments

STEPS = (10, 25, 50, 100)
# data sd 0.2, linear schedule, trailing spacing, no noise at the last step
ANALYTIC_NO_LAST = {10: 0.1017, 25: 0.1637, 50: 0.1869, 100: 0.1954}
BETA = {10: 0.1553, 25: 0.2100, 50: 0.2117, 100: 0.2076}


@pytest.fixture(scope="module")
def linear():
    return linear_schedule()


def _sd(schedule, variance, steps, last=None, spacing="trailing", std=0.2):
    return exact_moments(
        schedule,
        "ddpm",
        steps=steps,
        spacing=spacing,
        variance=variance,
        std=std,
        last_step_noise=last,
    )[1]


def test_default_is_each_variance_own_convention(linear):
    for steps in STEPS:
        assert _sd(linear, "beta", steps) == _sd(linear, "beta", steps, last=False)
        assert _sd(linear, "beta_tilde", steps) == _sd(linear, "beta_tilde", steps, last=False)
        assert _sd(linear, "analytic", steps) == _sd(linear, "analytic", steps, last=True)


def test_analytic_without_last_step_noise_pinned(linear):
    for steps in STEPS:
        assert _sd(linear, "analytic", steps, last=False) == pytest.approx(
            ANALYTIC_NO_LAST[steps], abs=5e-5
        )
        assert _sd(linear, "beta", steps) == pytest.approx(BETA[steps], abs=5e-5)
        assert _sd(linear, "analytic", steps) == pytest.approx(0.2, abs=1e-5)
    # worse than β at 10–25 trailing steps, better at 100
    assert _sd(linear, "analytic", 25, last=False) < 0.2 - abs(BETA[25] - 0.2)
    assert abs(ANALYTIC_NO_LAST[100] - 0.2) < abs(BETA[100] - 0.2)
    # with leading spacing the last step is t = 0 → x_0: its noise barely matters
    assert _sd(linear, "analytic", 10, last=False, spacing="leading") == pytest.approx(
        0.2, abs=5e-4
    )


def test_last_step_variance_is_var_x0_given_x_t1(linear):
    # σ*² at the last step is coef1² Var[x_0 | x_t] with coef1 = 1, β̃ = 0: added in
    # quadrature to the no-noise output it gives the exact sd
    sigma2 = analytic_variance(linear, 0.2, steps=10)
    sd_no_last = _sd(linear, "analytic", 10, last=False)
    assert np.sqrt(sd_no_last**2 + sigma2[0]) == pytest.approx(0.2, abs=1e-6)
    # β̃ is 0 at the last step, so the flag changes nothing for it
    assert _sd(linear, "beta_tilde", 10, last=True) == _sd(linear, "beta_tilde", 10)


def test_last_step_noise_matches_sample_for_beta(linear):
    # sample() adds no noise at the last step: its sd is that of last_step_noise=False
    oracle = GaussianOracle(linear, mean=0.0, std=0.2)
    x = sample(
        oracle,
        linear,
        (40_000, 1),
        steps=10,
        variance="beta",
        x0_mode="none",
        seed=0,
        progress=False,
    )
    assert x.std().item() == pytest.approx(_sd(linear, "beta", 10, last=False), abs=0.004)
    assert abs(x.std().item() - _sd(linear, "beta", 10, last=True)) > 0.1


def test_last_step_noise_is_ddpm_only(linear):
    with pytest.raises(ValueError, match="last_step_noise"):
        exact_moments(linear, "ddim", steps=10, last_step_noise=False)
