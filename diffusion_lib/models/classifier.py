"""A small CNN that classifies 8×8 digits; its features drive the FD metric.

    x (B,1,8,8) ─ conv 32 ─ conv 64 ─ maxpool ─ conv 64 ─ flatten ─ Linear → f (B,F)
    f ─ ReLU ─ dropout ─ Linear → logits (B,10)

``features(x)`` returns f, the pre-activation penultimate layer (continuous,
closer to Gaussian than ReLU outputs), used by the Fréchet distance.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class ClassifierConfig:
    """Architecture of :class:`DigitClassifier`.

    Attributes:
        num_classes: number of digit classes.
        feature_dim: F, width of the feature layer used by the Fréchet distance.
        dropout: dropout before the last layer (training only).
    """

    num_classes: int = 10
    feature_dim: int = 64
    dropout: float = 0.3


class DigitClassifier(nn.Module):
    """``forward(x) -> logits`` for x in [−1, 1], shape (B, 1, 8, 8)."""

    def __init__(self, config: ClassifierConfig | None = None) -> None:
        super().__init__()
        cfg = config if config is not None else ClassifierConfig()
        self.config = cfg
        self.num_classes = cfg.num_classes
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.conv3 = nn.Conv2d(64, 64, 3, padding=1)
        self.fc = nn.Linear(64 * 4 * 4, cfg.feature_dim)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.feature_dim, cfg.num_classes)

    def features(self, x: Tensor) -> Tensor:
        """Feature vectors f, shape (B, 1, 8, 8) → (B, F)."""
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, 8, 8):
            raise ValueError(f"DigitClassifier expects images (B, 1, 8, 8), got {tuple(x.shape)}")
        h = F.relu(self.conv1(x))  # (B, 32, 8, 8)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)  # (B, 64, 4, 4)
        h = F.relu(self.conv3(h))  # (B, 64, 4, 4)
        return self.fc(h.flatten(1))  # (B, F)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.dropout(F.relu(self.features(x))))  # (B, num_classes)
