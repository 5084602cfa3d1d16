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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from .._extras import extra
from ..sampling import SampleStep

with extra("lessons"):
    import ipywidgets as widgets
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

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
        f"{1.0 - alpha_bar:.3f} (amplitudes √ᾱ = {signal:.3f}, √(1−ᾱ) = {noise:.3f})</div>"
    )


def _png(fig: Figure) -> bytes:
    # A bare Figure (no pyplot): rendering never touches the notebook's backend or state.
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return buf.getvalue()


IMAGE_ROWS: tuple[tuple[str, str, float], ...] = (
    ("x_t", "x_t", 2.5),
    ("x̂0", "x0", 1.0),
    ("ε̂", "eps", 2.5),
)
"""The rows an image frame shows: (label, :class:`Frames` attribute, colour range ±lim).

x̂0 is shown on [−1, 1], the data range; x_t and ε̂ (standard-normal scale) on [−2.5, 2.5].
The scrubber and the static contact sheet (:func:`diffusion_lib.lessons.plots.contact_sheet`)
both use these, so the two pictures always agree.
"""


def points_frame_limit(frames: Frames, i: int) -> float:
    """A square half-width that frames every x_t and x̂0 of frame ``i`` (10 % margin, ≥ 1).

    Early frames are spread like N(0, I), late ones like the data: one fixed frame for all
    would leave the data a speck in the middle (or cut off x_T).
    """
    both = torch.cat([frames.x_t[i], frames.x0[i]]).abs()
    return max(1.0, 1.1 * float(both.max()))


def draw_points_frame(
    ax: Axes, frames: Frames, i: int, max_arrows: int = 150, lim: float | None = None
) -> None:
    """Draw frame ``i`` of 2-D data into ``ax``: x_t (grey), x̂0 (orange) and −ε̂ arrows (blue).

    ``lim=None`` frames the points (:func:`points_frame_limit`).
    """
    x_t, x0, eps = frames.x_t[i].numpy(), frames.x0[i].numpy(), frames.eps[i].numpy()
    lim = points_frame_limit(frames, i) if lim is None else lim
    ax.scatter(x_t[:, 0], x_t[:, 1], s=4, c="0.6", label="x_t")
    ax.scatter(x0[:, 0], x0[:, 1], s=4, c="tab:orange", label="x̂0 (predicted)")
    k = min(max_arrows, len(x_t))
    ax.quiver(
        x_t[:k, 0], x_t[:k, 1], -eps[:k, 0], -eps[:k, 1],
        angles="xy", scale_units="xy", scale=14.0 / lim, width=0.004, color="tab:blue",
        alpha=0.6,
    )  # fmt: skip
    ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal")
    ax.set_title(f"t = {frames.t[i]}", fontsize=10)


def draw_image_frame(axes: Sequence[Sequence[Axes]], frames: Frames, i: int) -> None:
    """Draw frame ``i`` of images into a grid of axes, one row per :data:`IMAGE_ROWS` entry.

    ``axes[r][c]`` shows sample c of row r; as many samples as there are columns.
    """
    for r, (name, attr, lim) in enumerate(IMAGE_ROWS):
        batch = getattr(frames, attr)[i]
        for c, ax in enumerate(axes[r]):
            ax.imshow(batch[c, 0].numpy(), cmap="gray", vmin=-lim, vmax=lim)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=10)


def render_points(frames: Frames, i: int, max_arrows: int = 150, lim: float | None = None) -> bytes:
    """PNG of frame ``i`` for 2-D data: x_t, x̂0 and the −ε̂ arrows (framed to the points)."""
    fig = Figure(figsize=(4.2, 4.2))
    ax = fig.subplots()
    draw_points_frame(ax, frames, i, max_arrows, lim)
    ax.legend(loc="upper right", fontsize=7, markerscale=3)
    return _png(fig)


def render_images(frames: Frames, i: int, max_images: int = 8) -> bytes:
    """PNG of frame ``i`` for images: rows x_t, x̂0 and ε̂ (:data:`IMAGE_ROWS`), ≤ ``max_images``."""
    n = min(max_images, frames.x_t.shape[1])
    fig = Figure(figsize=(0.9 * n + 0.6, 3.0))
    draw_image_frame(fig.subplots(len(IMAGE_ROWS), n, squeeze=False), frames, i)
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
        widget: the whole ``VBox``. Display the scrubber itself (let the cell return
            it): it shows this widget, with a one-line text fallback.
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

    def _repr_mimebundle_(self, **kwargs: object) -> dict:
        """Display as the widget, with a one-line text fallback.

        Where no kernel runs the widget (GitHub, a saved notebook whose widget state was
        stripped), a viewer shows ``text/plain``: one line saying what is missing, not the
        widget's ``VBox(children=…)`` repr.
        """
        view = {"version_major": 2, "version_minor": 0, "model_id": self.widget.model_id}
        return {
            "text/plain": self.text_fallback(),
            "application/vnd.jupyter.widget-view+json": view,
        }

    def text_fallback(self) -> str:
        """The one line shown where the widget cannot run."""
        return (
            f"[timestep scrubber: {len(self.frames)} frames, t = {self.frames.t[0]} … "
            f"{self.frames.t[-1]}; interactive: run the notebook to scrub]"
        )
