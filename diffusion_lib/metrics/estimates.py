"""Measured values with intervals: an estimate and its standard error, and tests on them.

Every number a table or notebook reports comes with a standard error and its degrees of
freedom (:class:`Estimate`, from :func:`over_seeds` — Student-t, k − 1 df — or
:func:`bootstrap` — normal; :func:`wilson_interval` for a proportion), and
:func:`differs` (Welch's test, :func:`welch_df`) says whether two measured values differ
beyond their intervals. :func:`t_quantile` and :func:`t_cdf` are Student's t behind the
intervals, with no scipy: with k = 3 seeds the 95 % interval is mean ± 4.30 SE, not ± 2.
"""

from __future__ import annotations

import functools
import math
import statistics
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

_NUMBER = (int, float, np.integer, np.floating)
# above this many degrees of freedom the quantile comes from the Cornish–Fisher expansion
# in 1/ν (error ~ ν⁻⁵, far below double precision there) instead of the ν/2-term series
_SERIES_MAX_DF = 2000


def _is_number(x: object) -> bool:
    return not isinstance(x, bool) and isinstance(x, _NUMBER)


def check_level(level: object) -> float:
    """``level`` (an interval's coverage, e.g. 0.95) as a float strictly between 0 and 1."""
    if not _is_number(level):
        raise TypeError(
            f"level must be a number in (0, 1) (the interval's coverage, e.g. 0.95), "
            f"got {type(level).__name__} {level!r}"
        )
    if not 0.0 < float(level) < 1.0:  # also refuses nan
        raise ValueError(
            f"level must be in (0, 1) (the interval's coverage, e.g. 0.95), got {level!r}"
        )
    return float(level)


def check_df(df: object, name: str = "df") -> float:
    """Degrees of freedom as a float ≥ 1 (``math.inf``: the normal)."""
    if not _is_number(df):
        raise TypeError(
            f"{name} must be a number >= 1 (degrees of freedom; math.inf for the normal), "
            f"got {type(df).__name__} {df!r}"
        )
    if not float(df) >= 1.0:  # also refuses nan
        raise ValueError(
            f"{name} must be >= 1 (degrees of freedom; math.inf for the normal), got {df!r}"
        )
    return float(df)


