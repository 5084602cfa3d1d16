"""Sample-quality metrics that run offline on a CPU.

Digits (1×8×8):

- **FD**, the Fréchet distance between Gaussians fitted to features of a
  shipped digit classifier (the FID recipe, with our own small network):
  FD = ‖μ_g − μ_r‖² + tr(Σ_g + Σ_r − 2 (Σ_g^{½} Σ_r Σ_g^{½})^{½}),
  generated digits (g) against half of the held-out digits (r);
- **FD floor**: the same distance between the two halves of the held-out
  digits, at the same sample size; a perfect model scores about this
  (:func:`digits_fd` explains the protocol);
- **class accuracy**: how often the classifier reads the requested digit;
- **diversity**: mean pairwise L2 distance between samples of one class, in
  pixel space ([−1, 1]), averaged over classes; compare with real digits.

2-D toys: the **sliced Wasserstein distance** SW₂ between generated points and
fresh points of the true distribution, with its real-vs-real floor.
"""

from __future__ import annotations

import math
import time
import weakref
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from .data import DIGITS_SPLIT_DESCRIPTION, load_digits_split, sample_toy
from .models import ClassifierConfig, DigitClassifier
from .schedule import NoiseSchedule

__all__ = [
    "ClassifierTrainConfig",
    "DigitClassifier",
    "DigitsQuality",
    "ToyQuality",
    "class_accuracy",
    "classifier_features",
    "digits_fd",
    "digits_quality",
    "diversity",
    "evaluate_digits",
    "evaluate_toy",
    "frechet_distance",
    "frechet_distance_from_features",
    "gaussian_stats",
    "heldout_halves",
    "load_classifier",
    "sliced_wasserstein",
    "toy_floor",
    "toy_quality",
    "train_classifier",
]


# ------------------------------------------------------------ the classifier
@dataclass
class ClassifierTrainConfig:
    """Training settings of the metric's digit classifier."""

    steps: int = 1500
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    max_shift: int = 1
    seed: int = 0
    device: str = "auto"


def random_shift(images: Tensor, max_shift: int, generator: torch.Generator) -> Tensor:
    """Translate each image by up to ``max_shift`` pixels, filling with background −1.

    Args:
        images: (B, C, H, W) in [−1, 1].

    Returns:
        (B, C, H, W), each image shifted by its own (dy, dx) ∈ [−s, s]².
    """
    if max_shift == 0:
        return images
    b, _, h, w = images.shape
    s = max_shift
    padded = F.pad(images, (s, s, s, s), value=-1.0)  # (B, C, H+2s, W+2s)
    dy = torch.randint(0, 2 * s + 1, (b,), generator=generator)  # (B,)
    dx = torch.randint(0, 2 * s + 1, (b,), generator=generator)  # (B,)
    rows = (dy[:, None] + torch.arange(h)[None]).to(images.device)  # (B, H)
    cols = (dx[:, None] + torch.arange(w)[None]).to(images.device)  # (B, W)
    batch = torch.arange(b, device=images.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2)


@torch.no_grad()
def _predict(classifier: nn.Module, images: Tensor, batch_size: int = 1024) -> Tensor:
    device = next(classifier.parameters()).device
    out = [classifier(chunk.to(device)).cpu() for chunk in images.split(batch_size)]
    return torch.cat(out).argmax(dim=1)  # (N,)


