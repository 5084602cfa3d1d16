"""Per-sample seeded noise: sample i depends on its own seed and nothing else.

A common way to make sampling "reproducible" is ``torch.manual_seed`` or a
generator that draws x_T for the whole batch. Then sample i changes when the
batch size or its position in the batch changes, and, if only x_T is seeded,
every later step's noise z comes from the global generator and changes from run
to run. Here every sample owns a ``torch.Generator`` seeded with its own integer
seed, which draws first x_T and then every z that sample will ever need. So
sample i gets bit-identical noise whether it is generated alone, in a batch of 8
or as item 900 of 10,000. (Its *result* is bit-identical too only when the model
computes each sample independently of the batch shape; see
:mod:`diffusion_lib.sampling`.)

Noise is drawn on the CPU (in float32) and then moved, so a CPU run and a CUDA
run start from the same x_T and use the same z.

The stream of one sample, for the record: x_T = ``randn(shape)``; then blocks of
``NOISE_BLOCK`` step noises, each block one ``randn((NOISE_BLOCK, *shape))``.

Speed. Drawing per sample costs one small ``randn`` per sample and block, on the
host. That is invisible next to a CPU forward pass but is the bottleneck of a
CUDA-graph loop at large batches, so :class:`SampleNoise` can draw several blocks
per call (``chunk``), spread the samples over worker threads and draw the next
chunk while the device works (``workers``), into pinned memory copied without
blocking. None of this changes the numbers: a float32 ``randn`` of n elements,
n a multiple of 16, consumes the generator exactly like consecutive draws of
16-element pieces (PyTorch transforms uniforms in groups of 16), and every block
here holds 16·|shape| elements. ``tests/test_noise_and_seeds.py`` checks that a
chunked, threaded stream equals the block-by-block one bit for bit.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import torch
from torch import Tensor

NOISE_BLOCK = 16
MAX_SEED = 2**63 - 1
CHUNK_BYTES = 32 * 2**20
"""Default cap on one chunk (B × chunk × |shape| float32 values) when ``chunk`` is automatic."""


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
        if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__len__"):
            raise TypeError(f"seeds must be a sequence of B ints, got {type(seeds).__name__}")
        seeds = [_as_seed(s, "seeds") for s in seeds]
        if len(seeds) != batch_size:
            raise ValueError(
                f"got {len(seeds)} seeds for a batch of {batch_size}; "
                "pass exactly one seed per sample"
            )
    else:
        if seed is None:
            seed = int(torch.randint(0, 2**31 - 1, (1,)).item())
        base = _as_seed(seed, "seed")
        if base + batch_size - 1 > MAX_SEED:
            raise ValueError(
                f"seed + B − 1 must be <= 2**63 − 1 (sample i gets seed + i); got seed {base} "
                f"for a batch of {batch_size}"
            )
        seeds = [base + i for i in range(batch_size)]
    for s in seeds:
        if not 0 <= s <= MAX_SEED:
            raise ValueError(f"seeds must be integers in [0, 2**63 - 1], got {s}")
    return seeds


def _as_seed(value: object, name: str) -> int:
    """An integer seed (Python or NumPy int, or an integer tensor of one element)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point():
        value = value.item()
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        what = "an integer" if name == "seed" else "integers"
        raise TypeError(
            f"{name} must be {what} in [0, 2**63 - 1], got {type(value).__name__} {value!r} "
            "(a float or string seed would be truncated or parsed silently)"
        )
    return int(value.__index__())  # type: ignore[union-attr]


