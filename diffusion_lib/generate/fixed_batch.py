"""Batch invariance: the model always sees chunks of one fixed size."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..model_api import null_label_of
from .config import _is_int


class FixedBatchModel(nn.Module):
    """Call ``model`` with exactly ``model_batch`` rows every time.

    Rows are split into chunks of ``model_batch``; the last chunk is padded
    (copies of its last row) and the padding's output dropped. Every row of a
    diffusion model is computed independently of the others (no batch norm
    at eval), so only the *shape* of a call can change its rounding: with the
    shape fixed, row i's ε̂ does not depend on how many rows came with it.

    Args:
        model: follows ``model(x_t, t, labels=None) -> ε̂``.
        model_batch: rows per call, >= 1.
    """

    def __init__(self, model: Callable[..., Tensor], model_batch: int) -> None:
        super().__init__()
        if not _is_int(model_batch) or model_batch < 1:
            raise ValueError(f"model_batch must be an int >= 1, got {model_batch!r}")
        self.model = model
        self.model_batch = int(model_batch)
        self.null_label = null_label_of(model)
        self.num_classes = getattr(model, "num_classes", 0)

    def forward(self, x_t: Tensor, t: Tensor, labels: Tensor | None = None) -> Tensor:
        k = self.model_batch
        rows = x_t.shape[0]
        outputs = []
        for start in range(0, rows, k):
            stop = min(start + k, rows)
            pad = k - (stop - start)
            x, tt = x_t[start:stop], t[start:stop]  # (b, ...), (b,)
            y = None if labels is None else labels[start:stop]
            if pad:
                x = torch.cat([x, x[-1:].expand(pad, *x.shape[1:])])  # (k, ...)
                tt = torch.cat([tt, tt[-1:].expand(pad)])
                y = None if y is None else torch.cat([y, y[-1:].expand(pad)])
            outputs.append(self.model(x, tt, y)[: stop - start])
        return torch.cat(outputs)  # (B, ...)
