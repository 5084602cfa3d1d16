"""Quality metrics against closed forms, a reference implementation and real data."""

from __future__ import annotations

import json
import math

import pytest
import torch

from diffusion_lib.data import load_digits_split, sample_toy
from diffusion_lib.metrics import (
    Estimate,
    bootstrap,
    class_accuracy,
    classifier_features,
    differs,
    digits_matched,
    digits_quality,
    diversity,
    evaluate_toy,
    fit_class_counts,
    frechet_distance,
    frechet_distance_from_features,
    gaussian_stats,
    heldout_halves,
    kid,
    load_classifier,
    matched_real_indices,
    oracle_distance,
    over_seeds,
    polynomial_kernel,
    random_shift,
    sliced_wasserstein,
    stratified_indices,
    toy_quality,
    wilson_interval,
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
    fd = frechet_distance(
        torch.tensor([m1], dtype=f64),
        torch.tensor([[s1**2]], dtype=f64),
        torch.tensor([m2], dtype=f64),
        torch.tensor([[s2**2]], dtype=f64),
    )
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
    reference = float(
        ((mu1 - mu2) ** 2).sum() + torch.trace(s1) + torch.trace(s2) - 2 * covmean.trace()
    )
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
    # real digits score about the floor at their own class counts, even the classifier's
    # train digits (0.98×; MODELS.md quotes it); uniform noise scores 42×
    assert 0.9 < real.fd_ratio < 1.1
    assert 0.5 < real.diversity / real.diversity_real < 1.5
    noise = torch.rand(300, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    bad = digits_quality(noise, None, classifier)
    assert bad.accuracy is None and 40 < bad.fd_ratio < 45
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
    # the floor: a subset of half A with the samples' class counts against half B
    split = load_digits_split()
    labels = split.heldout_labels[:10]
    features = classifier_features(classifier, split.heldout_images)
    counts = torch.bincount(labels, minlength=10)
    ((a_sub, b, _),) = matched_real_indices(counts, splits=1, seed=5)
    fd = digits_matched(
        classifier, split.heldout_images[:10], labels, metric="fd", splits=1, seed=5
    )
    assert fd.floor.value == pytest.approx(
        frechet_distance_from_features(features[a_sub], features[b]), rel=1e-9
    )


def test_toy_quality_real_vs_shifted():
    real = toy_quality(sample_toy("moons", 500, seed=123), "moons")
    assert real.sw_ratio < 2.0
    shifted = toy_quality(sample_toy("moons", 500, seed=123) + 0.3, "moons")
    assert shifted.sw_ratio > 5.0


def test_evaluate_on_a_small_sample_of_the_shipped_moons_model():
    model, schedule = load_pretrained("moons")
    toy = evaluate_toy(model, schedule, "moons", n=64, sampler="ddim", steps=20, progress=False)
    assert math.isfinite(toy.sw) and toy.sw_floor > 0


# ------------------------------------------------------------ KID and intervals
def _kid_by_loops(x: torch.Tensor, y: torch.Tensor) -> float:
    """The unbiased MMD² written out term by term (the reference)."""

    def k(a, b):
        return (float(a @ b) / len(a) + 1.0) ** 3

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_kid_matches_the_written_out_estimator_and_jackknife():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 3, generator=g, dtype=torch.float64)
    y = torch.randn(9, 3, generator=g, dtype=torch.float64) + 0.4
    est = kid(x, y)
    assert est.value == pytest.approx(_kid_by_loops(x, y), rel=1e-10)
    # the jackknife: recompute with each row left out
    loo_x = [_kid_by_loops(torch.cat([x[:i], x[i + 1 :]]), y) for i in range(7)]
    loo_y = [_kid_by_loops(x, torch.cat([y[:j], y[j + 1 :]])) for j in range(9)]
    var = 6 / 7 * sum((v - sum(loo_x) / 7) ** 2 for v in loo_x) + 8 / 9 * sum(
        (v - sum(loo_y) / 9) ** 2 for v in loo_y
    )
    assert est.se == pytest.approx(math.sqrt(var), rel=1e-9)
    assert polynomial_kernel(x, y).shape == (7, 9)
    with pytest.raises(ValueError, match="same d"):
        kid(x, torch.zeros(5, 4))


def _kid_replicates(n: int, shift: float, reps: int, seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    values, ses = [], []
    for _ in range(reps):
        x = torch.randn(n, 8, generator=g, dtype=torch.float64)
        y = torch.randn(n, 8, generator=g, dtype=torch.float64) + shift
        e = kid(x, y)
        values.append(e.value)
        ses.append(e.se)
    return torch.tensor(values), torch.tensor(ses)


def test_kid_is_unbiased_at_small_n_and_its_se_is_calibrated():
    # same distribution: KID ≈ 0 within its SE, and 0 on average
    g = torch.Generator().manual_seed(1)
    same = kid(torch.randn(150, 8, generator=g), torch.randn(150, 8, generator=g))
    assert abs(same.value) < 2 * same.se
    values, ses = _kid_replicates(20, 0.0, 200, seed=2)
    assert abs(float(values.mean())) < 3 * float(values.std()) / math.sqrt(200)
    # shifted Gaussians: clearly > 0, and the n = 20 mean equals the n = 1000 value
    shifted = kid(torch.randn(150, 8, generator=g), torch.randn(150, 8, generator=g) + 0.5)
    assert shifted.value > 3 * shifted.se
    values, ses = _kid_replicates(20, 0.5, 200, seed=3)
    large = kid(torch.randn(1000, 8, generator=g), torch.randn(1000, 8, generator=g) + 0.5)
    mean_se = float(values.std()) / math.sqrt(200)
    assert abs(float(values.mean()) - large.value) < 3 * math.hypot(mean_se, large.se)
    # the jackknife SE tracks the real spread of the estimate (conservative, not wild)
    assert 0.8 < float(ses.mean()) / float(values.std()) < 1.6


def test_wilson_interval_covers_the_truth_and_never_collapses():
    lo, hi = wilson_interval(300, 300)
    assert 0.98 < lo < 1.0 and hi == pytest.approx(1.0)  # all correct is not "exactly 100 %"
    assert wilson_interval(0, 50)[0] == 0.0 and wilson_interval(0, 50)[1] > 0.0
    # coverage at z = 2: ~95 % of intervals from Binomial(100, 0.9) draws hold 0.9
    g = torch.Generator().manual_seed(0)
    draws = (torch.rand(2000, 100, generator=g) < 0.9).sum(1).tolist()
    cover = sum(lo <= 0.9 <= hi for lo, hi in (wilson_interval(k, 100) for k in draws)) / 2000
    assert 0.93 < cover < 0.99
    with pytest.raises(ValueError, match="successes <= n"):
        wilson_interval(5, 4)


def test_differs_over_seeds_and_bootstrap():
    assert differs(Estimate(1.0, 0.1), Estimate(1.5, 0.1))
    assert not differs(Estimate(1.0, 0.2), Estimate(1.5, 0.2))
    # a normal estimate (df infinite, the default): ± 1.96 SE at 95 %
    assert Estimate(1.0, 0.1).interval() == pytest.approx((1.0 - 0.196, 1.0 + 0.196), abs=1e-4)
    seeds = over_seeds([1.0, 2.0, 3.0])
    assert (seeds.value, seeds.se, seeds.n) == pytest.approx((2.0, 1 / math.sqrt(3), 3))
    # 3 seeds: Student-t with 2 df, ± 4.303 SE at 95 %
    assert seeds.df == 2 and seeds.half_width() == pytest.approx(4.3027 / math.sqrt(3), rel=1e-4)
    assert str(seeds) == f"2 ± {4.3027 / math.sqrt(3):.2g}"
    data = torch.randn(400, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    boot = bootstrap(lambda rows: float(rows.mean()), data, n_boot=300)
    assert boot.value == pytest.approx(float(data.mean()))
    assert boot.se == pytest.approx(float(data.std()) / 20, rel=0.2)


# --------------------------------------------------- floors with the same classes
def test_stratified_indices_and_fitted_counts():
    labels = torch.tensor([0, 1, 1, 2, 2, 2, 0, 1])
    idx = stratified_indices(labels, [1, 2, 3], torch.Generator().manual_seed(0))
    assert torch.bincount(labels[idx], minlength=3).tolist() == [1, 2, 3]
    assert len(set(idx.tolist())) == 6
    with pytest.raises(ValueError, match="class 0"):
        stratified_indices(labels, [3, 0, 0])
    assert fit_class_counts([10, 10, 20], [17, 18, 18]).tolist() == [9, 9, 18]  # × 0.9
    assert fit_class_counts([5, 0, 3], [17, 18, 18]).tolist() == [5, 0, 3]


def test_matched_floor_has_the_samples_class_counts():
    labels = load_digits_split().heldout_labels
    wanted = torch.tensor([6, 6, 6, 6, 6, 5, 5, 5, 5, 0])  # an unbalanced set of 50
    for a_sub, b, counts in matched_real_indices(wanted, splits=3, seed=1):
        assert counts.tolist() == wanted.tolist()
        assert torch.bincount(labels[a_sub], minlength=10).tolist() == wanted.tolist()
        assert not set(a_sub.tolist()) & set(b.tolist())
    # 200 balanced samples do not fit a half (17–18 per class): scaled down, still balanced
    ((a_sub, _, counts),) = matched_real_indices(torch.full((10,), 20), splits=1)
    assert counts.tolist() == [17] * 10
    assert torch.bincount(labels[a_sub], minlength=10).tolist() == [17] * 10


def test_digits_matched_kid_and_fd_with_floors(classifier):
    split = load_digits_split()
    idx = stratified_indices(split.train_labels, [10] * 10, torch.Generator().manual_seed(0))
    real = digits_matched(classifier, split.train_images[idx], split.train_labels[idx], splits=3)
    assert real.n == real.floor.n == 100 and real.value.se > 0 and real.floor.se > 0
    noise = torch.rand(100, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    bad = digits_matched(classifier, noise, split.train_labels[idx], splits=3)
    assert differs(bad.value, bad.floor) and bad.value.value > bad.floor.value
    fd = digits_matched(
        classifier, split.train_images[idx], split.train_labels[idx], metric="fd", splits=3
    )
    assert fd.metric == "fd" and fd.value.value > 0 and fd.floor.value > 0
    with pytest.raises(ValueError, match="metric"):
        digits_matched(classifier, noise, metric="is")


def test_oracle_distance_floor_and_shift():
    from diffusion_lib.exact.oracle import eight_gaussians
    from diffusion_lib.schedule import linear_schedule

    oracle = eight_gaussians(linear_schedule())
    g = torch.Generator().manual_seed(5)
    exact = oracle.sample_data(1500, generator=g)
    sw, floor = oracle_distance(exact, oracle, n_ref=4000, seed=1)
    assert not differs(sw, floor) and sw.n == floor.n == 10
    sw, floor = oracle_distance(exact * 1.15, oracle, n_ref=4000, seed=1)
    assert differs(sw, floor) and sw.value > floor.value
    labels = torch.arange(1500) % 8
    cond = oracle.sample_data(1500, generator=g, labels=labels)
    sw, floor = oracle_distance(cond, oracle, labels, n_ref=4000, seed=2)
    assert not differs(sw, floor)
