"""One whole reverse step as a CUDA graph: :class:`StepGraph`.

It records one reverse step (model call, x̂0, the update, the noise term) and
replays it once per timestep, so a step costs one launch instead of one per
kernel. The sampler uses it with ``sample(..., cuda_graph=True)``. On the CPU the
same static-buffer step runs eagerly, which is how the tests check that it
computes what the eager loop does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

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


__all__ = ["StepFn", "StepGraph"]
