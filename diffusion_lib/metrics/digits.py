"""The digits report: FD with its matched real-vs-real floor, class accuracy, diversity.

- **FD**, the Fréchet distance between Gaussians fitted to features of the
  shipped digit classifier (the FID recipe, with our own small network):
  FD = ‖μ_g − μ_r‖² + tr(Σ_g + Σ_r − 2 (Σ_g^{½} Σ_r Σ_g^{½})^{½}),
  generated digits (g) against half of the held-out digits (r);
- **FD floor**: the same distance between real held-out digits, at the same
  sample size and with the same class counts as the samples
  (:func:`digits_matched`, which :func:`digits_quality` uses). It is not "what
  a perfect model scores": it is itself a noisy small-n estimate (its
  split-to-split sd is reported), samples can score near or *below* it, and at this
  n FD moves little when a set loses some variety, so read it with diversity;
- **class accuracy**: how often the classifier reads the requested digit;
- **diversity**: mean pairwise L2 distance between samples of one class, in
  pixel space ([−1, 1]), averaged over classes; compare with real digits.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..data import NUM_DIGIT_CLASSES, load_digits_split
from ..models import DigitClassifier
from .classifier import (
    _predict,
    class_accuracy,
    classifier_features,
    load_classifier,
)
from .estimates import Estimate
from .frechet import frechet_distance_from_features
from .kid import kid


def diversity(images: Tensor, labels: Tensor) -> float:
    """Mean pairwise L2 distance within each class, averaged over classes.

    Args:
        images: (N, ...) samples in [−1, 1].
        labels: (N,) class of each sample (the requested or the predicted one).
            Classes with fewer than two samples are skipped.
    """
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}")
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
    Only held-out digits are real references: the classifier was fit on the
    train split, so its features tell train digits from unseen ones and would
    inflate the floor.

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


def digits_quality(
    samples: Tensor, labels: Tensor | None = None, classifier: DigitClassifier | None = None
) -> DigitsQuality:
    """FD, FD floor, class accuracy and diversity of generated digits.

    The floor compares real held-out digits with the same n and the same class counts
    (:func:`digits_matched`), so it carries the same small-sample bias as the samples'
    FD. FD can still come out near or *below* its floor, and at this n it moves little
    when a set loses some variety (guidance and big steps reduce it): read it with
    ``diversity``. ``fd_sd`` and
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
    wanted = labels.cpu().long() if labels is not None else torch.arange(n) % NUM_DIGIT_CLASSES
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
        class_histogram=torch.bincount(predicted, minlength=NUM_DIGIT_CLASSES).tolist(),
        fd_sd=matched.value.se,
        fd_floor_sd=matched.floor.se,
    )


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
        counts = fit_class_counts(
            class_counts, torch.bincount(labels[a], minlength=NUM_DIGIT_CLASSES)
        )
        pick = stratified_indices(labels[a], counts, g)
        out.append((a[pick], b, counts))
    return out


@dataclass
class MatchedMetric:
    """A metric of generated digits and its real-vs-real floor at the same n and classes.

    A value *below* the floor does not mean "better than real data": the floor is
    itself a noisy estimate at this n (and KID's floor is 0 in expectation).
    Compare the two with :func:`differs`.
    """

    metric: str
    n: int
    value: Estimate
    floor: Estimate

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "n": self.n,
            "value": self.value.as_dict(),
            "floor": self.floor.as_dict(),
        }


def _held_out_features(classifier: DigitClassifier) -> Tensor:
    if classifier not in _HELDOUT_FEATURES:
        _HELDOUT_FEATURES[classifier] = classifier_features(
            classifier, load_digits_split().heldout_images
        )
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
    counts_wanted = torch.bincount(groups, minlength=NUM_DIGIT_CLASSES)
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
            return Estimate(
                float(np.mean([e.value for e in items])),
                float(np.mean([e.se for e in items])),
                n_used,
            )
        sd = float(np.std(items, ddof=1)) if len(items) > 1 else float("nan")
        return Estimate(float(np.mean(items)), sd, n_used)

    return MatchedMetric(metric, n_used, summary(values), summary(floors))