def _t_cdf(t: float, nu: int) -> float:
    """P(T ≤ t) for Student's t with integer ν ≥ 1, in closed form.

    With θ = atan(t/√ν), P(|T| < t) = A is a finite series in cos²θ (Abramowitz & Stegun
    26.7.3–4): for odd ν, (2/π)(θ + sinθ cosθ (1 + ⅔cos²θ + ⅔·⅘cos⁴θ + … + cos^{ν−3}θ
    terms)); for even ν, sinθ (1 + ½cos²θ + ½·¾cos⁴θ + … + cos^{ν−2}θ terms).
    """
    theta = math.atan(abs(t) / math.sqrt(nu))
    s, c2 = math.sin(theta), math.cos(theta) ** 2
    if nu % 2 == 1:
        series, term = 0.0, 1.0
        for j in range(1, (nu - 1) // 2 + 1):  # j = 1 … (ν − 1)/2: terms up to cos^{ν−3}θ
            series += term
            term *= c2 * (2 * j) / (2 * j + 1)
        a = 2 / math.pi * (theta + s * math.cos(theta) * series) if nu > 1 else 2 * theta / math.pi
    else:
        series, term = 0.0, 1.0
        for j in range(1, nu // 2 + 1):  # terms up to cos^{ν−2}θ
            series += term
            term *= c2 * (2 * j - 1) / (2 * j)
        a = s * series
    a = min(a, 1.0)
    return 0.5 + 0.5 * a if t >= 0 else 0.5 - 0.5 * a


def _cornish_fisher(p: float, nu: float) -> float:
    """The t quantile for large ν: z + g₁(z)/ν + … + g₄(z)/ν⁴ (A&S 26.7.5)."""
    z = statistics.NormalDist().inv_cdf(p)
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / nu + g2 / nu**2 + g3 / nu**3 + g4 / nu**4


@functools.lru_cache(maxsize=4096)
def _t_upper(p: float, nu: int) -> float:
    """The p-quantile, p > ½, integer ν ≤ :data:`_SERIES_MAX_DF`: bisection on the CDF."""
    lo, hi = 0.0, 1.0
    while _t_cdf(hi, nu) < p:
        lo, hi = hi, 2 * hi
        if hi > 1e300:  # p within rounding of 1
            return math.inf
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if _t_cdf(mid, nu) < p:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def t_cdf(t: float, df: int | float) -> float:
    """P(T ≤ t) for Student's t with ``df`` degrees of freedom (no scipy).

    ``df = math.inf``: the normal CDF; a non-integer ``df`` is rounded down, as in
    :func:`t_quantile`. E.g. ``2 * t_cdf(2, 2) - 1`` ≈ 0.816: ± 2 SE over 3 seeds covers
    82 %, not 95 %.
    """
    if not _is_number(t) or math.isnan(float(t)):
        raise TypeError(f"t must be a number, got {type(t).__name__} {t!r}")
    nu = check_df(df)
    if math.isinf(nu):
        return statistics.NormalDist().cdf(float(t))
    if math.isinf(float(t)):
        return 1.0 if t > 0 else 0.0
    return _t_cdf(float(t), math.floor(nu))


def t_quantile(p: float, df: int | float) -> float:
    """The p-quantile of Student's t with ``df`` degrees of freedom (no scipy).

    ``df = math.inf`` gives the normal quantile (:class:`statistics.NormalDist`). For an
    integer ``df`` the quantile is found by bisection on the closed-form CDF (a finite
    series in cos² atan(t/√ν)); above 2000 df by the Cornish–Fisher expansion in 1/ν.
    A non-integer ``df`` (Welch–Satterthwaite) is rounded *down*: fewer degrees of
    freedom give a wider interval, so the result is conservative (at most the quantile
    of ⌊df⌋ df). Accurate to about 1e-9 relative for 1e-6 ≤ p ≤ 1 − 1e-6 (a bisection
    on a CDF near 0 or 1 loses digits further out; intervals need p ≤ 0.9995).

    Args:
        p: probability, 0 < p < 1.
        df: degrees of freedom, ≥ 1, or ``math.inf``.

    Example:
        >>> round(t_quantile(0.975, 2), 3), round(t_quantile(0.975, math.inf), 3)
        (4.303, 1.96)
    """
    if not _is_number(p):
        raise TypeError(f"p must be a number in (0, 1) (a probability), got {type(p).__name__}")
    p = float(p)
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1) (a probability), got {p!r}")
    nu = check_df(df)
    if p == 0.5:
        return 0.0
    if math.isinf(nu):
        return statistics.NormalDist().inv_cdf(p)
    nu = math.floor(nu)
    if nu > _SERIES_MAX_DF:
        return _cornish_fisher(p, nu)
    return _t_upper(p, nu) if p > 0.5 else -_t_upper(1.0 - p, nu)


@dataclass(frozen=True)
class Estimate:
    """A measured value with its standard error and the degrees of freedom of that error.

    The interval is ``value ± t·se``, t the Student-t quantile with ``df`` degrees of
    freedom (:meth:`half_width`, :meth:`interval`): ``df = k − 1`` for a mean over k
    seeds (:func:`over_seeds`), ``math.inf`` (the default: the normal, t = 1.96 at 95 %)
    for a bootstrap, a jackknife or a large-n binomial SE. ``n`` is how many samples,
    seeds or splits it rests on.
    """

    value: float
    se: float
    n: int = 0
    df: float = math.inf

    def __post_init__(self) -> None:
        df = math.inf if self.df is None else self.df  # as_dict writes an infinite df as None
        object.__setattr__(self, "df", check_df(df))

    def half_width(self, level: float = 0.95) -> float:
        """t·se, t the ((1 + level)/2)-quantile of Student's t with ``df`` degrees of freedom."""
        return t_quantile((1 + check_level(level)) / 2, self.df) * self.se

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        """(value − t·se, value + t·se): the ``level`` interval (:meth:`half_width`)."""
        half = self.half_width(level)
        return self.value - half, self.value + half

    def __str__(self) -> str:
        return f"{self.value:.4g} ± {self.half_width():.2g}"

    def as_dict(self) -> dict[str, Any]:
        """value, se, n and df (None when infinite, so the dict is plain JSON)."""
        df = None if math.isinf(self.df) else self.df
        return {"value": self.value, "se": self.se, "n": self.n, "df": df}


def check_z(z: object) -> float:
    """``z`` (how many standard errors wide an interval is) as a finite float > 0."""
    if not _is_number(z):
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

    Its interval is Student-t with k − 1 degrees of freedom: mean ± 4.30 SE at 95 % for
    3 seeds, ± 2.26 SE for 10 (a normal ± 2 SE would cover only 82 % and 93 %).

    Args:
        values: k ≥ 2 numbers (or Estimates, whose values are used).

    Returns:
        Estimate(mean, sd/√k, k, df = k − 1).
    """
    v = np.asarray([x.value if isinstance(x, Estimate) else float(x) for x in values])
    if v.size < 2:
        raise ValueError(f"over_seeds needs at least 2 values, got {v.size}")
    k = int(v.size)
    return Estimate(float(v.mean()), float(v.std(ddof=1) / math.sqrt(k)), k, df=k - 1)


def bootstrap(statistic: Any, data: Tensor, *, n_boot: int = 200, seed: int = 0) -> Estimate:
    """``statistic(data)`` with a bootstrap standard error over the rows of ``data``.

    Args:
        statistic: ``f(rows) -> float`` for rows (N, ...).
        data: (N, ...).
        n_boot: bootstrap resamples (with replacement, N rows each).

    Returns:
        Estimate(statistic(data), sd of the resampled statistics, N), df infinite (a
        normal interval). For statistics that are biased at small n (FD) the resamples,
        which hold duplicates, carry a different bias: use the se, not the resampled mean.
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
    300 correct gives about (0.987, 1.0) at z = 2, not (1.0, 1.0). A normal-theory
    interval (z = 2: about 95 %), right for the many independent digits of a pooled
    count; not for a handful of seeds (:func:`over_seeds`).

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


def welch_df(a: Estimate, b: Estimate) -> float:
    """Welch–Satterthwaite degrees of freedom of a − b for independent a and b.

    ν = (se_a² + se_b²)² / (se_a⁴/df_a + se_b⁴/df_b): between min(df_a, df_b) and
    df_a + df_b; infinite when both are (two normal estimates).
    """
    va, vb = a.se**2, b.se**2
    spread = va * va / a.df + vb * vb / b.df  # an infinite df adds 0
    if spread == 0.0:  # both normal (or both exact)
        return math.inf
    return max(1.0, (va + vb) ** 2 / spread)


def differs(a: Estimate, b: Estimate, level: float = 0.95) -> bool:
    """Whether two independent measured values differ beyond their intervals.

    True when |a − b| > t·√(se_a² + se_b²), t the ((1 + level)/2)-quantile of Student's t
    with the Welch–Satterthwaite degrees of freedom of the two (:func:`welch_df`;
    infinite, so t = 1.96, when both estimates are normal): Welch's two-sided test at
    1 − level. Two means over k = 3 seeds each get ν ≈ 4 (t ≈ 2.78); a "± 2 SE" rule
    there would flag 1 in 6 pairs that do not differ.

    It says *differs* for about 1 − level of the pairs that do not differ: a scan of m
    rows at level 0.95 expects ≈ 0.05·m false flags (1 of 20 rows), so a lone flag in a
    long table is weak evidence. Estimates that share samples or seeds are positively
    correlated and this test is then conservative; for two rows measured on the *same*
    seeds compare them seed by seed instead with
    :func:`~diffusion_lib.bench.sweeps.paired_difference` (an :class:`Estimate` with
    k − 1 df whose interval excludes 0).
    """
    level = check_level(level)
    t = t_quantile((1 + level) / 2, welch_df(a, b))
    return abs(a.value - b.value) > t * math.hypot(a.se, b.se)
