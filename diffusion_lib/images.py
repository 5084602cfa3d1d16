"""Samples in [−1, 1] → 8-bit images: one PNG, or a grid of many.

The library's samples live in [−1, 1]. An 8-bit pixel is

    p = round(255 · (clamp(x, −1, 1) + 1) / 2)

so −1 → 0 (black), 0 → 128 and 1 → 255 (white). The seed chapter hands [−1, 1]
samples to ``torchvision.utils.save_image``, which expects [0, 1]: everything
below 0 turns black and half the range is lost. Here the scaling lives in one
place, :func:`to_uint8`, and everything that writes an image goes through it.

    >>> x = torch.tensor([-1.0, -0.5, 0.0, 1.0, 3.0])
    >>> to_uint8(x).tolist()
    [0, 64, 128, 255, 255]
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from torch import Tensor

from ._extras import extra
from .files import read_regular

with extra("cli"):
    from PIL import Image

IMAGE_CHANNELS = (1, 3, 4)  # grey, RGB, RGBA


def to_uint8(x: Tensor) -> Tensor:
    """Map samples in [−1, 1] to uint8 in [0, 255]: ``round(255 (clamp(x) + 1) / 2)``.

    Args:
        x: a float tensor of any shape, e.g. (B, C, H, W); values outside
            [−1, 1] are clamped. A uint8 tensor is returned unchanged (already
            converted).

    Returns:
        a uint8 tensor of the same shape, on the CPU.

    Raises:
        ValueError: ``x`` holds NaN or ±inf (a diverged sampler), or is not a
            float or uint8 tensor.
    """
    if not isinstance(x, Tensor):
        raise ValueError(f"expected a torch.Tensor, got {type(x).__name__}")
    if x.dtype == torch.uint8:
        return x.cpu()
    if not x.dtype.is_floating_point:
        raise ValueError(f"expected a float tensor in [-1, 1] or uint8, got dtype {x.dtype}")
    x = x.detach().float().cpu()
    bad = int((~torch.isfinite(x)).sum())
    if bad:
        raise ValueError(
            f"the samples hold {bad} non-finite value(s) (NaN or inf); "
            "the sampler diverged, so there is no image to write"
        )
    return ((x.clamp(-1.0, 1.0) + 1.0) / 2.0 * 255.0).round().to(torch.uint8)


def _to_pil(image: Tensor | np.ndarray) -> Image.Image:
    """A (C, H, W) tensor in [−1, 1] (or uint8) → a Pillow image (L, RGB or RGBA)."""
    if isinstance(image, np.ndarray):
        image = torch.from_numpy(image)
    if image.ndim != 3 or image.shape[0] not in IMAGE_CHANNELS:
        raise ValueError(
            f"expected one image of shape (C, H, W) with C in {IMAGE_CHANNELS}, "
            f"got shape {tuple(image.shape)}"
        )
    pixels = to_uint8(image).permute(1, 2, 0).numpy()  # (H, W, C)
    if pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]  # (H, W): greyscale "L"
    return Image.fromarray(np.ascontiguousarray(pixels))


def save_png(image: Tensor | np.ndarray, path: str | os.PathLike[str] | BinaryIO) -> None:
    """Write one image as an 8-bit PNG.

    Args:
        image: (C, H, W) with C = 1 (grey), 3 (RGB) or 4 (RGBA); float in
            [−1, 1] or already uint8.
        path: a file name or a binary file object. The format is always PNG,
            whatever the name's extension (so ``x.png.tmp`` works).
    """
    _to_pil(image).save(path, format="PNG")


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the empty IEND chunk that ends every PNG
_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def png_max_bytes(shape: tuple[int, ...]) -> int:
    """A bound on the size of a PNG of one (C, H, W) image as :func:`save_png` writes it.

    Twice the raw pixels (with PNG's filter byte per row) plus 64 KiB for the
    chunks and zlib's framing: far more than an 8-bit PNG of that size can need.
    """
    c, h, w = shape
    return 2 * (c * h * w + h) + (1 << 16)


def png_is_whole(data: bytes, shape: tuple[int, ...] | None = None, *, decode: bool = True) -> bool:
    """True if ``data`` is a complete PNG (of one (C, H, W) image of ``shape``, if given).

    See :func:`is_whole_png`.
    """
    if len(data) < 2 * len(_PNG_END) or not data.startswith(_PNG_SIGNATURE):
        return False
    if not data.endswith(_PNG_END):
        return False
    if not decode and shape is None:
        return True
    try:
        with Image.open(io.BytesIO(data)) as img:
            if shape is not None:
                c, h, w = shape
                if img.size != (w, h) or img.mode != _MODES.get(c):
                    return False
            if decode:
                img.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return False
    return True


def is_whole_png(
    path: str | os.PathLike[str],
    shape: tuple[int, ...] | None = None,
    *,
    decode: bool = True,
    follow_symlinks: bool = True,
) -> bool:
    """True if ``path`` is a complete PNG (of one (C, H, W) image of ``shape``, if given).

    A file cut short (0 bytes, a truncated write, zeros after a power loss)
    lacks the PNG signature or the final IEND chunk; ``decode=True`` also
    decodes every pixel and checks the size and mode (L, RGB, RGBA for C = 1, 3, 4).
    Only a regular file is read (a FIFO or a device is not a PNG, and is never
    opened in a way that blocks), and with ``shape`` only up to
    :func:`png_max_bytes`; ``follow_symlinks=False`` also says False for a link.
    """
    limit = None if shape is None else png_max_bytes(tuple(shape))
    try:
        data = read_regular(path, "PNG", max_bytes=limit, follow_symlinks=follow_symlinks)
    except (OSError, ValueError):
        return False
    return png_is_whole(data, shape, decode=decode)


def make_grid(
    images: Tensor,
    nrow: int = 8,
    *,
    padding: int = 1,
    pad_value: float = 1.0,
) -> np.ndarray:
    """Tile a batch into one uint8 image: ``ceil(B / nrow)`` rows of ``nrow`` images.

    Args:
        images: (B, C, H, W), float in [−1, 1] or uint8; C in 1, 3, 4.
        nrow: images per row (the grid's number of columns), >= 1.
        padding: pixels between images and around the border, >= 0.
        pad_value: the padding's value in [−1, 1] (default 1.0, white).
            Empty cells of an incomplete last row are padding too.

    Returns:
        uint8 array (rows·(H + p) + p, nrow·(W + p) + p) for C = 1, with a
        trailing channel axis of size C for C = 3 or 4.

    Example:
        >>> make_grid(torch.zeros(6, 1, 8, 8), nrow=3).shape   # 2 rows × 3 columns
        (19, 28)
    """
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] not in IMAGE_CHANNELS:
        got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(
            f"make_grid expects a batch of shape (B, C, H, W) with C in {IMAGE_CHANNELS}, got {got}"
        )
    if images.shape[0] == 0:
        raise ValueError("make_grid got an empty batch (B = 0)")
    if isinstance(nrow, bool) or not isinstance(nrow, int) or nrow < 1:
        raise ValueError(f"nrow must be an int >= 1, got {nrow!r}")
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"padding must be an int >= 0, got {padding!r}")
    if not -1.0 <= pad_value <= 1.0:
        raise ValueError(f"pad_value must lie in [-1, 1] (the sample range), got {pad_value}")
    pixels = to_uint8(images)  # (B, C, H, W)
    b, c, h, w = pixels.shape
    ncol = min(nrow, b)
    rows = math.ceil(b / ncol)
    fill = to_uint8(torch.tensor(float(pad_value)))
    grid = torch.full(
        (c, rows * (h + padding) + padding, ncol * (w + padding) + padding),
        int(fill),
        dtype=torch.uint8,
    )
    for k in range(b):
        top = padding + (k // ncol) * (h + padding)
        left = padding + (k % ncol) * (w + padding)
        grid[:, top : top + h, left : left + w] = pixels[k]
    out = grid.permute(1, 2, 0).numpy()  # (H', W', C)
    return np.ascontiguousarray(out[:, :, 0] if c == 1 else out)


def save_grid(
    images: Tensor,
    path: str | os.PathLike[str],
    nrow: int = 8,
    *,
    padding: int = 1,
    pad_value: float = 1.0,
    scale: int = 1,
) -> Path:
    """Write :func:`make_grid` of ``images`` as a PNG and return its path.

    Args:
        scale: enlarge every pixel to a ``scale`` × ``scale`` block (nearest
            neighbour), e.g. 8 to look at 8×8 digits; >= 1.

    Other arguments as :func:`make_grid`.
    """
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be an int >= 1, got {scale!r}")
    grid = make_grid(images, nrow, padding=padding, pad_value=pad_value)
    if scale > 1:
        grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)
    path = Path(path)
    Image.fromarray(grid).save(path, format="PNG")
    return path


__all__ = [
    "is_whole_png",
    "make_grid",
    "png_is_whole",
    "png_max_bytes",
    "save_grid",
    "save_png",
    "to_uint8",
]
