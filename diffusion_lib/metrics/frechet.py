"""The Fréchet distance between Gaussians fitted to two feature sets (the FID recipe).

FD = ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁^{½} Σ₂ Σ₁^{½})^{½}).
"""

from __future__ import annotations

import torch
from torch import Tensor


def gaussian_stats(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean μ (F,) and unbiased covariance Σ (F, F), in float64, of features (N, F)."""
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(
            f"features must have shape (N, F) with N >= 2, got {tuple(features.shape)}"
        )
    f = features.double()
    mu = f.mean(dim=0)  # (F,)
    centred = f - mu
    sigma = centred.T @ centred / (f.shape[0] - 1)  # (F, F)
    return mu, sigma


def _sqrt_psd(matrix: Tensor) -> Tensor:
    """Symmetric square root of a symmetric positive semi-definite matrix."""
    vals, vecs = torch.linalg.eigh((matrix + matrix.T) / 2)
    return (vecs * vals.clamp(min=0).sqrt()) @ vecs.T


def frechet_distance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> float:
    """Fréchet (2-Wasserstein) distance² between N(μ₁, Σ₁) and N(μ₂, Σ₂).

    FD = ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁^{½} Σ₂ Σ₁^{½})^{½}.

    The cross term uses the symmetric form (Σ₁^{½} Σ₂ Σ₁^{½})^{½}, whose trace
    equals tr (Σ₁Σ₂)^{½} and whose eigenvalues are real and ≥ 0, so no complex
    square root is needed. Computed in float64.

    Args:
        mu1, mu2: means, shape (F,).
        sigma1, sigma2: covariances, shape (F, F).
    """
    mu1, mu2, sigma1, sigma2 = (torch.as_tensor(a, dtype=torch.float64) for a in
                                (mu1, mu2, sigma1, sigma2))
    if mu1.shape != mu2.shape or mu1.ndim != 1:
        raise ValueError(f"means must both be (F,), got {tuple(mu1.shape)} and {tuple(mu2.shape)}")
    dim = mu1.shape[0]
    if sigma1.shape != (dim, dim) or sigma2.shape != (dim, dim):
        raise ValueError(
            f"covariances must be ({dim}, {dim}), got {tuple(sigma1.shape)} and "
            f"{tuple(sigma2.shape)}"
        )
    root1 = _sqrt_psd(sigma1)  # Σ₁^{½}
    cross = torch.linalg.eigvalsh(root1 @ sigma2 @ root1)  # eigenvalues of Σ₁^{½} Σ₂ Σ₁^{½}
    trace_cross = cross.clamp(min=0).sqrt().sum()
    diff = mu1 - mu2
    fd = diff @ diff + torch.trace(sigma1) + torch.trace(sigma2) - 2 * trace_cross
    return max(float(fd), 0.0)


def frechet_distance_from_features(features1: Tensor, features2: Tensor) -> float:
    """FD between Gaussians fitted to two feature sets (N₁, F) and (N₂, F)."""
    return frechet_distance(*gaussian_stats(features1), *gaussian_stats(features2))
