"""Per-class accuracy and diversity of generated digits, each with an interval.

:mod:`diffusion_lib.metrics` scores a whole sample set; a guidance defect can
hit one class and spare the others (the chapter's null label is class 0,
notebook 05), so here every class gets its own number and standard error:

- accuracy: the share of a class's samples the shipped classifier reads as
  that class, a binomial proportion; its standard error uses the
  Agresti–Coull estimate p̃ = (k + 2)/(n + 4), which stays > 0 when all n
  samples are right (there the plain √(p̂(1 − p̂)/n) would claim certainty);
- diversity: the mean pairwise L2 distance within the class
  (:func:`diffusion_lib.metrics.diversity`), with a bootstrap standard error
  over the class's samples.

:func:`mean_estimate` averages per-class values of independent classes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor

from ..models import DigitClassifier
from .classifier import class_accuracy
from .digits import diversity
from .estimates import Estimate, bootstrap, check_count

__all__ = ["binomial_estimate", "mean_estimate", "per_class_accuracy", "per_class_diversity"]


def binomial_estimate(successes: int, n: int) -> Estimate:
    """The share k/n with the Agresti–Coull standard error √(p̃(1 − p̃)/(n + 4)).

    The :class:`Estimate` form of a proportion, for comparing two of them with
    :func:`~diffusion_lib.metrics.estimates.differs`. For the interval of one proportion use
    :func:`~diffusion_lib.metrics.estimates.wilson_interval`: at z = 2, p̃ ± 2·se here is
    the Agresti–Coull interval, which contains Wilson's, and 0 < se even at k = 0 or n.
    Its df is infinite (a normal interval: n trials, not a handful of seeds).

    Args:
        successes: k, 0 ≤ k ≤ n.
        n: trials, ≥ 1.
    """
    successes, n = check_count("successes", successes), check_count("n", n)
    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"need n >= 1 and 0 <= successes <= n, got {successes}/{n}")
    p_tilde = (successes + 2) / (n + 4)
    return Estimate(successes / n, math.sqrt(p_tilde * (1 - p_tilde) / (n + 4)), n)


def _classes(labels: Tensor, classes: Sequence[int] | None) -> list[int]:
    if labels.ndim != 1:
        raise ValueError(f"labels must have shape (N,), got {tuple(labels.shape)}")
    return sorted(int(c) for c in labels.unique()) if classes is None else list(classes)


def per_class_accuracy(
    classifier: DigitClassifier,
    images: Tensor,
    labels: Tensor,
    classes: Sequence[int] | None = None,
) -> dict[int, Estimate]:
    """Classifier accuracy of each class's samples, {class: Estimate}.

    Args:
        images: (N, 1, 8, 8) samples in [−1, 1].
        labels: (N,) the class each sample was asked for.
        classes: the classes to report (default: those present in ``labels``).
    """
    out = {}
    for c in _classes(labels, classes):
        mask = labels == c
        n = int(mask.sum())
        if n == 0:
            raise ValueError(f"no samples of class {c}")
        acc = class_accuracy(classifier, images[mask], labels[mask])
        out[c] = binomial_estimate(round(acc * n), n)
    return out


def per_class_diversity(
    images: Tensor,
    labels: Tensor,
    classes: Sequence[int] | None = None,
    *,
    n_boot: int = 100,
    seed: int = 0,
) -> dict[int, Estimate]:
    """Within-class diversity of each class, {class: Estimate} (bootstrap standard error).

    Args:
        images: (N, ...) samples in [−1, 1].
        labels: (N,) the class of each sample; every reported class needs ≥ 2 samples.
        n_boot: bootstrap resamples per class.
    """
    out = {}
    for c in _classes(labels, classes):
        x = images[labels == c]
        if x.shape[0] < 2:
            raise ValueError(f"class {c} needs at least 2 samples, got {x.shape[0]}")
        same = labels[labels == c][:1].expand(x.shape[0])  # (n_c,) all c
        out[c] = bootstrap(
            lambda rows, y=same: diversity(rows, y[: len(rows)]), x, n_boot=n_boot, seed=seed
        )
    return out


def mean_estimate(estimates: Sequence[Estimate]) -> Estimate:
    """The mean of independent estimates, with standard error √(Σ se²)/k.

    The result has infinite df (a normal interval), right for bootstrap or binomial
    inputs (:func:`per_class_diversity`, :func:`binomial_estimate`); not for means over
    a few seeds, whose k − 1 df it would drop.
    """
    if not estimates:
        raise ValueError("mean_estimate needs at least one estimate")
    k = len(estimates)
    return Estimate(
        sum(e.value for e in estimates) / k,
        math.sqrt(sum(e.se**2 for e in estimates)) / k,
        sum(e.n for e in estimates),
    )
