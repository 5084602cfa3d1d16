"""Statistics of guided samples of a 2-D class-conditional mixture, against its exact law.

With classifier-free guidance the guided ε̃ = ε̂(∅) + w (ε̂(c) − ε̂(∅)) is not the scaled
score of one family of noised marginals (w ≠ 1), so the reverse SDE (DDPM) and the
probability-flow ODE (DDIM η = 0, Euler, Heun, DPM-Solver++) driven by it need not converge
to the same distribution as the steps grow. These functions measure where guided samples
of a :class:`~diffusion_lib.exact.oracle.GaussianMixtureOracle` land, with the exact class
posterior of the data (no classifier):

- :func:`class_posterior`: p(c | x₀) under the mixture at t = 0, per sample;
- :func:`class_direction`: the angle of a class's mean, (for a ring) its direction;
- :func:`angular_offset`, :func:`angular_sd`: the wrapped angle of each sample from that
  direction, and its root-mean-square;
- :func:`guided_stats`: those and the mean radius, for one sample set.

The sliced-W₂ distance between two sample sets is
:func:`diffusion_lib.metrics.toy.sliced_wasserstein` (in 2-D it uses evenly spaced
directions, so it carries no Monte Carlo noise of its own beyond the samples').
``benchmarks/guided_limits.py`` uses both.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .oracle import GaussianMixtureOracle

F64 = torch.float64


def _points(x: Tensor) -> Tensor:
    """``x`` as (N, 2) float64 on the CPU; anything else is a ``ValueError``."""
    if not isinstance(x, Tensor) or x.ndim != 2 or x.shape[1] != 2 or x.shape[0] < 1:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x must be a tensor of shape (N, 2) with N >= 1, got {shape}")
    x = x.detach().cpu().to(F64)
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x holds NaN or inf")
    return x


def class_posterior(oracle: GaussianMixtureOracle, x: Tensor, label: int) -> Tensor:
    """p(c = ``label`` | x₀) under the oracle's data mixture (t = 0), per sample.

    Args:
        oracle: a class-conditional 2-D mixture (e.g.
            :func:`~diffusion_lib.exact.oracle.eight_gaussians`).
        x: (N, 2) samples.
        label: the class c.

    Returns:
        (N,) float64 in [0, 1].
    """
    return oracle.class_log_posterior(_points(x))[:, int(label)].exp()


def class_direction(oracle: GaussianMixtureOracle, label: int) -> float:
    """The angle (radians, in (−π, π]) of class ``label``'s mean: its components' means
    averaged with their weights. For the 8-Gaussians ring, class k's direction 2πk/8."""
    keep = oracle.classes.cpu() == int(label)
    if not bool(keep.any()):
        raise ValueError(f"the oracle has no component of class {label}")
    weights = oracle.weights.detach().cpu().to(F64)[keep]  # (K_c,)
    means = oracle.means.detach().cpu().to(F64)[keep]  # (K_c, 2)
    centre = (weights[:, None] * means).sum(0) / weights.sum()  # (2,)
    return math.atan2(float(centre[1]), float(centre[0]))


def angular_offset(x: Tensor, direction: float) -> Tensor:
    """The angle of each sample from ``direction``, wrapped into (−π, π]: (N, 2) → (N,)."""
    x = _points(x)
    angle = torch.atan2(x[:, 1], x[:, 0]) - float(direction)  # (N,)
    return torch.atan2(torch.sin(angle), torch.cos(angle))


def angular_sd(x: Tensor, direction: float) -> float:
    """Root-mean-square angle (radians) of the samples (N, 2) around ``direction``.

    The spread around the class's own direction, not around the samples' mean angle: a
    sampler that also rotated the samples would score higher (on the ring's class 0
    the samples' mean angle is 0 by symmetry, so the two agree up to noise)."""
    return float(angular_offset(x, direction).pow(2).mean().sqrt())


def guided_stats(oracle: GaussianMixtureOracle, x: Tensor, label: int) -> dict[str, float]:
    """Where samples (N, 2) of class ``label`` landed, as plain floats:

    - ``p_class``: mean p(c | x₀) (:func:`class_posterior`);
    - ``radius``: mean distance from the origin;
    - ``angular_sd``: :func:`angular_sd` around :func:`class_direction`.
    """
    x = _points(x)
    return {
        "p_class": float(class_posterior(oracle, x, label).mean()),
        "radius": float(x.norm(dim=1).mean()),
        "angular_sd": angular_sd(x, class_direction(oracle, label)),
    }
