"""Quality metrics against closed forms, a reference implementation and real data."""

from __future__ import annotations

import json
import math

import pytest
import torch

from diffusion_lib.data import load_digits_split, sample_toy
from diffusion_lib.metrics import (
    class_accuracy,
    classifier_features,
    digits_fd,
    digits_quality,
    diversity,
    evaluate_digits,
    evaluate_toy,
    frechet_distance,
    frechet_distance_from_features,
    gaussian_stats,
    heldout_halves,
    load_classifier,
    random_shift,
    sliced_wasserstein,
    toy_quality,
)
from diffusion_lib.pretrained import WEIGHTS_DIR, load_pretrained


def _random_spd(dim: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(dim, dim, generator=g, dtype=torch.float64)
    return a @ a.T / dim + 0.1 * torch.eye(dim, dtype=torch.float64)


@pytest.fixture(scope="module")
def classifier():
    return load_classifier()


def test_fd_of_identical_gaussians_is_zero():
    sigma = _random_spd(16, 0)
    mu = torch.randn(16, dtype=torch.float64)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-8)


def test_fd_closed_form_in_one_dimension():
    # W₂²(N(m1, s1²), N(m2, s2²)) = (m1 − m2)² + (s1 − s2)²
    m1, s1, m2, s2 = 0.3, 1.5, -1.2, 0.4
    f64 = torch.float64
    fd = frechet_distance(torch.tensor([m1], dtype=f64), torch.tensor([[s1**2]], dtype=f64),
                          torch.tensor([m2], dtype=f64), torch.tensor([[s2**2]], dtype=f64))
    assert fd == pytest.approx((m1 - m2) ** 2 + (s1 - s2) ** 2, rel=1e-10)


def test_fd_commuting_covariances_closed_form():
    a = torch.tensor([0.5, 2.0, 3.0], dtype=torch.float64)
    b = torch.tensor([1.0, 0.1, 3.0], dtype=torch.float64)
    fd = frechet_distance(torch.zeros(3), torch.diag(a), torch.zeros(3), torch.diag(b))
    assert fd == pytest.approx(float(((a.sqrt() - b.sqrt()) ** 2).sum()), rel=1e-10)


def test_fd_matches_scipy_sqrtm_reference():
    linalg = pytest.importorskip("scipy.linalg")
    s1, s2 = _random_spd(12, 1), _random_spd(12, 2)
    mu1, mu2 = torch.randn(12, dtype=torch.float64), torch.randn(12, dtype=torch.float64)
    covmean = linalg.sqrtm(s1.numpy() @ s2.numpy()).real
    reference = float(((mu1 - mu2) ** 2).sum() + torch.trace(s1) + torch.trace(s2)
                      - 2 * covmean.trace())
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(reference, rel=1e-8)


def test_fd_of_shifted_features_is_the_squared_shift():
    f = torch.randn(500, 5, dtype=torch.float64)
    shift = torch.tensor([1.0, -2.0, 0.0, 0.5, 0.0], dtype=torch.float64)
    assert frechet_distance_from_features(f, f + shift) == pytest.approx(5.25, rel=1e-8)
    _, sigma = gaussian_stats(f)
    assert torch.allclose(sigma, torch.cov(f.T))


def test_fd_rejects_bad_shapes():
    with pytest.raises(ValueError, match="covariances"):
        frechet_distance(torch.zeros(2), torch.eye(3), torch.zeros(2), torch.eye(2))


def test_sliced_wasserstein_closed_forms():
    x = sample_toy("moons", 400, seed=0)
    assert sliced_wasserstein(x, x) == pytest.approx(0.0, abs=1e-12)
    # a shift c moves every projection by θ·c, so SW₂² = mean_θ (θ·c)² = ‖c‖²/2
    c = torch.tensor([0.3, -0.4])
    assert sliced_wasserstein(x, x + c) == pytest.approx(0.5 / math.sqrt(2), rel=1e-6)
    # unequal sizes: a set against itself repeated is (nearly) the same distribution
    assert sliced_wasserstein(x, torch.cat([x, x])) < 0.02
    with pytest.raises(ValueError, match="same D"):
        sliced_wasserstein(x, torch.zeros(4, 3))


