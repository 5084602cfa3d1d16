"""The fixed digits split and the 2-D toy distributions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diffusion_lib.data import (
    TOY_SAMPLERS,
    load_digits_split,
    sample_gaussians8,
    sample_moons,
    sample_toy,
)


def test_digits_split_shapes_range_and_pixel_mapping():
    split = load_digits_split()
    assert split.train_images.shape == (1437, 1, 8, 8)
    assert split.heldout_images.shape == (360, 1, 8, 8)
    assert split.train_labels.shape == (1437,) and split.heldout_labels.shape == (360,)
    assert split.train_images.dtype == torch.float32 and split.train_labels.dtype == torch.int64
    for images in (split.train_images, split.heldout_images):
        assert images.min() == -1.0 and images.max() == 1.0
        # x = v / 8 − 1 with integer v in 0…16
        v = (images + 1) * 8
        assert torch.equal(v, v.round()) and v.min() >= 0 and v.max() <= 16


def test_digits_split_is_fixed_disjoint_complete_and_stratified():
    from sklearn.datasets import load_digits

    split = load_digits_split()
    bunch = load_digits()
    everything = torch.cat([split.train_images, split.heldout_images]).reshape(-1, 64)
    reference = torch.from_numpy(bunch.data.astype(np.float32) / 8 - 1)
    # the two parts together are exactly the 1,797 sklearn images (as multisets)
    key = lambda x: sorted(map(tuple, x.tolist()))  # noqa: E731
    assert key(everything) == key(reference)
    counts = torch.bincount(split.heldout_labels, minlength=10)
    assert counts.sum() == 360 and counts.min() >= 34 and counts.max() <= 37
    # the split does not change between calls (it is cached and seeded)
    assert load_digits_split() is split
    first = split.heldout_images[0].flatten()
    assert torch.equal(
        first, reference[int(np.flatnonzero((reference == first).all(dim=1).numpy())[0])]
    )


@pytest.mark.parametrize("name", sorted(TOY_SAMPLERS))
def test_toy_samplers_are_seeded_and_inside_unit_square(name):
    a = sample_toy(name, 5000, seed=3)
    b = sample_toy(name, 5000, seed=3)
    c = sample_toy(name, 5000, seed=4)
    assert a.shape == (5000, 2) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.abs().max() < 1.15  # noise tails only; clipping x̂0 to [−1, 1] is valid
    assert 0.2 < float(a.std(dim=0).mean()) < 0.8  # roughly unit scale
    g = torch.Generator().manual_seed(3)
    assert torch.equal(sample_toy(name, 5000, g), a)


def test_moons_mean_is_centred_closed_form():
    # E[upper] = (0, 2/π), E[lower] = (1, 1/2 − 2/π): the mixture mean (0.5, 0.25)
    # is subtracted, so the mean is 0.
    points = sample_moons(200_000, seed=0)
    assert torch.allclose(points.mean(dim=0), torch.zeros(2), atol=5e-3)


def test_gaussians8_modes_on_the_ring():
    points = sample_gaussians8(20_000, seed=0).double()
    radius = points.norm(dim=1)
    assert abs(float(radius.mean()) - 0.75) < 0.01
    angle = torch.atan2(points[:, 1], points[:, 0]) % (2 * math.pi)
    mode = torch.round(angle / (2 * math.pi / 8)) % 8
    counts = torch.bincount(mode.long(), minlength=8).double() / len(points)
    assert torch.allclose(counts, torch.full((8,), 1 / 8, dtype=torch.float64), atol=0.015)


def test_bad_toy_arguments_raise_value_error():
    with pytest.raises(ValueError, match="moons"):
        sample_toy("spiral", 10)
    with pytest.raises(ValueError, match="positive int"):
        sample_moons(0)