def train_classifier(
    cfg: ClassifierTrainConfig | None = None, *, progress: bool = True
) -> tuple[DigitClassifier, dict[str, Any]]:
    """Train the digit classifier on the train split; measure held-out accuracy.

    Cross-entropy, AdamW, each batch randomly shifted by up to ``max_shift``
    pixels (the only augmentation).

    Returns:
        (classifier in eval mode, checkpoint metadata including
        ``results["heldout_accuracy"]``).
    """
    from .train import resolve_device

    cfg = cfg if cfg is not None else ClassifierTrainConfig()
    device = resolve_device(cfg.device)
    split = load_digits_split()
    torch.manual_seed(cfg.seed)
    model = DigitClassifier(ClassifierConfig()).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    generator = torch.Generator().manual_seed(cfg.seed)
    model.train()
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in tqdm(range(cfg.steps), disable=not progress, desc="train classifier", leave=False):
        idx = torch.randint(0, len(split.train_labels), (cfg.batch_size,), generator=generator)
        x = random_shift(split.train_images[idx], cfg.max_shift, generator).to(device)
        y = split.train_labels[idx].to(device)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    model.eval()
    heldout_acc = class_accuracy(model, split.heldout_images, split.heldout_labels)
    train_acc = class_accuracy(model, split.train_images, split.train_labels)
    metadata = {
        "training": asdict(cfg),
        "data": {"dataset": "digits", "split": DIGITS_SPLIT_DESCRIPTION},
        "results": {
            "heldout_accuracy": heldout_acc,
            "train_accuracy": train_acc,
            "wall_time_s": round(wall, 1),
            "cpu_time_s": round(cpu, 1),
            "device": str(device),
            "torch_version": torch.__version__,
        },
    }
    return model, metadata


def load_classifier(device: torch.device | str | None = None) -> DigitClassifier:
    """The shipped digit classifier (``weights/classifier.*``), in eval mode."""
    from .pretrained import WEIGHTS_DIR, load_checkpoint

    model, info = load_checkpoint(WEIGHTS_DIR / "classifier", device=device)
    if not isinstance(model, DigitClassifier):
        raise ValueError(f"{WEIGHTS_DIR / 'classifier.json'} is a {info['kind']}, not a classifier")
    return model


# -------------------------------------------------------- Fréchet distance
@torch.no_grad()
def classifier_features(
    classifier: DigitClassifier, images: Tensor, batch_size: int = 1024
) -> Tensor:
    """Classifier features f of images in [−1, 1], (N, 1, 8, 8) → (N, F) float64, CPU."""
    if images.ndim != 4 or tuple(images.shape[1:]) != (1, 8, 8):
        raise ValueError(f"images must have shape (N, 1, 8, 8), got {tuple(images.shape)}")
    device = next(classifier.parameters()).device
    chunks = [classifier.features(c.to(device, torch.float32)).cpu()
              for c in images.split(batch_size)]
    return torch.cat(chunks).double()  # (N, F)


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


# ------------------------------------------------- accuracy and diversity
def class_accuracy(classifier: DigitClassifier, images: Tensor, labels: Tensor) -> float:
    """Fraction of images (N, 1, 8, 8) the classifier reads as their label (N,)."""
    if labels.shape != (images.shape[0],):
        raise ValueError(
            f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}"
        )
    return float((_predict(classifier, images) == labels.cpu()).float().mean())


def diversity(images: Tensor, labels: Tensor) -> float:
    """Mean pairwise L2 distance within each class, averaged over classes.

    Args:
        images: (N, ...) samples in [−1, 1].
        labels: (N,) class of each sample (the requested or the predicted one).
            Classes with fewer than two samples are skipped.
    """
    if labels.shape != (images.shape[0],):
        raise ValueError(
            f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}"
        )
    flat = images.reshape(images.shape[0], -1).double().cpu()  # (N, D)
    per_class = []
    for c in labels.unique():
        x = flat[labels.cpu() == c]  # (n_c, D)
        n = x.shape[0]
        if n < 2:
            continue
        dists = torch.cdist(x, x)  # (n_c, n_c), zero diagonal
        per_class.append(float(dists.sum() / (n * (n - 1))))
    if not per_class:
        raise ValueError("diversity needs at least one class with two or more samples")
    return float(np.mean(per_class))


# ---------------------------------------------------------- digits report
@dataclass
class DigitsQuality:
    """Quality of a set of generated digits (see the module docstring)."""

    n: int
    fd: float
    fd_floor: float
    fd_ratio: float
    accuracy: float | None
    diversity: float
    diversity_real: float
    class_histogram: list[int]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


