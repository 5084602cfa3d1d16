"""diffusion_lib.metrics.per_class: per-class accuracy and diversity with intervals."""

from __future__ import annotations

import math

import pytest
import torch

from diffusion_lib.metrics import Estimate, diversity, load_classifier
from diffusion_lib.metrics.per_class import (
    binomial_estimate,
    mean_estimate,
    per_class_accuracy,
    per_class_diversity,
)


def test_binomial_estimate_is_agresti_coull():
    e = binomial_estimate(20, 20)
    assert e.value == 1.0 and e.n == 20
    assert math.isclose(e.se, math.sqrt(22 / 24 * (2 / 24) / 24))  # > 0 even at 20/20
    assert math.isclose(binomial_estimate(5, 10).se, math.sqrt(0.25 / 14))
    with pytest.raises(ValueError):
        binomial_estimate(3, 2)


def test_per_class_accuracy_on_real_digits():
    from diffusion_lib.data import load_digits_split

    split = load_digits_split()
    images, labels = split.heldout_images[:200], split.heldout_labels[:200]
    acc = per_class_accuracy(load_classifier(), images, labels)
    assert sorted(acc) == list(range(10))
    assert all(e.value > 0.8 and e.se > 0 for e in acc.values())
    wrong = per_class_accuracy(load_classifier(), images, (labels + 1) % 10)
    assert all(e.value < 0.2 for e in wrong.values())


def test_per_class_diversity_matches_metrics_diversity():
    g = torch.Generator().manual_seed(0)
    images = torch.randn(40, 1, 8, 8, generator=g)
    labels = torch.arange(40) % 2
    div = per_class_diversity(images, labels, n_boot=20)
    for c in (0, 1):
        assert math.isclose(div[c].value, diversity(images[labels == c], labels[labels == c]))
        assert div[c].se > 0
    with pytest.raises(ValueError, match="at least 2"):
        per_class_diversity(images[:3], torch.tensor([0, 0, 1]))


def test_mean_estimate():
    m = mean_estimate([Estimate(1.0, 0.3, 5), Estimate(3.0, 0.4, 5)])
    assert m.value == 2.0 and math.isclose(m.se, 0.25) and m.n == 10


def test_agresti_coull_interval_contains_wilsons():
    from diffusion_lib.metrics.estimates import wilson_interval

    for n in (1, 5, 20, 100, 300):
        for k in range(n + 1):
            e = binomial_estimate(k, n)
            centre = (k + 2) / (n + 4)
            low, high = wilson_interval(k, n)
            assert centre - 2 * e.se <= low + 1e-12 and high - 1e-12 <= centre + 2 * e.se
            assert e.se > 0
