"""The shipped digit classifier: training, loading, its features and class accuracy.

The features (its 64-d penultimate layer) are what FD and KID compare
(:mod:`diffusion_lib.metrics`); class accuracy is how often it reads the requested digit.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..data import DIGITS_SPLIT_DESCRIPTION, load_digits_split
from ..models import ClassifierConfig, DigitClassifier


# ------------------------------------------------------------ the classifier
@dataclass
class ClassifierTrainConfig:
    """Training settings of the metric's digit classifier."""

    steps: int = 1500
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    max_shift: int = 1
    seed: int = 0
    device: str = "auto"


def random_shift(images: Tensor, max_shift: int, generator: torch.Generator) -> Tensor:
    """Translate each image by up to ``max_shift`` pixels, filling with background −1.

    Args:
        images: (B, C, H, W) in [−1, 1].

    Returns:
        (B, C, H, W), each image shifted by its own (dy, dx) ∈ [−s, s]².
    """
    if max_shift == 0:
        return images
    b, _, h, w = images.shape
    s = max_shift
    padded = F.pad(images, (s, s, s, s), value=-1.0)  # (B, C, H+2s, W+2s)
    dy = torch.randint(0, 2 * s + 1, (b,), generator=generator)  # (B,)
    dx = torch.randint(0, 2 * s + 1, (b,), generator=generator)  # (B,)
    rows = (dy[:, None] + torch.arange(h)[None]).to(images.device)  # (B, H)
    cols = (dx[:, None] + torch.arange(w)[None]).to(images.device)  # (B, W)
    batch = torch.arange(b, device=images.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2)


@torch.no_grad()
def _predict(classifier: nn.Module, images: Tensor, batch_size: int = 1024) -> Tensor:
    device = next(classifier.parameters()).device
    out = [classifier(chunk.to(device)).cpu() for chunk in images.split(batch_size)]
    return torch.cat(out).argmax(dim=1)  # (N,)


def train_classifier(
    cfg: ClassifierTrainConfig | None = None, *, progress: bool = True
) -> tuple[DigitClassifier, dict[str, Any]]:
    """Train the digit classifier on the train split; measure held-out accuracy.

    Cross-entropy, AdamW, each batch randomly shifted by up to ``max_shift``
    pixels (the only augmentation).

    Returns:
        (classifier in eval mode, checkpoint metadata including
        ``results["heldout_accuracy"]``).
    """
    from ..device import usable_device
    from ..train import check_finite_weights

    cfg = cfg if cfg is not None else ClassifierTrainConfig()
    device = usable_device(cfg.device)
    split = load_digits_split()
    torch.manual_seed(cfg.seed)
    model = DigitClassifier(ClassifierConfig()).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    generator = torch.Generator().manual_seed(cfg.seed)
    model.train()
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in tqdm(range(cfg.steps), disable=not progress, desc="train classifier", leave=False):
        idx = torch.randint(0, len(split.train_labels), (cfg.batch_size,), generator=generator)
        x = random_shift(split.train_images[idx], cfg.max_shift, generator).to(device)
        y = split.train_labels[idx].to(device)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    check_finite_weights(model, f"after {cfg.steps} steps at lr {cfg.lr:g}")
    model.eval()
    heldout_acc = class_accuracy(model, split.heldout_images, split.heldout_labels)
    train_acc = class_accuracy(model, split.train_images, split.train_labels)
    metadata = {
        "training": asdict(cfg),
        "data": {"dataset": "digits", "split": DIGITS_SPLIT_DESCRIPTION},
        "results": {
            "heldout_accuracy": heldout_acc,
            "train_accuracy": train_acc,
            "wall_time_s": round(wall, 1),
            "cpu_time_s": round(cpu, 1),
            "device": str(device),
            "torch_version": torch.__version__,
        },
    }
    return model, metadata


def load_classifier(device: torch.device | str | None = None) -> DigitClassifier:
    """The shipped digit classifier (``weights/classifier.*``), in eval mode."""
    from ..pretrained import WEIGHTS_DIR, load_checkpoint

    model, info = load_checkpoint(WEIGHTS_DIR / "classifier", device=device)
    if not isinstance(model, DigitClassifier):
        raise ValueError(f"{WEIGHTS_DIR / 'classifier.json'} is a {info['kind']}, not a classifier")
    return model


@torch.no_grad()
def classifier_features(
    classifier: DigitClassifier, images: Tensor, batch_size: int = 1024
) -> Tensor:
    """Classifier features f of images in [−1, 1], (N, 1, 8, 8) → (N, F) float64, CPU."""
    if images.ndim != 4 or tuple(images.shape[1:]) != (1, 8, 8):
        raise ValueError(f"images must have shape (N, 1, 8, 8), got {tuple(images.shape)}")
    device = next(classifier.parameters()).device
    chunks = [
        classifier.features(c.to(device, torch.float32)).cpu() for c in images.split(batch_size)
    ]
    return torch.cat(chunks).double()  # (N, F)


def class_accuracy(classifier: DigitClassifier, images: Tensor, labels: Tensor) -> float:
    """Fraction of images (N, 1, 8, 8) the classifier reads as their label (N,)."""
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}")
    return float((_predict(classifier, images) == labels.cpu()).float().mean())
