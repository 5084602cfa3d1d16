"""Shared fixtures: the test run's thread count, and a small conditional oracle.

The exact Gaussian oracle is the library's own,
:class:`diffusion_lib.exact.oracle.GaussianOracle`.
"""

from __future__ import annotations

import os

import pytest
import torch
from torch import Tensor, nn

from diffusion_lib.schedule import NoiseSchedule

# One torch thread unless OMP_NUM_THREADS says otherwise (`make test` sets 1): on a shared
# 2-core machine two threads stall, the same sampled tests took 2.8x as long.
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))


@pytest.fixture(autouse=True)
def keep_thread_count():
    """A command under test may set torch's thread count (``--threads``): restore it after."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


class ClassOracle(nn.Module):
    """A conditional oracle: class c has data N(means[c], s²); the null label
    gives the unconditional ε̂ of an equal mixture approximated by N(mean of means, ...).

    Used for guidance equivalence tests, not for distribution checks.
    """

    def __init__(self, schedule: NoiseSchedule, num_classes: int = 3) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.null_label = num_classes
        self.register_buffer("a_bar", schedule.alphas_cumprod)
        self.register_buffer("means", torch.linspace(-0.5, 0.5, num_classes + 1))
        self.calls: list[int] = []

    def forward(self, x_t: Tensor, t: Tensor, labels: Tensor | None = None) -> Tensor:
        self.calls.append(x_t.shape[0])
        if labels is None:
            labels = torch.full((x_t.shape[0],), self.null_label, dtype=torch.long)
        a = self.a_bar[t].reshape((-1,) + (1,) * (x_t.ndim - 1))
        mu = self.means[labels].reshape(a.shape)
        return (1 - a).sqrt() * (x_t - a.sqrt() * mu) / (a * 0.04 + 1 - a) + 0.01 * torch.sin(x_t)
