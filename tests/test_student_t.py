"""Intervals over seeds that mean what they say: Student's t with k − 1 degrees of freedom.

With k = 3 seeds the 97.5 % t quantile is 4.30, not 2: "mean ± 2 SE" covers 82 %, and a
"|Δ| > 2 SE" rule flags 18 % of the rows that do not differ. ``t_quantile`` (no scipy),
``Estimate.df``/``half_width``, ``over_seeds`` (df = k − 1) and ``differs`` (Welch) fix it.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import diffusion_lib.bench.tables as tables
from diffusion_lib.bench.sweeps import paired_difference, seed_estimate
from diffusion_lib.metrics import (
    Estimate,
    bootstrap,
    differs,
    over_seeds,
    t_cdf,
    t_quantile,
    welch_df,
)

DFS = [*range(1, 31), 50, 100, 1000]
PS = [0.9, 0.95, 0.975, 0.995]
# t_{0.975} from any textbook table
TEXTBOOK = {1: 12.706, 2: 4.303, 4: 2.776, 9: 2.262, math.inf: 1.960}


# ------------------------------------------------------------ the quantile itself
@pytest.mark.parametrize("df", DFS)
def test_t_quantile_matches_scipy(df):
    stats = pytest.importorskip("scipy.stats")
    for p in PS:
        assert t_quantile(p, df) == pytest.approx(stats.t.ppf(p, df), rel=1e-6), p
        assert t_quantile(1 - p, df) == pytest.approx(stats.t.ppf(1 - p, df), rel=1e-6), p
        assert t_cdf(stats.t.ppf(p, df), df) == pytest.approx(p, rel=1e-9)


def test_large_and_infinite_df_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    for df in (2000, 2001, 5000, 10**6):  # the series, then the Cornish–Fisher expansion
        for p in (0.6, *PS, 0.9999):
            assert t_quantile(p, df) == pytest.approx(stats.t.ppf(p, df), rel=1e-9), (df, p)
    for p in PS:
        assert t_quantile(p, math.inf) == pytest.approx(stats.norm.ppf(p), rel=1e-12)


def test_non_integer_df_is_rounded_down_so_the_interval_is_conservative():
    stats = pytest.importorskip("scipy.stats")
    for df in (1.5, 3.7, 17.2, 2000.5):
        assert t_quantile(0.975, df) == t_quantile(0.975, math.floor(df))
        assert t_quantile(0.975, df) >= stats.t.ppf(0.975, df)


@pytest.mark.parametrize("df, expected", TEXTBOOK.items())
def test_textbook_quantiles_without_scipy(df, expected):
    assert round(t_quantile(0.975, df), 3) == expected
    assert t_quantile(0.025, df) == pytest.approx(-t_quantile(0.975, df), rel=1e-14)
    assert t_cdf(t_quantile(0.975, df), df) == pytest.approx(0.975, abs=1e-12)


def test_two_se_over_three_seeds_covers_82_percent():
    assert 2 * t_cdf(2.0, 2) - 1 == pytest.approx(math.sqrt(2 / 3), rel=1e-12)  # 0.816
    assert t_quantile(0.5, 7) == 0.0 and t_cdf(0.0, 7) == 0.5
    assert t_quantile(0.75, 1) == pytest.approx(1.0, rel=1e-12)  # Cauchy: tan(π/4)


@pytest.mark.parametrize(
    "p, df, error, named",
    [
        (0.0, 3, ValueError, "p must be in"),
        (1.0, 3, ValueError, "p must be in"),
        (-0.1, 3, ValueError, "p must be in"),
        (1.5, 3, ValueError, "p must be in"),
        (float("nan"), 3, ValueError, "p must be in"),
        ("0.975", 3, TypeError, "p must be a number"),
        (None, 3, TypeError, "p must be a number"),
        (True, 3, TypeError, "p must be a number"),
        (0.975, 0, ValueError, "df must be >= 1"),
        (0.975, -2, ValueError, "df must be >= 1"),
        (0.975, 0.5, ValueError, "df must be >= 1"),
        (0.975, float("nan"), ValueError, "df must be >= 1"),
        (0.975, -math.inf, ValueError, "df must be >= 1"),
        (0.975, "2", TypeError, "df must be a number"),
        (0.975, None, TypeError, "df must be a number"),
        (0.975, True, TypeError, "df must be a number"),
    ],
)
def test_bad_arguments_are_named(p, df, error, named):
    with pytest.raises(error, match=named):
        t_quantile(p, df)


def test_numpy_numbers_are_numbers():
    assert t_quantile(np.float64(0.975), np.int64(2)) == t_quantile(0.975, 2)


# ------------------------------------------------------------ Estimate and over_seeds
def test_over_seeds_has_k_minus_one_degrees_of_freedom():
    for k in (2, 3, 10):
        e = over_seeds(np.arange(k, dtype=float) ** 2)
        assert e.n == k and e.df == k - 1
        assert e.half_width() == pytest.approx(t_quantile(0.975, k - 1) * e.se, rel=1e-12)
        assert e.half_width(0.9) == pytest.approx(t_quantile(0.95, k - 1) * e.se, rel=1e-12)
        assert e.interval() == pytest.approx((e.value - e.half_width(), e.value + e.half_width()))
    e = over_seeds([1.0, 2.0, 3.0])
    assert str(e) == f"2 ± {t_quantile(0.975, 2) / math.sqrt(3):.2g}"  # "2 ± 2.5", not ± 1.2


def test_estimates_default_to_a_normal_interval():
    assert Estimate(1.0, 0.1).df == math.inf and Estimate(1.0, 0.1, 7).df == math.inf
    assert Estimate(1.0, 0.1).half_width() == pytest.approx(0.196, abs=1e-4)
    data = np.random.default_rng(0).standard_normal(50)
    boot = bootstrap(lambda rows: float(rows.mean()), torch.as_tensor(data))
    assert boot.df == math.inf


def test_as_dict_is_plain_json_and_round_trips():
    for e in (Estimate(1.0, 0.5, 3, df=2), Estimate(1.0, 0.5, 3)):
        d = json.loads(json.dumps(e.as_dict(), allow_nan=False))
        assert Estimate(**d) == e
    assert Estimate(1.0, 0.5).as_dict()["df"] is None


@pytest.mark.parametrize("df", [0, -1, 0.5, float("nan")])
def test_an_estimate_with_no_degrees_of_freedom_is_refused(df):
    with pytest.raises(ValueError, match="df must be >= 1"):
        Estimate(1.0, 0.1, 3, df=df)


# ------------------------------------------------------------ differs
def test_welch_degrees_of_freedom():
    a, b = Estimate(0.0, 1.0, 3, df=2), Estimate(0.0, 1.0, 3, df=2)
    assert welch_df(a, b) == pytest.approx(4.0)  # equal SEs: df_a + df_b
    assert welch_df(a, Estimate(0.0, 0.0)) == pytest.approx(2.0)  # vs an exact value
    assert welch_df(Estimate(0.0, 1.0), Estimate(0.0, 2.0)) == math.inf
    assert welch_df(a, Estimate(0.0, 1.0)) == pytest.approx(8.0)  # 2 · (1² + 1²)² / 1⁴
    lopsided = welch_df(Estimate(0.0, 1.0, 3, df=2), Estimate(0.0, 0.1, 11, df=10))
    assert 2 <= lopsided <= 12


def test_differs_uses_the_t_quantile():
    a, b = Estimate(0.0, 1.0, 3, df=2), Estimate(0.0, 0.0, 1)
    t = t_quantile(0.975, 2)
    assert not differs(a, Estimate(t - 1e-9, 0.0))
    assert differs(a, Estimate(t + 1e-9, 0.0))
    assert differs(a, Estimate(5.0, 0.0)) and not differs(a, Estimate(5.0, 0.0), level=0.99)
    assert differs(Estimate(1.0, 0.1), Estimate(1.5, 0.1))  # normal: 0.5 > 1.96·0.141
    assert not differs(b, b)


def _null_estimates(rng: np.random.Generator, count: int, sd: float = 1.0) -> list[Estimate]:
    """``count`` means over 3 seeds of N(0, sd²): what over_seeds gives, built in bulk."""
    x = sd * rng.standard_normal((count, 3))
    se = x.std(1, ddof=1) / math.sqrt(3)
    return [Estimate(float(m), float(s), 3, df=2) for m, s in zip(x.mean(1), se, strict=True)]


def test_a_three_seed_verdict_is_a_five_percent_test_where_two_se_was_eighteen():
    # the verdict the tables draw (fewer_steps' "differs?"): a paired difference over
    # k = 3 seeds, or a 3-seed mean against an exact value; under the null (no difference)
    rng = np.random.default_rng(0)
    diffs = _null_estimates(rng, 20_000)
    exact = Estimate(0.0, 0.0)
    new = np.mean([differs(d, exact) for d in diffs])
    paired = np.mean([abs(d.value) > d.half_width() for d in diffs])
    old = np.mean([abs(d.value) > 2 * d.se for d in diffs])
    assert abs(new - 0.05) < 0.01 and abs(paired - 0.05) < 0.01
    assert old > 0.15  # 1 − 0.816: the old rule's false flags


def test_paired_difference_is_a_paired_t_test():
    rng = np.random.default_rng(1)
    flags = 0
    for _ in range(4000):
        shared = rng.standard_normal(3) * 5  # what two rows on the same seeds share
        row = {"seeds": [0, 1, 2], "fd_seeds": list(shared + rng.standard_normal(3))}
        ref = {"seeds": [0, 1, 2], "fd_seeds": list(shared + rng.standard_normal(3))}
        d = paired_difference(row, ref)
        assert d.df == 2
        flags += abs(d.value) > d.half_width()
    assert abs(flags / 4000 - 0.05) < 0.015


def test_differs_between_two_three_seed_means_is_at_most_a_five_percent_test():
    rng = np.random.default_rng(2)
    # equal spreads: Welch with ν rounded down is conservative at k = 3 (≈ 2.5 %); the old
    # rule flagged ≈ 12 %
    a, b = _null_estimates(rng, 20_000), _null_estimates(rng, 20_000)
    pairs = list(zip(a, b, strict=True))
    new = np.mean([differs(x, y) for x, y in pairs])
    old = np.mean([abs(x.value - y.value) > 2 * math.hypot(x.se, y.se) for x, y in pairs])
    assert 0.01 < new <= 0.06 and old > 0.10
    # one spread dominates: ν → 2 and the test is exact
    a, b = _null_estimates(rng, 20_000), _null_estimates(rng, 20_000, sd=0.05)
    new = np.mean([differs(x, y) for x, y in zip(a, b, strict=True)])
    assert abs(new - 0.05) < 0.01


# ------------------------------------------------------------ the tables' rows
def test_seed_estimate_reads_a_rows_column():
    row = {"seeds": [0, 1, 2], "fd": 2.0, "fd_se": 0.5, "fd_df": 2}
    e = seed_estimate(row)
    assert (e.value, e.se, e.n, e.df) == (2.0, 0.5, 3, 2)
    del row["fd_df"]  # a row written before rows carried _df
    assert seed_estimate(row).df == 2
    with pytest.raises(ValueError, match="seed_estimate needs"):
        seed_estimate({"seeds": [0], "fd": 2.0, "fd_se": 0.5})


def test_interval_note_names_t_and_the_expected_false_flags():
    text = tables.interval_note(3, 20)
    assert "k − 1 = 2" in text and "t = 4.30" in text and "82 %" in text
    assert "about 1.0 false *differs*" in text
