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


class ModelOutputError(ValueError):
    """The model returned something the sampler cannot use (a wrong shape, a changed input)."""


class ModelOutputTypeError(TypeError):
    """The model returned a tensor of a dtype the sampler cannot use (int, bool, complex)."""


def check_eps(
    eps: object, expected: tuple[int, ...] | None, what: str = "the model", given: str = "x_t"
) -> Tensor:
    """``eps`` if it is a floating-point tensor of shape ``expected`` (that of the input
    ``given``; ``None``: any shape); else an error naming ``what`` returned it
    (:class:`ModelOutputError` / :class:`ModelOutputTypeError`).

    Reads only metadata (no host-device sync), so it may run at every step.
    """
    if not isinstance(eps, torch.Tensor):
        raise ModelOutputError(
            f"{what} must return ε̂ as a tensor of shape {expected}, got {type(eps).__name__}"
        )
    if not eps.dtype.is_floating_point:
        raise ModelOutputTypeError(
            f"{what} returned ε̂ of dtype {eps.dtype}; it must be a floating-point tensor "
            "(float32, or float16/bfloat16/float64): an integer, bool or complex ε̂ is not "
            "a noise prediction"
        )
    if expected is not None and tuple(eps.shape) != tuple(expected):
        raise ModelOutputError(
            f"{what} must return ε̂ with the shape of {given} {tuple(expected)}, "
            f"got {tuple(eps.shape)}"
        )
    return eps


_SHAPE_WORDS = (
    "shape",
    "size",
    "dimension",
    "channel",
    "mat1",
    "expected input",
    "index",
    "out of range",
    "must match",
)


def check_model_output(model_fn: Callable[[], Any], x_t: Tensor) -> Any:
    """Run one model call and turn its errors into one clear ``ValueError``.

    Used for the first call of a sampling loop, so a wrong ``shape`` argument
    (or a half-precision model fed the sampler's float32 x_t) is reported as
    such rather than as a convolution traceback. ``model_fn`` returns ε̂ or
    anything with an ``eps`` attribute holding it (returned as it came).

    It also checks that the call left x_t as it was: a model that writes into
    its input would change the trajectory (under two-pass guidance the second
    call would see the changed x_t), so it is refused here, once per run (a
    copy of x_t before the call, compared after it).

    Out of memory is raised as it came (:func:`diffusion_lib.device.is_out_of_memory`):
    it is not the shape's fault, and the command lines name the batch options to lower.
    """
    from .device import is_out_of_memory

    before = x_t.detach().clone() if x_t.device.type != "meta" else None
    try:
        result = model_fn()
    except (ModelOutputError, ModelOutputTypeError):
        raise  # the sampler's own checks of the output: already clear
    except (RuntimeError, ValueError, IndexError, TypeError) as err:
        if is_out_of_memory(err):
            raise
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
        if isinstance(err, (RuntimeError, IndexError)) and any(k in words for k in _SHAPE_WORDS):
            raise ValueError(
                f"the model rejected an input batch of shape {tuple(x_t.shape)} "
                f"({type(err).__name__}: {first}); "
                "check the `shape` you asked for against what the model was trained on"
            ) from err
        raise ValueError(
            f"the model failed on its first call, with x_t of shape {tuple(x_t.shape)} "
            f"({type(err).__name__}: {first})"
        ) from err
    if before is not None and not torch.equal(before, x_t):
        raise ModelOutputError(
            "the model wrote into its input x_t (an in-place operation such as x.add_() or "
            "x[...] = ...): that changes the sampler's trajectory; make the model work on a "
            "copy (x = x.clone()) or use out-of-place operations"
        )
    check_eps(getattr(result, "eps", result), tuple(x_t.shape))
    return result
