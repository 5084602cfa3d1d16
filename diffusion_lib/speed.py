"""Inference speed helpers for a model: autocast, and ``torch.compile`` with a fallback.

Both wrap a model that follows the library's API, ``model(x_t, t, labels=None) -> ε̂``
(:mod:`diffusion_lib.model_api`), so the result goes straight into
:func:`diffusion_lib.sampling.sample`.

* :class:`AutocastModel` runs the *network* in bf16/fp16 but hands back ε̂ in float32,
  so the sampler's arithmetic (1/√ᾱ, which reaches ~2e4 for the cosine schedule at
  t = T−1, and its square ~4e8, far above fp16's 65504) stays in float32.
* :func:`compile_model` calls ``torch.compile`` and falls back to the eager model,
  with the reason, when compilation fails (no C compiler, unsupported op, …).

The sampler's own CUDA-graph step is :class:`diffusion_lib.sampling.graph.StepGraph`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

AUTOCAST_DTYPES: dict[str, torch.dtype] = {
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
}
"""Accepted ``dtype`` names (a ``torch.dtype`` of the same kind works too)."""

_VALID_BY_DEVICE: dict[str, tuple[torch.dtype, ...]] = {
    "cpu": (torch.bfloat16,),
    "cuda": (torch.bfloat16, torch.float16),
}


def _resolve_dtype(dtype: str | torch.dtype, device_type: str) -> torch.dtype:
    if isinstance(dtype, str):
        if dtype not in AUTOCAST_DTYPES:
            raise ValueError(
                f"unknown autocast dtype {dtype!r}; valid: {sorted(AUTOCAST_DTYPES)} "
                "(or torch.bfloat16 / torch.float16)"
            )
        dtype = AUTOCAST_DTYPES[dtype]
    if device_type not in _VALID_BY_DEVICE:
        raise ValueError(f"autocast device_type must be 'cpu' or 'cuda', got {device_type!r}")
    valid = _VALID_BY_DEVICE[device_type]
    if dtype not in valid:
        names = ", ".join(str(d).replace("torch.", "") for d in valid)
        raise ValueError(f"dtype {dtype} is not supported on {device_type}; valid: {names}")
    return dtype


class AutocastModel(nn.Module):
    """Run ``model`` under ``torch.autocast`` and return ε̂ as float32.

    Args:
        model: ``model(x_t, t, labels=None) -> ε̂``.
        dtype: ``"bf16"`` (CPU or CUDA) or ``"fp16"`` (CUDA only), or the torch dtype.
        device_type: ``"cpu"`` or ``"cuda"``; default: the device of the model's
            first parameter (CPU for a model without parameters).
        check_finite: raise :class:`FloatingPointError` when ε̂ holds NaN or ±inf
            (costs one reduction per call and, on a GPU, one host synchronisation;
            fp16 overflow shows up this way). Skipped while a CUDA graph is being
            captured or ``torch.compile`` traces; the sampler then checks the final
            sample instead.

    The wrapper forwards ``null_label`` and ``num_classes`` so guidance and label
    checks work as with the bare model.

    Example:
        >>> net = nn.Linear(2, 2)
        >>> fast = AutocastModel(lambda x, t, labels=None: net(x), "bf16", device_type="cpu")
        >>> fast(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long)).dtype
        torch.float32
    """

    def __init__(
        self,
        model: Any,
        dtype: str | torch.dtype = "bf16",
        device_type: str | None = None,
        check_finite: bool = True,
    ) -> None:
        super().__init__()
        if device_type is None:
            param = next(iter(model.parameters()), None) if hasattr(model, "parameters") else None
            device_type = param.device.type if param is not None else "cpu"
        self.device_type = device_type
        self.dtype = _resolve_dtype(dtype, device_type)
        self.check_finite = check_finite
        if isinstance(model, nn.Module):
            self.model = model
        else:  # a plain callable: keep it out of the module tree
            self._fn = model
        self.null_label = getattr(model, "null_label", None)
        self.num_classes = getattr(model, "num_classes", 0)

    def _call(self, x_t: Tensor, t: Tensor, labels: Tensor | None) -> Tensor:
        fn = self.model if "model" in self._modules else self._fn
        return fn(x_t, t, labels)

    def forward(self, x_t: Tensor, t: Tensor, labels: Tensor | None = None) -> Tensor:
        # cache_enabled=False: each call is its own autocast region, so the weight-cast
        # cache would never be reused, and CUDA-graph capture requires it off
        with torch.autocast(device_type=self.device_type, dtype=self.dtype, cache_enabled=False):
            eps = self._call(x_t, t, labels)
        eps = eps.float()
        if self.check_finite and not _capturing(eps) and not bool(torch.isfinite(eps).all()):
            ts = sorted({int(v) for v in t.reshape(-1).tolist()})
            name = str(self.dtype).replace("torch.", "")
            hint = (
                "fp16 overflows above 65504: try dtype='bf16' (the range of fp32) or fp32"
                if self.dtype == torch.float16
                else "try the model in fp32 (no AutocastModel); if it fails there too, "
                "the model or its input is broken"
            )
            raise FloatingPointError(
                f"the model returned NaN/inf under {name} autocast at t = {ts[:4]}"
                f"{' …' if len(ts) > 4 else ''}; {hint}"
            )
        return eps


def _capturing(x: Tensor) -> bool:
    """True inside CUDA-graph capture or ``torch.compile`` tracing: no host reads allowed."""
    if torch.compiler.is_compiling():
        return True
    return x.is_cuda and torch.cuda.is_current_stream_capturing()


def compile_model(
    model: nn.Module,
    example_inputs: Sequence[Any] | None = None,
    **compile_kwargs: Any,
) -> tuple[nn.Module, str]:
    """``torch.compile(model, **compile_kwargs)``, or the eager model if that fails.

    Args:
        model: the model to compile (left unchanged).
        example_inputs: ``(x_t, t)`` or ``(x_t, t, labels)`` for one warm-up call
            under ``torch.no_grad()``: this is when compilation actually happens
            (seconds to minutes; on a 2-core CPU easily a minute), and any failure
            is caught there. ``None``: no warm-up; compilation (and a failure,
            which is then *not* caught) happens lazily at the first real call.
            Recompilation happens when a later call has other shapes (e.g. a
            different batch size), unless ``dynamic=True`` is passed.
        **compile_kwargs: passed to ``torch.compile`` (``mode=``, ``dynamic=``, …).

    Returns:
        ``(compiled, "compiled")`` on success, or ``(model, reason)`` with the
        eager model and ``"eager fallback: <ExceptionType>: <message>"``.
    """
    try:
        compiled = torch.compile(model, **compile_kwargs)
        if example_inputs is not None:
            with torch.no_grad():
                compiled(*example_inputs)
    except Exception as error:  # any failure means: stay eager
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        return model, f"eager fallback: {type(error).__name__}: {message[:200]}"
    return compiled, "compiled"  # type: ignore[return-value]


__all__ = ["AUTOCAST_DTYPES", "AutocastModel", "compile_model"]
