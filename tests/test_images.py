"""Samples in [−1, 1] → uint8 PNGs and grids, scaled right."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from diffusion_lib.images import make_grid, save_grid, save_png, to_uint8


def test_to_uint8_maps_the_sample_range_onto_0_255():
    x = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 7.0])
    assert to_uint8(x).tolist() == [0, 0, 64, 128, 191, 255, 255]  # 63.75 → 64, 191.25 → 191
    assert to_uint8(x).dtype == torch.uint8
    u = torch.arange(256, dtype=torch.uint8)
    assert torch.equal(to_uint8(u), u)  # already converted: unchanged
    # the inverse of the data scaling x = p / 127.5 − 1 is exact on every level
    assert torch.equal(to_uint8(u.float() / 127.5 - 1), u)


def test_the_seed_chapters_scaling_loses_the_lower_half():
    # save_image expects [0, 1]: it computes clamp(255 x + 0.5, 0, 255), so every
    # sample value in [−1, 0) becomes black. Ours keeps 128 distinct levels there.
    x = torch.linspace(-1, 0, 129)[:-1]
    chapter = (x * 255 + 0.5).clamp(0, 255).to(torch.uint8)
    assert chapter.unique().tolist() == [0]
    assert len(to_uint8(x).unique()) == 128


def test_to_uint8_rejects_non_finite_and_integer_input():
    with pytest.raises(ValueError, match="non-finite"):
        to_uint8(torch.tensor([0.0, float("nan")]))
    with pytest.raises(ValueError, match="dtype"):
        to_uint8(torch.tensor([1, 2]))


@pytest.mark.parametrize("channels, mode", [(1, "L"), (3, "RGB"), (4, "RGBA")])
def test_save_png_round_trip(tmp_path, channels, mode):
    x = torch.rand(channels, 5, 7) * 2 - 1
    path = tmp_path / "x.png.tmp"  # the format does not come from the name
    save_png(x, path)
    with Image.open(path) as img:
        assert img.format == "PNG" and img.mode == mode and img.size == (7, 5)
        pixels = np.asarray(img)
    expected = to_uint8(x).permute(1, 2, 0).numpy()
    assert np.array_equal(pixels, expected[:, :, 0] if channels == 1 else expected)


def test_save_png_rejects_a_batch(tmp_path):
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        save_png(torch.zeros(2, 1, 8, 8), tmp_path / "x.png")
    with pytest.raises(ValueError, match="C in"):
        save_png(torch.zeros(2, 8, 8), tmp_path / "x.png")


def test_make_grid_layout_and_padding():
    # image k is filled with a value that maps to the byte 10 k
    values = torch.arange(5, dtype=torch.float32) * 10 / 127.5 - 1
    images = values[:, None, None, None].expand(5, 1, 2, 3)
    grid = make_grid(images, nrow=3, padding=1, pad_value=1.0)
    assert grid.shape == (2 * 3 + 1, 3 * 4 + 1) and grid.dtype == np.uint8
    for k in range(5):
        top, left = 1 + (k // 3) * 3, 1 + (k % 3) * 4
        assert (grid[top : top + 2, left : left + 3] == 10 * k).all()
    assert (grid[0] == 255).all() and (grid[:, 0] == 255).all()  # white padding
    assert (grid[4:6, 9:12] == 255).all()  # the empty sixth cell is padding too
    # fewer images than nrow: one row, no empty columns
    assert make_grid(images[:2], nrow=8, padding=0).shape == (2, 6)


def test_make_grid_rgb_and_errors():
    assert make_grid(torch.zeros(4, 3, 8, 8), nrow=2, padding=2).shape == (22, 22, 3)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        make_grid(torch.zeros(1, 8, 8))
    with pytest.raises(ValueError, match="nrow"):
        make_grid(torch.zeros(4, 1, 8, 8), nrow=0)
    with pytest.raises(ValueError, match="pad_value"):
        make_grid(torch.zeros(4, 1, 8, 8), pad_value=255)


def test_save_grid_scales_up(tmp_path):
    images = torch.rand(6, 1, 8, 8) * 2 - 1
    path = save_grid(images, tmp_path / "grid.png", nrow=3, scale=4)
    with Image.open(path) as img:
        pixels = np.asarray(img)
    small = make_grid(images, nrow=3)
    assert pixels.shape == (small.shape[0] * 4, small.shape[1] * 4)
    assert np.array_equal(pixels[::4, ::4], small)
