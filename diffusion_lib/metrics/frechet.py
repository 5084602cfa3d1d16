"""The Fréchet distance between Gaussians fitted to two feature sets (the FID recipe).

FD = ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁^{½} Σ₂ Σ₁^{½})^{½}).
"""

from __future__ import annotations

import torch
from torch import Tensor


def check_features(features: object, name: str = "features") -> Tensor:
    """``features`` as a tensor of finite real numbers; else an error that names ``name``."""
    if not isinstance(features, Tensor):
        raise TypeError(f"{name} must be a tensor (N, F), got {type(features).__name__}")
    if features.device.type == "meta":
        raise ValueError(f"{name} is on the meta device: it holds no data")
    if features.dtype.is_complex or features.dtype == torch.bool:
        raise TypeError(f"{name} must hold real numbers, got dtype {features.dtype}")
    bad = int((~torch.isfinite(features)).sum()) if features.dtype.is_floating_point else 0
    if bad:
        raise ValueError(
            f"{name} holds {bad} NaN/inf value(s); a distance between feature sets needs "
            "finite features (did the model make NaN samples?)"
        )
    return features


def gaussian_stats(features: Tensor, name: str = "features") -> tuple[Tensor, Tensor]:
    """Mean μ (F,) and unbiased covariance Σ (F, F), in float64, of features (N, F)."""
    check_features(features, name)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"{name} must have shape (N, F) with N >= 2, got {tuple(features.shape)}")
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
    named = {"mu1": mu1, "sigma1": sigma1, "mu2": mu2, "sigma2": sigma2}
    for name, value in named.items():
        if isinstance(value, Tensor):
            check_features(value, name)
    try:
        mu1, sigma1, mu2, sigma2 = (torch.as_tensor(a, dtype=torch.float64) for a in named.values())
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(
            f"mu1, sigma1, mu2 and sigma2 must be real arrays or tensors ({err})"
        ) from None
    if mu1.shape != mu2.shape or mu1.ndim != 1:
        raise ValueError(f"means must both be (F,), got {tuple(mu1.shape)} and {tuple(mu2.shape)}")
    dim = mu1.shape[0]
    if sigma1.shape != (dim, dim) or sigma2.shape != (dim, dim):
        raise ValueError(
            f"covariances must be ({dim}, {dim}), got {tuple(sigma1.shape)} and "
            f"{tuple(sigma2.shape)}"
        )
    for name, value in zip(named, (mu1, sigma1, mu2, sigma2), strict=True):
        check_features(value, name)
    _check_covariance(sigma1, "sigma1")
    _check_covariance(sigma2, "sigma2")
    root1 = _sqrt_psd(sigma1)  # Σ₁^{½}
    cross = torch.linalg.eigvalsh(root1 @ sigma2 @ root1)  # eigenvalues of Σ₁^{½} Σ₂ Σ₁^{½}
    trace_cross = cross.clamp(min=0).sqrt().sum()
    diff = mu1 - mu2
    fd = diff @ diff + torch.trace(sigma1) + torch.trace(sigma2) - 2 * trace_cross
    return max(float(fd), 0.0)


def _check_covariance(sigma: Tensor, name: str, rtol: float = 1e-6) -> None:
    """Σ must be symmetric and positive semi-definite, up to float rounding; else a
    ``ValueError`` naming it (a negative-definite Σ would give FD = 0)."""
    scale = float(sigma.abs().max()) if sigma.numel() else 0.0
    tol = rtol * max(scale, 1e-300) * max(1, sigma.shape[0])
    asym = float((sigma - sigma.T).abs().max()) if sigma.numel() else 0.0
    if asym > tol:
        raise ValueError(
            f"{name} is not symmetric (|Σ − Σᵀ| up to {asym:.3g}): a covariance matrix is "
            "symmetric; pass the covariance, e.g. from gaussian_stats"
        )
    low = float(torch.linalg.eigvalsh((sigma + sigma.T) / 2).min()) if sigma.numel() else 0.0
    if low < -tol:
        raise ValueError(
            f"{name} is not positive semi-definite (its smallest eigenvalue is {low:.3g}): "
            "a covariance matrix has no negative eigenvalues"
        )


def frechet_distance_from_features(features1: Tensor, features2: Tensor) -> float:
    """FD between Gaussians fitted to two feature sets (N₁, F) and (N₂, F)."""
    return frechet_distance(
        *gaussian_stats(features1, "features1"), *gaussian_stats(features2, "features2")
    )
