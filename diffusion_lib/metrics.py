"""Sample-quality metrics that run offline on a CPU.

Digits (1×8×8):

- **FD**, the Fréchet distance between Gaussians fitted to features of a
  shipped digit classifier (the FID recipe, with our own small network):
  FD = ‖μ_g − μ_r‖² + tr(Σ_g + Σ_r − 2 (Σ_g^{½} Σ_r Σ_g^{½})^{½}),
  generated digits (g) against half of the held-out digits (r);
- **FD floor**: the same distance between real held-out digits, at the same
  sample size and with the same class counts as the samples
  (:func:`digits_matched`, which :func:`digits_quality` uses). It is not "what
  a perfect model scores": small-n FD rewards low-variance sets, so samples can
  score *below* it. (:func:`digits_fd` is the older floor, with a random class
  mix below n = 178; it is kept for comparison and tests);
- **class accuracy**: how often the classifier reads the requested digit;
- **diversity**: mean pairwise L2 distance between samples of one class, in
  pixel space ([−1, 1]), averaged over classes; compare with real digits.

2-D toys: the **sliced Wasserstein distance** SW₂ between generated points and
fresh points of the true distribution, with its real-vs-real floor.

With intervals (issue 12):

- :class:`Estimate` (value, standard error); :func:`over_seeds`,
  :func:`bootstrap` make one; :func:`differs` says whether two differ beyond
  their intervals;
- :func:`kid`: KID, the unbiased MMD² with the cubic kernel (Bińkowski et al.
  2018), with a jackknife SE; unbiased at any n, 0 in expectation for two sets
  of one distribution;
- :func:`digits_matched`: KID or FD of generated digits with a real-vs-real
  floor of the *same n and class counts* (:func:`matched_real_indices`);
- :func:`oracle_distance`: SW₂ of 2-D samples to an oracle's exact
  distribution (:mod:`diffusion_lib.oracle`), with the floor of exact draws.
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
    "Estimate",
    "MatchedMetric",
    "ToyQuality",
    "bootstrap",
    "class_accuracy",
    "classifier_features",
    "differs",
    "digits_fd",
    "digits_matched",
    "digits_quality",
    "diversity",
    "evaluate_digits",
    "evaluate_toy",
    "fit_class_counts",
    "frechet_distance",
    "frechet_distance_from_features",
    "gaussian_stats",
    "heldout_halves",
    "kid",
    "load_classifier",
    "matched_real_indices",
    "oracle_distance",
    "over_seeds",
    "polynomial_kernel",
    "sliced_wasserstein",
    "stratified_indices",
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
    fd_sd: float = float("nan")
    """Split-to-split sd of ``fd`` (the choice of real reference and sample subset)."""
    fd_floor_sd: float = float("nan")
    """Split-to-split sd of ``fd_floor``."""

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

    each averaged over ``splits`` splits. The floor's subset of A has a random
    class mix when m < |A|, so it is not matched to balanced samples (see
    :func:`digits_matched` for a floor with the samples' class counts, and
    intervals). Only held-out digits are real
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

    The floor compares real held-out digits with the same n and the same class counts
    (:func:`digits_matched`), so it carries the same small-sample bias as the samples'
    FD. FD can still come out *below* its floor: small-n FD rewards sets with less
    variance than real data (guidance and big steps reduce it). ``fd_sd`` and
    ``fd_floor_sd`` are split-to-split spreads; compare rows with intervals.

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
    # the floor: real digits at the same n with the class counts the samples should have:
    # the requested ones, or the data's (balanced) for unconditional samples
    wanted = labels.cpu().long() if labels is not None else torch.arange(n) % 10
    matched = digits_matched(classifier, samples, wanted, metric="fd")
    fd, floor = matched.value.value, matched.floor.value
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
        fd_sd=matched.value.se,
        fd_floor_sd=matched.floor.se,
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
def _directions(dim: int, num_projections: int, seed: int) -> Tensor:
    """Unit directions θ (K, D), evenly spaced angles in 2-D, else Gaussian draws from ``seed``."""
    if dim == 2:
        angles = torch.arange(num_projections, dtype=torch.float64) * (math.pi / num_projections)
        return torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)  # (K, 2)
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(num_projections, dim, generator=g, dtype=torch.float64)
    return theta / theta.norm(dim=1, keepdim=True)  # (K, D)


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


# ====================================================== honest metrics (issue 12)
# Every number below comes with a standard error, the real-vs-real floor is
# measured with the same n and the same class balance as the samples, and
# `differs` says whether two measured values differ beyond their intervals.


@dataclass(frozen=True)
class Estimate:
    """A measured value with its standard error.

    ``value ± z·se`` is the interval (z = 2: about 95 % for a normal
    estimate). ``n`` is how many samples, seeds or splits it rests on.
    """

    value: float
    se: float
    n: int = 0

    def interval(self, z: float = 2.0) -> tuple[float, float]:
        """(value − z·se, value + z·se)."""
        return self.value - z * self.se, self.value + z * self.se

    def __str__(self) -> str:
        return f"{self.value:.4g} ± {2 * self.se:.2g}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def over_seeds(values: Any) -> Estimate:
    """Mean and standard error of one metric measured on k independent seeds.

    Args:
        values: k ≥ 2 numbers (or Estimates, whose values are used).

    Returns:
        Estimate(mean, sd/√k, k).
    """
    v = np.asarray([x.value if isinstance(x, Estimate) else float(x) for x in values])
    if v.size < 2:
        raise ValueError(f"over_seeds needs at least 2 values, got {v.size}")
    return Estimate(float(v.mean()), float(v.std(ddof=1) / math.sqrt(v.size)), int(v.size))


def bootstrap(
    statistic: Any, data: Tensor, *, n_boot: int = 200, seed: int = 0
) -> Estimate:
    """``statistic(data)`` with a bootstrap standard error over the rows of ``data``.

    Args:
        statistic: ``f(rows) -> float`` for rows (N, ...).
        data: (N, ...).
        n_boot: bootstrap resamples (with replacement, N rows each).

    Returns:
        Estimate(statistic(data), sd of the resampled statistics, N). For
        statistics that are biased at small n (FD) the resamples, which hold
        duplicates, carry a different bias: use the se, not the resampled mean.
    """
    if n_boot < 2:
        raise ValueError(f"n_boot must be >= 2, got {n_boot}")
    g = torch.Generator().manual_seed(seed)
    n = data.shape[0]
    boots = [float(statistic(data[torch.randint(0, n, (n,), generator=g)]))
             for _ in range(n_boot)]
    return Estimate(float(statistic(data)), float(np.std(boots, ddof=1)), n)


def wilson_interval(successes: int, n: int, z: float = 2.0) -> tuple[float, float]:
    """The Wilson score interval of a proportion: (low, high) for ``successes`` of ``n``.

    Unlike p ± z·√(p(1−p)/n) it does not collapse to a point at p = 0 or 1: 300 of
    300 correct gives about (0.987, 1.0) at z = 2, not (1.0, 1.0).

    Example:
        >>> [round(v, 3) for v in wilson_interval(300, 300)]
        [0.987, 1.0]
    """
    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n >= 1, got {successes} of {n}")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def differs(a: Estimate, b: Estimate, z: float = 2.0) -> bool:
    """Whether two measured values differ beyond their intervals.

    True when |a − b| > z √(se_a² + se_b²), the z-score of the difference of
    two independent estimates (z = 2: about a 5 % two-sided test). Estimates
    that share samples or seeds are positively correlated, so this is then
    conservative (it says "differs" less often than it could).
    """
    return abs(a.value - b.value) > z * math.hypot(a.se, b.se)


# ------------------------------------------------------------------- KID
def polynomial_kernel(x: Tensor, y: Tensor) -> Tensor:
    """KID's cubic kernel k(x, y) = (x·y / d + 1)³ (Bińkowski et al. 2018).

    Args:
        x: (M, d), y: (N, d) features.

    Returns:
        (M, N) float64.
    """
    x, y = x.double(), y.double()
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def kid(features_x: Tensor, features_y: Tensor) -> Estimate:
    """Kernel Inception Distance: the unbiased MMD² with the cubic kernel, with its SE.

    MMD²_u = Σ_{i≠j} k(x_i, x_j) / (m(m−1)) + Σ_{i≠j} k(y_i, y_j) / (n(n−1))
             − 2 Σ_{i,j} k(x_i, y_j) / (mn)

    (Gretton et al. 2012, eq. 3; Bińkowski et al. 2018, "Demystifying MMD
    GANs"). It is unbiased at every m, n: its expectation is the population
    MMD², 0 when both sets come from one distribution (so a single value can
    be negative). Unlike FD it has no small-n bias, so values at different n
    compare directly.

    The standard error is the two-sample delete-one jackknife (Arvesen 1969),
    computed exactly from the kernel matrices' row sums in O((m + n)²). By the
    Efron–Stein inequality it does not underestimate the variance on average;
    when both sets share one distribution it is conservative (about 1.4× the
    true sd in our checks).

    Args:
        features_x: (m, d), m ≥ 3.
        features_y: (n, d), n ≥ 3.

    Returns:
        Estimate(MMD²_u, jackknife SE, min(m, n)).
    """
    if features_x.ndim != 2 or features_y.ndim != 2 or features_x.shape[1] != features_y.shape[1]:
        raise ValueError(
            f"features must be (m, d) and (n, d) with the same d, got "
            f"{tuple(features_x.shape)} and {tuple(features_y.shape)}"
        )
    m, n = features_x.shape[0], features_y.shape[0]
    if min(m, n) < 3:
        raise ValueError(f"kid needs at least 3 rows in each set, got {m} and {n}")
    kxx = polynomial_kernel(features_x, features_x)  # (m, m)
    kyy = polynomial_kernel(features_y, features_y)  # (n, n)
    kxy = polynomial_kernel(features_x, features_y)  # (m, n)
    row_x = kxx.sum(dim=1) - kxx.diagonal()  # Σ_{j≠i} k(x_i, x_j), (m,)
    row_y = kyy.sum(dim=1) - kyy.diagonal()  # (n,)
    cross_x, cross_y = kxy.sum(dim=1), kxy.sum(dim=0)  # (m,), (n,)
    sum_xx, sum_yy, sum_xy = row_x.sum(), row_y.sum(), cross_x.sum()
    value = sum_xx / (m * (m - 1)) + sum_yy / (n * (n - 1)) - 2 * sum_xy / (m * n)
    # leave-one-out estimates: drop x_i (m of them), then y_j (n of them)
    loo_x = ((sum_xx - 2 * row_x) / ((m - 1) * (m - 2)) + sum_yy / (n * (n - 1))
             - 2 * (sum_xy - cross_x) / ((m - 1) * n))
    loo_y = (sum_xx / (m * (m - 1)) + (sum_yy - 2 * row_y) / ((n - 1) * (n - 2))
             - 2 * (sum_xy - cross_y) / (m * (n - 1)))
    var = ((m - 1) / m * (loo_x - loo_x.mean()).pow(2).sum()
           + (n - 1) / n * (loo_y - loo_y.mean()).pow(2).sum())
    return Estimate(float(value), float(var.sqrt()), min(m, n))


# -------------------------------------------------- floors with matched classes
def stratified_indices(
    labels: Tensor, class_counts: Any, generator: torch.Generator | None = None
) -> Tensor:
    """Random indices into ``labels`` holding exactly ``class_counts[c]`` items of class c.

    Args:
        labels: (N,) int labels of a pool.
        class_counts: (C,) how many of each class to draw (without replacement).

    Returns:
        (Σ class_counts,) int64 indices, shuffled.
    """
    counts = torch.as_tensor(class_counts, dtype=torch.long).flatten()
    parts = []
    for c, k in enumerate(counts.tolist()):
        pool = (labels == c).nonzero().flatten()
        if k > len(pool):
            raise ValueError(f"class {c}: asked for {k} items, the pool has {len(pool)}")
        parts.append(pool[torch.randperm(len(pool), generator=generator)[:k]])
    idx = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)
    return idx[torch.randperm(len(idx), generator=generator)]


def fit_class_counts(wanted: Any, available: Any) -> Tensor:
    """Scale class counts down (keeping their proportions) until each fits ``available``.

    Args:
        wanted: (C,) class counts of the samples.
        available: (C,) how many real items of each class the pool holds.

    Returns:
        (C,) counts ≤ both, floor(wanted · f) for the largest f ≤ 1 that fits.
    """
    w = torch.as_tensor(wanted, dtype=torch.float64).flatten()
    a = torch.as_tensor(available, dtype=torch.float64).flatten()
    if w.shape != a.shape:
        raise ValueError(f"wanted {tuple(w.shape)} and available {tuple(a.shape)} differ")
    ratio = torch.where(w > 0, a / w.clamp(min=1), torch.full_like(w, math.inf))
    f = min(1.0, float(ratio.min())) if bool((w > 0).any()) else 1.0
    return (w * f + 1e-9).floor().long()


def matched_real_indices(
    class_counts: Any, *, splits: int = FD_SPLITS, seed: int = 0
) -> list[tuple[Tensor, Tensor, Tensor]]:
    """Held-out real subsets with the samples' class balance, one per half split.

    For each stratified half split (A, B) of the held-out digits
    (:func:`heldout_halves`), the counts are scaled down to fit A
    (:func:`fit_class_counts`), and a subset of A with exactly those counts is
    drawn. The floor compares that subset with B, exactly as the samples are
    compared with B: same n, same classes.

    Args:
        class_counts: (10,) class counts of the generated set (requested
            labels, or the classifier's reading for unconditional samples).

    Returns:
        [(indices into the held-out set: the matched subset of A, B, the
        counts used (10,))] × ``splits``.
    """
    labels = load_digits_split().heldout_labels
    g = torch.Generator().manual_seed(seed + 2)
    out = []
    for a, b in heldout_halves(splits, seed):
        counts = fit_class_counts(class_counts, torch.bincount(labels[a], minlength=10))
        pick = stratified_indices(labels[a], counts, g)
        out.append((a[pick], b, counts))
    return out


@dataclass
class MatchedMetric:
    """A metric of generated digits and its real-vs-real floor at the same n and classes.

    A value *below* the floor does not mean "better than real data": small-n
    FD rewards sets with less variance (and KID's floor is 0 in expectation).
    Compare the two with :func:`differs`.
    """

    metric: str
    n: int
    value: Estimate
    floor: Estimate

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "n": self.n, "value": self.value.as_dict(),
                "floor": self.floor.as_dict()}


def _held_out_features(classifier: DigitClassifier) -> Tensor:
    if classifier not in _HELDOUT_FEATURES:
        _HELDOUT_FEATURES[classifier] = classifier_features(
            classifier, load_digits_split().heldout_images)
    return _HELDOUT_FEATURES[classifier]  # (360, F)


def digits_matched(
    classifier: DigitClassifier,
    samples: Tensor,
    labels: Tensor | None = None,
    *,
    metric: str = "kid",
    splits: int = FD_SPLITS,
    seed: int = 0,
) -> MatchedMetric:
    """KID or FD of generated digits against held-out digits, and the matched floor.

    For each half split (A, B) of the held-out digits, the class counts of the
    samples (``labels``, or the classifier's reading when ``None``) are scaled
    to fit A; a subset of the samples and a subset of A with exactly those
    counts are each compared with B (:func:`matched_real_indices`). Values are
    averaged over the splits.

    Intervals: for KID, the mean of the per-split jackknife SEs (averaging
    correlated estimates cannot have a larger sd, so this is conservative);
    for FD, the split-to-split sd of the values, which covers the choice of
    real reference and of the sample subset but not a new draw of samples:
    for that, repeat with seeds and use :func:`over_seeds`.

    Args:
        samples: (N, 1, 8, 8) in [−1, 1].
        labels: (N,) requested classes, or ``None``.
        metric: ``"kid"`` or ``"fd"``.
    """
    if metric not in ("kid", "fd"):
        raise ValueError(f"unknown metric {metric!r}; valid values are 'kid', 'fd'")
    real = _held_out_features(classifier)
    generated = classifier_features(classifier, samples.detach().float().cpu())  # (N, F)
    groups = _predict(classifier, samples) if labels is None else labels.cpu().long()
    counts_wanted = torch.bincount(groups, minlength=10)
    g = torch.Generator().manual_seed(seed + 1)
    values, floors = [], []
    n_used = 0
    for a_sub, b, counts in matched_real_indices(counts_wanted, splits=splits, seed=seed):
        pick = stratified_indices(groups, counts, g)
        n_used = len(pick)
        if metric == "kid":
            values.append(kid(generated[pick], real[b]))
            floors.append(kid(real[a_sub], real[b]))
        else:
            values.append(frechet_distance_from_features(generated[pick], real[b]))
            floors.append(frechet_distance_from_features(real[a_sub], real[b]))

    def summary(items: list[Any]) -> Estimate:
        if metric == "kid":
            return Estimate(float(np.mean([e.value for e in items])),
                            float(np.mean([e.se for e in items])), n_used)
        sd = float(np.std(items, ddof=1)) if len(items) > 1 else float("nan")
        return Estimate(float(np.mean(items)), sd, n_used)

    return MatchedMetric(metric, n_used, summary(values), summary(floors))


# ------------------------------------------------- 2-D: distance to the oracle
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
            :class:`diffusion_lib.oracle.GaussianMixtureOracle`.
        labels: the class(es) the samples were drawn for (None: the whole
            distribution). A (N,) tensor is matched: the floor chunks are drawn
            with the same labels, the reference with the samples' label mix.

    Returns:
        (SW₂ of the samples, SW₂ floor), each an Estimate over the ``chunks`` chunks.
    """
    if samples.ndim != 2 or chunks < 2 or samples.shape[0] < 2 * chunks:
        raise ValueError(f"samples must be (N, D) with N >= 2·chunks (chunks >= 2), got "
                         f"{tuple(samples.shape)} and chunks={chunks}")
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
