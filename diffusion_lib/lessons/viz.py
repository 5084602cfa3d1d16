"""Small plotting helpers the notebooks share (matplotlib, inline-friendly).

Every function draws into axes it is given or creates, and returns the figure,
so a notebook cell can tweak it further. Images are shown on [−1, 1] unless told.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from torch import Tensor

from .._extras import extra
from ..schedule import NoiseSchedule

with extra("lessons"):
    import matplotlib.pyplot as plt

from . import plots  # noqa: F401  (repairs a stale font cache on import: no findfont warnings)

SCHEDULE_QUANTITIES = {
    "betas": "β_t",
    "alphas_cumprod": "ᾱ_t",
    "sqrt_alphas_cumprod": "√ᾱ_t (signal)",
    "log_snr": "log SNR(t) = log ᾱ/(1−ᾱ)",
    "posterior_variance": "β̃_t",
}


def schedule_quantity(schedule: NoiseSchedule, name: str) -> np.ndarray:
    """One of :data:`SCHEDULE_QUANTITIES` as a float64 array of shape (T,)."""
    if name == "log_snr":
        return np.log(schedule.snr().double().numpy())
    if name not in SCHEDULE_QUANTITIES:
        raise ValueError(f"unknown quantity {name!r}; valid: {', '.join(SCHEDULE_QUANTITIES)}")
    return getattr(schedule, name).double().cpu().numpy()


def plot_schedules(
    schedules: Mapping[str, NoiseSchedule],
    quantities: Sequence[str] = ("betas", "alphas_cumprod", "log_snr", "posterior_variance"),
    log_y: Sequence[str] = ("betas", "posterior_variance"),
) -> plt.Figure:
    """One panel per quantity, one line per schedule, against t."""
    fig, axes = plt.subplots(1, len(quantities), figsize=(3.6 * len(quantities), 3.0))
    for ax, q in zip(np.atleast_1d(axes), quantities, strict=True):
        for label, schedule in schedules.items():
            ax.plot(schedule.timesteps.cpu().numpy(), schedule_quantity(schedule, q), label=label)
        ax.set_title(SCHEDULE_QUANTITIES[q], fontsize=10)
        ax.set_xlabel("t")
        if q in log_y:
            ax.set_yscale("log")
    np.atleast_1d(axes)[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def image_row(
    images: Tensor,
    titles: Sequence[str] | None = None,
    axes: Sequence[plt.Axes] | None = None,
    vmin: float = -1.0,
    vmax: float = 1.0,
    ylabel: str | None = None,
) -> plt.Figure:
    """Show (N, 1, H, W) or (N, H, W) images side by side, grey, on [vmin, vmax]."""
    images = images.detach().float().cpu()
    if images.ndim == 4:
        images = images[:, 0]
    n = images.shape[0]
    if axes is None:
        fig, axes = plt.subplots(1, n, figsize=(1.1 * n, 1.4), squeeze=False)
        axes = axes[0]
    fig = axes[0].figure
    for i, ax in enumerate(axes):
        ax.imshow(images[i].numpy(), cmap="gray", vmin=vmin, vmax=vmax)
        ax.set_xticks([])
        ax.set_yticks([])
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
    if ylabel:
        axes[0].set_ylabel(ylabel, fontsize=9)
    return fig


def image_grid(images: Tensor, nrow: int, **kwargs: object) -> plt.Figure:
    """Show (N, 1, H, W) images as a grid with ``nrow`` images per row."""
    n = images.shape[0]
    rows = -(-n // nrow)
    fig, axes = plt.subplots(rows, nrow, figsize=(0.8 * nrow, 0.8 * rows), squeeze=False)
    for r in range(rows):
        chunk = images[r * nrow : (r + 1) * nrow]
        image_row(chunk, axes=list(axes[r][: len(chunk)]), **kwargs)  # type: ignore[arg-type]
        for ax in axes[r][len(chunk) :]:
            ax.axis("off")
    fig.subplots_adjust(wspace=0.05, hspace=0.05)
    return fig


def scatter_points(
    points: Tensor, ax: plt.Axes | None = None, lim: float = 2.0, **kwargs: object
) -> plt.Axes:
    """Scatter (N, 2) points on a square [−lim, lim]² frame."""
    if ax is None:
        _, ax = plt.subplots(figsize=(3, 3))
    p = points.detach().float().cpu().numpy()
    kwargs.setdefault("s", 2)
    ax.scatter(p[:, 0], p[:, 1], **kwargs)  # type: ignore[arg-type]
    ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal")
    return ax


def out_of_range_share(x: Tensor) -> float:
    """Share of values outside [−1, 1]."""
    return float((x.abs() > 1).float().mean())


__all__ = [
    "image_grid",
    "image_row",
    "out_of_range_share",
    "plot_schedules",
    "scatter_points",
    "schedule_quantity",
]
