"""Figures (and the small computations behind them) that notebooks 01–03 share.

- :func:`contact_sheet`: a static page of a :class:`~.widgets.TimestepScrubber`'s
  frames, drawn exactly as the widget draws them, for viewers without a kernel;
- :func:`sample_paths`, :func:`plot_paths`: whole trajectories x_T → x_0 of 2-D points,
  one line per point, to compare samplers from the same x_T;
- :func:`exact_density_over_time`, :func:`noised_density_over_time`,
  :func:`plot_density_over_time`: the marginal p_t of a 1-D distribution over t, exact
  (from an oracle) and measured (a histogram of forward-noised samples);
- :func:`x0_histograms`: where the values of x̂0 lie at several t, with the data range ±1;
- :func:`data_frame`: axis limits framed to a point cloud;
- :func:`register_matplotlib_fonts`: run on import, so that a stale font cache does not
  print ``findfont`` warnings under every log-scale figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._extras import extra
from ..sampling import sample_progressive
from ..schedule import NoiseSchedule
from .widgets import IMAGE_ROWS, Frames, draw_image_frame, draw_points_frame

with extra("lessons"):
    import matplotlib
    import matplotlib.pyplot as plt
    from matplotlib import font_manager
    from matplotlib.colors import PowerNorm

__all__ = [
    "contact_sheet",
    "data_frame",
    "exact_density_over_time",
    "noised_density_over_time",
    "plot_density_over_time",
    "plot_paths",
    "register_matplotlib_fonts",
    "sample_paths",
    "sheet_indices",
    "x0_histograms",
]


def register_matplotlib_fonts() -> list[str]:
    """Make the fonts matplotlib ships (STIX, Computer Modern, DejaVu) findable again.

    Mathtext, which draws every log-scale tick label such as 10², looks up all of them
    (its DejaVu fontset falls back to STIX and Computer Modern glyphs). A font cache
    (``fontlist-*.json`` in matplotlib's cache folder) written while matplotlib's own font
    folder was missing lists only the system's fonts; every lookup then logs "findfont:
    Font family ['STIXGeneral'] not found", 21 lines under the first such figure of a
    process. This adds the shipped files the font manager does not know (cheap; nothing
    when the cache is sound) and is run when this module is imported.

    Returns:
        the file names added ([] when the cache already knew them all).
    """
    known = {Path(font.fname).name for font in font_manager.fontManager.ttflist}
    folder = Path(matplotlib.get_data_path(), "fonts", "ttf")
    added = [p for p in sorted(folder.glob("*.ttf")) if p.name not in known]
    for path in added:
        font_manager.fontManager.addfont(str(path))  # also forgets cached lookups
    return [p.name for p in added]


register_matplotlib_fonts()


def sheet_indices(frames: Frames, n_frames: int) -> list[int]:
    """``n_frames`` frame indices spread evenly from the first (noisiest) to the last."""
    if n_frames < 2:
        raise ValueError(f"n_frames must be >= 2, got {n_frames}")
    count = min(n_frames, len(frames))
    return sorted({int(i) for i in np.round(np.linspace(0, len(frames) - 1, count))})


def contact_sheet(frames: Frames, n_frames: int = 6, samples: int = 4) -> plt.Figure:
    """Every row the scrubber shows, for ``n_frames`` frames at once, as a static figure.

    Images: a block per frame with the rows of :data:`~diffusion_lib.lessons.widgets.IMAGE_ROWS`
    (x_t, x̂0, ε̂, in the widget's colour ranges) for ``samples`` samples. 2-D points: one
    panel per frame with x_t, x̂0 and −ε̂ arrows, framed like the widget frames them.
    """
    chosen = sheet_indices(frames, n_frames)
    if frames.kind == "points":
        fig, axes = plt.subplots(1, len(chosen), figsize=(2.6 * len(chosen), 2.8))
        for ax, i in zip(np.atleast_1d(axes), chosen, strict=True):
            draw_points_frame(ax, frames, i, max_arrows=100)
            ax.tick_params(labelsize=7)
        np.atleast_1d(axes)[0].legend(loc="lower left", fontsize=6, markerscale=2)
        fig.tight_layout()
        return fig
    n = min(samples, frames.x_t.shape[1])
    rows = len(IMAGE_ROWS)
    fig = plt.figure(figsize=(0.45 * n * len(chosen) + 0.8, 0.5 * rows + 0.7))
    blocks = fig.add_gridspec(1, len(chosen), wspace=0.15, left=0.06, right=0.99)
    for b, i in enumerate(chosen):
        grid = blocks[0, b].subgridspec(rows, n, wspace=0.05, hspace=0.08)
        axes = [[fig.add_subplot(grid[r, c]) for c in range(n)] for r in range(rows)]
        draw_image_frame(axes, frames, i)
        if b:
            for row in axes:
                row[0].set_ylabel("")
        axes[0][0].set_title(f"t = {frames.t[i]}", fontsize=9, loc="left")
    lims = ", ".join(f"{name} ±{lim:g}" for name, _, lim in IMAGE_ROWS)
    fig.suptitle(f"colour ranges as in the scrubber: {lims}", fontsize=8, y=0.02, va="bottom")
    return fig


def sample_paths(model: Any, schedule: NoiseSchedule, x_T: Tensor, **sample_kwargs: Any) -> Tensor:
    """The whole trajectory of every point: x_T, then each step's output x_{t−1}.

    Args:
        model, schedule: as for :func:`~diffusion_lib.sampling.sample`.
        x_T: (N, D) the start, shared by every sampler compared.
        **sample_kwargs: passed to :func:`~diffusion_lib.sampling.sample_progressive`
            (``sampler``, ``steps``, ``eta``, ``seed`` …).

    Returns:
        (S + 1, N, D) float32 on the CPU: row 0 is x_T, row S the sample.
    """
    steps = list(
        sample_progressive(
            model, schedule, tuple(x_T.shape), x_T=x_T, progress=False, **sample_kwargs
        )
    )
    rows = [steps[0].x_t] + [s.x_prev for s in steps]
    return torch.stack([r.detach().float().cpu() for r in rows])


def data_frame(points: Tensor, margin: float = 0.15) -> tuple[tuple[float, float], ...]:
    """(xlim, ylim) around (N, 2) points with ``margin`` of the span added on each side."""
    p = points.detach().double().cpu()
    lo, hi = p.min(dim=0).values, p.max(dim=0).values
    pad = margin * (hi - lo).clamp(min=1e-6)
    return tuple((float(lo[k] - pad[k]), float(hi[k] + pad[k])) for k in range(2))


def plot_paths(
    paths: Mapping[str, Tensor],
    data: Tensor | None = None,
    axes: Sequence[plt.Axes] | None = None,
) -> plt.Figure:
    """One panel per sampler: each point's path from x_T (black dot) to its sample (colour).

    Args:
        paths: name → (S + 1, N, 2) from :func:`sample_paths`.
        data: (M, 2) exact data points drawn faintly behind, or ``None``.
        axes: one per entry of ``paths``; created when ``None``.
    """
    if axes is None:
        _, axes = plt.subplots(1, len(paths), figsize=(3.2 * len(paths), 3.2), squeeze=False)
        axes = axes[0]
    every = torch.cat([p.reshape(-1, 2) for p in paths.values()])
    xlim, ylim = data_frame(every, margin=0.03)
    colours = plt.get_cmap("viridis")(np.linspace(0, 1, next(iter(paths.values())).shape[1]))
    for ax, (name, p) in zip(axes, paths.items(), strict=True):
        if data is not None:
            d = data.detach().cpu().numpy()
            ax.scatter(d[:, 0], d[:, 1], s=1, c="0.85", zorder=0)
        q = p.numpy()
        for k in range(q.shape[1]):
            ax.plot(q[:, k, 0], q[:, k, 1], lw=0.6, alpha=0.7, color=colours[k])
        ax.scatter(q[0, :, 0], q[0, :, 1], s=6, c="k", zorder=3, label="x_T")
        ax.scatter(
            q[-1, :, 0],
            q[-1, :, 1],
            s=10,
            c=colours,
            edgecolors="k",
            linewidths=0.3,
            zorder=4,
            label="sample",
        )
        ax.set(xlim=xlim, ylim=ylim, aspect="equal", title=name)
        ax.tick_params(labelsize=7)
    axes[0].legend(loc="lower left", fontsize=7)
    axes[0].figure.tight_layout()
    return axes[0].figure


def exact_density_over_time(oracle: Any, ts: Sequence[int], grid: Tensor) -> np.ndarray:
    """p_t(x) of a 1-D oracle on ``grid`` for each t: (len(ts), G) float64.

    Args:
        oracle: a 1-D :class:`~diffusion_lib.exact.oracle.GaussianMixtureOracle` (or anything
            with ``log_prob(x (G, 1), t)``).
        ts: original timesteps, noisiest or cleanest first as you like.
        grid: (G,) points.
    """
    x = grid.double().reshape(-1, 1)
    return np.stack([oracle.log_prob(x, int(t)).exp().numpy() for t in ts])


def noised_density_over_time(
    x0: Tensor, schedule: NoiseSchedule, ts: Sequence[int], edges: Tensor, seed: int = 0
) -> np.ndarray:
    """Histogram densities of q_sample(x0, t) for each t: (len(ts), len(edges) − 1).

    Args:
        x0: (N, 1) data samples; each t noises all of them with fresh ε.
        edges: (G + 1,) bin edges.
    """
    g = torch.Generator().manual_seed(seed)
    width = torch.diff(edges).double().numpy()
    rows = []
    for t in ts:
        eps = torch.randn(x0.shape, generator=g)
        xt = schedule.q_sample(x0, torch.full((x0.shape[0],), int(t)), eps).flatten()
        counts, _ = np.histogram(xt.numpy(), bins=edges.numpy())
        rows.append(counts / (len(xt) * width))
    return np.stack(rows)


def plot_density_over_time(
    densities: Mapping[str, np.ndarray], ts: Sequence[int], extent_x: tuple[float, float]
) -> plt.Figure:
    """Heat maps of p_t(x): x across, t up (t = 0 at the bottom), one panel per entry.

    The colour scale is a power law (γ = 0.4) so the wide late densities stay visible
    next to the narrow peaks of the data at t = 0.
    """
    fig, axes = plt.subplots(
        1, len(densities), figsize=(4.2 * len(densities), 3.2), squeeze=False, sharey=True
    )
    vmax = max(float(np.max(d)) for d in densities.values())
    for ax, (name, d) in zip(axes[0], densities.items(), strict=True):
        image = ax.imshow(
            d,
            aspect="auto",
            origin="lower",
            cmap="magma",
            norm=PowerNorm(gamma=0.4, vmin=0, vmax=vmax),
            extent=(*extent_x, min(ts), max(ts)),
        )
        ax.set(xlabel="x", title=name)
    axes[0][0].set_ylabel("t (forward: noise grows upwards)")
    fig.colorbar(image, ax=list(axes[0]), label="density p_t(x)")
    return fig


def x0_histograms(
    x0_by_t: Mapping[int, Tensor], ax: plt.Axes | None = None, bins: int = 60
) -> plt.Axes:
    """Step histograms of all x̂0 values at each t, with the data range ±1 marked."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3))
    values = {t: v.detach().float().cpu().flatten().numpy() for t, v in x0_by_t.items()}
    top = max(float(np.abs(v).max()) for v in values.values())
    edges = np.linspace(-top, top, bins + 1)
    for t, v in values.items():
        outside = float(np.mean(np.abs(v) > 1))
        ax.hist(
            v, bins=edges, histtype="step", density=True, label=f"t = {t}: {outside:.0%} outside ±1"
        )
    for edge in (-1, 1):
        ax.axvline(edge, color="k", lw=0.8, ls="--")
    ax.set(xlabel="x̂0 pixel value", ylabel="density (log)", yscale="log")
    ax.legend(fontsize=7)
    return ax
