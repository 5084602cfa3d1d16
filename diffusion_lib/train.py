"""The trainer that made the shipped weights: ε-prediction with an EMA.

One step (DDPM, Algorithm 1, with classifier-free label dropout):

1. draw x_0 from the data and its label y; replace y by ∅ (the null label)
   with probability ``label_dropout`` so the same network also learns ε(x_t, ∅);
2. draw t ~ U{0, …, T−1} and ε ~ N(0, I); form x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε;
3. loss = ‖ε − ε_θ(x_t, t, y)‖² (mean over pixels and batch), AdamW step;
4. update the exponential moving average θ_EMA ← d θ_EMA + (1 − d) θ
   (``torch.optim.swa_utils.AveragedModel``). The EMA weights are shipped.

All randomness (init, batches, t, ε, dropout of labels) comes from ``seed``:
the data-side draws use one CPU ``torch.Generator``, so a run gives the same
batches on CPU and CUDA.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from .data import DIGITS_SPLIT_DESCRIPTION, TOY_SAMPLERS, load_digits_split, sample_toy
from .device import usable_device
from .models import MLPConfig, ModelConfig, UNetConfig, build_model, model_kind
from .schedule import SCHEDULE_NAMES, make_schedule

DATASETS = ("digits", *TOY_SAMPLERS)


@dataclass
class TrainConfig:
    """Settings of one training run (all stored in the checkpoint JSON).

    Attributes:
        dataset: ``"digits"`` or a 2-D toy (``"moons"``, ``"gaussians8"``, ``"swissroll"``).
        schedule: noise schedule name (``"linear"``, ``"cosine"``, ``"sigmoid"``).
        num_timesteps: T.
        steps: optimiser steps.
        batch_size: examples per step.
        lr: AdamW learning rate after warm-up.
        weight_decay: AdamW weight decay.
        warmup_steps: linear learning-rate warm-up.
        grad_clip: max global gradient norm (0 disables clipping).
        ema_decay: d in θ_EMA ← d θ_EMA + (1 − d) θ.
        label_dropout: probability of replacing a label by the null label (CFG).
        seed: seeds the initialisation and every random draw.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``, or ``"auto"`` (CUDA, else
            MPS, else the CPU: :func:`diffusion_lib.device.usable_device`).
    """

    dataset: str = "digits"
    schedule: str = "linear"
    num_timesteps: int = 1000
    steps: int = 10_000
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 200
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    label_dropout: float = 0.15
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(
                f"unknown dataset {self.dataset!r}; valid datasets are {', '.join(DATASETS)}"
            )
        if self.schedule not in SCHEDULE_NAMES:
            raise ValueError(
                f"unknown schedule {self.schedule!r}; valid schedules are "
                f"{', '.join(SCHEDULE_NAMES)}"
            )
        for name in ("steps", "batch_size", "num_timesteps", "warmup_steps", "seed"):
            value = getattr(self, name)
            low = 0 if name in ("warmup_steps", "seed") else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        if not 0.0 <= self.label_dropout < 1.0 or not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(
                "label_dropout and ema_decay must lie in [0, 1); got "
                f"{self.label_dropout} and {self.ema_decay}"
            )
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr}")
        for name in ("weight_decay", "grad_clip"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {getattr(self, name)}")


@dataclass
class Preset:
    """A named recipe: architecture + training settings of a shipped model."""

    model: ModelConfig
    train: TrainConfig
    description: str = ""


PRESETS: dict[str, Preset] = {
    "digits": Preset(
        UNetConfig(channels=(32, 64), num_res_blocks=1),
        TrainConfig(dataset="digits", schedule="linear", steps=10_000),
        "class-conditional UNet on 8×8 digits, linear schedule, T = 1000",
    ),
    "digits_cosine": Preset(
        UNetConfig(channels=(32, 64), num_res_blocks=1),
        TrainConfig(dataset="digits", schedule="cosine", steps=10_000),
        "class-conditional UNet on 8×8 digits, cosine schedule, T = 1000",
    ),
    "moons": Preset(
        MLPConfig(),
        TrainConfig(dataset="moons", steps=4_000, batch_size=256, label_dropout=0.0),
        "unconditional MLP on two moons, linear schedule, T = 1000",
    ),
}


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        model: the EMA model, in eval mode (this is what gets shipped).
        raw_model: the last optimiser iterate.
        losses: the loss of every step.
        wall_time_s: seconds spent in the training loop.
        extra: other measurements, e.g. ``cpu_time_s`` (process CPU time of the loop).
        model_config, train_config: the settings used.
    """

    model: nn.Module
    raw_model: nn.Module
    losses: list[float]
    wall_time_s: float
    model_config: ModelConfig
    train_config: TrainConfig
    extra: dict[str, Any] = field(default_factory=dict)


class _DataSource:
    """Draws (x_0, y) batches on the CPU generator; y is None for toys."""

    def __init__(self, dataset: str, generator: torch.Generator) -> None:
        self.dataset = dataset
        self.generator = generator
        if dataset == "digits":
            split = load_digits_split()
            self.images, self.labels = split.train_images, split.train_labels

    def batch(self, n: int) -> tuple[Tensor, Tensor | None]:
        if self.dataset == "digits":
            idx = torch.randint(0, len(self.labels), (n,), generator=self.generator)  # (n,)
            return self.images[idx], self.labels[idx]  # (n, 1, 8, 8), (n,)
        return sample_toy(self.dataset, n, self.generator), None  # (n, 2), None