class SampleNoise:
    """Independent Gaussian streams, one per sample, each from its own seed.

    Args:
        seeds: one integer seed per sample (length B).
        sample_shape: the shape of one sample, e.g. (1, 8, 8) or (2,).
        device: where the returned tensors live (they are drawn on the CPU).
        total: how many step noises will be asked for (``None``: unknown). Only
            limits how far ahead chunks are drawn; 0 (a deterministic sampler)
            draws nothing ahead and starts no workers.
        chunk: step noises drawn per sample and call, a multiple of
            ``NOISE_BLOCK``; ``None`` picks the largest up to 16 blocks that keeps
            a chunk under :data:`CHUNK_BYTES` (and under ``total``).
        workers: host threads that draw the next chunk while the current one is
            used (each takes a share of the samples). 0 draws synchronously, in
            the calling thread; ``None``: 0 on the CPU (the cores are busy with
            the model), ``min(4, cpu_count // 2)`` on an accelerator.

    The numbers do not depend on ``chunk``, ``workers`` or the device.

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
        *,
        total: int | None = None,
        chunk: int | None = None,
        workers: int | None = None,
    ) -> None:
        if len(seeds) == 0:
            raise ValueError("SampleNoise needs at least one seed")
        self.seeds = [int(s) for s in seeds]
        self.sample_shape = tuple(int(d) for d in sample_shape)
        self.device = torch.device(device)
        self.chunk = self._pick_chunk(chunk, total)
        if workers is None:
            cores = os.cpu_count() or 2
            workers = 0 if self.device.type == "cpu" else min(4, max(1, cores // 2))
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise ValueError(
                f"workers must be an int >= 0 (0 = draw synchronously), got {workers!r}"
            )
        self.workers = 0 if total == 0 else min(workers, len(self.seeds))
        self._pin = self.device.type == "cuda"
        self._generators = [torch.Generator().manual_seed(s) for s in self.seeds]
        self._started = False
        self._block: Tensor | None = None  # (B, chunk, *sample_shape), on device
        self._pos = self.chunk
        self._pool = ThreadPoolExecutor(self.workers) if self.workers else None
        self._pending: tuple[Tensor, list[Future[None]]] | None = None

    def _pick_chunk(self, chunk: int | None, total: int | None) -> int:
        if chunk is not None:
            if (
                isinstance(chunk, bool)
                or not isinstance(chunk, int)
                or chunk < NOISE_BLOCK
                or chunk % NOISE_BLOCK
            ):
                raise ValueError(
                    f"chunk must be a positive multiple of NOISE_BLOCK = {NOISE_BLOCK} "
                    f"(or None for automatic), got {chunk!r}"
                )
            return chunk
        per_block = 4 * NOISE_BLOCK * len(self.seeds) * math.prod(self.sample_shape)
        blocks = max(1, min(16, CHUNK_BYTES // max(per_block, 1)))
        if total is not None:
            blocks = max(1, min(blocks, -(-int(total) // NOISE_BLOCK)))
        return blocks * NOISE_BLOCK

    def initial(self) -> Tensor:
        """x_T ~ N(0, I), shape (B, *sample_shape). Must be the first draw."""
        if self._started:
            raise RuntimeError("initial() must be called once, before any next()")
        self._started = True
        x = torch.stack([torch.randn(self.sample_shape, generator=g) for g in self._generators])
        x = x.to(self.device)
        if self._pool is not None:
            self._pending = self._start_chunk()  # draw ahead while the first step runs
        return x

    def _fill(self, buf: Tensor, samples: range) -> None:
        shape = (self.chunk, *self.sample_shape)
        for b in samples:
            torch.randn(shape, generator=self._generators[b], out=buf[b])

    def _start_chunk(self) -> tuple[Tensor, list[Future[None]]]:
        batch = len(self.seeds)
        buf = torch.empty((batch, self.chunk, *self.sample_shape), pin_memory=self._pin)
        assert self._pool is not None
        bounds = [batch * k // self.workers for k in range(self.workers + 1)]
        futures = [
            self._pool.submit(self._fill, buf, range(lo, hi))
            for lo, hi in itertools.pairwise(bounds)
        ]
        return buf, futures

    def _next_chunk(self) -> Tensor:
        if self._pool is None:
            buf = torch.empty((len(self.seeds), self.chunk, *self.sample_shape))
            self._fill(buf, range(len(self.seeds)))
        else:
            assert self._pending is not None
            buf, futures = self._pending
            for f in futures:
                f.result()
            self._pending = self._start_chunk()
        return buf.to(self.device, non_blocking=self._pin)

    def next(self) -> Tensor:
        """The next step's z ~ N(0, I), shape (B, *sample_shape).

        On an accelerator this is a view into a chunk buffer: use it (or copy
        it) before the chunk is replaced, i.e. within ``chunk`` calls.
        """
        if not self._started:
            self.initial()
        if self._pos == self.chunk:
            self._block = self._next_chunk()
            self._pos = 0
        assert self._block is not None
        z = self._block[:, self._pos]
        self._pos += 1
        return z

    def close(self) -> None:
        """Stop the worker threads (also done when the object is garbage-collected)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
            self._pending = None

    def __del__(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
