"""2-D sample quality: sliced Wasserstein distance to fresh data or to an oracle's exact law.

SW₂ between generated points and the true distribution, each with its real-vs-real floor
at the same n (:func:`toy_quality`, :func:`evaluate_toy`), and :func:`oracle_distance`:
SW₂ to an exact distribution (:mod:`diffusion_lib.exact.oracle`) with intervals.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..data import sample_toy
from ..schedule import NoiseSchedule
from .estimates import Estimate, over_seeds
from .frechet import check_features


def _directions(dim: int, num_projections: int, seed: int) -> Tensor:
    """Unit directions θ (K, D), evenly spaced angles in 2-D, else Gaussian draws from ``seed``."""
    if dim == 2:
        angles = torch.arange(num_projections, dtype=torch.float64) * (math.pi / num_projections)
        return torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)  # (K, 2)
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(num_projections, dim, generator=g, dtype=torch.float64)
    return theta / theta.norm(dim=1, keepdim=True)  # (K, D)


def sliced_wasserstein(x: Tensor, y: Tensor, num_projections: int = 256, seed: int = 0) -> float:
    """Sliced 2-Wasserstein distance SW₂ between two point clouds.

    SW₂(x, y) = ( mean_θ W₂²(θ·x, θ·y) )^{½}, over unit directions θ. In 2-D the
    directions are evenly spaced angles in [0, π) (deterministic); in higher
    dimensions they are Gaussian draws from ``seed``. 1-D W₂ compares sorted
    projections (equal sizes) or ``num`` matched quantiles (unequal sizes).

    Args:
        x: (N, D) points.
        y: (M, D) points.
    """
    check_features(x, "x")
    check_features(y, "y")
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(
            f"x and y must be (N, D) and (M, D) with the same D, got {tuple(x.shape)} and "
            f"{tuple(y.shape)}"
        )
    if min(x.shape[0], y.shape[0]) < 1 or num_projections < 1:
        raise ValueError("need at least one point in each set and one projection")
    theta = _directions(x.shape[1], num_projections, seed)  # (K, D)
    px = (x.detach().cpu().double() @ theta.T).sort(dim=0).values  # (N, K)
    py = (y.detach().cpu().double() @ theta.T).sort(dim=0).values  # (M, K)
    if px.shape[0] != py.shape[0]:
        m = max(px.shape[0], py.shape[0])
        q = (torch.arange(m, dtype=torch.float64) + 0.5) / m  # (m,)
        px, py = torch.quantile(px, q, dim=0), torch.quantile(py, q, dim=0)  # (m, K)
    return float((px - py).pow(2).mean().sqrt())


@dataclass
class ToyQuality:
    """SW₂ of generated 2-D points to the true distribution, and its floor."""

    dataset: str
    n: int
    sw: float
    sw_floor: float
    sw_ratio: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def toy_floor(dataset: str, n: int, *, repeats: int = 5, seed: int = 10_000) -> float:
    """Real-vs-real SW₂: two independent draws of ``n`` true points, averaged."""
    values = [
        sliced_wasserstein(
            sample_toy(dataset, n, seed + 2 * r), sample_toy(dataset, n, seed + 2 * r + 1)
        )
        for r in range(repeats)
    ]
    return float(np.mean(values))


def toy_quality(samples: Tensor, dataset: str, *, seed: int = 20_000) -> ToyQuality:
    """SW₂ between ``samples`` (N, 2) and N fresh true points, with the floor."""
    check_features(samples, "samples")
    if samples.ndim != 2 or samples.shape[1] != 2:
        raise ValueError(f"samples must have shape (N, 2), got {tuple(samples.shape)}")
    n = samples.shape[0]
    sw = sliced_wasserstein(samples, sample_toy(dataset, n, seed))
    floor = toy_floor(dataset, n)
    return ToyQuality(dataset=dataset, n=n, sw=sw, sw_floor=floor, sw_ratio=sw / floor)


def evaluate_toy(
    model: nn.Module,
    schedule: NoiseSchedule,
    dataset: str = "moons",
    *,
    n: int = 1000,
    steps: int | None = None,
    sampler: str = "ddpm",
    seed: int = 0,
    progress: bool = True,
) -> ToyQuality:
    """Sample ``n`` points (DDPM, σ² = β̃, clipping) and measure them with :func:`toy_quality`."""
    from ..sampling import sample

    points = sample(
        model,
        schedule,
        (n, 2),
        sampler=sampler,  # type: ignore[arg-type]
        steps=steps,
        seed=seed,
        progress=progress,
    )
    return toy_quality(points, dataset)


def oracle_distance(
    samples: Tensor,
    oracle: Any,
    labels: Tensor | int | None = None,
    *,
    chunks: int = 10,
    n_ref: int = 20_000,
    num_projections: int = 256,
    seed: int = 0,
) -> tuple[Estimate, Estimate]:
    """SW₂ of samples to an oracle's exact distribution, and the floor at the same n.

    The samples are cut into ``chunks`` disjoint chunks of n = N // chunks.
    For each chunk, SW₂² = mean_θ W₂²(θ·chunk, θ·p) compares the chunk's
    sorted projections with the quantiles of the oracle's projected
    distribution at (i + ½)/n, estimated from ``n_ref`` ≫ n exact draws
    (``oracle.sample_data``). Each chunk is one independent measurement. The
    floor is the same with n fresh exact draws in place of a chunk, so it
    carries the same finite-n bias: an exact sampler scores the floor, within
    the SEs (a test checks it). Use :func:`differs` to compare the two.

    Args:
        samples: (N, D), N ≥ 2·chunks.
        oracle: has ``sample_data(n, generator=None, labels=None)``, e.g. a
            :class:`diffusion_lib.exact.oracle.GaussianMixtureOracle`.
        labels: the class(es) the samples were drawn for (None: the whole
            distribution). A (N,) tensor is matched: the floor chunks are drawn
            with the same labels, the reference with the samples' label mix.

    Returns:
        (SW₂ of the samples, SW₂ floor), each an Estimate over the ``chunks`` chunks
        (:func:`over_seeds`: Student-t with chunks − 1 df, so :func:`differs` is Welch's test).
    """
    check_features(samples, "samples")
    if samples.ndim != 2 or chunks < 2 or samples.shape[0] < 2 * chunks:
        raise ValueError(
            f"samples must be (N, D) with N >= 2·chunks (chunks >= 2), got "
            f"{tuple(samples.shape)} and chunks={chunks}"
        )
    per_sample = isinstance(labels, Tensor) and labels.ndim == 1
    if per_sample and labels.shape[0] != samples.shape[0]:  # type: ignore[union-attr]
        raise ValueError(f"labels must have shape ({samples.shape[0]},)")
    g = torch.Generator().manual_seed(seed)
    n = samples.shape[0] // chunks
    ref_labels = labels
    if per_sample:
        ref_labels = labels[torch.randint(0, len(labels), (n_ref,), generator=g)]  # type: ignore
    theta = _directions(samples.shape[1], num_projections, seed)  # (K, D)
    reference = oracle.sample_data(n_ref, generator=g, labels=ref_labels).double() @ theta.T
    q = (torch.arange(n, dtype=torch.float64) + 0.5) / n  # (n,)
    ref_quantiles = torch.quantile(reference, q, dim=0)  # (n, K)

    def sw(points: Tensor) -> float:
        projected = (points.detach().cpu().double() @ theta.T).sort(dim=0).values  # (n, K)
        return float((projected - ref_quantiles).pow(2).mean().sqrt())

    values, floors = [], []
    for c in range(chunks):
        rows = slice(c * n, (c + 1) * n)
        chunk_labels = labels[rows] if per_sample else labels  # type: ignore[index]
        values.append(sw(samples[rows]))
        floors.append(sw(oracle.sample_data(n, generator=g, labels=chunk_labels)))
    return over_seeds(values), over_seeds(floors)
