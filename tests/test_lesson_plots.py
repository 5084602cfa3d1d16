"""The notebooks' figure helpers (lesson_plots), the fp lesson loop and the scrubber's fallback."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from conftest import ClassOracle

from diffusion_lib.exact.oracle import GaussianMixtureOracle, GaussianOracle
from diffusion_lib.lessons.plots import (
    contact_sheet,
    data_frame,
    exact_density_over_time,
    noised_density_over_time,
    plot_density_over_time,
    plot_paths,
    sample_paths,
    sheet_indices,
    x0_histograms,
)
from diffusion_lib.lessons.precision import chapter_loop_in_dtype, precision_summary
from diffusion_lib.lessons.widgets import IMAGE_ROWS, TimestepScrubber, collect_frames
from diffusion_lib.sampling import sample_progressive
from diffusion_lib.schedule import cosine_schedule, linear_schedule

SCHEDULE = linear_schedule(1000)


@pytest.fixture(scope="module")
def point_frames():
    steps = sample_progressive(
        GaussianOracle(SCHEDULE, 0.3, 0.5),
        SCHEDULE,
        (64, 2),
        sampler="ddim",
        steps=20,
        seed=0,
        progress=False,
    )
    return collect_frames(steps, keep=10)


@pytest.fixture(scope="module")
def image_frames():
    steps = sample_progressive(
        ClassOracle(SCHEDULE),
        SCHEDULE,
        (3, 1, 4, 4),
        labels=[0, 1, 2],
        steps=10,
        seed=0,
        progress=False,
    )
    return collect_frames(steps)


def test_sheet_indices_span_first_to_last(point_frames):
    assert sheet_indices(point_frames, 6) == [0, 2, 4, 5, 7, 9]
    with pytest.raises(ValueError, match="n_frames"):
        sheet_indices(point_frames, 1)


def test_contact_sheet_of_points_has_one_panel_per_frame(point_frames):
    fig = contact_sheet(point_frames, n_frames=6)
    assert len(fig.axes) == 6
    assert [ax.get_title() for ax in fig.axes] == [
        f"t = {point_frames.t[i]}" for i in sheet_indices(point_frames, 6)
    ]
    # framed to the points: the last frame (data, sd 0.5) is zoomed in relative to x_T's
    assert fig.axes[-1].get_xlim()[1] < fig.axes[0].get_xlim()[1]
    plt.close(fig)


def test_contact_sheet_of_images_shows_every_scrubber_row_in_its_range(image_frames):
    fig = contact_sheet(image_frames, n_frames=4, samples=2)
    images = [ax.images[0] for ax in fig.axes]
    assert len(images) == 4 * len(IMAGE_ROWS) * 2
    ranges = {tuple(np.round(im.get_clim(), 3)) for im in images}
    assert ranges == {(-lim, lim) for _, _, lim in IMAGE_ROWS}
    assert [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()] == [r[0] for r in IMAGE_ROWS]
    plt.close(fig)


def test_scrubber_shows_a_one_line_text_fallback(point_frames):
    scrubber = TimestepScrubber(point_frames, title="demo")
    bundle = scrubber._repr_mimebundle_()
    text = bundle["text/plain"]
    assert "\n" not in text and "run the notebook" in text and "VBox" not in text
    view = bundle["application/vnd.jupyter.widget-view+json"]
    assert view["model_id"] == scrubber.widget.model_id and view["version_major"] == 2


def test_sample_paths_start_at_x_T_and_ddim_eta0_ignores_the_seed():
    oracle = GaussianOracle(SCHEDULE, 0.3, 0.5)
    x_T = torch.randn(5, 2, generator=torch.Generator().manual_seed(0))
    a = sample_paths(oracle, SCHEDULE, x_T, sampler="ddim", steps=10, seed=1)
    b = sample_paths(oracle, SCHEDULE, x_T, sampler="ddim", steps=10, seed=2)
    assert a.shape == (11, 5, 2) and torch.equal(a[0], x_T) and torch.equal(a, b)
    c = sample_paths(oracle, SCHEDULE, x_T, steps=10, seed=2)  # DDPM: stochastic
    assert not torch.equal(a, c)
    fig = plot_paths({"ddim": a, "ddpm": c}, data=torch.randn(50, 2))
    assert len(fig.axes) == 2
    plt.close(fig)


def test_data_frame_adds_the_margin():
    (x0, x1), (y0, y1) = data_frame(torch.tensor([[0.0, -1.0], [2.0, 1.0]]), margin=0.1)
    assert (x0, x1) == pytest.approx((-0.2, 2.2)) and (y0, y1) == pytest.approx((-1.2, 1.2))


def test_density_over_time_exact_matches_the_noised_histogram():
    mixture = GaussianMixtureOracle(SCHEDULE, [[-0.5], [0.5]], [0.1, 0.1])
    ts = [0, 100, 500, 999]
    edges = torch.linspace(-4, 4, 81)
    centres = (edges[:-1] + edges[1:]) / 2
    exact = exact_density_over_time(mixture, ts, centres)
    measured = noised_density_over_time(mixture.sample_data(50_000), SCHEDULE, ts, edges)
    width = float(edges[1] - edges[0])
    assert exact.shape == measured.shape == (4, 80)
    assert np.allclose(exact.sum(1) * width, 1, atol=1e-3)
    assert (np.abs(exact - measured).sum(1) * width / 2).max() < 0.05  # TV distance
    fig = plot_density_over_time({"exact": exact, "measured": measured}, ts, (-4, 4))
    plt.close(fig)


def test_x0_histograms_mark_the_data_range():
    ax = x0_histograms({999: torch.randn(100) * 3, 0: torch.rand(100) * 2 - 1})
    assert sorted(line.get_xdata()[0] for line in ax.lines) == [-1, 1]
    assert "outside ±1" in ax.get_legend().get_texts()[0].get_text()
    plt.close(ax.figure)


def test_chapter_loop_fp32_is_right_and_fp16_all_the_way_fails():
    schedule = cosine_schedule(200)
    ref = chapter_loop_in_dtype(schedule, 4000, torch.float32, torch.float32, clip=False)
    nan_share, mean, sd, delta = precision_summary(ref, ref)
    assert nan_share == 0 and delta == 0
    assert abs(mean - 0.3) < 0.02 and abs(sd - 0.2) < 0.02
    bf16 = chapter_loop_in_dtype(schedule, 4000, torch.float32, torch.bfloat16, clip=False)
    assert abs(precision_summary(bf16, ref)[3]) < 1e-3
    # with T = 1000, fp16 rounds the first ᾱ to 1: 1 − ᾱ = 0 and every sample is NaN
    broken = chapter_loop_in_dtype(
        SCHEDULE, 100, torch.float16, torch.float16, clip=False, schedule_dtype=torch.float16
    )
    assert precision_summary(broken, ref[:100])[0] == 1.0


def test_register_matplotlib_fonts_repairs_a_stale_cache(monkeypatch):
    """A font cache without matplotlib's own fonts: they are added back, once."""
    from matplotlib import font_manager

    from diffusion_lib.lessons.plots import register_matplotlib_fonts

    fm = font_manager.fontManager
    stale = [f for f in fm.ttflist if "/mpl-data/" not in f.fname.replace("\\", "/")]
    monkeypatch.setattr(fm, "ttflist", stale)
    added = register_matplotlib_fonts()
    assert {"STIXGeneral.ttf", "cmr10.ttf", "DejaVuSansDisplay.ttf"} <= set(added)
    assert font_manager.findfont("STIXGeneral", fallback_to_default=False).endswith(
        "STIXGeneral.ttf"
    )
    assert register_matplotlib_fonts() == []
