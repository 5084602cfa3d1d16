"""Guided ODE and SDE samplers converge to different distributions (exact ε̂, 8-Gaussian ring).

    python benchmarks/guided_limits.py --threads 1 --publish   # the committed table
    python benchmarks/guided_limits.py --n 500 --seeds 0,1     # a quick look (runs/tables/)

Classifier-free guidance ε̃ = ε̂(∅) + w (ε̂(c) − ε̂(∅)) with w ≠ 1 is not the scaled score
of one family of noised marginals, so the reverse SDE (DDPM) and the probability-flow ODE
(DDIM η = 0, Heun, DPM-Solver++) it drives need not share a limit as the steps grow. Here
ε̂ is exact (:func:`diffusion_lib.exact.oracle.eight_gaussians`, component sd 0.2, so the
classes overlap and guidance has something to do), the schedule the library's linear one
(T = 1000), class 0, w = 1 and 4, x̂0 not clipped. Each row is measured on every seed
(``--seeds``, default 5), n samples a run, with per-sample seeds that no two runs share
(rows, seeds and w all disjoint). Per seed, each row is compared with that seed's
reference run, DDPM-1000 (σ² = β̃); an independent DDPM-1000 run (other noise) gives the
floor: the SW₂ two finite samples of the *same* law show. The table reports mean ± the
95 % Student-t half-width over the seeds (k − 1 degrees of freedom).

With ``--publish`` it writes the committed diffusion_lib/results/guided_limits.{json,md}
(package data), else runs/tables/ (or ``--out DIR``). ``--cache`` is accepted and unused:
every number here is a comparison with the same seed's reference sample, and the whole
table takes a few minutes. EDM's stochastic sampler (``sampler="edm"``, its ``s_churn``
knob) adds rows at w = 4 when the library has it; otherwise one line says they were skipped.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

import torch

from diffusion_lib import sample
from diffusion_lib.bench.tables import markdown_table, publish_table, table_parser
from diffusion_lib.exact.guided import guided_stats
from diffusion_lib.exact.oracle import eight_gaussians
from diffusion_lib.exact.outputs import CallCounter
from diffusion_lib.metrics.estimates import Estimate, over_seeds
from diffusion_lib.metrics.toy import sliced_wasserstein
from diffusion_lib.sampling import sampler_names
from diffusion_lib.schedule import linear_schedule

GUIDANCE_SCALES = (1.0, 4.0)
LABEL = 0
RING_STD = 0.2
PROJECTIONS = 1024  # evenly spaced directions in 2-D: the estimator adds no noise of its own
LEVEL = 0.95
ROW_SLOTS = 64  # per-sample seed blocks reserved per (seed, w): room for every row
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}
"""Student-t 97.5 % quantiles by degrees of freedom, used if Estimate has no half_width."""


class Setting(NamedTuple):
    """One row: a sampler run with ``sample(..., sampler=, steps=, **options)``.

    A NamedTuple, not a dataclass: the tests load this script by file path, without a
    ``sys.modules`` entry, which a dataclass's annotations need."""

    key: str
    label: str
    sampler: str
    steps: int
    limit: str  # "SDE", "ODE" or "EDM" (the churn knob between them)
    options: Mapping[str, Any] = MappingProxyType({})
    scales: tuple[float, ...] = GUIDANCE_SCALES


def _ode(key: str, label: str, sampler: str, steps: int) -> Setting:
    return Setting(key, label, sampler, steps, "ODE", {"sigma_schedule": "karras"})


def _edm(steps: int, churn: float) -> Setting:
    return Setting(
        f"edm-{steps}-churn{churn:g}",
        f"EDM (Karras σ), s_churn = {churn:g} (γ = {min(churn / steps, math.sqrt(2) - 1):.2f})",
        "edm",
        steps,
        "EDM",
        {"s_churn": churn},
        scales=(4.0,),
    )


