"""What one sampling step costs, counted rather than timed: operators and kernel launches.

A step of a small network on a GPU is bound by how many kernels it launches, not by
arithmetic, and a count is exact where a timing on a shared machine is not:

- :func:`count_ops`: the aten operators dispatched while a function runs (a
  ``TorchDispatchMode``: every operator after autograd, views included; what a
  composite operator such as ``isfinite`` decomposes into is counted as its parts);
- :func:`step_ops`: those of one steady step of :func:`~diffusion_lib.sampling.sample_progressive`
  (or of any generator that yields once per step), with its model, or with
  :class:`FreeModel` for the sampler's own operators;
- :func:`cuda_step_profile`: on CUDA, the kernels one step runs and the launch calls the
  host makes for them (``torch.profiler``): an eager step launches each kernel, a CUDA-graph
  step replays all of its kernels with one ``cudaGraphLaunch``.

``torch.compile``'s fused kernels bypass the dispatcher (and a dispatch mode makes
``torch.compile`` fall back to eager), so compiled steps are counted with the profiler on
CUDA only. ``tests/test_op_counts.py`` pins the eager counts of one DDPM and one DDIM step.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode

STEADY_STEP = 3
"""The step counted: past the first (which checks the model output, draws the first noise
chunk and records a CUDA graph) and well before the second noise chunk (every 16th step or
later, :mod:`diffusion_lib.sampling.noise`)."""

PROFILED_STEPS = 8
"""Steps profiled on CUDA, from :data:`STEADY_STEP` on; the counts are per step (the mean)."""

LAUNCH_CALLS = frozenset(
    {
        "cudaLaunchKernel",
        "cudaLaunchKernelExC",
        "cuLaunchKernel",
        "cuLaunchKernelEx",
        "cudaGraphLaunch",
        "cudaMemcpyAsync",
        "cudaMemsetAsync",
        "cudaLaunchCooperativeKernel",
    }
)
"""Host calls that put work on the GPU queue: a launch call each."""


class FreeModel:
    """A near-free model: ε̂ is one cached zero tensor of x_t's shape, so a loop counted or
    timed with it measures the sampler's own work (no operator, no allocation after the
    first call; the sampler's arithmetic is the same for any ε̂ values)."""

    null_label = None
    num_classes = 0

    def __init__(self) -> None:
        self._eps: Tensor | None = None

    def __call__(self, x_t: Tensor, t: Tensor, labels: Tensor | None = None) -> Tensor:
        eps = self._eps
        if (
            eps is None
            or eps.shape != x_t.shape
            or eps.device != x_t.device
            or eps.dtype != x_t.dtype
        ):
            eps = self._eps = torch.zeros_like(x_t)
        return eps


