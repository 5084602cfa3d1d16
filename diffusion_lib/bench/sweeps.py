"""Measured comparisons shared by the notebooks and ``benchmarks/``.

One function per question, each returning plain rows (dicts) that a notebook can
plot and a benchmark can write as JSON/Markdown:

- :func:`sampler_grid` — how do samplers and step counts trade time for quality?
- :func:`guidance_sweep` — what does the guidance scale w do to accuracy, FD and diversity?

Both take one seed or several. With k ≥ 2 seeds every measured column ``c`` is the mean
over seeds, with ``c_se`` (its standard error, sd/√k), ``c_df`` (k − 1, the degrees of
freedom of that SE) and ``c_seeds`` (the k values) beside it: its interval is
``c ± t·c_se``, Student-t with k − 1 df (:func:`seed_estimate`; ± 4.30 SE at 95 % for 3
seeds, not ± 2). :func:`paired_difference` compares two rows seed by seed (the same seeds
and the same real reference, so their shared noise cancels).

A notebook on a CPU runs a small slice live and reads the full table that
``benchmarks/`` committed; both come from these functions, so they cannot drift.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import torch
from torch import nn

from ..data import NUM_DIGIT_CLASSES
from ..metrics import (
    DigitClassifier,
    DigitsQuality,
    Estimate,
    digits_quality,
    load_classifier,
    over_seeds,
)
from ..sampling import SamplerSpec, sample
from ..schedule import NoiseSchedule
from .cache import TableCache, fingerprint
from .reuse import CommittedSeeds, json_safe, measure_row
from .timing import timed


@dataclass(frozen=True)
class SamplerSetting(SamplerSpec):
    """One row of a sampler table: a :class:`~diffusion_lib.sampling.SamplerSpec` (same
    fields and defaults) with an optional ``label`` and ``extra`` keyword arguments of
    :func:`~diffusion_lib.sampling.sample` (e.g. ``guidance_scale``)."""

    label: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The row's label: ``label``, or the sampler table's label of the spec."""
        return self.label or SamplerSpec.label.fget(self)  # type: ignore[attr-defined]

    def kwargs(self) -> dict[str, Any]:
        return {**super().kwargs(), **self.extra}


def _timed_sample(
    model: nn.Module, schedule: NoiseSchedule, shape: tuple[int, ...], **kwargs: Any
) -> tuple[torch.Tensor, float]:
    device = next(model.parameters()).device if any(True for _ in model.parameters()) else "cpu"
    x, seconds = timed(lambda: sample(model, schedule, shape, progress=False, **kwargs), device)
    return x.cpu(), seconds


def _sample_and_score(
    model: nn.Module,
    schedule: NoiseSchedule,
    n: int,
    seed: int,
    classifier: DigitClassifier,
    conditional: bool = True,
    **kwargs: Any,
) -> tuple[torch.Tensor, float, DigitsQuality]:
    """``n`` digits: (samples on the CPU, wall seconds, quality).

    Conditional: classes 0…9 in turn; else the null label ∅ (the unconditional model).
    Seed s gives sample i the per-sample seed s·n + i: different seeds never share noise
    (``sample(seed=s)`` alone would give seeds s … s + n − 1, which overlap for s and s + 1).
    """
    labels = torch.arange(n) % NUM_DIGIT_CLASSES if conditional else None
    seeds = [seed * n + i for i in range(n)]
    x, seconds = _timed_sample(model, schedule, (n, 1, 8, 8), labels=labels, seeds=seeds, **kwargs)
    return x, seconds, digits_quality(x.clamp(-1, 1), labels, classifier)