SETTINGS = [
    Setting("ref", "DDPM σ²=β̃ (reference)", "ddpm", 1000, "SDE"),
    Setting("floor", "DDPM σ²=β̃, other noise (floor)", "ddpm", 1000, "SDE"),
    Setting("ddpm-50-beta", "DDPM σ²=β, trailing (recommended)", "ddpm", 50, "SDE",
            {"spacing": "trailing", "variance": "beta"}),
    Setting("ddim-250", "DDIM η=0, trailing", "ddim", 250, "ODE", {"spacing": "trailing"}),
    Setting("ddim-1000", "DDIM η=0", "ddim", 1000, "ODE"),
    _ode("dpmpp-20", "DPM-Solver++(2M) (Karras σ)", "dpmpp_2m", 20),
    _ode("heun-25", "Heun (Karras σ)", "heun", 25),
]  # fmt: skip
EDM_SETTINGS = [
    _edm(25, 0.0),
    _edm(25, 2.0),
    _edm(25, 5.0),
    _edm(25, 10.0),
    _edm(100, 40.0),
    _edm(250, 100.0),
]


def settings() -> list[Setting]:
    """The rows: :data:`SETTINGS`, and :data:`EDM_SETTINGS` when the library has ``"edm"``."""
    if "edm" in sampler_names():
        return SETTINGS + EDM_SETTINGS
    print("sampler 'edm' is not in this library: EDM rows skipped", file=sys.stderr)
    return list(SETTINGS)


def sample_seeds(seed: int, w_index: int, slot: int, n: int) -> list[int]:
    """n per-sample seeds, disjoint for every (seed, w, row slot): no two runs share noise."""
    if seed < 0:
        raise ValueError(f"seeds must be >= 0, got {seed}")
    base = ((seed * len(GUIDANCE_SCALES) + w_index) * ROW_SLOTS + slot) * n
    return list(range(base, base + n))


def half_width(estimate: Estimate, level: float = LEVEL) -> float:
    """The Student-t half-width of ``estimate`` over its k seeds (k − 1 df).

    ``Estimate.half_width`` when the library has it, else :data:`T975` (95 % only)."""
    method = getattr(estimate, "half_width", None)
    if callable(method):
        return float(method(level))
    df = estimate.n - 1
    if level != 0.95 or df not in T975:
        raise ValueError(f"no t quantile for level {level} and {df} degrees of freedom")
    return T975[df] * estimate.se


def measure(n: int, seeds: list[int], rows: list[Setting]) -> list[dict[str, Any]]:
    """Every row at every w and seed; returns one dict per (w, row) with per-seed values."""
    schedule = linear_schedule(1000)
    ring = CallCounter(eight_gaussians(schedule, std=RING_STD))
    slots = {s.key: i for i, s in enumerate(SETTINGS + EDM_SETTINGS)}
    out = []
    for wi, w in enumerate(GUIDANCE_SCALES):
        per_row: dict[str, dict[str, Any]] = {}
        for seed in seeds:
            ref = None
            for s in rows:
                if w not in s.scales:
                    continue
                ring.calls = 0
                start = time.perf_counter()
                x = sample(
                    ring,
                    schedule,
                    (n, 2),
                    sampler=s.sampler,
                    steps=s.steps,
                    x0_mode="none",
                    labels=LABEL,
                    guidance_scale=w,
                    seeds=sample_seeds(seed, wi, slots[s.key], n),
                    progress=False,
                    **s.options,
                )
                seconds = time.perf_counter() - start
                ref = x if s.key == "ref" else ref
                row = per_row.setdefault(s.key, {"setting": s, "calls": ring.calls, "seeds": []})
                stats = guided_stats(ring.model, x, LABEL)
                stats["sw2"] = sliced_wasserstein(x, ref, PROJECTIONS) if x is not ref else 0.0
                stats["seconds"] = seconds
                row["seeds"].append(stats)
                print(
                    f"w={w:g} seed {seed} {s.label} {s.steps}: SW2 {stats['sw2']:.4f} "
                    f"p {stats['p_class']:.4f} ({seconds:.1f} s)",
                    file=sys.stderr,
                )
        out += [dict(per_row[s.key], w=w) for s in rows if s.key in per_row]
    return out


