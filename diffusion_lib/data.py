"""Data the shipped models were trained on: 8×8 digits and 2-D toy distributions.

Every dataset lives in [−1, 1], like the samples the sampler returns, so x̂0
clipping to [−1, 1] is valid for all of them.

Digits
    scikit-learn's bundled 8×8 handwritten digits (1,797 images, 10 classes,
    pixel values 0…16, no download). Pixels are mapped to [−1, 1] by
    x = v / 8 − 1. The split is fixed everywhere in the library: a stratified
    80 / 20 split with ``random_state=0`` (sklearn's ``train_test_split``),
    giving 1,437 train and 360 held-out images.

2-D toys
    ``moons``, ``gaussians8`` (a ring of 8 Gaussians) and ``swissroll``, each
    with a sampler of the *true* distribution, ``sample_toy(name, n, seed=…)``,
    scaled to lie (almost surely) inside [−1, 1]².
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ._extras import extra

NUM_DIGIT_CLASSES = 10
DIGITS_SPLIT_SEED = 0
DIGITS_HELDOUT_FRACTION = 0.2
DIGITS_SPLIT_DESCRIPTION = (
    "sklearn load_digits, pixels v/8 - 1 in [-1, 1]; stratified train_test_split("
    "test_size=0.2, random_state=0): 1437 train / 360 held-out"
)


@dataclass(frozen=True)
class DigitsSplit:
    """The fixed digits split.

    Attributes:
        train_images: (1437, 1, 8, 8) float32 in [−1, 1].
        train_labels: (1437,) int64 in 0…9.
        heldout_images: (360, 1, 8, 8) float32 in [−1, 1].
        heldout_labels: (360,) int64 in 0…9.
    """

    train_images: Tensor
    train_labels: Tensor
    heldout_images: Tensor
    heldout_labels: Tensor


_DIGITS_CACHE: DigitsSplit | None = None


def load_digits_split() -> DigitsSplit:
    """The 8×8 digits in [−1, 1] with the library's fixed train / held-out split.

    The result is cached; callers get the same (read-only by convention) tensors.
    """
    global _DIGITS_CACHE
    if _DIGITS_CACHE is None:
        with extra("metrics"):
            from sklearn.datasets import load_digits
            from sklearn.model_selection import train_test_split

        bunch = load_digits()
        pixels = bunch.data.astype(np.float32) / 8.0 - 1.0  # (1797, 64) in [−1, 1]
        labels = bunch.target.astype(np.int64)  # (1797,)
        idx_train, idx_heldout = train_test_split(
            np.arange(len(labels)),
            test_size=DIGITS_HELDOUT_FRACTION,
            random_state=DIGITS_SPLIT_SEED,
            stratify=labels,
        )

        def images(idx: np.ndarray) -> Tensor:
            return torch.from_numpy(pixels[idx]).reshape(-1, 1, 8, 8)  # (N, 1, 8, 8)

        _DIGITS_CACHE = DigitsSplit(
            train_images=images(idx_train),
            train_labels=torch.from_numpy(labels[idx_train]),
            heldout_images=images(idx_heldout),
            heldout_labels=torch.from_numpy(labels[idx_heldout]),
        )
    return _DIGITS_CACHE


# ---------------------------------------------------------------- 2-D toys
def _generator(seed: int | torch.Generator | None) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        return seed
    g = torch.Generator()
    if seed is None:
        g.seed()
    else:
        g.manual_seed(int(seed))
    return g


def _check_n(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")


MOONS_NOISE = 0.05
MOONS_SCALE = 1.0 / 1.7


def sample_moons(n: int, seed: int | torch.Generator | None = None) -> Tensor:
    """Two interleaving half circles (sklearn's ``make_moons`` geometry).

    Upper moon (cos θ, sin θ), lower moon (1 − cos θ, ½ − sin θ), θ ~ U[0, π],
    plus N(0, 0.05²) noise; then centred at (0.5, 0.25) and scaled by 1/1.7
    so the points lie in [−1, 1]². Each point picks its moon with probability ½.

    Args:
        n: number of points.
        seed: an int, a ``torch.Generator``, or None for a fresh random seed.

    Returns:
        (n, 2) float32.
    """
    _check_n(n)
    g = _generator(seed)
    theta = torch.rand(n, generator=g, dtype=torch.float64) * math.pi  # (n,)
    lower = torch.rand(n, generator=g, dtype=torch.float64) < 0.5  # (n,)
    x = torch.where(lower, 1.0 - torch.cos(theta), torch.cos(theta))
    y = torch.where(lower, 0.5 - torch.sin(theta), torch.sin(theta))
    points = torch.stack([x, y], dim=1)  # (n, 2)
    points = points + MOONS_NOISE * torch.randn(n, 2, generator=g, dtype=torch.float64)
    points = (points - torch.tensor([0.5, 0.25], dtype=torch.float64)) * MOONS_SCALE
    return points.float()


def sample_gaussians8(n: int, seed: int | torch.Generator | None = None) -> Tensor:
    """A ring of 8 equally weighted Gaussians, centres at radius 0.75, std 0.06.

    Returns:
        (n, 2) float32.
    """
    _check_n(n)
    g = _generator(seed)
    k = torch.randint(0, 8, (n,), generator=g)  # (n,)
    angle = k.double() * (2 * math.pi / 8)
    centres = 0.75 * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)  # (n, 2)
    points = centres + 0.06 * torch.randn(n, 2, generator=g, dtype=torch.float64)
    return points.float()


def sample_swissroll(n: int, seed: int | torch.Generator | None = None) -> Tensor:
    """A 2-D swiss roll: r = θ / (4.5π), θ ~ U[1.5π, 4.5π], point r (cos θ, sin θ).

    Noise N(0, 0.02²) is added; the spiral reaches radius ≈ 1, so points lie in
    about [−1, 1]².

    Returns:
        (n, 2) float32.
    """
    _check_n(n)
    g = _generator(seed)
    theta = math.pi * (1.5 + 3.0 * torch.rand(n, generator=g, dtype=torch.float64))  # (n,)
    radius = theta / (4.5 * math.pi) * 0.95
    points = radius[:, None] * torch.stack([torch.cos(theta), torch.sin(theta)], dim=1)
    points = points + 0.02 * torch.randn(n, 2, generator=g, dtype=torch.float64)
    return points.float()


TOY_SAMPLERS: dict[str, Callable[[int, int | torch.Generator | None], Tensor]] = {
    "moons": sample_moons,
    "gaussians8": sample_gaussians8,
    "swissroll": sample_swissroll,
}


def sample_toy(name: str, n: int, seed: int | torch.Generator | None = None) -> Tensor:
    """Draw ``n`` points of the true 2-D distribution ``name``.

    Args:
        name: one of ``"moons"``, ``"gaussians8"``, ``"swissroll"``.
        n: number of points.
        seed: an int, a ``torch.Generator``, or None.

    Returns:
        (n, 2) float32 in about [−1, 1]².
    """
    try:
        sampler = TOY_SAMPLERS[name]
    except KeyError:
        raise ValueError(
            f"unknown toy distribution {name!r}; valid names are {', '.join(TOY_SAMPLERS)}"
        ) from None
    return sampler(n, seed)
