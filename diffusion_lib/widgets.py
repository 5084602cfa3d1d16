"""The timestep scrubber: slide through a reverse process and *see* each step.

Frames are precomputed from :func:`diffusion_lib.sampling.sample_progressive`
(:func:`collect_frames`), then :class:`TimestepScrubber` shows one at a time:

- 2-D points: x_t (grey), the predicted x̂0 (colour) and the ε̂ field as
  arrows (−ε̂, the direction the step removes noise along);
- images: a grid with one row each for x_t, x̂0 and ε̂.

Always shown: t, ᾱ_t and the signal/noise split √ᾱ_t vs √(1 − ᾱ_t) as a bar.

Only built-in ipywidgets are used (``Play``, ``IntSlider``, ``Button``,
``Image`` fed PNG bytes, ``HTML``), so it works in JupyterLab 4
(ipywidgets 8) and in Colab (ipywidgets 7.7), with no ipympl.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from .sampling import SampleStep

FrameKind = Literal["points", "images"]


@dataclass
class Frames:
    """Snapshots of a reverse process, noisiest first. Tensors live on the CPU.

    Attributes:
        t: original timestep of each frame, length F.
        alpha_bar: ᾱ_t of each frame, length F.
        x_t: (F, B, ...) the input of each step.
        x0: (F, B, ...) the predicted x̂0.
        eps: (F, B, ...) the predicted ε̂.
        final: (B, ...) the sample after the last step.
    """

    t: list[int]
    alpha_bar: list[float]
    x_t: Tensor
    x0: Tensor
    eps: Tensor
    final: Tensor

    def __len__(self) -> int:
        return len(self.t)

    @property
    def kind(self) -> FrameKind:
        """``"points"`` for (B, 2) data, ``"images"`` for (B, C, H, W)."""
        return "points" if self.x_t.ndim == 3 else "images"


def collect_frames(steps: Iterable[SampleStep], keep: int | None = None) -> Frames:
    """Run a progressive sampler and keep (at most ``keep``, evenly spaced) frames.

    The last step is always kept; so is the first. ``keep=None`` keeps all.
    """
    if keep is not None and keep < 2:
        raise ValueError(f"keep must be >= 2 (first and last step) or None, got {keep}")
    all_steps = list(steps)
    if not all_steps:
        raise ValueError("the sampler yielded no steps")
    if keep is not None and keep < len(all_steps):
        chosen = np.unique(np.round(np.linspace(0, len(all_steps) - 1, keep)).astype(int))
    else:
        chosen = np.arange(len(all_steps))
    picked = [all_steps[i] for i in chosen]
    return Frames(
        t=[s.t for s in picked],
        alpha_bar=[s.alpha_bar for s in picked],
        x_t=torch.stack([s.x_t.detach().float().cpu() for s in picked]),
        x0=torch.stack([s.x0.detach().float().cpu() for s in picked]),
        eps=torch.stack([s.eps.detach().float().cpu() for s in picked]),
        final=all_steps[-1].x_prev.detach().float().cpu(),
    )


# ------------------------------------------------------------------ rendering
def signal_noise_bar(alpha_bar: float, width_px: int = 320) -> str:
    """HTML for a bar split ᾱ : 1 − ᾱ, the variance shares of signal (blue) and noise (grey).

    x_t = √ᾱ x0 + √(1 − ᾱ) ε with unit-variance x0 and ε has variance ᾱ + (1 − ᾱ) = 1, so
    the *variances* are shares that add up to one; the amplitudes √ᾱ, √(1 − ᾱ) (printed
    under the bar) are not.
    """
    signal, noise = math.sqrt(alpha_bar), math.sqrt(1.0 - alpha_bar)
    s_px = round(alpha_bar * width_px)
    return (
        f'<div style="display:flex;width:{width_px}px;height:14px;border:1px solid #888">'
        f'<div title="signal" style="width:{s_px}px;background:#1f77b4"></div>'
        f'<div title="noise" style="width:{width_px - s_px}px;background:#bbb"></div></div>'
        f'<div style="font-size:12px">variance: signal ᾱ = {alpha_bar:.3f} · noise 1−ᾱ = '
        f'{1.0 - alpha_bar:.3f} (amplitudes √ᾱ = {signal:.3f}, √(1−ᾱ) = {noise:.3f})</div>'
    )


def _png(fig: Figure) -> bytes:
    # A bare Figure (no pyplot): rendering never touches the notebook's backend or state.
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return buf.getvalue()


def render_points(frames: Frames, i: int, max_arrows: int = 150, lim: float = 3.5) -> bytes:
    """PNG of frame ``i`` for 2-D data: x_t, x̂0 and the −ε̂ arrows."""
    x_t, x0, eps = frames.x_t[i].numpy(), frames.x0[i].numpy(), frames.eps[i].numpy()
    fig = Figure(figsize=(4.2, 4.2))
    ax = fig.subplots()
    ax.scatter(x_t[:, 0], x_t[:, 1], s=4, c="0.6", label="x_t")
    ax.scatter(x0[:, 0], x0[:, 1], s=4, c="tab:orange", label="x̂0 (predicted)")
    k = min(max_arrows, len(x_t))
    ax.quiver(
        x_t[:k, 0], x_t[:k, 1], -eps[:k, 0], -eps[:k, 1],
        angles="xy", scale_units="xy", scale=4.0, width=0.004, color="tab:blue", alpha=0.6,
    )  # fmt: skip
    ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal")
    ax.set_title(f"t = {frames.t[i]}", fontsize=10)
    ax.legend(loc="upper right", fontsize=7, markerscale=3)
    return _png(fig)


def render_images(frames: Frames, i: int, max_images: int = 8) -> bytes:
    """PNG of frame ``i`` for images: rows x_t, x̂0 and ε̂ for up to ``max_images`` samples.

    x̂0 is shown on [−1, 1]; x_t and ε̂ (standard-normal scale) on [−2.5, 2.5].
    """
    n = min(max_images, frames.x_t.shape[1])
    rows = [("x_t", frames.x_t[i], 2.5), ("x̂0", frames.x0[i], 1.0), ("ε̂", frames.eps[i], 2.5)]
    fig = Figure(figsize=(0.9 * n + 0.6, 3.0))
    axes = fig.subplots(3, n, squeeze=False)
    for r, (name, batch, lim) in enumerate(rows):
        for c in range(n):
            ax = axes[r][c]
            ax.imshow(batch[c, 0].numpy(), cmap="gray", vmin=-lim, vmax=lim)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=10)
    fig.suptitle(f"t = {frames.t[i]}", fontsize=10)
    fig.tight_layout()
    return _png(fig)


# ------------------------------------------------------------------ the widget
class TimestepScrubber:
    """A slider (with play and step buttons) over precomputed frames.

    Args:
        frames: from :func:`collect_frames`.
        title: shown above the controls.

    Attributes (for tests and for composing in other layouts):
        slider: ``IntSlider`` over frame indices, 0 = noisiest.
        play: ``Play`` linked to the slider.
        back, forward: step buttons.
        label: ``HTML`` with t and ᾱ_t.
        bar: ``HTML`` signal/noise bar.
        image: ``Image`` with the rendered frame (PNG bytes).
        widget: the whole ``VBox``; display it (or let the cell return it).
    """

    def __init__(self, frames: Frames, title: str = "") -> None:
        if len(frames) == 0:
            raise ValueError("no frames to show")
        self.frames = frames
        self._render = render_points if frames.kind == "points" else render_images
        self._cache: dict[int, bytes] = {}
        last = len(frames) - 1
        self.slider = widgets.IntSlider(
            value=0, min=0, max=last, step=1, description="step", continuous_update=True,
            readout=False, layout=widgets.Layout(width="360px"),
        )  # fmt: skip
        self.play = widgets.Play(value=0, min=0, max=last, step=1, interval=150)
        widgets.jslink((self.play, "value"), (self.slider, "value"))
        self.back = widgets.Button(description="◀", layout=widgets.Layout(width="40px"))
        self.forward = widgets.Button(description="▶", layout=widgets.Layout(width="40px"))
        self.back.on_click(lambda _: self.step(-1))
        self.forward.on_click(lambda _: self.step(+1))
        self.label = widgets.HTML()
        self.bar = widgets.HTML()
        self.image = widgets.Image(format="png")
        self.slider.observe(self._on_change, names="value")
        controls = widgets.HBox([self.play, self.back, self.slider, self.forward, self.label])
        header = [widgets.HTML(f"<b>{title}</b>")] if title else []
        self.widget = widgets.VBox([*header, controls, self.bar, self.image])
        # Stable CSS hooks for the browser test (tests/browser/): add_class works on 7.7 and 8.
        self.widget.add_class("timestep-scrubber")
        self.slider.add_class("timestep-scrubber-slider")
        self.label.add_class("timestep-scrubber-label")
        self.image.add_class("timestep-scrubber-image")
        self.show(0)

    def step(self, delta: int) -> None:
        """Move ``delta`` frames (clamped to the ends)."""
        self.slider.value = int(np.clip(self.slider.value + delta, 0, len(self.frames) - 1))

    def frame_png(self, i: int) -> bytes:
        """The rendered PNG of frame ``i`` (cached)."""
        if i not in self._cache:
            self._cache[i] = self._render(self.frames, i)
        return self._cache[i]

    def show(self, i: int) -> None:
        """Update the labels, bar and image to frame ``i``."""
        t, a_bar = self.frames.t[i], self.frames.alpha_bar[i]
        self.label.value = f"&nbsp;t = <b>{t}</b> &nbsp; ᾱ_t = {a_bar:.4f}"
        self.bar.value = signal_noise_bar(a_bar)
        png = self.frame_png(i)
        self.image.value = png
        # show at its own pixel size: JupyterLab would otherwise stretch it to the cell width
        self.image.width = str(int.from_bytes(png[16:20], "big"))

    def _on_change(self, change: dict) -> None:
        self.show(int(change["new"]))

    def _ipython_display_(self) -> None:  # pragma: no cover - exercised in notebooks
        from IPython.display import display

        display(self.widget)
