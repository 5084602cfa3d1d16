"""Measured values with intervals: an estimate and its standard error, and tests on them.

Every number a table or notebook reports comes with a standard error (:class:`Estimate`,
from :func:`over_seeds` or :func:`bootstrap`; :func:`wilson_interval` for a proportion),
and :func:`differs` says whether two measured values differ beyond their intervals.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor


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
        z = check_z(z)
        return self.value - z * self.se, self.value + z * self.se

    def __str__(self) -> str:
        return f"{self.value:.4g} ± {2 * self.se:.2g}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_z(z: object) -> float:
    """``z`` (how many standard errors wide an interval is) as a finite float > 0."""
    if isinstance(z, bool) or not isinstance(z, (int, float, np.integer, np.floating)):
        raise TypeError(f"z must be a number > 0 (e.g. 2: about 95 %), got {type(z).__name__}")
    if not (math.isfinite(float(z)) and float(z) > 0):
        raise ValueError(
            f"z must be a finite number > 0 (the interval's half-width in standard errors, "
            f"e.g. 2: about 95 %), got {z!r}"
        )
    return float(z)


def check_count(name: str, value: object) -> int:
    """A count (``successes``, ``n``) as an int; a float count is a ``TypeError`` naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int (a count), got {type(value).__name__} {value!r}")
    return int(value)


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


def bootstrap(statistic: Any, data: Tensor, *, n_boot: int = 200, seed: int = 0) -> Estimate:
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
    boots = [float(statistic(data[torch.randint(0, n, (n,), generator=g)])) for _ in range(n_boot)]
    return Estimate(float(statistic(data)), float(np.std(boots, ddof=1)), n)


def wilson_interval(successes: int, n: int, z: float = 2.0) -> tuple[float, float]:
    """The Wilson score interval of a proportion: (low, high) for ``successes`` of ``n``.

    Unlike p ± z·√(p(1−p)/n) it does not collapse to a point at p = 0 or 1: 300 of
    300 correct gives about (0.987, 1.0) at z = 2, not (1.0, 1.0).

    Example:
        >>> [round(v, 3) for v in wilson_interval(300, 300)]
        [0.987, 1.0]
    """
    successes, n = check_count("successes", successes), check_count("n", n)
    z = check_z(z)
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
    return abs(a.value - b.value) > check_z(z) * math.hypot(a.se, b.se)
