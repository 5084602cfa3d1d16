"""Draw the README's picture of the reverse process: x_t from noise to digits.

Four digits (labels 0, 2, 5, 7; per-sample seeds 0-3) from the shipped ``digits`` model
(DDPM σ² = β, 50 trailing steps, guidance 3), each shown at seven of its 50 steps and as
the final sample.
Run once after a change to the model or the sampler defaults:

    python tools/readme_figure.py            # writes docs/reverse_process.png
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from matplotlib.figure import Figure  # no pyplot: no GUI backend, no window

from diffusion_lib import sample_progressive
from diffusion_lib.pretrained import load_pretrained

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "reverse_process.png"
LABELS = [0, 2, 5, 7]
SHOWN = [0, 20, 30, 36, 40, 44, 47]  # step indices of the 50 whose input x_t is drawn


def main(out: Path = OUT) -> None:
    torch.set_num_threads(1)
    model, schedule = load_pretrained("digits")
    steps = list(
        sample_progressive(
            model,
            schedule,
            (len(LABELS), 1, 8, 8),
            sampler="ddpm",
            steps=50,
            variance="beta",
            labels=LABELS,
            guidance_scale=3.0,
            seed=0,
            progress=False,
        )
    )
    columns = [(f"t = {steps[i].t}", steps[i].x_t) for i in SHOWN]
    columns.append(("x₀ (sample)", steps[-1].x_prev))
    fig = Figure(figsize=(1.0 * len(columns), 1.05 * len(LABELS)))
    axes = fig.subplots(len(LABELS), len(columns))
    for col, (title, x) in enumerate(columns):
        axes[0, col].set_title(title, fontsize=9)
        for row in range(len(LABELS)):
            ax = axes[row, col]
            ax.imshow(x[row, 0].clamp(-1, 1), cmap="gray", vmin=-1, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
    for row, label in enumerate(LABELS):
        axes[row, 0].set_ylabel(f"label {label}", fontsize=9)
    fig.suptitle("The reverse process: x_t from noise (left) to digits (right)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=80, metadata={"Software": None})
    print(f"{out.relative_to(ROOT)}: {out.stat().st_size / 1024:.1f} KB")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