class _Count(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.ops[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


def count_ops(fn: Callable[[], Any]) -> Counter[str]:
    """The aten operators dispatched while ``fn()`` runs, by name (``sum()`` = the count)."""
    with torch.no_grad(), _Count() as counter:
        fn()
    return counter.ops


def _advance(steps: Iterator[Any], n: int) -> None:
    for _ in range(n):
        next(steps)


def step_ops(steps: Iterator[Any], index: int = STEADY_STEP) -> Counter[str]:
    """The operators of step ``index`` of a generator that yields once per step (closed
    afterwards): everything between yielding step ``index − 1`` and yielding step ``index``.

    Example:
        >>> from diffusion_lib.sampling import sample_progressive
        >>> from diffusion_lib.schedule import linear_schedule
        >>> it = sample_progressive(FreeModel(), linear_schedule(100), (2, 3), sampler="ddim",
        ...                         steps=10, seed=0, progress=False)
        >>> sum(step_ops(it).values()) > 0
        True
    """
    try:
        _advance(steps, index)
        return count_ops(lambda: next(steps))
    finally:
        steps.close()  # type: ignore[attr-defined]


def cuda_step_profile(
    steps: Iterator[Any],
    device: torch.device,
    index: int = STEADY_STEP,
    count: int = PROFILED_STEPS,
) -> dict[str, float]:
    """Kernels run and launch calls made per step, over ``count`` steps from ``index`` on
    (CUDA; the generator is closed afterwards).

    Returns:
        ``{"kernels": …, "launches": …}`` per step: GPU kernel events (memory copies and
        sets not counted), and host calls that enqueue work (:data:`LAUNCH_CALLS`).
    """
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    try:
        _advance(steps, index)
        torch.cuda.synchronize(device)
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            _advance(steps, count)
            torch.cuda.synchronize(device)
    finally:
        steps.close()  # type: ignore[attr-defined]
    kernels = launches = 0
    for event in prof.events():
        if event.device_type == DeviceType.CUDA:
            kernels += not event.name.startswith(("Memcpy", "Memset"))
        elif event.name in LAUNCH_CALLS:
            launches += 1
    return {"kernels": kernels / count, "launches": launches / count}


DDPM = {"sampler": "ddpm", "variance": "beta", "x0_mode": "clip"}
"""The bench's DDPM rows (``eager``, ``graph``, …): all 1,000 steps, σ² = β, x̂0 clipped."""

DDIM = {"sampler": "ddim", "steps": 50}
"""The bench's ``ddim-50`` rows: the library's DDIM defaults at 50 steps."""


def library_steps(model: Any, schedule: Any, shape: tuple[int, ...], **kw: Any) -> Iterator[Any]:
    """:func:`~diffusion_lib.sampling.sample_progressive` as the bench runs it (seed 0, no
    progress bar, no copies of the steps)."""
    from ..sampling import sample_progressive

    return sample_progressive(
        model, schedule, shape, seed=0, progress=False, _copy_steps=False, **kw
    )


def bench_counts(
    model: Any,
    schedule: Any,
    shape: tuple[int, ...],
    device: torch.device,
    compiled: Any = None,
    peers: Any = (),
) -> dict[str, Any]:
    """The operator counts (and on CUDA the kernels and launch calls) of one step of each
    of the bench's loops, with ``model`` and with :class:`FreeModel` (the sampler's own).

    Rows: ``forward`` (one bare model call); ``eager``, ``graph`` (DDPM, :data:`DDPM`);
    ``ddim-50``, ``ddim-50+graph`` (:data:`DDIM`); on CUDA ``compiled`` and
    ``compiled+graph`` with the ``torch.compile``'d model (profiler only); then each peer
    that can be stopped between steps (:mod:`.peers`).
    """
    cuda = device.type == "cuda"
    x = torch.randn(shape, device=device)
    t = torch.full((shape[0],), 500, dtype=torch.long, device=device)

    @torch.no_grad()
    def forwards(m: Any) -> Iterator[None]:
        while True:
            m(x, t)
            yield None

    def lib(**kw: Any) -> Callable[[Any], Iterator[Any]]:
        return lambda m: library_steps(m, schedule, shape, **kw)

    cases: list[tuple[str, Callable[[Any], Iterator[Any]], bool]] = [
        ("forward", forwards, False),
        ("eager", lib(**DDPM), True),
        ("graph", lib(**DDPM, cuda_graph=True), True),
        ("ddim-50", lib(**DDIM), True),
        ("ddim-50+graph", lib(**DDIM, cuda_graph=True), True),
    ]
    cases += [
        (p.name, lambda m, p=p: p.iterate(m, None), True) for p in peers if p.iterate is not None
    ]
    free = FreeModel()
    rows: list[dict[str, Any]] = []
    by_name: dict[str, dict[str, int]] = {}
    for name, steps_of, has_sampler in cases:
        ops = step_ops(steps_of(model))
        own = step_ops(steps_of(free)) if has_sampler else None
        row: dict[str, Any] = {
            "step": name,
            "ops": sum(ops.values()),
            "ops_sampler": None if own is None else sum(own.values()),
        }
        if own is not None and name in ("eager", "ddim-50"):
            by_name[name] = dict(sorted(own.items()))
        if cuda:
            row.update(_profiled(steps_of, model, free if has_sampler else None, device))
        rows.append(row)
    if cuda and compiled is not None:
        for name, kw in (("compiled", DDPM), ("compiled+graph", {**DDPM, "cuda_graph": True})):
            row = {"step": name, "ops": None, "ops_sampler": None}
            row.update(_profiled(lib(**kw), compiled, None, device))
            rows.append(row)
    return {
        "step_index": STEADY_STEP,
        "profiled_steps": PROFILED_STEPS if cuda else None,
        "rows": rows,
        "sampler_ops": by_name,
    }


def _profiled(
    steps_of: Callable[[Any], Iterator[Any]], model: Any, free: Any, device: torch.device
) -> dict[str, float | None]:
    whole = cuda_step_profile(steps_of(model), device)
    own = cuda_step_profile(steps_of(free), device) if free is not None else None
    return {
        "kernels": whole["kernels"],
        "launches": whole["launches"],
        "kernels_sampler": None if own is None else own["kernels"],
        "launches_sampler": None if own is None else own["launches"],
    }


__all__ = [
    "DDIM",
    "DDPM",
    "LAUNCH_CALLS",
    "PROFILED_STEPS",
    "STEADY_STEP",
    "FreeModel",
    "bench_counts",
    "count_ops",
    "cuda_step_profile",
    "library_steps",
    "step_ops",
]