def _check_compatible(model_config: ModelConfig, cfg: TrainConfig) -> None:
    if cfg.dataset == "digits" and not isinstance(model_config, UNetConfig):
        raise ValueError(f"dataset 'digits' needs a UNetConfig, got {type(model_config).__name__}")
    if cfg.dataset != "digits" and not isinstance(model_config, MLPConfig):
        raise ValueError(
            f"2-D dataset {cfg.dataset!r} needs an MLPConfig, got {type(model_config).__name__}"
        )


def train(model_config: ModelConfig, cfg: TrainConfig, *, progress: bool = True) -> TrainResult:
    """Train an ε-prediction model; return its EMA copy and the loss curve.

    Args:
        model_config: a :class:`UNetConfig` (digits) or :class:`MLPConfig` (2-D).
        cfg: training settings.
        progress: show a tqdm progress bar.
    """
    _check_compatible(model_config, cfg)
    device = usable_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = build_model(model_kind(model_config), model_config).to(device)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup = max(cfg.warmup_steps, 1)
    lr_schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup))

    schedule = make_schedule(cfg.schedule, cfg.num_timesteps).to(device)
    generator = torch.Generator().manual_seed(cfg.seed)
    data = _DataSource(cfg.dataset, generator)
    null_label = getattr(model, "null_label", None)

    losses: list[float] = []
    model.train()
    start, cpu_start = time.perf_counter(), time.process_time()
    bar = tqdm(range(cfg.steps), disable=not progress, desc=f"train {cfg.dataset}", leave=False)
    for _ in bar:
        # 1. data, with labels dropped to ∅ for classifier-free guidance
        x0, labels = data.batch(cfg.batch_size)  # (B, ...), (B,) | None
        if labels is not None and null_label is not None:
            drop = torch.rand(cfg.batch_size, generator=generator) < cfg.label_dropout
            labels = torch.where(drop, torch.full_like(labels, null_label), labels)
            labels = labels.to(device)
        # 2. t ~ U{0..T−1}, ε ~ N(0, I), x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε
        t = torch.randint(0, cfg.num_timesteps, (cfg.batch_size,), generator=generator)  # (B,)
        noise = torch.randn(x0.shape, generator=generator)  # (B, ...)
        x0, t, noise = x0.to(device), t.to(device), noise.to(device)
        x_t = schedule.q_sample(x0, t, noise)
        # 3. ‖ε − ε_θ(x_t, t, y)‖²
        loss = F.mse_loss(model(x_t, t, labels), noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        lr_schedule.step()
        # 4. θ_EMA ← d θ_EMA + (1 − d) θ
        ema.update_parameters(model)
        losses.append(loss.item())
        if not math.isfinite(losses[-1]):
            bar.close()
            raise FloatingPointError(
                f"the training loss became {losses[-1]} at step {len(losses)} of {cfg.steps} "
                f"(lr {cfg.lr:g}): the weights diverged; lower the learning rate (--lr). "
                "No checkpoint was written"
            )
        if progress and len(losses) % 50 == 0:
            bar.set_postfix(loss=f"{sum(losses[-50:]) / 50:.4f}")
    bar.close()
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu_start

    ema_model = ema.module
    check_finite_weights(ema_model, f"after {cfg.steps} steps at lr {cfg.lr:g}")
    ema_model.eval()
    model.eval()
    return TrainResult(ema_model, model, losses, wall, model_config, cfg, {"cpu_time_s": cpu})


def check_finite_weights(model: nn.Module, when: str) -> None:
    """Raise ``FloatingPointError`` if a parameter or buffer of ``model`` is NaN/inf, so that
    a diverged run never becomes a checkpoint."""
    bad = [
        name
        for name, value in (*model.named_parameters(), *model.named_buffers())
        if value.dtype.is_floating_point and not bool(torch.isfinite(value).all())
    ]
    if bad:
        raise FloatingPointError(
            f"{len(bad)} weight tensor(s) became NaN/inf {when} (first: {bad[0]}): training "
            "diverged; lower the learning rate (--lr). No checkpoint was written"
        )


def training_metadata(result: TrainResult, command: str | None = None) -> dict[str, Any]:
    """The JSON entries a trained checkpoint records about how it was made."""
    cfg = result.train_config
    tail = result.losses[-200:]
    data = (
        {"dataset": "digits", "split": DIGITS_SPLIT_DESCRIPTION}
        if cfg.dataset == "digits"
        else {"dataset": cfg.dataset, "split": "fresh draws from the true distribution each step"}
    )
    return {
        "training": dataclasses.asdict(cfg),
        "data": data,
        "results": {
            "final_loss_mean_last_200": sum(tail) / len(tail),
            "wall_time_s": round(result.wall_time_s, 1),
            "cpu_time_s": round(result.extra.get("cpu_time_s", float("nan")), 1),
            "device": str(usable_device(cfg.device)),
            "torch_version": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "weights": "EMA",
        },
        "command": command,
    }
