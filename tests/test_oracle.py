"""Oracle models and exact sampler moments, checked against autograd and Monte Carlo.

Every Monte Carlo check compares against an exact value with a tolerance of
4 standard errors, so a failure means a real disagreement (or a 1-in-15,000
fluke: the seeds are fixed, so the tests are deterministic anyway).

The pinned tables print with ``.venv/bin/python tests/test_oracle.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diffusion_lib.exact.oracle import (
    GaussianMixtureOracle,
    GaussianOracle,
    analytic_variance,
    eight_gaussians,
    exact_moments,
    moons_mixture,
)
from diffusion_lib.sampling import sample
from diffusion_lib.sampling.guidance import make_eps_fn
from diffusion_lib.sampling.registry import applicable_options
from diffusion_lib.schedule import cosine_schedule, linear_schedule

F64 = torch.float64
SE_TOL = 4.0


@pytest.fixture(scope="module")
def linear():
    return linear_schedule()


@pytest.fixture(scope="module")
def cosine():
    return cosine_schedule()


def _scaled_score(log_prob, x: torch.Tensor, a_bar: float) -> torch.Tensor:
    """−√(1 − ᾱ) ∇ₓ log p_t(x), by autograd, in float64."""
    x = x.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(log_prob(x).sum(), x)
    return -math.sqrt(1 - a_bar) * grad


def _mc_check(x: torch.Tensor, mean: float, sd: float, what: str) -> None:
    """The sample mean and sd of x (flattened, iid) within SE_TOL standard errors."""
    x = x.double().flatten()
    n = x.numel()
    se_mean, se_sd = sd / math.sqrt(n), sd / math.sqrt(2 * (n - 1))
    z_mean = (float(x.mean()) - mean) / se_mean
    z_sd = (float(x.std()) - sd) / se_sd
    assert abs(z_mean) < SE_TOL and abs(z_sd) < SE_TOL, (
        f"{what}: MC mean {float(x.mean()):.5f} sd {float(x.std()):.5f} vs exact "
        f"{mean:.5f} / {sd:.5f} (z = {z_mean:.2f}, {z_sd:.2f}, n = {n})"
    )


# ------------------------------------------------------------- ε̂ = scaled score
@pytest.mark.parametrize("t", [0, 1, 37, 250, 600, 999])
def test_gaussian_eps_is_the_scaled_score(linear, t):
    g = torch.Generator().manual_seed(t)
    mean = torch.randn(1, 4, 4, generator=g, dtype=F64) * 0.5
    std = torch.rand(1, 4, 4, generator=g, dtype=F64) * 0.5 + 0.05
    oracle = GaussianOracle(linear, mean, std)
    x = torch.randn(6, 1, 4, 4, generator=g, dtype=F64) * 1.5
    t_batch = torch.full((6,), t)
    eps = oracle(x, t_batch)
    a_bar = float(linear.alphas_cumprod_f64[t])
    expected = _scaled_score(lambda z: oracle.log_prob(z, t_batch), x, a_bar)
    assert eps.dtype == F64 and eps.shape == x.shape
    torch.testing.assert_close(eps, expected, rtol=1e-10, atol=1e-12)
    # x̂0 from ε̂ is Tweedie's E[x0 | x_t]
    x0_mean, _ = oracle.posterior_x0(x, t)
    x0_from_eps = (x - math.sqrt(1 - a_bar) * eps) / math.sqrt(a_bar)
    torch.testing.assert_close(x0_from_eps, x0_mean, rtol=1e-9, atol=1e-9)
    assert oracle(x.float(), t_batch).dtype == torch.float32


def test_gaussian_log_prob_is_the_normal_density(linear):
    oracle = GaussianOracle(linear, 0.3, 0.2)
    x = torch.linspace(-2, 2, 9, dtype=F64)[:, None]
    a = float(linear.alphas_cumprod_f64[400])
    normal = torch.distributions.Normal(math.sqrt(a) * 0.3, math.sqrt(a * 0.04 + 1 - a))
    torch.testing.assert_close(oracle.log_prob(x, 400), normal.log_prob(x[:, 0]))
    data = torch.distributions.Normal(torch.tensor(0.3, dtype=F64), torch.tensor(0.2, dtype=F64))
    torch.testing.assert_close(oracle.log_prob(x), data.log_prob(x[:, 0]))


def _random_mixture(schedule, seed: int, dim: int = 3) -> GaussianMixtureOracle:
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(5, dim, generator=g, dtype=F64) * 0.6
    stds = torch.rand(5, dim, generator=g, dtype=F64) * 0.3 + 0.02  # diagonal
    weights = torch.rand(5, generator=g, dtype=F64) + 0.1
    return GaussianMixtureOracle(schedule, means, stds, weights, classes=[0, 1, 0, 2, 1])


@pytest.mark.parametrize("t", [0, 5, 120, 500, 999])
def test_mixture_eps_is_the_scaled_score(linear, cosine, t):
    for schedule in (linear, cosine):
        a_bar = float(schedule.alphas_cumprod_f64[t])
        for oracle in (_random_mixture(schedule, t), eight_gaussians(schedule)):
            g = torch.Generator().manual_seed(100 + t)
            x = torch.randn(12, oracle.dim, generator=g, dtype=F64)
            t_batch = torch.full((12,), t)
            expected = _scaled_score(lambda z: oracle.log_prob(z, t_batch), x, a_bar)  # noqa: B023
            torch.testing.assert_close(oracle(x, t_batch), expected, rtol=1e-9, atol=1e-11)
            # conditional: labels pick the class; the null label is the whole mixture
            labels = torch.arange(12) % (oracle.num_classes + 1)
            expected = _scaled_score(
                lambda z: oracle.log_prob(z, t_batch, labels=labels),  # noqa: B023
                x,
                a_bar,
            )
            torch.testing.assert_close(oracle(x, t_batch, labels), expected, rtol=1e-9, atol=1e-11)
            null = torch.full((12,), oracle.null_label)
            torch.testing.assert_close(oracle(x, t_batch, null), oracle(x, t_batch))


def test_mixture_eps_is_stable_far_from_the_data(linear):
    oracle = eight_gaussians(linear)
    x = torch.tensor([[40.0, -30.0], [0.0, 0.0], [0.75, 0.0]])
    eps = oracle(x, torch.zeros(3, dtype=torch.long))  # ᾱ ≈ 1: tiny component variances
    assert torch.isfinite(eps).all() and eps.dtype == torch.float32


def test_mixture_density_integrates_to_one(linear):
    oracle = moons_mixture(linear)
    grid = torch.linspace(-3, 3, 301, dtype=F64)
    xx, yy = torch.meshgrid(grid, grid, indexing="ij")
    points = torch.stack([xx.flatten(), yy.flatten()], dim=1)  # (301², 2)
    cell = float(grid[1] - grid[0]) ** 2
    for t in (None, 300):
        assert float(oracle.log_prob(points, t).exp().sum()) * cell == pytest.approx(1, abs=1e-3)
        by_class = oracle.class_log_posterior(points, t).exp()  # (N, 2)
        torch.testing.assert_close(by_class.sum(dim=1), torch.ones(len(points), dtype=F64))


def test_classifier_free_guidance_is_the_score_of_the_guided_target(linear):
    oracle = eight_gaussians(linear)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(10, 2, generator=g, dtype=F64) * 0.8
    labels = torch.arange(10) % 8
    for t, w in [(50, 3.0), (400, 0.0), (800, 7.5)]:
        t_batch = torch.full((10,), t)
        a_bar = float(linear.alphas_cumprod_f64[t])
        guided = make_eps_fn(oracle, labels, w)(x, t_batch)
        for i in range(10):
            expected = _scaled_score(
                lambda z: oracle.guided_log_prob(z, int(labels[i]), w, t),  # noqa: B023
                x[i : i + 1],
                a_bar,
            )
            torch.testing.assert_close(guided[i : i + 1], expected, rtol=1e-9, atol=1e-11)


# ----------------------------------------------------------- exact data draws
def test_sample_data_is_exact(linear):
    g = torch.Generator().manual_seed(1)
    gauss = GaussianOracle(linear, torch.tensor([[0.3, -0.5]]), torch.tensor([[0.2, 0.1]]))
    x = gauss.sample_data(20000, generator=g)
    assert x.shape == (20000, 1, 2)
    _mc_check(x[:, 0, 0], 0.3, 0.2, "data dim 0")
    _mc_check(x[:, 0, 1], -0.5, 0.1, "data dim 1")
    mix = _random_mixture(linear, 3)
    _, k = mix.sample_data_with_components(20000, generator=g)
    counts = torch.bincount(k, minlength=5).double()
    expected = 20000 * mix.weights
    assert float(((counts - expected) ** 2 / expected).sum()) < 18.5  # χ²₄, p = 0.001
    _, k = mix.sample_data_with_components(500, generator=g, labels=1)
    assert set(k.tolist()) <= {1, 4}


def test_factories_match_the_toy_data(linear):
    from diffusion_lib.data import sample_toy
    from diffusion_lib.metrics import differs, oracle_distance

    # the toy data vs the oracle's exact distribution, against the floor of exact draws
    for name, oracle in [("gaussians8", eight_gaussians(linear)), ("moons", moons_mixture(linear))]:
        sw, floor = oracle_distance(sample_toy(name, 4000, seed=0), oracle, n_ref=10_000)
        assert not differs(sw, floor), (name, sw, floor)


# ------------------------------------------------------------- under sample()
def _nearest_component(oracle: GaussianMixtureOracle, x: torch.Tensor) -> torch.Tensor:
    return oracle.component_log_posterior(x).argmax(dim=1)


def test_mixture_oracle_lands_on_the_components_in_proportion(linear):
    means = torch.tensor([[-0.6, 0.0], [0.5, 0.5], [0.4, -0.6]], dtype=F64)
    weights = torch.tensor([0.5, 0.3, 0.2], dtype=F64)
    oracle = GaussianMixtureOracle(linear, means, torch.tensor([0.05, 0.1, 0.08]), weights)
    x = sample(
        oracle,
        linear,
        (4000, 2),
        sampler="ddpm",
        steps=250,
        spacing="trailing",
        variance="beta_tilde",
        x0_mode="none",
        seed=1,
        progress=False,
    )
    k = _nearest_component(oracle, x)
    counts = torch.bincount(k, minlength=3).double()
    chi2 = float(((counts - 4000 * weights) ** 2 / (4000 * weights)).sum())
    assert chi2 < 13.8, (counts.tolist(), chi2)  # χ²₂, p = 0.001
    # and on them, not between them: every point within 5 sd of its centre
    dist = ((x.double() - means[k]) / oracle.stds[k]).norm(dim=1)
    assert float((dist < 5).double().mean()) > 0.999


def test_eight_gaussians_ring_under_ddim(linear):
    oracle = eight_gaussians(linear)
    x = sample(
        oracle,
        linear,
        (2000, 2),
        sampler="ddim",
        steps=100,
        spacing="trailing",
        x0_mode="none",
        seed=2,
        progress=False,
    )
    counts = torch.bincount(_nearest_component(oracle, x), minlength=8).double()
    assert float(((counts - 250) ** 2 / 250).sum()) < 24.3  # χ²₇, p = 0.001
    radius = x.double().norm(dim=1)
    assert abs(float(radius.median()) - 0.75) < 0.02


def test_conditional_labels_land_on_their_components(linear):
    ring = eight_gaussians(linear)
    labels = torch.arange(800) % 8
    x = sample(
        ring,
        linear,
        (800, 2),
        sampler="ddpm",
        steps=250,
        spacing="trailing",
        x0_mode="none",
        labels=labels,
        seed=3,
        progress=False,
    )
    assert float((_nearest_component(ring, x) == labels).double().mean()) > 0.995
    moons = moons_mixture(linear)
    labels = torch.arange(600) % 2
    x = sample(
        moons,
        linear,
        (600, 2),
        sampler="ddim",
        steps=50,
        spacing="trailing",
        x0_mode="none",
        labels=labels,
        guidance_scale=1.0,
        seed=4,
        progress=False,
    )
    assert float((moons.class_log_posterior(x).argmax(dim=1) == labels).double().mean()) > 0.99


def test_guidance_with_the_exact_oracle_sharpens_the_class(linear):
    # two overlapping classes: guidance moves samples to where p(c | x) is high
    pair = GaussianMixtureOracle(linear, [[-0.2, 0.0], [0.2, 0.0]], [0.3, 0.3], classes=[0, 1])
    labels = torch.arange(2000) % 2

    def run(w):
        return sample(
            pair,
            linear,
            (2000, 2),
            sampler="ddim",
            steps=50,
            spacing="trailing",
            x0_mode="none",
            labels=labels,
            guidance_scale=w,
            seed=5,
            progress=False,
        )

    def class_posterior(points):  # p(c | x) of the requested class, (N,)
        return pair.class_log_posterior(points).exp()[torch.arange(2000), labels]

    plain, guided = run(1.0), run(4.0)
    # w = 1 is the conditional model: p(c | x) averages E_{p(x|c)} p(c | x) (exact by MC)
    draws = pair.sample_data(
        20000, torch.Generator().manual_seed(0), labels=torch.arange(20000) % 2
    )
    exact = pair.class_log_posterior(draws).exp()[torch.arange(20000), torch.arange(20000) % 2]
    assert abs(float(class_posterior(plain).mean()) - float(exact.mean())) < 0.02
    assert float(class_posterior(guided).mean()) > float(class_posterior(plain).mean()) + 0.1
    # and the guided samples sit where the guided target p(x) p(c | x)^w is higher
    target_guided = pair.guided_log_prob(guided[labels == 0], 0, 4.0)
    target_plain = pair.guided_log_prob(plain[labels == 0], 0, 4.0)
    assert float(target_guided.mean()) > float(target_plain.mean())


def test_oracle_rejects_timesteps_its_schedule_lacks(linear):
    oracle = GaussianOracle(linear.respace([0, 500, 999]), 0.0, 0.5)
    assert torch.isfinite(oracle(torch.zeros(2, 1), torch.tensor([500, 999]))).all()
    with pytest.raises(ValueError, match="does not contain"):
        oracle(torch.zeros(2, 1), torch.tensor([500, 501]))
    with pytest.raises(ValueError, match="unconditional"):
        oracle(torch.zeros(2, 1), torch.tensor([0, 0]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="classes"):
        GaussianMixtureOracle(linear, [[0.0, 0.0], [1.0, 1.0]], [0.1, 0.1], classes=[0, 2])


# ------------------------------------------------ exact moments vs Monte Carlo
# One smoke test per sampler kind, at <= 100 steps: sample() draws what exact_moments
# says. exact_moments itself is checked for every sampler, step count and spacing
# against an independent recursion, deterministically (tests/test_sampling.py).
MC_CASES = [
    ("ddpm", 25, "trailing", "beta_tilde", 0.0),
    ("ddim", 50, "linspace", "beta", 0.5),
    ("naive_strided", 10, "leading", "beta", 0.0),
]


@pytest.mark.parametrize(("sampler", "steps", "spacing", "variance", "eta"), MC_CASES)
def test_exact_moments_match_monte_carlo(linear, cosine, sampler, steps, spacing, variance, eta):
    for schedule in (linear, cosine):
        m, sd = exact_moments(
            schedule,
            sampler,
            steps=steps,
            spacing=spacing,
            variance=variance,
            eta=eta,
            mean=0.3,
            std=0.2,
        )
        oracle = GaussianOracle(schedule, 0.3, 0.2)
        # 625 × 32 = 20,000 independent scalars (the dimensions do not interact)
        options = applicable_options(
            sampler, dict(spacing=spacing, variance=variance, eta=eta, x0_mode="none")
        )
        x = sample(
            oracle,
            schedule,
            (625, 32),
            sampler=sampler,
            steps=steps,
            seed=7,
            progress=False,
            **options,
        )
        _mc_check(x, m, sd, f"{sampler} {steps} {spacing} {variance} η={eta}")


def test_ddim_eta_one_is_ddpm_beta_tilde(linear):
    for steps in (10, 100, None):
        ddim = exact_moments(linear, "ddim", steps=steps, eta=1.0, std=0.3, mean=0.1)
        ddpm = exact_moments(linear, "ddpm", steps=steps, variance="beta_tilde", std=0.3, mean=0.1)
        assert ddim == pytest.approx(ddpm, rel=1e-12)


def test_ddpm_1000_reproduces_the_data(linear):
    # σ² = β: all 1000 steps end within 1 % of the data sd (0.8 % at sd 0.1, 0.15 % at 0.5)
    # and at its mean; σ² = β̃ ends low (1.9 % at sd 0.2). Exact, so no DDPM-1000 sampling:
    # sample() is checked against exact_moments by Monte Carlo above, at ≤ 100 steps.
    mean, std = np.array([-0.3, 0.0, 0.2, 0.5]), np.array([0.1, 0.2, 0.3, 0.5])
    m, sd = exact_moments(
        linear, "ddpm", steps=1000, spacing="leading", variance="beta", mean=mean, std=std
    )
    np.testing.assert_allclose(m, mean, rtol=0, atol=1e-5)
    assert np.all(np.abs(sd / std - 1) < 0.01), sd / std
    _, sd_tilde = exact_moments(
        linear, "ddpm", steps=1000, spacing="leading", variance="beta_tilde", mean=mean, std=std
    )
    assert np.all(sd_tilde < std)


def test_exact_moments_broadcast_and_reject(linear):
    m, sd = exact_moments(linear, "ddim", steps=10, mean=np.array([0.0, 0.5]), std=0.2)
    assert m.shape == sd.shape == (2,) and sd[0] == pytest.approx(sd[1])
    with pytest.raises(ValueError, match="sampler"):
        exact_moments(linear, "euler")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="eta"):
        exact_moments(linear, "ddpm", eta=0.5)
    with pytest.raises(ValueError, match="analytic"):
        exact_moments(linear, "ddim", variance="analytic")


# --------------------------------------------------------------- pinned lessons
NAIVE_SD_02 = {10: 0.0890022, 100: 0.1304639, 1000: 0.1390800}
"""Naive strided sampler, linear schedule, data N(0, 0.2²): output sd by step count."""


def test_naive_strided_does_not_converge(linear):
    sds = {n: exact_moments(linear, "naive_strided", steps=n, std=0.2)[1] for n in NAIVE_SD_02}
    assert sds == pytest.approx(NAIVE_SD_02, abs=5e-7)
    # all 1000 steps: 0.139, about 0.2/√2, and N(0, 1) ends at 0.70 (≈ 1/√2)
    assert exact_moments(linear, "naive_strided", std=1.0)[1] == pytest.approx(0.702597, abs=1e-6)
    # DDPM and DDIM converge to the data sd; their error shrinks with every step count
    for sampler, variance in [("ddpm", "beta"), ("ddpm", "beta_tilde"), ("ddim", "beta")]:
        errors = [
            abs(
                exact_moments(
                    linear,
                    sampler,
                    steps=n,
                    spacing="leading",  # type: ignore
                    variance=variance,
                    std=0.2,
                )[1]
                - 0.2
            )
            for n in (10, 25, 50, 100, 250, 1000)
        ]
        assert errors == sorted(errors, reverse=True) and errors[-1] < 0.004, (sampler, errors)


BETA_VS_BETA_TILDE = {
    # (data sd, steps): (sd with σ² = β, sd with σ² = β̃); linear schedule, leading spacing
    (0.2, 10): (0.3576, 0.0935),
    (0.2, 25): (0.2518, 0.1375),
    (0.2, 50): (0.2247, 0.1591),
    (0.2, 100): (0.2119, 0.1748),
    (1.0, 10): (0.9999, 0.7404),
    (1.0, 25): (0.9999, 0.8682),
    (1.0, 50): (0.9999, 0.9260),
    (1.0, 100): (0.9999, 0.9600),
}


def beta_vs_beta_tilde_table(schedule, spacing: str = "leading") -> dict:
    """{(sd, steps): (sd out with β, sd out with β̃)} for the keys of BETA_VS_BETA_TILDE."""
    return {
        (sd, n): tuple(
            exact_moments(
                schedule,
                "ddpm",
                steps=n,
                spacing=spacing,  # type: ignore[arg-type]
                variance=v,
                std=sd,
            )[1]
            for v in ("beta", "beta_tilde")
        )
        for sd, n in BETA_VS_BETA_TILDE
    }


def _beta_tilde_closer(schedule, sd: float, steps: int) -> bool:
    b, bt = (
        exact_moments(schedule, "ddpm", steps=steps, spacing="leading", variance=v, std=sd)[1]
        for v in ("beta", "beta_tilde")
    )
    return abs(bt - sd) < abs(b - sd)


def test_beta_vs_beta_tilde_table_and_where_the_ranking_flips(linear):
    table = beta_vs_beta_tilde_table(linear)
    for key, pinned in BETA_VS_BETA_TILDE.items():
        assert table[key] == pytest.approx(pinned, abs=5e-5), key
    # β̃ under-disperses, β over-disperses (it is exact only for unit-variance data)
    assert all(bt < sd < b + 1e-4 for (sd, _), (b, bt) in table.items())
    # data sd 0.2: β̃ is closer up to 17 steps, β from 18 on
    assert _beta_tilde_closer(linear, 0.2, 10) and _beta_tilde_closer(linear, 0.2, 17)
    assert not _beta_tilde_closer(linear, 0.2, 18) and not _beta_tilde_closer(linear, 0.2, 25)
    # 10 steps: β̃ is closer below data sd 0.2910, β above; β always for sd 1
    assert _beta_tilde_closer(linear, 0.2905, 10) and not _beta_tilde_closer(linear, 0.2915, 10)
    assert not any(_beta_tilde_closer(linear, 1.0, n) for n in (2, 10, 25, 50, 100))


def test_beta_vs_beta_tilde_flips_earlier_on_the_cosine_schedule(cosine):
    # data sd 0.2: β̃ is closer up to 8 steps, β from 9; at 10 steps the flip is at sd 0.1823
    assert _beta_tilde_closer(cosine, 0.2, 8) and not _beta_tilde_closer(cosine, 0.2, 9)
    assert _beta_tilde_closer(cosine, 0.182, 10) and not _beta_tilde_closer(cosine, 0.183, 10)


def test_analytic_dpm_variance_is_exact_at_every_step_count(linear, cosine):
    for schedule in (linear, cosine):
        for sd in (0.2, 0.5, 1.0):
            for steps in (1, 2, 10, 50, 1000):
                # trailing spacing starts at T − 1, where x_T ~ N(0, 1) is (nearly) the marginal
                m, out = exact_moments(
                    schedule,
                    "ddpm",
                    steps=steps,
                    spacing="trailing",
                    variance="analytic",
                    mean=0.3,
                    std=sd,
                )
                assert out == pytest.approx(sd, abs=1e-5) and m == pytest.approx(0.3, abs=2e-5)
            # leading-2 starts at t = 500, where x_T ~ N(0, 1) is the wrong start
            m, _ = exact_moments(
                schedule, "ddpm", steps=2, spacing="leading", variance="analytic", mean=0.3, std=sd
            )
            assert abs(m - 0.3) > 1e-3
            # Bao et al. 2022: β̃ ≤ σ*² ≤ β when the data sd is at most 1
            sigma2 = analytic_variance(schedule, sd, steps=10, spacing="leading")
            a_bar = schedule.respace(np.arange(10) * 100).alphas_cumprod_f64
            a_prev = np.append(1.0, a_bar[:-1])
            beta = 1 - a_bar / a_prev
            beta_tilde = beta * (1 - a_prev) / (1 - a_bar)
            assert np.all(sigma2 >= beta_tilde) and np.all(sigma2 <= beta + 1e-12)


if __name__ == "__main__":
    # prints the pinned tables (run: .venv/bin/python tests/test_oracle.py)
    sched = linear_schedule()
    for n in (10, 100, 1000):
        print(
            f"naive strided, data sd 0.2, {n:4d} steps: sd {NAIVE_SD_02[n]:.7f} (pinned), "
            f"{exact_moments(sched, 'naive_strided', steps=n, std=0.2)[1]:.7f} (now)"
        )
    print("data sd  steps   sd(β)    sd(β̃)   closer")
    for (sd, n), (b, bt) in beta_vs_beta_tilde_table(sched).items():
        print(f"{sd:7.1f} {n:6d} {b:8.4f} {bt:8.4f}   {'β' if abs(b - sd) < abs(bt - sd) else 'β̃'}")
