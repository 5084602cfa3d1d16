"""Measure the shipped models against the quality bars, over seeds, and write a table.

    python benchmarks/quality.py --seeds 0,1,2,3,4 --publish   # the committed table
    python benchmarks/quality.py --n 60 --seeds 0,1 --steps 50 --cache none   # a quick look
    python benchmarks/quality.py --rederive --publish   # intervals and bars again, no sampling

Rows (DDPM, σ² = β̃, x̂0 clipped to [−1, 1], all T = 1000 steps unless --steps):

- ``digits`` and ``digits_cosine``, guided at w = 3: classes 0…9 requested in turn;
- the same, unconditional: the null label ∅;
- ``moons``: 2-D points against fresh points of the true distribution (SW₂).

Each row is measured on every seed (seed s: per-sample seeds s·n … s·n + n − 1, so seeds
never share noise). A bar **passes** when its whole interval is on the right side:
distance ÷ floor (mean ± t·SE over the seeds, a 95 % Student-t interval with k − 1 df)
≤ 3, and the class accuracy's Wilson interval (all seeds' digits pooled) ≥ 95 %; it
**fails** when the interval is all on the wrong side; otherwise it is *undecided*. The
guided DDPM-1000 digits row is the reference row of ``benchmarks/samplers.py``: with the
same --n, seeds and cache it is measured once.

Writes runs/tables/quality.{json,md} (``--out DIR`` elsewhere), so the quick look leaves the
committed table alone; with ``--publish``, the committed diffusion_lib/results/quality.{json,md}
(package data).
"""

from __future__ import annotations

import sys
import time
from functools import partial
from typing import Any

import torch

from diffusion_lib.bench.cache import fingerprint
from diffusion_lib.bench.sweeps import SamplerSetting, sampler_grid, seed_estimate
from diffusion_lib.bench.tables import (
    interval_note,
    markdown_table,
    publish_table,
    rederive_table,
    table_parser,
)
from diffusion_lib.metrics import evaluate_toy, load_classifier, over_seeds, wilson_interval
from diffusion_lib.pretrained import available_models, load_pretrained

DISTANCE_BAR = 3.0  # FD (SW₂ for 2-D) within 3× of the real-vs-real floor
ACCURACY_BAR = 0.95
W = 3.0


def verdict(
    ratio_low: float, ratio_high: float, accuracy: tuple[float, float] | None = None
) -> str:
    """'pass', 'FAIL' or 'undecided' from the ratio's and the accuracy's intervals."""
    acc_low, acc_high = accuracy if accuracy is not None else (1.0, 1.0)
    if ratio_high <= DISTANCE_BAR and acc_low >= ACCURACY_BAR:
        return "pass"
    if ratio_low > DISTANCE_BAR or acc_high < ACCURACY_BAR:
        return "FAIL"
    return "undecided"


def _with_ratio(row: dict[str, Any], value: str, floor: str, metric: str) -> dict[str, Any]:
    ratio = over_seeds(
        [v / f for v, f in zip(row[f"{value}_seeds"], row[f"{floor}_seeds"], strict=True)]
    )
    row.update(
        metric=metric,
        distance=row[value],
        distance_se=row[f"{value}_se"],
        floor=row[floor],
        ratio=ratio.value,
        ratio_se=ratio.se,
        ratio_df=int(ratio.df),
    )
    return row


def digits_rows(name: str, args: Any, classifier: Any) -> list[dict[str, Any]]:
    """Guided (w = 3) and unconditional DDPM rows of one digits model, over the seeds."""
    model, schedule = load_pretrained(name)
    setting = SamplerSetting("ddpm", args.steps or schedule.num_steps)
    rows = []
    for conditional in (True, False):
        (row,) = sampler_grid(
            model,
            schedule,
            [setting],
            n=args.n,
            seed=args.seeds,
            guidance_scale=W if conditional else None,
            classifier=classifier,
            conditional=conditional,
            cache=args.cache,
        )
        row["fd_floor_seeds"] = [row["fd_floor"]] * len(args.seeds)  # same n and classes
        row["model"] = name
        row["setting"] = f"w = {W:g}" if conditional else "unconditional (∅)"
        if conditional:
            correct = round(sum(a * args.n for a in row["accuracy_seeds"]))
            row["accuracy_low"], row["accuracy_high"] = wilson_interval(
                correct, args.n * len(args.seeds)
            )
        rows.append(_with_ratio(row, "fd", "fd_floor", "FD"))
    return rows