def test_diversity_reference():
    images = torch.tensor([[0.0, 0.0], [3.0, 4.0], [1.0, 1.0], [1.0, 1.0], [7.0, 7.0]])
    labels = torch.tensor([0, 0, 1, 1, 2])  # class 2 has one sample and is skipped
    assert diversity(images, labels) == pytest.approx((5.0 + 0.0) / 2)


def test_random_shift_moves_pixels_and_fills_background():
    x = torch.full((64, 1, 8, 8), -1.0)
    x[:, :, 3, 4] = 1.0
    shifted = random_shift(x, 1, torch.Generator().manual_seed(0))
    where = (shifted == 1.0).nonzero()[:, 2:]
    assert ((where - torch.tensor([3, 4])).abs() <= 1).all()
    assert (shifted == 1.0).sum() == 64 and len({tuple(w.tolist()) for w in where}) > 1


def test_classifier_heldout_accuracy(classifier):
    split = load_digits_split()
    acc = class_accuracy(classifier, split.heldout_images, split.heldout_labels)
    assert acc >= 0.95
    info = json.loads((WEIGHTS_DIR / "classifier.json").read_text())
    assert info["results"]["heldout_accuracy"] == pytest.approx(acc, abs=1e-6)


def test_digits_quality_real_vs_noise(classifier):
    split = load_digits_split()
    real = digits_quality(split.train_images[:300], split.train_labels[:300], classifier)
    assert real.accuracy >= 0.97
    # train digits are not held-out-like to a classifier fit on them: ≈ 1.9× the floor
    assert real.fd_ratio < 2.5
    assert 0.5 < real.diversity / real.diversity_real < 1.5
    noise = torch.rand(300, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    bad = digits_quality(noise, None, classifier)
    assert bad.accuracy is None and bad.fd_ratio > 10
    with pytest.raises(ValueError, match=r"\(N, 1, 8, 8\)"):
        digits_quality(torch.zeros(3, 64), None, classifier)


def test_heldout_halves_are_disjoint_stratified_and_complete():
    labels = load_digits_split().heldout_labels
    halves = heldout_halves(splits=3, seed=0)
    assert len(halves) == 3 and not torch.equal(halves[0][0], halves[1][0])
    for a, b in halves:
        assert len(a) == 178 and len(b) == 182
        assert sorted(torch.cat([a, b]).tolist()) == list(range(360))
        diff = torch.bincount(labels[b], minlength=10) - torch.bincount(labels[a], minlength=10)
        assert diff.min() >= 0 and diff.max() <= 1


def test_fd_floor_is_two_heldout_halves(classifier):
    a, b = heldout_halves(splits=1, seed=5)[0]
    heldout = load_digits_split().heldout_images
    features = classifier_features(classifier, heldout)
    _, floor = digits_fd(classifier, heldout[:10], splits=1, seed=5)
    assert floor == pytest.approx(
        frechet_distance_from_features(features[a[:10]], features[b]), rel=1e-9
    )


def test_toy_quality_real_vs_shifted():
    real = toy_quality(sample_toy("moons", 500, seed=123), "moons")
    assert real.sw_ratio < 2.0
    shifted = toy_quality(sample_toy("moons", 500, seed=123) + 0.3, "moons")
    assert shifted.sw_ratio > 5.0


def test_evaluate_on_a_small_sample_of_the_shipped_models(classifier):
    model, schedule = load_pretrained("digits")
    report = evaluate_digits(model, schedule, n=20, guidance_scale=3.0, sampler="ddim", steps=10,
                             classifier=classifier, progress=False)
    assert report.n == 20 and 0.0 <= report.accuracy <= 1.0
    assert math.isfinite(report.fd) and report.fd_floor > 0 and sum(report.class_histogram) == 20
    model, schedule = load_pretrained("moons")
    toy = evaluate_toy(model, schedule, "moons", n=64, sampler="ddim", steps=20, progress=False)
    assert math.isfinite(toy.sw) and toy.sw_floor > 0
