"""Models that follow ``model(x_t, t, labels=None) -> ε̂``, and the digit classifier.

``build_model(kind, config)`` rebuilds any of them from the ``kind`` and
``config`` stored in a checkpoint's JSON (see :mod:`diffusion_lib.pretrained`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from .classifier import ClassifierConfig, DigitClassifier
from .mlp import MLP, MLPConfig
from .unet import UNet, UNetConfig

ModelConfig = UNetConfig | MLPConfig | ClassifierConfig

MODEL_KINDS: dict[str, tuple[type[nn.Module], type]] = {
    "unet": (UNet, UNetConfig),
    "mlp": (MLP, MLPConfig),
    "classifier": (DigitClassifier, ClassifierConfig),
}


def model_kind(config: ModelConfig) -> str:
    """The registry name of a config's model class, e.g. ``"unet"``."""
    for kind, (_, config_cls) in MODEL_KINDS.items():
        if type(config) is config_cls:
            return kind
    raise ValueError(f"unknown model config type {type(config).__name__}")


def config_from_dict(kind: str, values: dict[str, Any]) -> ModelConfig:
    """Rebuild a config dataclass from its JSON dict; unknown fields raise."""
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; valid kinds are {', '.join(MODEL_KINDS)}")
    config_cls = MODEL_KINDS[kind][1]
    names = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(
            f"{config_cls.__name__} has no field(s) {unknown}; valid fields are {sorted(names)}"
        )
    return config_cls(**values)


def build_model(kind: str, config: ModelConfig | dict[str, Any] | None = None) -> nn.Module:
    """Instantiate the model of ``kind`` (``"unet"``, ``"mlp"``, ``"classifier"``)."""
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; valid kinds are {', '.join(MODEL_KINDS)}")
    model_cls, _ = MODEL_KINDS[kind]
    if isinstance(config, dict):
        config = config_from_dict(kind, config)
    return model_cls(config)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = [
    "MLP",
    "MODEL_KINDS",
    "ClassifierConfig",
    "DigitClassifier",
    "MLPConfig",
    "ModelConfig",
    "UNet",
    "UNetConfig",
    "build_model",
    "config_from_dict",
    "count_parameters",
    "model_kind",
]
