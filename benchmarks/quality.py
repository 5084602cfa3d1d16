"""Measure the shipped models against the quality bars and write a table.

    python benchmarks/quality.py                      # the full bars: 1,000 samples, 1,000 steps
    python benchmarks/quality.py --n 200 --steps 100  # a quick look

Rows (DDPM, σ² = β̃, x̂0 clipped to [−1, 1]):

- digits, guidance scale w: classes 0…9 requested n/10 times each;
- digits, unconditional: the null label ∅;
- moons: 2-D points against fresh points of the true distribution.

Writes the table to ``diffusion_lib/results/quality.md`` (``--out``).
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

from diffusion_lib.metrics import evaluate_digits, evaluate_toy, load_classifier
from diffusion_lib.pretrained import available_models, git_commit, load_pretrained

DIGIT_BAR = 3.0  # FD within 3× of the real-vs-real floor
TOY_BAR = 3.0
ACCURACY_BAR = 0.95


def _digits_rows(name: str, args: argparse.Namespace, classifier) -> list[dict]:
    model, schedule = load_pretrained(name)
    rows = []
    for conditional in (True, False):
        start = time.perf_counter()
        report = evaluate_digits(
            model, schedule, n=args.n, conditional=conditional,
            guidance_scale=args.guidance if conditional else None, steps=args.steps,
            seed=args.seed, classifier=classifier, progress=not args.no_progress,
        )
        wall = time.perf_counter() - start
        setting = f"w = {args.guidance:g}" if conditional else "unconditional (∅)"
        passed = report.fd_ratio <= DIGIT_BAR and (
            report.accuracy is None or report.accuracy >= ACCURACY_BAR
        )
        rows.append({
            "model": name,
            "setting": setting,
            "distance": f"FD {report.fd:.2f}",
            "floor": f"{report.fd_floor:.2f}",
            "ratio": f"{report.fd_ratio:.2f}×",
            "accuracy": "–" if report.accuracy is None else f"{100 * report.accuracy:.1f} %",
            "diversity": f"{report.diversity:.2f} (real {report.diversity_real:.2f})",
            "bar": "pass" if passed else "FAIL",
            "wall": f"{wall:.0f} s",
        })
        print(rows[-1], flush=True)
    return rows


def _toy_row(name: str, args: argparse.Namespace) -> dict:
    model, schedule = load_pretrained(name)
    start = time.perf_counter()
    report = evaluate_toy(model, schedule, name, n=args.n, steps=args.steps, seed=args.seed,
                          progress=not args.no_progress)
    row = {
        "model": name,
        "setting": "unconditional",
        "distance": f"SW₂ {report.sw:.4f}",
        "floor": f"{report.sw_floor:.4f}",
        "ratio": f"{report.sw_ratio:.2f}×",
        "accuracy": "–",
        "diversity": "–",
        "bar": "pass" if report.sw_ratio <= TOY_BAR else "FAIL",
        "wall": f"{time.perf_counter() - start:.0f} s",
    }
    print(row, flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(available_models()),
                        help="comma-separated shipped models (default: all)")
    parser.add_argument("--n", type=int, default=1000, help="samples per row")
    parser.add_argument("--steps", type=int, default=None, help="DDPM steps (default: all T)")
    parser.add_argument("--guidance", type=float, default=3.0, help="guidance scale w")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", default="diffusion_lib/results/quality.md")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    classifier = load_classifier()
    rows: list[dict] = []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        if name.startswith("digits"):
            rows += _digits_rows(name, args, classifier)
        else:
            rows.append(_toy_row(name, args))

    header = ["model", "setting", "distance", "floor", "ratio", "accuracy", "diversity", "bar",
              "wall"]
    command = shlex.join(["python", "benchmarks/quality.py", *(sys.argv[1:] if argv is None
                                                                else argv)])
    lines = [
        "# Sample quality of the shipped models",
        "",
        f"Command: `{command}`",
        "",
        f"{args.n} samples per row, {'all T = 1000' if args.steps is None else args.steps} DDPM "
        "steps, σ² = β̃, x̂0 clipped, seed "
        f"{args.seed}. Bars: FD (SW₂ for 2-D) ≤ 3× the real-vs-real floor; class accuracy "
        "≥ 95 % at w = 3.",
        "",
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, git {git_commit()[:12]}.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(str(row[h]) for h in header) + " |" for row in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return 0 if all(row["bar"] == "pass" for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
