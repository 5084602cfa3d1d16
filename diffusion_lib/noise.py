"""Per-sample seeded noise: sample i depends on its own seed and nothing else.

A common way to make sampling "reproducible" is ``torch.manual_seed`` or a
generator that draws x_T for the whole batch. Then sample i changes when the
batch size or its position in the batch changes, and, if only x_T is seeded,
every later step's noise z comes from the global generator and changes from run
to run. Here every sample owns a ``torch.Generator`` seeded with its own integer
seed, which draws first x_T and then every z that sample will ever need. So
sample i is bit-identical whether it is generated alone, in a batch of 8 or as
item 900 of 10,000.

Noise is drawn on the CPU (in float32) and then moved, so a CPU run and a CUDA
run start from the same x_T and use the same z.

The stream of one sample, for the record: x_T = ``randn(shape)``; then blocks of
``NOISE_BLOCK`` step noises, each block one ``randn((NOISE_BLOCK, *shape))``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

NOISE_BLOCK = 16
MAX_SEED = 2**63 - 1


def resolve_seeds(
    batch_size: int, seed: int | None = None, seeds: Sequence[int] | None = None
) -> list[int]:
    """One integer seed per sample.

    Args:
        batch_size: B.
        seed: a base seed; sample i gets ``seed + i``.
        seeds: explicit per-sample seeds, exactly B of them (wins over ``seed``).

    With neither, a base seed is drawn from torch's global generator, so
    ``torch.manual_seed`` still makes a run repeatable.
    """
    if seeds is not None:
        if seed is not None:
            raise ValueError(
                "pass either `seed` (a base seed) or `seeds` (one per sample), not both"
            )
        seeds = [int(s) for s in seeds]
        if len(seeds) != batch_size:
            raise ValueError(
                f"got {len(seeds)} seeds for a batch of {batch_size}; "
                "pass exactly one seed per sample"
            )
    else:
        if seed is None:
            seed = int(torch.randint(0, 2**31 - 1, (1,)).item())
        seeds = [int(seed) + i for i in range(batch_size)]
    for s in seeds:
        if not 0 <= s <= MAX_SEED:
            raise ValueError(f"seeds must be integers in [0, 2**63 - 1], got {s}")
    return seeds


class SampleNoise:
    """Independent Gaussian streams, one per sample, each from its own seed.

    Args:
        seeds: one integer seed per sample (length B).
        sample_shape: the shape of one sample, e.g. (1, 8, 8) or (2,).
        device: where the returned tensors live (they are drawn on the CPU).

    Example:
        >>> noise = SampleNoise([0, 1, 2], (2,))
        >>> x_T = noise.initial()        # (3, 2)
        >>> z = noise.next()             # (3, 2), the first step's noise
    """

    def __init__(
        self,
        seeds: Sequence[int],
        sample_shape: Sequence[int],
        device: torch.device | str = "cpu",
    ) -> None:
        if len(seeds) == 0:
            raise ValueError("SampleNoise needs at least one seed")
        self.seeds = [int(s) for s in seeds]
        self.sample_shape = tuple(int(d) for d in sample_shape)
        self.device = torch.device(device)
        self._generators = [torch.Generator().manual_seed(s) for s in self.seeds]
        self._started = False
        self._block: Tensor | None = None  # (NOISE_BLOCK, B, *sample_shape), on device
        self._pos = NOISE_BLOCK

    def initial(self) -> Tensor:
        """x_T ~ N(0, I), shape (B, *sample_shape). Must be the first draw."""
        if self._started:
            raise RuntimeError("initial() must be called once, before any next()")
        self._started = True
        x = torch.stack([torch.randn(self.sample_shape, generator=g) for g in self._generators])
        return x.to(self.device)

    def next(self) -> Tensor:
        """The next step's z ~ N(0, I), shape (B, *sample_shape)."""
        if not self._started:
            self.initial()
        if self._pos == NOISE_BLOCK:
            per_sample = [
                torch.randn((NOISE_BLOCK, *self.sample_shape), generator=g)
                for g in self._generators
            ]
            self._block = torch.stack(per_sample, dim=1).to(self.device)  # (K, B, ...)
            self._pos = 0
        assert self._block is not None
        z = self._block[self._pos]
        self._pos += 1
        return z
