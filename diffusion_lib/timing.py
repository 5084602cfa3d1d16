"""Wall-clock timing for the notebooks, and the headline rows of a committed speed table.

- :func:`best_time`: warm up once, then the best of a few runs, synchronising
  CUDA around each so the time is the device's, not the launch queue's.
- :func:`bench_headlines`: one text line per batch size of a
  ``python -m diffusion_lib bench`` result (``diffusion_lib/results/*.json``),
  the figures notebook 06 reads against the chapter's speed table.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["HEADER", "bench_headlines", "best_time"]


def best_time(fn: Callable[[], Any], reps: int = 2, device: torch.device | str = "cpu") -> float:
    """Best wall-clock seconds of ``reps`` calls of ``fn``, after one warm-up call.

    Args:
        fn: the work to time (its result is discarded).
        reps: timed calls, ≥ 1.
        device: on ``"cuda"`` the device is synchronised before and after each call.
    """
    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    cuda = torch.device(device).type == "cuda"
    fn()  # warm-up: first-call allocation, autotuning, graph capture
    best = math.inf
    for _ in range(reps):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


HEADER = (f"{'batch':>6}{'fwd ms':>9}{'eager s/1000':>14}{'graph s/1000':>14}{'overhead':>10}"
          f"{'DDIM-50 ×':>11}{'CFG batched ×':>15}{'compile ×':>11}{'bf16 ×':>8}")
"""Column titles of :func:`bench_headlines`' lines."""


def bench_headlines(result: dict[str, Any]) -> list[str]:
    """One line per batch size of a bench result, under :data:`HEADER`.

    Columns: batch; a bare forward (ms); eager and CUDA-graph loop seconds per
    1000 steps; loop overhead (loop time / bare model calls); DDIM-50's speed-up
    over DDPM-1000; batched over two-pass guidance; ``torch.compile`` and bf16
    over eager (nan where the row was not measured).
    """
    lines = []
    for b in result["batches"]:
        rows = {r["variant"]: r for r in b["rows"] if r.get("seconds") is not None}
        d = b["derived"]
        eager = rows["eager"]["per_1000_steps"]
        vs_eager = {k: eager / rows[k]["per_1000_steps"] if k in rows else math.nan
                    for k in ("compiled", "bf16")}
        lines.append(
            f"{b['batch']:>6}{d['forward_ms']:>9.2f}{eager:>14.2f}"
            f"{rows['graph']['per_1000_steps']:>14.2f}{d['loop_overhead']:>10.3f}"
            f"{d['ddim50_speedup']:>11.1f}{d['cfg_batched_speedup']:>15.2f}"
            f"{vs_eager['compiled']:>11.2f}{vs_eager['bf16']:>8.2f}"
        )
    return lines
