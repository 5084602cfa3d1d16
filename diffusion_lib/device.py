"""Pick the best available device: CUDA, then Apple's MPS, then the CPU."""

from __future__ import annotations

import torch


def default_device() -> torch.device:
    """``cuda`` if a CUDA device is present, else ``mps`` if available, else ``cpu``."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_device(device: torch.device | str | None) -> torch.device:
    """``device`` as a ``torch.device``; ``None`` means :func:`default_device`."""
    if device is None:
        return default_device()
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(
            f"unknown device {device!r}; use 'cpu', 'cuda', 'cuda:N', 'mps' or None (auto)"
        ) from err


def model_device(model: object) -> torch.device:
    """The device of a model's first parameter; the CPU for a model without any."""
    if isinstance(model, torch.nn.Module):
        for p in model.parameters():
            return p.device
    return torch.device("cpu")