FD_SPLITS = 10

_HELDOUT_FEATURES: weakref.WeakKeyDictionary[nn.Module, Tensor] = weakref.WeakKeyDictionary()


def heldout_halves(splits: int = FD_SPLITS, seed: int = 0) -> list[tuple[Tensor, Tensor]]:
    """Random stratified halves (A, B) of the held-out split, ``splits`` times.

    Each class's held-out indices are shuffled and cut in two (the smaller
    half goes to A), so |A| = 178 and |B| = 182 for the 360 held-out digits.

    Returns:
        a list of (indices of A, indices of B), each index tensor shuffled.
    """
    labels = load_digits_split().heldout_labels
    g = torch.Generator().manual_seed(seed)
    halves = []
    for _ in range(splits):
        a_parts, b_parts = [], []
        for c in labels.unique():
            idx = (labels == c).nonzero().flatten()
            idx = idx[torch.randperm(len(idx), generator=g)]
            a_parts.append(idx[: len(idx) // 2])
            b_parts.append(idx[len(idx) // 2 :])
        a, b = torch.cat(a_parts), torch.cat(b_parts)
        a = a[torch.randperm(len(a), generator=g)]
        b = b[torch.randperm(len(b), generator=g)]
        halves.append((a, b))
    return halves


def digits_fd(
    classifier: DigitClassifier, samples: Tensor, *, splits: int = FD_SPLITS, seed: int = 0
) -> tuple[float, float]:
    """FD of generated digits to held-out digits, and the real-vs-real floor.

    Both numbers compare the same number of digits against the same
    reference, so they carry the same small-sample bias: for each random
    stratified half split (A, B) of the held-out digits (:func:`heldout_halves`),

    - FD: m = min(|A|, N) random generated digits against B;
    - floor: m digits of A against B (two real halves);

    each averaged over ``splits`` splits. Only held-out digits are real
    references: the classifier was fit on the train split, so its features
    tell train digits from unseen ones (train vs held-out scores far above
    two held-out halves) and would inflate the floor.

    Args:
        samples: (N, 1, 8, 8) generated digits in [−1, 1], N ≥ 2.

    Returns:
        (FD, floor).
    """
    if classifier not in _HELDOUT_FEATURES:
        heldout_images = load_digits_split().heldout_images
        _HELDOUT_FEATURES[classifier] = classifier_features(classifier, heldout_images)
    real = _HELDOUT_FEATURES[classifier]  # (360, F)
    generated = classifier_features(classifier, samples)  # (N, F)
    n = generated.shape[0]
    g = torch.Generator().manual_seed(seed + 1)
    fds, floors = [], []
    for a, b in heldout_halves(splits, seed):
        m = min(len(a), n)
        pick = torch.randperm(n, generator=g)[:m]
        fds.append(frechet_distance_from_features(generated[pick], real[b]))
        floors.append(frechet_distance_from_features(real[a[:m]], real[b]))
    return float(np.mean(fds)), float(np.mean(floors))


def digits_quality(
    samples: Tensor, labels: Tensor | None = None, classifier: DigitClassifier | None = None
) -> DigitsQuality:
    """FD, FD floor, class accuracy and diversity of generated digits.

    Args:
        samples: (N, 1, 8, 8) in [−1, 1].
        labels: (N,) requested classes, or None for unconditional samples
            (accuracy is then None and diversity uses the predicted class).
        classifier: default: :func:`load_classifier`.
    """
    classifier = classifier if classifier is not None else load_classifier()
    split = load_digits_split()
    samples = samples.detach().float().cpu()
    if samples.ndim != 4 or tuple(samples.shape[1:]) != (1, 8, 8):
        raise ValueError(f"samples must have shape (N, 1, 8, 8), got {tuple(samples.shape)}")
    if not torch.isfinite(samples).all():
        raise ValueError("samples contain NaN or inf")
    n = samples.shape[0]
    fd, floor = digits_fd(classifier, samples)
    predicted = _predict(classifier, samples)  # (N,)
    accuracy = None if labels is None else class_accuracy(classifier, samples, labels)
    groups = predicted if labels is None else labels.cpu()
    return DigitsQuality(
        n=n,
        fd=fd,
        fd_floor=floor,
        fd_ratio=fd / floor,
        accuracy=accuracy,
        diversity=diversity(samples, groups),
        diversity_real=diversity(split.heldout_images, split.heldout_labels),
        class_histogram=torch.bincount(predicted, minlength=10).tolist(),
    )


def evaluate_digits(
    model: nn.Module,
    schedule: NoiseSchedule,
    *,
    n: int = 1000,
    conditional: bool = True,
    guidance_scale: float | None = 3.0,
    steps: int | None = None,
    sampler: str = "ddpm",
    seed: int = 0,
    classifier: DigitClassifier | None = None,
    progress: bool = True,
) -> DigitsQuality:
    """Sample ``n`` digits and measure them with :func:`digits_quality`.

    Conditional runs request the classes 0, 1, …, 9, 0, 1, … (``n`` / 10 of
    each). DDPM with σ² = β̃ and x̂0 clipping, as in the quality bars.
    """
    from .sampling import sample

    labels = torch.arange(n) % 10 if conditional else None
    samples = sample(
        model,
        schedule,
        (n, 1, 8, 8),
        sampler=sampler,  # type: ignore[arg-type]
        steps=steps,
        variance="beta_tilde",
        x0_mode="clip",
        labels=labels,
        guidance_scale=guidance_scale if conditional else None,
        seed=seed,
        progress=progress,
    )
    return digits_quality(samples, labels, classifier)


# ---------------------------------------------------------------- 2-D toys
def sliced_wasserstein(
    x: Tensor, y: Tensor, num_projections: int = 256, seed: int = 0
) -> float:
    """Sliced 2-Wasserstein distance SW₂ between two point clouds.

    SW₂(x, y) = ( mean_θ W₂²(θ·x, θ·y) )^{½}, over unit directions θ. In 2-D the
    directions are evenly spaced angles in [0, π) (deterministic); in higher
    dimensions they are Gaussian draws from ``seed``. 1-D W₂ compares sorted
    projections (equal sizes) or ``num`` matched quantiles (unequal sizes).

    Args:
        x: (N, D) points.
        y: (M, D) points.
    """
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(
            f"x and y must be (N, D) and (M, D) with the same D, got {tuple(x.shape)} and "
            f"{tuple(y.shape)}"
        )
    if min(x.shape[0], y.shape[0]) < 1 or num_projections < 1:
        raise ValueError("need at least one point in each set and one projection")
    dim = x.shape[1]
    if dim == 2:
        angles = torch.arange(num_projections, dtype=torch.float64) * (math.pi / num_projections)
        theta = torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)  # (K, 2)
    else:
        g = torch.Generator().manual_seed(seed)
        theta = torch.randn(num_projections, dim, generator=g, dtype=torch.float64)
        theta = theta / theta.norm(dim=1, keepdim=True)  # (K, D)
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
        sliced_wasserstein(sample_toy(dataset, n, seed + 2 * r),
                           sample_toy(dataset, n, seed + 2 * r + 1))
        for r in range(repeats)
    ]
    return float(np.mean(values))


def toy_quality(samples: Tensor, dataset: str, *, seed: int = 20_000) -> ToyQuality:
    """SW₂ between ``samples`` (N, 2) and N fresh true points, with the floor."""
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
    from .sampling import sample

    points = sample(
        model,
        schedule,
        (n, 2),
        sampler=sampler,  # type: ignore[arg-type]
        steps=steps,
        variance="beta_tilde",
        x0_mode="clip",
        seed=seed,
        progress=progress,
    )
    return toy_quality(points, dataset)
