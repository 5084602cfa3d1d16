"""Shared pieces of the models: the timestep embedding and the label check."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """Sinusoidal embedding of integer timesteps (Vaswani et al. 2017; DDPM §B).

    Args:
        t: timesteps, shape (B,), any integer or float dtype.
        dim: embedding width (even).
        max_period: the longest wavelength.

    Returns:
        (B, dim) float32: [cos(t ω_0), …, cos(t ω_{d/2−1}), sin(t ω_0), …].
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    )  # (dim/2,)
    args = t.float()[:, None] * freqs[None]  # (B, dim/2)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)  # (B, dim)


class TimestepMLP(nn.Module):
    """sinusoid(t) → Linear → SiLU → Linear, shape (B,) → (B, out_dim)."""

    def __init__(self, freq_dim: int, out_dim: int) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.net = nn.Sequential(
            nn.Linear(freq_dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim)
        )

    def forward(self, t: Tensor) -> Tensor:
        return self.net(timestep_embedding(t, self.freq_dim))  # (B, out_dim)


def check_inputs(x: Tensor, t: Tensor, feature_shape: tuple[int, ...], name: str) -> None:
    """Raise ``ValueError`` unless x is (B, *feature_shape) and t is (B,) integer."""
    if tuple(x.shape[1:]) != feature_shape or x.ndim != len(feature_shape) + 1:
        raise ValueError(
            f"{name} expects x_t of shape (B, {', '.join(map(str, feature_shape))}), "
            f"got {tuple(x.shape)}"
        )
    if t.ndim != 1 or t.shape[0] != x.shape[0]:
        raise ValueError(f"{name} expects t of shape (B,) = ({x.shape[0]},), got {tuple(t.shape)}")
    if t.dtype.is_floating_point or t.dtype == torch.bool:
        raise ValueError(f"{name} expects integer timesteps t, got dtype {t.dtype}")


def resolve_labels(
    labels: Tensor | None, batch: int, num_classes: int, device: torch.device
) -> Tensor:
    """Labels for a class-conditional model; None means the null label everywhere.

    Valid labels are 0 … ``num_classes`` − 1 and the null label ``num_classes``.
    Their *values* are checked only for labels on the CPU and outside
    ``torch.compile``: on an accelerator the check would read the tensor back to
    the host, a synchronisation on every model call that also makes the call
    impossible to capture in a CUDA graph (and under ``torch.compile`` a graph break).
    The samplers check labels once, on the CPU, before moving them (see
    :func:`diffusion_lib.sampling.sample_progressive`); a direct GPU caller with
    an out-of-range label gets the embedding's device-side index error instead.

    Returns:
        (B,) int64 on ``device``.
    """
    null_label = num_classes
    if labels is None:
        return torch.full((batch,), null_label, dtype=torch.long, device=device)
    if labels.ndim != 1 or labels.shape[0] != batch:
        raise ValueError(f"labels must have shape (B,) = ({batch},), got {tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor, got dtype {labels.dtype}")
    if labels.device.type != "cpu" or torch.compiler.is_compiling() or not labels.numel():
        return labels.to(device=device, dtype=torch.long)
    if int(labels.min()) < 0 or int(labels.max()) > null_label:
        raise ValueError(
            f"labels must lie in 0…{num_classes - 1} (classes) or be {null_label} "
            f"(the null label); got min {int(labels.min())}, max {int(labels.max())}"
        )
    return labels.to(device=device, dtype=torch.long)
