"""A small residual MLP that predicts ε for 2-D points.

    x_t (B,2) ─ Linear ─ [h + MLP(LayerNorm(h) , e)]×depth ─ LayerNorm ─ Linear ─ ε̂ (B,2)

with e = emb(t), the sinusoidal timestep embedding through a small MLP. It is
unconditional: ``num_classes = 0`` and ``null_label = None``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from .embeddings import TimestepMLP, check_inputs


@dataclass
class MLPConfig:
    """Architecture of :class:`MLP`.

    Attributes:
        dim: dimension of the points (2).
        hidden: width of the hidden layers.
        depth: number of residual blocks.
        time_dim: width of the timestep embedding.
    """

    dim: int = 2
    hidden: int = 256
    depth: int = 3
    time_dim: int = 128

    def __post_init__(self) -> None:
        if min(self.dim, self.hidden, self.depth, self.time_dim) < 1 or self.time_dim % 2:
            raise ValueError(
                "dim, hidden, depth must be positive and time_dim positive and even; got "
                f"dim={self.dim}, hidden={self.hidden}, depth={self.depth}, "
                f"time_dim={self.time_dim}"
            )


class _Block(nn.Module):
    def __init__(self, hidden: int, emb_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.fc1 = nn.Linear(hidden, hidden)
        self.emb = nn.Linear(emb_dim, hidden)
        self.fc2 = nn.Linear(hidden, hidden)

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        z = F.silu(self.fc1(self.norm(h)) + self.emb(emb))  # (B, hidden)
        return h + self.fc2(z)


class MLP(nn.Module):
    """Unconditional ε-prediction MLP for points, ``forward(x_t, t, labels=None) -> ε̂``."""

    num_classes = 0
    null_label = None

    def __init__(self, config: MLPConfig | None = None) -> None:
        super().__init__()
        cfg = config if config is not None else MLPConfig()
        self.config = cfg
        self.time_embed = TimestepMLP(cfg.time_dim, cfg.time_dim)
        self.inp = nn.Linear(cfg.dim, cfg.hidden)
        self.blocks = nn.ModuleList(_Block(cfg.hidden, cfg.time_dim) for _ in range(cfg.depth))
        self.norm_out = nn.LayerNorm(cfg.hidden)
        self.out = nn.Linear(cfg.hidden, cfg.dim)

    def forward(self, x: Tensor, t: Tensor, labels: Tensor | None = None) -> Tensor:
        """Predict ε for x_t.

        Args:
            x: x_t, shape (B, dim).
            t: original training timesteps, shape (B,), integer.
            labels: must be None (the model is unconditional).

        Returns:
            ε̂, shape (B, dim).
        """
        check_inputs(x, t, (self.config.dim,), "MLP")
        if labels is not None:
            raise ValueError("the MLP is unconditional (num_classes=0); pass labels=None")
        emb = F.silu(self.time_embed(t.to(x.device)))  # (B, time_dim)
        h = self.inp(x)  # (B, hidden)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(self.norm_out(h))  # (B, dim)