def summarise(measured: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows for the JSON: mean, t half-width and per-seed values of every column."""
    rows = []
    floors = {m["w"]: m for m in measured if m["setting"].key == "floor"}
    for m in measured:
        s: Setting = m["setting"]
        per_seed = m["seeds"]
        row: dict[str, Any] = {
            "w": m["w"],
            "key": s.key,
            "name": s.label,
            "sampler": s.sampler,
            "steps": s.steps,
            "limit": s.limit,
            "options": dict(s.options),
            "nfe": m["calls"],
            "seconds": sum(v["seconds"] for v in per_seed) / len(per_seed),
        }
        for col in ("sw2", "p_class", "radius", "angular_sd"):
            values = [v[col] for v in per_seed]
            est = over_seeds(values)
            row |= {col: est.value, f"{col}_se": est.se, f"{col}_hw": half_width(est)}
            row[f"{col}_seeds"] = values
        if s.key != "ref":  # SW₂ − the floor's, seed by seed (same reference sample)
            floor = [v["sw2"] for v in floors[m["w"]]["seeds"]]
            est = over_seeds([a - b for a, b in zip(row["sw2_seeds"], floor, strict=True)])
            row |= {"excess": est.value, "excess_se": est.se, "excess_hw": half_width(est)}
        rows.append(row)
    return rows


def _ci(value: float | None, hw: float | None, spec: str, signed: bool = False) -> str | None:
    if value is None or hw is None:
        return None
    return f"{value:{'+' if signed else ''}{spec}} ± {hw:{spec}}"


COLUMNS = [
    ("name", "sampler", "s"),
    ("steps", "steps", "d"),
    ("nfe", "model calls", "d"),
    ("sw2_ci", "SW₂ to reference", "s"),
    ("excess_ci", "SW₂ − floor (paired)", "s"),
    ("beyond", "beyond floor?", "s"),
    ("p_ci", "p(c │ x₀)", "s"),
    ("radius_ci", "mean radius", "s"),
    ("angle_ci", "angular sd (rad)", "s"),
    ("seconds", "wall s", ".1f"),
]


def _shown(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with the interval strings of :data:`COLUMNS`."""
    shown = dict(row)
    if row["key"] == "ref":
        shown["sw2_ci"], shown["beyond"] = "reference", "–"
    else:
        shown["sw2_ci"] = _ci(row["sw2"], row["sw2_hw"], ".4f")
    if row["key"] not in ("ref", "floor"):
        shown["excess_ci"] = _ci(row["excess"], row["excess_hw"], ".4f", signed=True)
        shown["beyond"] = "yes" if row["excess"] - row["excess_hw"] > 0 else "no"
    elif row["key"] == "floor":
        shown["beyond"] = "floor"
    shown["p_ci"] = _ci(row["p_class"], row["p_class_hw"], ".4f")
    shown["radius_ci"] = _ci(row["radius"], row["radius_hw"], ".3f")
    shown["angle_ci"] = _ci(row["angular_sd"], row["angular_sd_hw"], ".3f")
    return shown


def _find(payload: dict[str, Any], w: float, key: str) -> dict[str, Any] | None:
    return next((r for r in payload["rows"] if r["w"] == w and r["key"] == key), None)


def _sw(row: dict[str, Any] | None) -> str:
    return "–" if row is None else f"{row['sw2']:.3f} ± {row['sw2_hw']:.3f}"


def _overlap(a: dict[str, Any], b: dict[str, Any], col: str) -> bool:
    """Whether two rows' intervals of ``col`` overlap."""
    return abs(a[col] - b[col]) <= a[f"{col}_hw"] + b[f"{col}_hw"]


def summary(payload: dict[str, Any]) -> str:
    """What the table shows, in sentences built from its numbers (so they cannot drift)."""
    rows = payload["rows"]
    floor1, ddim1 = _find(payload, 1.0, "floor"), _find(payload, 1.0, "ddim-1000")
    ref4, floor4 = _find(payload, 4.0, "ref"), _find(payload, 4.0, "floor")
    ddim4, ddim250 = _find(payload, 4.0, "ddim-1000"), _find(payload, 4.0, "ddim-250")
    if None in (floor1, ddim1, ref4, floor4, ddim4, ddim250):
        return ""
    ddim250_1 = _find(payload, 1.0, "ddim-250")
    converged = [r for r in (ddim250_1, ddim1) if r is not None]
    at_floor = all(r["excess"] - r["excess_hw"] <= 0 for r in converged)
    text = (
        f"At w = 1 DDIM η=0 at 250 and 1000 steps {'are' if at_floor else 'are not both'} "
        "within the floor of DDPM-1000 (SW₂ − floor "
        + " and ".join(_ci(r["excess"], r["excess_hw"], ".4f", signed=True) for r in converged)
        + f"; DDIM-1000 at SW₂ {_sw(ddim1)}, the floor at {_sw(floor1)})"
    )
    beyond = [
        r
        for r in rows
        if r["w"] == 1.0 and r not in converged and "excess" in r and r["excess"] > r["excess_hw"]
    ]
    if beyond:
        listed = ", ".join(
            f"{r['name']} {r['steps']} ({_ci(r['excess'], r['excess_hw'], '.4f', signed=True)})"
            for r in beyond
        )
        verb = "are" if len(beyond) > 1 else "is"
        text += f"; {listed} {verb} beyond it" + (
            " (few-step error: at w = 1 the ODE and the SDE share their limit)"
            if all(r["steps"] <= 50 for r in beyond)
            else ""
        )
    text += (
        f". At w = 4 DDIM-1000 is at SW₂ {_sw(ddim4)} from DDPM-1000, the floor at {_sw(floor4)}"
    )
    text += (
        ": beyond it. "
        if ddim4["excess"] - ddim4["excess_hw"] > 0
        else ": not beyond it at this n and k. "
    )
    d_sw, d_radius = ddim4["sw2"] - ddim250["sw2"], ddim4["radius"] - ddim250["radius"]
    gap_radius = ddim4["radius"] - ref4["radius"]
    small = abs(d_sw) < 0.1 * ddim4["excess"] and abs(d_radius) < 0.1 * abs(gap_radius)
    text += (
        f"DDIM-250 is at {_sw(ddim250)}: 4× the steps change SW₂ by {d_sw:+.4f} and the mean "
        f"radius by {d_radius:+.3f}, against a gap of {ddim4['excess']:.3f} in SW₂ (beyond the "
        f"floor) and {gap_radius:+.3f} in radius"
        + (
            ": the gap does not shrink with the steps, so it is the ODE's limit, not "
            "discretisation error. "
            if small
            else ". "
        )
    )
    text += (
        (
            "The guided ODE and the guided SDE land on different distributions: "
            if ddim4["excess"] - ddim4["excess_hw"] > 0
            else "The two limits' statistics: "
        )
        + f"p(c │ x₀) "
        f"{ddim4['p_class']:.3f} vs {ref4['p_class']:.3f}, angular sd "
        f"{ddim4['angular_sd']:.3f} vs {ref4['angular_sd']:.3f} rad, mean radius "
        f"{ddim4['radius']:.2f} vs {ref4['radius']:.2f} (DDIM-1000 vs DDPM-1000)"
    )
    ways = [
        (more if ddim4[col] > ref4[col] else less)
        for col, more, less in (
            ("p_class", "more confidently class 0", "less confidently class 0"),
            ("angular_sd", "wider in angle", "narrower in angle"),
            ("radius", "farther out", "closer in"),
        )
        if not _overlap(ddim4, ref4, col)
    ]
    listed = ", ".join(ways[:-1]) + (" and " if len(ways) > 1 else "") + ways[-1] if ways else ""
    text += f": the ODE's samples are {listed}." if ways else "."
    edm = [r for r in rows if r["limit"] == "EDM"]
    if edm:
        steps = ", ".join(
            f"{r['p_class']:.3f} (s_churn {r['options'].get('s_churn', 0):g}, {r['steps']} steps)"
            for r in edm
        )
        text += (
            f" EDM's churn knob, by p(c │ x₀): {steps}; the ODE limit (DDIM-1000) is at "
            f"{ddim4['p_class']:.3f}, the SDE's (DDPM-1000) at {ref4['p_class']:.3f}."
        )
        past = [
            r for r in edm if r["p_class"] + r["p_class_hw"] < ref4["p_class"] - ref4["p_class_hw"]
        ]
        if past:
            named = ", ".join(
                f"s_churn {r['options']['s_churn']:g} at {r['steps']} steps" for r in past
            )
            lower = all(
                r["radius"] + r["radius_hw"] < ref4["radius"] - ref4["radius_hw"] for r in past
            )
            text += (
                f" Churn does not stop at the SDE's value: {named} "
                f"{'are' if len(past) > 1 else 'is'} below it in p(c │ x₀)"
                + (", with a smaller mean radius than DDPM-1000's too." if lower else ".")
            )
    return text


def render(payload: dict[str, Any]) -> str:
    """The Markdown of a guided_limits.json payload."""
    k = len(payload["seeds"])
    edm = [r for r in payload["rows"] if r["limit"] == "EDM"]
    edm_line = (
        "- **EDM rows** (w = 4 only): Karras et al.'s stochastic sampler, Heun steps on "
        "the Karras σ grid with fresh noise added per step as s_churn says (s_churn = 0: "
        "plain Heun).\n\n"
        if edm
        else "\nEDM's stochastic sampler was not in the library when this table was made: "
        "no EDM rows.\n\n"
    )
    tables = "".join(
        f"## w = {w:g}\n\n"
        + markdown_table([_shown(r) for r in payload["rows"] if r["w"] == w], COLUMNS)
        + "\n"
        for w in payload["guidance_scales"]
    )
    return (
        "# Guided ODE vs SDE: different limits (exact ε̂, 8-Gaussian ring)\n\n"
        f"Command: `{payload['command']}`\n\n{payload['env']}. Exact ε̂ of the 8-Gaussian ring "
        f"(radius 0.75, component sd {payload['ring_std']:g}), linear schedule T = 1000, "
        f"class {payload['label']}, batched CFG, x̂0 not clipped; n = {payload['n']} samples "
        f"per run, seeds {payload['seeds']} (k = {k}), per-sample noise never shared between "
        f"runs. Whole table: {payload['wall_s']:.0f} s.\n\n"
        "- **SW₂ to reference**: sliced W₂ to the same seed's DDPM-1000 (σ² = β̃) sample, "
        f"{payload['projections']} evenly spaced directions. Two finite samples of the same "
        "law are at SW₂ > 0 (a positive bias): the **floor** row, an independent DDPM-1000 "
        "run, measures it. Only a row beyond the floor differs from the reference.\n"
        "- **SW₂ − floor (paired)**: the row's SW₂ minus the floor's, seed by seed (both "
        "against the same reference sample); **beyond floor?** is *yes* when its whole "
        "interval is above 0.\n"
        "- **p(c │ x₀)**: mean exact posterior of class 0 under the data mixture (t = 0); "
        "**mean radius**: mean |x₀| (the ring's radius is 0.75); **angular sd**: "
        "root-mean-square angle of x₀ around class 0's direction.\n"
        f"- **±**: the {payload['interval']} half-width over the k seeds (k − 1 degrees of "
        "freedom). **model calls**: guided ε̂ evaluations (each one batched call of 2n).\n"
        + edm_line
        + f"**What it shows.** {summary(payload)}\n\n"
        + tables
    ).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = table_parser(__doc__, n=3000, seeds="0,1,2,3,4")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    rows = summarise(measure(args.n, args.seeds, settings()))
    wall = time.perf_counter() - start
    library_t = callable(getattr(Estimate, "half_width", None))
    publish_table(
        "guided_limits",
        "benchmarks/guided_limits.py",
        argv,
        args,
        render,
        guidance_scales=list(GUIDANCE_SCALES),
        label=LABEL,
        ring_std=RING_STD,
        projections=PROJECTIONS,
        interval="95 % Student-t" + ("" if library_t else " (quantile from a table)"),
        wall_s=wall,
        rows=rows,
    )
    print(f"wall time {wall:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
