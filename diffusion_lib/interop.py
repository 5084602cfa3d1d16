"""diffusers interop: sample a diffusers ``UNet2DModel`` with this library's samplers.

``from_diffusers(unet, scheduler)`` returns ``(model, schedule)`` in this library's
convention, ``model(x_t, t, labels=None) -> ε̂``, so every sampler here (DDPM, DDIM,
the ODE solvers, guidance for a class-conditional UNet, per-sample seeds, the CUDA
graph path) runs on it. The schedule holds the scheduler's own ᾱ exactly (diffusers
keeps ᾱ as a float32 running product of float32 betas), so with the same x_T and
noise our DDPM/DDIM output equals ``DDPMPipeline``/``DDIMPipeline``'s to float32
rounding; ``tests/test_interop.py`` checks it on a tiny randomly initialised UNet
(no download) and docs/diffusers.md lists where the two libraries differ.

diffusers is optional: it is imported only when used, and a clear ``ImportError``
says how to install it. Loading a model from the Hub (``UNet2DModel.from_pretrained``)
needs the network; nothing here downloads anything.
"""

from __future__ import annotations

import os
import socket
import threading
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .schedule import NoiseSchedule


def _require_diffusers() -> Any:
    try:
        import diffusers
    except ImportError as err:  # pragma: no cover - exercised only without diffusers
        raise ImportError(
            "diffusion_lib.interop needs the optional package diffusers: "
            "pip install diffusers (or pip install -e '.[dev]' in a checkout)"
        ) from err
    return diffusers


def schedule_from_diffusers(scheduler: Any) -> NoiseSchedule:
    """The :class:`NoiseSchedule` holding a diffusers scheduler's ᾱ exactly.

    Args:
        scheduler: a diffusers scheduler (``DDPMScheduler``, ``DDIMScheduler``, …) or
            its ``config``; it must predict ε (``prediction_type="epsilon"``).
    """
    diffusers = _require_diffusers()
    if not hasattr(scheduler, "alphas_cumprod"):
        config = dict(getattr(scheduler, "config", scheduler))
        scheduler = diffusers.DDPMScheduler.from_config(config)
    prediction = scheduler.config.get("prediction_type", "epsilon")
    if prediction != "epsilon":
        raise ValueError(
            f"the scheduler's prediction_type is {prediction!r}; this library's samplers take "
            "a model that predicts ε (prediction_type='epsilon')"
        )
    a_bar = scheduler.alphas_cumprod.detach().double().cpu().numpy()
    return NoiseSchedule(1.0 - a_bar / np.append(1.0, a_bar[:-1]))


class DiffusersEpsModel(nn.Module):
    """A diffusers ``UNet2DModel`` as ``model(x_t, t, labels=None) -> ε̂``.

    For a class-conditional UNet (``num_class_embeds`` = K + 1 set) whose last class
    id K was trained as "no class", pass ``null_label=K``: classes are then 0 … K − 1
    (this library's convention) and classifier-free guidance works.
    """

    def __init__(self, unet: nn.Module, null_label: int | None = None) -> None:
        super().__init__()
        self.unet = unet
        embeds = int(getattr(getattr(unet, "config", None), "num_class_embeds", None) or 0)
        if null_label is not None and null_label != embeds - 1:
            raise ValueError(
                f"null_label must be the UNet's last class id, {embeds - 1} (num_class_embeds "
                f"= {embeds}), got {null_label}"
            )
        self.num_classes = embeds - 1 if null_label is not None else embeds
        self.null_label = null_label

    def forward(self, x_t: Tensor, t: Tensor, labels: Tensor | None = None) -> Tensor:
        if labels is not None and self.num_classes == 0:
            raise ValueError("labels were given but this UNet has no class embedding")
        if labels is None and self.num_classes:
            if self.null_label is None:
                raise ValueError("this UNet is class-conditional: pass labels")
            labels = torch.full_like(t, self.null_label)
        return self.unet(x_t, t, class_labels=labels).sample


def from_diffusers(
    unet: nn.Module, scheduler: Any, null_label: int | None = None
) -> tuple[DiffusersEpsModel, NoiseSchedule]:
    """(model, schedule) for a diffusers ``UNet2DModel`` and its scheduler (or config).

    Example (needs the network once, e.g. in Colab)::

        from diffusers import DDPMPipeline
        pipe = DDPMPipeline.from_pretrained("google/ddpm-cifar10-32")
        model, schedule = from_diffusers(pipe.unet, pipe.scheduler)
        x = sample(model, schedule, (4, 3, 32, 32), sampler="ddim", steps=50, seed=0)
    """
    return DiffusersEpsModel(unet, null_label), schedule_from_diffusers(scheduler)


def hub_reachable(host: str = "huggingface.co", port: int = 443, timeout: float = 2.0) -> bool:
    """Whether a TCP connection to the Hub opens within ``timeout`` seconds.

    False at once when ``HF_HUB_OFFLINE`` is set to a true value. The name lookup has no
    timeout of its own, so the attempt runs in a daemon thread that is abandoned after
    ``timeout``: the call never takes much longer than that.
    """
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    opened: list[bool] = []

    def attempt() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            opened.append(True)
        except OSError:
            pass

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout + 0.5)
    return bool(opened)


__all__ = ["DiffusersEpsModel", "from_diffusers", "hub_reachable", "schedule_from_diffusers"]
