"""Guided ODE and SDE samplers have different limits (exact ε̂ of the 8-Gaussian ring), and
the committed table (benchmarks/guided_limits.py) says so beyond its noise floor."""

from __future__ import annotations

import math

import pytest
import torch

from diffusion_lib import sample
from diffusion_lib.bench.tables import read_results
from diffusion_lib.exact.guided import (
    angular_offset,
    angular_sd,
    class_direction,
    class_posterior,
    guided_stats,
)
from diffusion_lib.exact.oracle import eight_gaussians
from diffusion_lib.metrics.toy import sliced_wasserstein
from diffusion_lib.schedule import linear_schedule

N = 1000


@pytest.fixture(scope="module")
def ring():
    return eight_gaussians(linear_schedule(1000), std=0.2)


def _run(ring, sampler, w, first_seed):
    return sample(
        ring,
        linear_schedule(1000),
        (N, 2),
        sampler=sampler,
        steps=200,
        x0_mode="none",
        labels=0,
        guidance_scale=w,
        seeds=range(first_seed, first_seed + N),
        progress=False,
    )


def test_angles_wrap_and_classes_point_their_way(ring):
    assert [round(class_direction(ring, k), 6) for k in (0, 2, 4)] == [
        0.0,
        round(math.pi / 2, 6),
        round(math.pi, 6),
    ]
    # from the +y axis: (0, 1) → 0, (1, 0) → −π/2, (−1, −0.01) → −3π/2 + 0.01 wrapped to π/2 + 0.01
    x = torch.tensor([[0.0, 1.0], [1.0, 0.0], [-1.0, -0.01]], dtype=torch.float64)
    expected = torch.tensor([0.0, -math.pi / 2, math.pi / 2 + math.atan(0.01)], dtype=torch.float64)
    assert torch.allclose(angular_offset(x, math.pi / 2), expected, atol=1e-12)
    assert abs(angular_sd(x[:2], math.pi / 2) - math.pi / 2 / math.sqrt(2)) < 1e-12
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        angular_sd(torch.zeros(3, 3), 0.0)


def test_exact_draws_of_the_class_score_their_known_statistics(ring):
    draws = ring.sample_data(20_000, torch.Generator().manual_seed(0), labels=0)
    stats = guided_stats(ring, draws, 0)
    assert abs(stats["angular_sd"] - 0.27) < 0.03  # about sd/radius for a 0.2 blob at 0.75
    assert abs(stats["radius"] - 0.78) < 0.02
    posterior = class_posterior(ring, draws, 0)
    assert posterior.shape == (20_000,) and 0.5 < float(posterior.mean()) < 0.95


def test_guided_ode_and_sde_agree_at_w_1_and_part_at_w_4(ring):
    """Fixed seeds, disjoint per run. The margins are many standard errors at n = 1000:
    angular sd's SE is about 0.01 at w = 1 and 0.003 at w = 4, SW₂'s finite-n floor ≈ 0.04."""
    stats, sw = {}, {}
    for w, base in ((1.0, 0), (4.0, 10_000)):
        sde = _run(ring, "ddpm", w, base)
        ode = _run(ring, "ddim", w, base + 5_000)
        stats[w] = (guided_stats(ring, sde, 0), guided_stats(ring, ode, 0))
        sw[w] = sliced_wasserstein(sde, ode, 512)
    (sde1, ode1), (sde4, ode4) = stats[1.0], stats[4.0]
    assert abs(ode1["angular_sd"] / sde1["angular_sd"] - 1) < 0.15
    assert abs(ode1["p_class"] - sde1["p_class"]) < 0.05
    assert sw[1.0] < 0.08
    # w = 4: the ODE's samples are far narrower in angle and more confidently class 0
    assert ode4["angular_sd"] < 0.6 * sde4["angular_sd"]
    assert ode4["p_class"] > sde4["p_class"] + 0.015
    assert sw[4.0] > 0.12


def test_the_committed_table_shows_the_gap_beyond_its_floor():
    payload = read_results("guided_limits")
    assert payload is not None, "run benchmarks/guided_limits.py --publish"
    rows = {(r["w"], r["key"]): r for r in payload["rows"]}
    floor4, ddim4, ddim250 = rows[4.0, "floor"], rows[4.0, "ddim-1000"], rows[4.0, "ddim-250"]
    assert ddim4["sw2"] - ddim4["sw2_hw"] > floor4["sw2"] + floor4["sw2_hw"]
    assert ddim4["excess"] - ddim4["excess_hw"] > 0
    # converged: 4× the steps move SW₂ by under a tenth of the gap
    assert abs(ddim250["sw2"] - ddim4["sw2"]) < 0.1 * ddim4["excess"]
    # w = 1: the ODE is within the floor
    ddim1 = rows[1.0, "ddim-1000"]
    assert ddim1["excess"] - ddim1["excess_hw"] <= 0
    assert len(payload["seeds"]) >= 3 and payload["n"] >= 1000