def _toy_measurement(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """One seed of a 2-D row: :func:`evaluate_toy`'s SW₂ and floor, and the wall time."""
    start = time.perf_counter()
    q = evaluate_toy(*args, progress=False, **kwargs)
    return dict(sw=q.sw, sw_floor=q.sw_floor, seconds=time.perf_counter() - start)


def toy_row(name: str, args: Any) -> dict[str, Any]:
    """The unconditional row of a 2-D model: SW₂ to fresh true points, over the seeds."""
    model, schedule = load_pretrained(name)
    weights = fingerprint(model, schedule) if args.cache.path is not None else ""
    per_seed = []
    for s in args.seeds:
        key = dict(
            kind="toy",
            dataset=name,
            n=args.toy_n,
            seed=s,
            steps=args.steps,
            weights=weights,
            device=next(model.parameters()).device.type,
        )
        per_seed.append(
            args.cache.measure(
                key,
                partial(
                    _toy_measurement,
                    model,
                    schedule,
                    name,
                    n=args.toy_n,
                    steps=args.steps,
                    seed=s * args.toy_n,
                ),
            )
        )
    row: dict[str, Any] = {
        "model": name,
        "setting": "unconditional",
        "n": args.toy_n,
        "seeds": list(args.seeds),
    }
    for key in ("sw", "sw_floor", "seconds"):
        values = [m[key] for m in per_seed]
        estimate = over_seeds(values)
        row[key], row[f"{key}_se"], row[f"{key}_df"] = estimate.value, estimate.se, len(values) - 1
        row[f"{key}_seeds"] = values
    return _with_ratio(row, "sw", "sw_floor", "SW₂")


def annotate(row: dict[str, Any]) -> None:
    """The printed columns of a row: 95 % Student-t intervals (k − 1 df) as text and the
    verdict (``--rederive`` re-runs this)."""
    digits = ".2f" if row["metric"] == "FD" else ".4f"
    half = seed_estimate(row, "distance").half_width()
    row["distance_ci"] = f"{row['metric']} {row['distance']:{digits}} ± {half:{digits}}"
    row["floor_shown"] = f"{row['floor']:{digits}}"
    ratio = seed_estimate(row, "ratio")
    low, high = ratio.interval()
    row["ratio_ci"] = f"{row['ratio']:.2f} ± {ratio.half_width():.2f}×"
    accuracy = None
    if row.get("accuracy_low") is not None:
        accuracy = (row["accuracy_low"], row["accuracy_high"])
        row["accuracy_ci"] = (
            f"{100 * row['accuracy']:.1f} % ({100 * accuracy[0]:.1f}–{100 * accuracy[1]:.1f})"
        )
    if row.get("diversity") is not None:
        row["diversity_ci"] = (
            f"{row['diversity']:.2f} ± {seed_estimate(row, 'diversity').half_width():.2f} "
            f"(real {row['diversity_real']:.2f})"
        )
    row["bar"] = verdict(low, high, accuracy)


def annotate_rows(rows: list[dict[str, Any]]) -> None:
    """:func:`annotate` every row."""
    for row in rows:
        annotate(row)


COLUMNS = [
    ("model", "model", "s"),
    ("setting", "setting", "s"),
    ("n", "n per seed", "d"),
    ("distance_ci", "distance ± 95 % CI (t, k−1 df)", "s"),
    ("floor_shown", "floor", "s"),
    ("ratio_ci", "ratio ± 95 % CI (t)", "s"),
    ("accuracy_ci", "accuracy (Wilson)", "s"),
    ("diversity_ci", "diversity ± 95 % CI (t)", "s"),
    ("bar", "bar", "s"),
    ("seconds", "wall s per seed", ".0f"),
]


def render(payload: dict[str, Any]) -> str:
    """The Markdown table of a quality.json payload."""
    steps = "all T = 1000" if payload["steps"] is None else str(payload["steps"])
    return (
        "# Sample quality of the shipped models\n\n"
        f"Command: `{payload['command']}`\n\n{payload['env']}. DDPM, {steps} steps, σ² = β̃, "
        f"x̂0 clipped; seeds {payload['seeds']} (seed s: per-sample seeds s·n … s·n + n − 1).\n\n"
        "- **distance**: FD in the shipped classifier's features against held-out digits "
        "(178 samples used per split, so n above that adds little), or SW₂ to fresh moons; "
        "mean over the seeds ± t·SE.\n"
        "- **floor**: real vs real at the same n and class balance (the metric's small-sample "
        "bias); **ratio** = distance ÷ floor, seed by seed.\n"
        f"- **bar**: *pass* when the ratio's whole interval is ≤ {DISTANCE_BAR:g} and the "
        f"accuracy's Wilson interval (all seeds pooled) is ≥ {ACCURACY_BAR:.0%}; *FAIL* when "
        "the interval is all on the wrong side; else *undecided*. A *pass* or a *FAIL* is "
        "wrong for at most 1 row in 40 (one end of a 95 % interval).\n"
        "- **diversity**: mean pixel distance between two digits of the same class (the "
        "requested one; the classifier's reading for ∅); lower = less varied.\n"
        "- wall s: mean per seed on a shared 2-core CPU, one thread; rough. A row found in "
        "the cache (`--cache`) shows the time it took when it was measured.\n\n"
        + interval_note(len(payload["seeds"]))
        + "\n\n"
        + markdown_table(payload["rows"], COLUMNS)
    )


def main(argv: list[str] | None = None) -> int:
    parser = table_parser(__doc__, n=300, seeds="0,1,2,3,4")
    parser.add_argument(
        "--models",
        default=",".join(available_models()),
        help="comma-separated shipped models (default: all)",
    )
    parser.add_argument("--toy-n", type=int, default=1000, help="points per 2-D row and seed")
    parser.add_argument("--steps", type=int, default=None, help="DDPM steps (default: all T)")
    args = parser.parse_args(argv)
    if args.rederive:
        payload = rederive_table("quality", args, render, annotate_rows)
        return 0 if all(row["bar"] == "pass" for row in payload["rows"]) else 1
    torch.set_num_threads(args.threads)
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(names) - set(available_models()))
    if unknown:
        parser.error(f"unknown models {unknown}; valid: {available_models()}")
    classifier = load_classifier()
    rows: list[dict[str, Any]] = []
    for name in names:
        rows += (
            digits_rows(name, args, classifier)
            if name.startswith("digits")
            else [toy_row(name, args)]
        )
        print(f"{name}: done", flush=True)
    order = available_models()  # the table's order, whatever order they were measured in
    rows.sort(key=lambda row: order.index(row["model"]))
    annotate_rows(rows)
    publish_table(
        "quality",
        "benchmarks/quality.py",
        argv,
        args,
        render,
        toy_n=args.toy_n,
        steps=args.steps,
        guidance_scale=W,
        bars={"distance_ratio": DISTANCE_BAR, "accuracy": ACCURACY_BAR},
        rows=rows,
    )
    return 0 if all(row["bar"] == "pass" for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
