"""Wall-clock timing: :func:`best_time` warms up once, then takes the best of a few runs,
synchronising CUDA around each so the time is the device's, not the launch queue's.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["best_time"]


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
