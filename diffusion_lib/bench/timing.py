"""Wall-clock timing, synchronising CUDA around each call so the time is the device's,
not the launch queue's: the one timer of the benchmarks and the notebooks.

- :func:`timed`: one call, its result and its seconds;
- :func:`best_time`: warm up once, then the best of a few calls;
- :func:`round_robin`: several variants warmed up, then timed in turn (interleaved, so a
  slow spell of a shared machine hits every variant alike).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, TypeVar

import torch

__all__ = ["best_time", "round_robin", "sync", "timed"]

R = TypeVar("R")


def sync(device: torch.device | str) -> None:
    """Wait for the device's queued work (CUDA); nothing elsewhere."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], R], device: torch.device | str = "cpu") -> tuple[R, float]:
    """``(fn(), wall seconds)``, the device synchronised before and after."""
    sync(device)
    start = time.perf_counter()
    result = fn()
    sync(device)
    return result, time.perf_counter() - start


def best_time(fn: Callable[[], Any], reps: int = 2, device: torch.device | str = "cpu") -> float:
    """Best wall-clock seconds of ``reps`` calls of ``fn``, after one warm-up call.

    Args:
        fn: the work to time (its result is discarded).
        reps: timed calls, ≥ 1.
        device: on ``"cuda"`` the device is synchronised before and after each call.
    """
    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    fn()  # warm-up: first-call allocation, autotuning, graph capture
    best = math.inf
    for _ in range(reps):
        best = min(best, timed(fn, device)[1])
    return best


def round_robin(
    variants: dict[str, Callable[[], R]],
    device: torch.device | str,
    repeats: int,
    warmup: int,
    log: Callable[[str], None],
) -> tuple[dict[str, list[float]], dict[str, R]]:
    """Warm every variant up, then time them in turn ``repeats`` times.

    Returns:
        (seconds of every timed call per variant, the last output of each variant).
    """
    outputs: dict[str, R] = {}
    for name, fn in variants.items():
        t0 = time.perf_counter()
        for _ in range(max(warmup, 0)):
            outputs[name] = fn()
        sync(device)
        log(f"  warm-up {name}: {time.perf_counter() - t0:.1f} s")
    times: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(repeats):
        for name, fn in variants.items():
            outputs[name], seconds = timed(fn, device)
            times[name].append(seconds)
        last = ", ".join(f"{k} {v[-1]:.3f}" for k, v in times.items())
        log(f"  repeat {r + 1}/{repeats}: {last}")
    return times, outputs
