"""Inference speed helpers: autocast, ``torch.compile`` with a fallback, CUDA graphs.

Both wrap a model that follows the library's API, ``model(x_t, t, labels=None) -> ε̂``
(:mod:`diffusion_lib.model_api`), so the result goes straight into
:func:`diffusion_lib.sampling.sample`.

* :class:`AutocastModel` runs the *network* in bf16/fp16 but hands back ε̂ in float32,
  so the sampler's arithmetic (1/√ᾱ, which reaches ~2e4 for the cosine schedule at
  t = T−1, and its square ~4e8, far above fp16's 65504) stays in float32.
* :func:`compile_model` calls ``torch.compile`` and falls back to the eager model,
  with the reason, when compilation fails (no C compiler, unsupported op, …).
* :class:`StepGraph` records one whole reverse step (model call, x̂0, the update,
  the noise term) as a CUDA graph and replays it once per timestep, so a step
  costs one launch instead of one per kernel. The sampler uses it with
  ``sample(..., cuda_graph=True)``. On the CPU the same static-buffer step runs
  eagerly, which is how the tests check that it computes what the eager loop does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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


StepFn = Callable[[Tensor, Tensor, Tensor | None], tuple[Tensor, ...]]
"""``step_fn(x_t, i, z) -> (x_prev, x̂0, ε̂, …)``: one reverse step with a (B,) step-index
tensor; x_prev first, then anything else the caller wants to read (all tensors)."""


class StepGraph:
    """One whole reverse step in static buffers, captured as a CUDA graph on CUDA.

    The step reads three static buffers, x_t (B, ...), the step index i (B,)
    int64 and the noise z (B, ...), and at its end writes x_{t−1} back into x_t
    and decrements i, so replaying the graph S times walks S steps. Per step the
    host only copies the next z in (skipped for deterministic samplers) and
    launches the graph: no synchronisation, no allocation.

    Args:
        step_fn: ``step_fn(x_t, i, z) -> (x_prev, x̂0, ε̂)``; pure (it must not
            touch its inputs) and free of host reads (no ``.item()``,
            ``int(tensor)``, data-dependent Python branches), as CUDA graphs
            require. :func:`diffusion_lib.sampling.sample_progressive` builds it.
        x_T: the starting batch (B, ...), float32; copied.
        first_index: the step index of the first step (S − 1).
        uses_noise: whether ``step_fn`` reads z.
        capture: record a CUDA graph; default: when ``x_T`` is on a CUDA device.
            Without capture the same step runs eagerly on the buffers.
        warmup: eager runs on a side stream before capture (they initialise
            cuBLAS/cuDNN and let ``torch.compile`` compile); the first one goes
            through ``first_call`` so a shape error is reported clearly.
        first_call: wraps the first call of ``step_fn``, e.g.
            :func:`diffusion_lib.model_api.check_model_output`.

    Example (CPU: no capture, same numbers):
        >>> def step(x, i, z):
        ...     return 0.5 * x, x, x
        >>> g = StepGraph(step, torch.ones(2, 3), first_index=1, uses_noise=False)
        >>> g.step(None)[0].tolist()
        [[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]]
        >>> g.x.tolist(), g.index.tolist()
        ([[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]], [0, 0])
    """

    def __init__(
        self,
        step_fn: StepFn,
        x_T: Tensor,
        first_index: int,
        uses_noise: bool,
        *,
        capture: bool | None = None,
        warmup: int = 2,
        first_call: Callable[[Callable[[], Any], Tensor], Any] | None = None,
    ) -> None:
        self.step_fn = step_fn
        self.x = x_T.detach().to(torch.float32).clone()  # (B, ...), static
        self.index = torch.full(
            (x_T.shape[0],), int(first_index), dtype=torch.long, device=x_T.device
        )
        self.z = torch.zeros_like(self.x) if uses_noise else None
        self.capture = x_T.is_cuda if capture is None else bool(capture)
        if self.capture and not x_T.is_cuda:
            raise ValueError(
                f"CUDA-graph capture needs the batch on a CUDA device, got {x_T.device}; "
                "use capture=False (eager static buffers) on the CPU"
            )
        self.graph: Any = None
        self._outputs: tuple[Tensor, ...] | None = None
        self._first_call = first_call
        if self.capture:
            self._record(warmup)

    def _run(self) -> tuple[Tensor, ...]:
        return self.step_fn(self.x, self.index, self.z)

    def _advance(self, out: tuple[Tensor, ...]) -> None:
        self.x.copy_(out[0])
        self.index.sub_(1)

    def _checked_run(self) -> tuple[Tensor, ...]:
        if self._first_call is None:
            return self._run()
        checked: list[tuple[Tensor, ...]] = []

        def eps_only() -> Tensor:
            checked.append(self._run())
            return checked[0][2]

        self._first_call, first_call = None, self._first_call
        first_call(eps_only, self.x)
        return checked[0]

    def _record(self, warmup: int) -> None:
        side = torch.cuda.Stream(device=self.x.device)
        side.wait_stream(torch.cuda.current_stream(self.x.device))
        with torch.cuda.stream(side):
            for _ in range(max(1, warmup)):
                self._checked_run()  # results discarded: the buffers are not advanced
        torch.cuda.current_stream(self.x.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            out = self._run()
            self._outputs = tuple(out)
            self._advance(out)

    def step(self, z: Tensor | None) -> tuple[Tensor, ...]:
        """Take one step with noise ``z`` (B, ...) (``None``: keep the buffer; a
        step that multiplies its noise by 0, like the last, may pass ``None``).

        Returns:
            what ``step_fn`` returns, (x_{t−1}, x̂0, ε̂, …). Under capture these are the graph's
            own buffers, overwritten by the next step: clone what you keep.
            ``self.x`` already holds x_{t−1} and ``self.index`` the next index.
        """
        if z is not None:
            if self.z is None:
                raise ValueError("this StepGraph was built with uses_noise=False; pass z=None")
            self.z.copy_(z, non_blocking=True)
        if self.graph is not None:
            self.graph.replay()
            assert self._outputs is not None
            return self._outputs
        out = self._checked_run()
        self._advance(out)
        return out


__all__ = ["AUTOCAST_DTYPES", "AutocastModel", "StepFn", "StepGraph", "compile_model"]
