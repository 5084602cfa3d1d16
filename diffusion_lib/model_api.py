"""The one model convention every sampler in this library relies on.

A noise-prediction model is called as ``model(x_t, t, labels=None) -> ε̂``:

- ``x_t``: the noisy batch, shape (B, ...), float32 (or the autocast dtype);
- ``t``: the *original training timestep* of every sample, shape (B,), int64;
  samplers that skip steps still pass original timesteps;
- ``labels``: class labels, shape (B,), int64, or ``None`` for unconditional.

It returns ε̂_θ(x_t, t, c) with the shape of ``x_t``. A conditional model exposes
``num_classes`` and ``null_label`` (the label meaning "no condition", used by
classifier-free guidance); an unconditional model has ``null_label = None``.

A model with another signature is wrapped by :class:`ModelAdapter`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn


@runtime_checkable
class EpsModel(Protocol):
    """Anything callable as ``model(x_t, t, labels=None) -> ε̂``."""

    def __call__(self, x_t: Tensor, t: Tensor, labels: Tensor | None = None) -> Tensor: ...


class ModelAdapter(nn.Module):
    """Wrap a model whose call signature differs from ``model(x_t, t, labels)``.

    Args:
        module: the wrapped network (kept as a submodule so ``.to`` / ``.eval`` work).
        call: ``call(module, x_t, t, labels) -> ε̂``, translating to the module's own
            signature, e.g. ``lambda m, x, t, y: m(x, timestep=t, class_labels=y).sample``.
        null_label: the label meaning "unconditional", if the model has one.
        num_classes: number of real classes (0 for an unconditional model).

    Example:
        >>> net = nn.Linear(2, 2)
        >>> model = ModelAdapter(net, lambda m, x, t, y: m(x))
        >>> model(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long)).shape
        torch.Size([3, 2])
    """

    def __init__(
        self,
        module: nn.Module,
        call: Callable[[nn.Module, Tensor, Tensor, Tensor | None], Tensor],
        null_label: int | None = None,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        self.module = module
        self._call = call
        self.null_label = null_label
        self.num_classes = num_classes

    def forward(self, x_t: Tensor, t: Tensor, labels: Tensor | None = None) -> Tensor:
        return self._call(self.module, x_t, t, labels)


def null_label_of(model: object) -> int | None:
    """The model's null label, or ``None`` when it has none (unconditional)."""
    value = getattr(model, "null_label", None)
    return None if value is None else int(value)


def check_model_output(model_fn: Callable[[], Any], x_t: Tensor) -> Any:
    """Run one model call and turn shape and dtype errors into a clear ``ValueError``.

    Used for the first call of a sampling loop, so a wrong ``shape`` argument
    (or a half-precision model fed the sampler's float32 x_t) is reported as
    such rather than as a convolution traceback. ``model_fn`` returns ε̂ or
    anything with an ``eps`` attribute holding it (returned as it came).
    """
    try:
        result = model_fn()
    except (RuntimeError, ValueError, IndexError, TypeError) as err:
        first = str(err).splitlines()[0] if str(err) else ""
        words = first.lower()
        if any(k in words for k in ("dtype", "scalar type", "half", "bfloat16", "float16")):
            raise ValueError(
                f"the model could not take the sampler's {x_t.dtype} x_t ({type(err).__name__}: "
                f"{first}). The sampler runs in float32: keep the model in float32, or wrap a "
                "half-precision one in diffusion_lib.speed.AutocastModel(model, dtype=...)"
            ) from err
        if "device" in words:
            raise ValueError(
                f"the model and the batch are on different devices (x_t on {x_t.device}; "
                f"{type(err).__name__}: {first}); move the model, or pass the matching `device`"
            ) from err
        raise ValueError(
            f"the model rejected an input batch of shape {tuple(x_t.shape)} "
            f"({type(err).__name__}: {first}); "
            "check the `shape` you asked for against what the model was trained on"
        ) from err
    eps = getattr(result, "eps", result)
    if not isinstance(eps, torch.Tensor) or eps.shape != x_t.shape:
        got = tuple(eps.shape) if isinstance(eps, torch.Tensor) else type(eps).__name__
        raise ValueError(
            f"the model must return ε̂ with the shape of x_t {tuple(x_t.shape)}, got {got}"
        )
    return result
