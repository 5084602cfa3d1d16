"""Drive the timestep scrubber without a browser."""

from __future__ import annotations

import ipywidgets as widgets
import pytest
import torch
from conftest import ClassOracle

from diffusion_lib.exact.oracle import GaussianOracle
from diffusion_lib.lessons.widgets import TimestepScrubber, collect_frames, signal_noise_bar
from diffusion_lib.sampling import sample_progressive
from diffusion_lib.schedule import linear_schedule

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def point_frames():
    schedule = linear_schedule(1000)
    steps = sample_progressive(
        GaussianOracle(schedule, 0.3, 0.5), schedule, (64, 2), sampler="ddim", steps=20, seed=0,
        progress=False,
    )  # fmt: skip
    return collect_frames(steps, keep=6)


@pytest.fixture(scope="module")
def image_frames():
    schedule = linear_schedule(1000)
    steps = sample_progressive(
        ClassOracle(schedule), schedule, (3, 1, 4, 4), labels=[0, 1, 2], steps=10, seed=0,
        progress=False,
    )  # fmt: skip
    return collect_frames(steps)


def test_collect_frames_keeps_first_and_last(point_frames):
    f = point_frames
    assert len(f) == 6 and f.kind == "points"
    assert f.t[0] == 999 and f.t[-1] == 49  # the trailing walk 49, 99, …, 999 (kept: 6)
    assert f.x_t.shape == (6, 64, 2) and f.x0.shape == f.eps.shape == f.x_t.shape
    assert all(a < b for a, b in zip(f.alpha_bar, f.alpha_bar[1:], strict=False))
    assert f.final.shape == (64, 2)


@pytest.mark.parametrize("fixture", ["point_frames", "image_frames"])
def test_slider_changes_frame_labels_and_bar(fixture, request):
    frames = request.getfixturevalue(fixture)
    scrubber = TimestepScrubber(frames, title="demo")
    assert isinstance(scrubber.widget, widgets.VBox)
    seen = []
    for i in [0, len(frames) // 2, len(frames) - 1]:
        scrubber.slider.value = i
        assert f"t = <b>{frames.t[i]}</b>" in scrubber.label.value
        assert f"{frames.alpha_bar[i]:.4f}" in scrubber.label.value
        shown = bytes(scrubber.image.value)  # ipywidgets 8 stores a memoryview
        assert shown.startswith(PNG)
        assert shown == scrubber.frame_png(i)
        seen.append((scrubber.label.value, scrubber.bar.value, bytes(scrubber.image.value)))
    labels, bars, images = zip(*seen, strict=True)
    assert len(set(labels)) == 3 and len(set(bars)) == 3 and len(set(images)) == 3


def test_step_buttons_move_and_clamp(point_frames):
    scrubber = TimestepScrubber(point_frames)
    scrubber.forward.click()
    scrubber.forward.click()
    assert scrubber.slider.value == 2
    scrubber.back.click()
    assert scrubber.slider.value == 1
    for _ in range(20):
        scrubber.forward.click()
    assert scrubber.slider.value == len(point_frames) - 1
    assert "t = <b>49</b>" in scrubber.label.value  # the last of the trailing walk
    assert scrubber.play.max == scrubber.slider.max


def test_signal_noise_bar_split():
    html = signal_noise_bar(0.25, width_px=300)
    # variance shares ᾱ : 1 − ᾱ = 0.25 : 0.75 → 75 px : 225 px; amplitudes 0.5 and 0.866
    assert "width:75px" in html and "width:225px" in html
    assert "0.250" in html and "0.750" in html and "0.500" in html and "0.866" in html


def test_collect_frames_bad_keep(point_frames):
    with pytest.raises(ValueError, match="keep must be >= 2"):
        collect_frames(iter([]), keep=1)
    with pytest.raises(ValueError, match="no steps"):
        collect_frames(iter([]))


def test_rendering_does_not_change_the_pyplot_backend(point_frames):
    import matplotlib

    before = matplotlib.get_backend()
    TimestepScrubber(point_frames).frame_png(1)
    assert matplotlib.get_backend() == before
    assert torch.is_grad_enabled()