def _measurement(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """One (setting, seed) of :func:`sampler_grid`: :func:`_sample_and_score`'s numbers."""
    _, seconds, q = _sample_and_score(*args, **kwargs)
    return _quality_columns(seconds, q)


def _quality_columns(seconds: float, q: DigitsQuality) -> dict[str, Any]:
    """The measured columns of a table row: wall seconds and the digits' quality."""
    return dict(
        seconds=seconds,
        fd=q.fd,
        fd_floor=q.fd_floor,
        fd_sd=q.fd_sd,
        fd_floor_sd=q.fd_floor_sd,
        accuracy=q.accuracy,
        diversity=q.diversity,
        diversity_real=q.diversity_real,
    )


def _seed_list(seed: int | Sequence[int]) -> list[int]:
    seeds = [int(seed)] if isinstance(seed, int) else [int(s) for s in seed]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seed must be an int or distinct ints, got {seed!r}")
    return seeds


# per-seed columns that are averaged (with _se, _df and _seeds when k >= 2); the floor and the
# real-data columns depend on n and the class balance only, so they are the same every seed
_MEASURED = ("seconds", "fd", "accuracy", "diversity", "saturated")


def _over_seeds(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from k per-seed rows: measured columns averaged, the rest from the first."""
    row = dict(per_seed[0])
    for key in _MEASURED:
        if row.get(key) is None:  # absent, or not defined (accuracy of ∅ samples)
            continue
        values = [r[key] for r in per_seed]
        row[key] = float(sum(values) / len(values))
        if len(values) > 1:
            row[f"{key}_se"], row[f"{key}_df"] = over_seeds(values).se, len(values) - 1
            row[f"{key}_seeds"] = values
    row["seeds"] = [r["seed"] for r in per_seed]
    row.pop("seed", None)
    return row


def seed_estimate(row: dict[str, Any], key: str = "fd") -> Estimate:
    """Column ``key`` of a row measured on k ≥ 2 seeds as an :class:`Estimate`.

    Mean ``row[key]``, SE ``row[key + "_se"]``, n = k and df = k − 1 (Student-t), so
    ``seed_estimate(row).half_width()`` is the 95 % half-width t·SE. A row written before
    rows carried ``_df`` gets k − 1 from its ``seeds``.
    """
    if row.get(f"{key}_se") is None or len(row.get("seeds") or ()) < 2:
        raise ValueError(
            f"seed_estimate needs a row measured on >= 2 seeds with {key!r} and {key + '_se'!r}"
            f" (got seeds {row.get('seeds')})"
        )
    k = len(row["seeds"])
    return Estimate(row[key], row[f"{key}_se"], k, df=row.get(f"{key}_df", k - 1))


def _identity(setting: SamplerSetting) -> dict[str, Any]:
    """What identifies a stored row of a setting: its name and ``sample()``'s keyword
    arguments for it (sampler, steps, the options that apply to the sampler, ``extra``);
    a row stored before an option existed counts as having its default."""
    return dict({k: json_safe(v) for k, v in setting.kwargs().items()}, name=setting.name)


def paired_difference(row: dict[str, Any], ref: dict[str, Any], key: str = "fd") -> Estimate:
    """``row[key] − ref[key]`` over the seeds they share, with its standard error.

    Both rows must come from the same seeds (and so the same real reference): the
    difference is taken seed by seed, which cancels what the two share, then
    :func:`~diffusion_lib.metrics.over_seeds` gives mean ± t·SE (Student-t, k − 1 df:
    the paired t-test; the difference is beyond its interval when
    ``abs(d.value) > d.half_width()``).
    """
    if row.get("seeds") != ref.get("seeds") or f"{key}_seeds" not in row:
        raise ValueError(
            f"paired_difference needs two rows measured on the same >= 2 seeds "
            f"(got {row.get('seeds')} and {ref.get('seeds')})"
        )
    pairs = zip(row[f"{key}_seeds"], ref[f"{key}_seeds"], strict=True)
    return over_seeds([a - b for a, b in pairs])


def sampler_grid(
    model: nn.Module,
    schedule: NoiseSchedule,
    settings: Iterable[SamplerSetting],
    *,
    n: int = 100,
    seed: int | Sequence[int] = 0,
    guidance_scale: float | None = None,
    classifier: DigitClassifier | None = None,
    conditional: bool = True,
    cache: TableCache | None = None,
    reuse: CommittedSeeds | None = None,
) -> list[dict[str, Any]]:
    """Sample ``n`` digits with every setting and measure each.

    Conditional (default): classes 0…9 in turn, guided when ``guidance_scale`` is set;
    else the null label ∅ (``accuracy`` is then None). With a ``cache``
    (:class:`~diffusion_lib.bench.cache.TableCache`) each (setting, seed) is measured
    once: an interrupted table resumes, and more seeds compute only the new ones. With
    ``reuse`` (:class:`~diffusion_lib.bench.reuse.CommittedSeeds`, a committed table of the
    same n and guidance) a row the committed table holds is measured again on its first
    stored seed only, and its other stored seeds are reused when that one agrees (the row's
    ``reused_seeds`` lists them).

    Returns rows with ``name``, the setting's fields, ``seconds`` (wall time),
    ``fd``, ``fd_floor`` (matched real-vs-real), ``accuracy``, ``diversity``; over
    several seeds also ``seeds`` and, per measured column, ``_se``, ``_df`` (k − 1) and
    ``_seeds``.
    """
    classifier = classifier if classifier is not None else load_classifier()
    seeds = _seed_list(seed)
    cache = cache if cache is not None else TableCache(None)
    weights = fingerprint(model, schedule, classifier) if cache.path is not None else ""
    # a GPU computes other digits than a CPU (another conv arithmetic): kept apart
    device = next(iter(model.parameters()), torch.empty(0)).device.type
    rows = []
    for setting in settings:
        base = {k: json_safe(v) for k, v in asdict(setting).items() if k not in ("label", "extra")}

        def measure(s: int, setting: SamplerSetting = setting) -> dict[str, Any]:
            key = dict(
                kind="digits",
                setting=setting.kwargs(),
                n=n,
                seed=s,
                guidance_scale=guidance_scale,
                conditional=conditional,
                weights=weights,
                device=device,
            )
            return cache.measure(
                key,
                partial(
                    _measurement,
                    model,
                    schedule,
                    n,
                    s,
                    classifier,
                    conditional,
                    guidance_scale=guidance_scale,
                    **setting.kwargs(),
                ),
            )

        match = _identity(setting)
        measured, reused = measure_row(setting.name, seeds, measure, reuse, match)
        per_seed = [
            dict(base, name=setting.name, n=n, seed=s, **m)
            for s, m in zip(seeds, measured, strict=True)
        ]
        rows.append(_over_seeds(per_seed))
        if reused:
            rows[-1]["reused_seeds"] = reused
    return rows


def guidance_sweep(
    model: nn.Module,
    schedule: NoiseSchedule,
    scales: Sequence[float],
    *,
    n: int = 100,
    seed: int | Sequence[int] = 0,
    classifier: DigitClassifier | None = None,
    reuse: CommittedSeeds | None = None,
    **sampler_kwargs: Any,
) -> tuple[list[dict[str, Any]], dict[float, torch.Tensor]]:
    """Sample ``n`` digits per guidance scale w and measure accuracy, FD and diversity.

    ``reuse``: a committed sweep of the same sampler and n, reused as in
    :func:`sampler_grid` (rows matched by w). Returns the rows (over several seeds: as
    :func:`sampler_grid`) and the samples of the first seed (first 20 of each w) for grids.
    """
    classifier = classifier if classifier is not None else load_classifier()
    seeds = _seed_list(seed)
    rows, grids = [], {}
    for w in scales:

        def measure(s: int, w: float = float(w)) -> dict[str, Any]:
            x, seconds, q = _sample_and_score(
                model, schedule, n, s, classifier, guidance_scale=w, **sampler_kwargs
            )
            grids.setdefault(w, x[:20])  # the first seed is always measured
            saturated = float((x.abs() >= 0.999).float().mean())
            return dict(**_quality_columns(seconds, q), saturated=saturated)

        measured, reused = measure_row(f"w = {w:g}", seeds, measure, reuse, {"w": float(w)})
        per_seed = [
            dict(w=float(w), n=n, seed=s, **m) for s, m in zip(seeds, measured, strict=True)
        ]
        rows.append(_over_seeds(per_seed))
        if reused:
            rows[-1]["reused_seeds"] = reused
    return rows, grids
