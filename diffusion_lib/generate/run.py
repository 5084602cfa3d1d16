"""The run: check everything (:func:`prepare`), then make the missing images (:func:`run_plan`)."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..device import model_device
from ..files import check_writable_dir, fsync_dir, write_atomic
from ..images import to_uint8
from ..sampling import SampleStep, sample
from ..schedule import NoiseSchedule
from ..speed import AutocastModel
from .config import (
    GenerateConfig,
    _is_int,
    check_config,
    check_image_shape,
    image_shape_of,
    summarise,
)
from .fixed_batch import FixedBatchModel
from .lock import LOCK_FILE, RunConflict, RunLock
from .rundir import (
    RUN_FILE,
    broken_indices,
    check_out_dir,
    file_name,
    manifest_hashes,
    remove_stale_tmp,
    run_settings,
    whole_images,
    write_manifest,
    write_png,
)
from .workers import Workers, _ProcessGroup

PROGRESS_FORMAT = (
    "{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total_fmt} img [{elapsed}<{remaining}, {rate_fmt}]"
)
"""The bar counts images, advanced step by step within a batch, with images/s and an ETA."""


@dataclass
class GenerateResult:
    """What :func:`generate` did (summed over all processes)."""

    out_dir: Path
    generated: int
    """Images written by this run."""
    already_present: int
    """Images of the requested indices that were already there (a resume)."""
    finished: int
    """Images of 0 … n−1 that exist now (the manifest's rows); −1 on ranks other than 0."""
    n: int
    seconds: float
    world_size: int = 1
    remade: int = 0
    """Images that were there but differed from their manifest SHA-256, made again."""
    remade_names: tuple[str, ...] = ()
    """The first few of those (this process's)."""

    @property
    def images_per_s(self) -> float:
        return self.generated / self.seconds if self.seconds > 0 else float("nan")

    @property
    def complete(self) -> bool:
        return self.finished == self.n

    def summary(self) -> str:
        """``generated 12 images (0 already present) in 1.3 s, 9.2 images/s -> DIR``."""
        line = (
            f"generated {self.generated} images ({self.already_present} already present) in "
            f"{self.seconds:.1f} s, {self.images_per_s:.1f} images/s -> {self.out_dir}"
        )
        if self.world_size > 1:
            line += f" ({self.world_size} processes)"
        if self.remade:
            names = ", ".join(self.remade_names) + (
                " …" if self.remade > len(self.remade_names) else ""
            )
            line += (
                f"; {self.remade} image(s) did not match the SHA-256 in manifest.csv "
                f"({names}) and were made again"
            )
        if not self.complete:
            line += f"; {self.finished} of {self.n} images done, run the rest to finish"
        return line


@dataclass
class GeneratePlan:
    """A checked run, ready for :func:`run_plan`: nothing has been written yet."""

    model: Callable[..., Tensor]
    schedule: NoiseSchedule
    out_dir: Path
    config: GenerateConfig
    settings: dict[str, Any]
    sample_shape: tuple[int, ...]
    batch_size: int
    indices: range
    workers: Workers
    device: torch.device


def prepare(
    model: Callable[..., Tensor],
    schedule: NoiseSchedule,
    out_dir: str | os.PathLike[str],
    config: GenerateConfig,
    *,
    model_name: str,
    batch_size: int = 256,
    indices: range | None = None,
    sample_shape: Sequence[int] | None = None,
    workers: Workers | None = None,
) -> GeneratePlan:
    """Check every argument and the output directory; write nothing.

    Raises:
        ValueError: a bad setting (naming the valid values), a model that
            does not make images, or an output directory that holds another run.
    """
    check_writable_dir(out_dir)  # before Path(): Path("") would mean the current directory
    check_config(config, model, schedule)
    device = model_device(model)
    if config.precision == "fp16" and device.type != "cuda":
        raise ValueError(
            f"precision 'fp16' needs a CUDA device, the model is on {device}; "
            "use 'bf16' (CPU or CUDA) or 'fp32'"
        )
    shape = check_image_shape(sample_shape) if sample_shape else image_shape_of(model)
    if not _is_int(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if indices is None:
        indices = range(config.n)
    if indices.step != 1 or not 0 <= indices.start < indices.stop <= config.n:
        raise ValueError(
            f"indices must be a range START:STOP with 0 <= START < STOP <= n = {config.n}, "
            f"got {indices}"
        )
    settings = run_settings(config, model, schedule, model_name, shape)
    out = Path(out_dir)
    check_out_dir(out, settings)
    return GeneratePlan(
        model=model,
        schedule=schedule,
        out_dir=out,
        config=config,
        settings=settings,
        sample_shape=shape,
        batch_size=int(batch_size),
        indices=indices,
        workers=workers or Workers.from_env(),
        device=device,
    )


def _batches(indices: Iterator[int], size: int) -> Iterator[list[int]]:
    while batch := list(islice(indices, size)):
        yield batch


def owned_indices(indices: range, workers: Workers) -> range:
    """The indices of ``indices`` this process owns (``i % world_size == rank``), as a range."""
    first = indices.start + (workers.rank - indices.start) % workers.world_size
    return range(first, indices.stop, workers.world_size)


@dataclass
class _RunDir:
    """What this process created in the output directory, to undo it if it makes no image."""

    out: Path
    lock: RunLock | None = None
    created_dirs: list[Path] = field(default_factory=list)
    created_run_file: bool = False

    def open(self, settings: dict[str, Any]) -> None:
        """mkdir, lock, re-check ``run.json`` under the lock, write it if new."""
        missing = [p for p in (self.out, *self.out.parents) if not p.exists()]
        self.out.mkdir(parents=True, exist_ok=True)
        self.created_dirs = missing  # deepest first
        try:
            self.lock = RunLock(self.out)
        except RunConflict:
            # another process holds the directory: nothing here is ours to undo (it may
            # have made the directory too, and is writing into it)
            self.created_dirs = []
            raise
        # temp files of a killed run go before anything is written (their names are ours)
        remove_stale_tmp(self.out, lambda i: False, rank=0)
        # another process may have started a run here since prepare(): check again, locked
        if not check_out_dir(self.out, settings):
            write_atomic(self.out / RUN_FILE, (json.dumps(settings, indent=2) + "\n").encode())
            self.created_run_file = True

    def undo(self) -> None:
        """Remove run.json, the lock file and the directories, if this process made them."""
        if self.created_run_file:
            with contextlib.suppress(OSError):
                os.remove(self.out / RUN_FILE)
        held = self.lock is not None and self.lock.fd is not None
        if held and (self.created_run_file or self.created_dirs):
            with contextlib.suppress(OSError):
                os.remove(self.out / LOCK_FILE)
        for directory in self.created_dirs:
            with contextlib.suppress(OSError):
                directory.rmdir()  # only if empty

    def close(self) -> None:
        if self.lock is not None:
            self.lock.release()


def _check_finite(x: Tensor, batch: list[int], number: int) -> None:
    """Raise ``FloatingPointError`` naming the images of ``batch`` that hold NaN/inf."""
    finite = torch.isfinite(x).flatten(1).all(1).cpu()  # (B,)
    if not bool(finite.all()):
        bad = [i for i, ok in zip(batch, finite.tolist(), strict=True) if not ok]
        raise FloatingPointError(
            f"{_batch_name(batch, number)}: images {summarise(bad)} came out NaN/inf: the "
            "model returns non-finite values (broken weights or an input it cannot take); "
            "no image of this batch was written"
        )


def _batch_name(batch: list[int], number: int) -> str:
    return f"batch {number} (indices {batch[0]}-{batch[-1]})"


def _sample_batch(
    plan: GeneratePlan,
    model: Callable[..., Tensor],
    batch: list[int],
    callback: Callable[[SampleStep], None] | None,
    cuda_graph: bool,
) -> Tensor:
    """The samples of images ``batch``: seeds ``seed + i``, labels ``labels[i % len]``."""
    c = plan.config
    return sample(
        model,
        plan.schedule,
        (len(batch), *plan.sample_shape),
        **c.spec.kwargs(),
        labels=None if c.labels is None else [c.label_of(i) for i in batch],
        guidance_scale=c.guidance,
        cfg_mode=c.cfg_mode,
        seeds=[c.seed + i for i in batch],
        progress=False,
        callback=callback,
        cuda_graph=cuda_graph,
    )


def run_plan(
    plan: GeneratePlan, *, progress: bool = True, cuda_graph: bool = False
) -> GenerateResult:
    """Generate the missing images of a :class:`GeneratePlan` (see the package docstring).

    Rank 0 takes the directory's lock (:class:`~diffusion_lib.generate.lock.RunLock`) and
    checks ``run.json`` against the plan again under it, so two plans prepared side by side
    can never mix their images. Existing PNGs are decoded; a broken one is made again. If
    this call wrote ``run.json`` but no image (a bad model, Ctrl-C), it removes what it made.

    ``cuda_graph=True`` samples each batch through one CUDA graph per step
    (:class:`diffusion_lib.sampling.graph.StepGraph`); it changes no image, so it is not a
    setting in ``run.json``.

    Raises:
        RunConflict: another run holds the directory, or wrote other settings there.
        FloatingPointError: a batch came out NaN/inf (its images are named).
        OSError: a write failed (e.g. a full disk); every image already there is whole.
    """
    c, out, workers = plan.config, plan.out_dir, plan.workers
    start_time = time.perf_counter()
    run_dir = _RunDir(out)
    generated_here = 0
    bar = None
    group = _ProcessGroup(workers, plan.device)
    try:
        if workers.rank == 0:
            run_dir.open(plan.settings)
        group.sum([0])  # everyone waits until run.json exists
        owned = owned_indices(plan.indices, workers)
        remove_stale_tmp(out, owned.__contains__, workers.rank)
        digests = whole_images(out, c.n, plan.sample_shape, decode=True)
        recorded = manifest_hashes(out, c.n)
        # an image that is whole but not the one the manifest certified: make it again
        remade = sorted(i for i, d in digests.items() if i in owned and recorded.get(i, d) != d)
        for i in remade:
            os.remove(out / file_name(i, c.n))
            del digests[i]
        whole = set(digests)
        for i in broken_indices(out, c.n, whole):
            if i in owned:  # a 0-byte or cut-short PNG (or no file at all) there: make it again
                os.remove(out / file_name(i, c.n))
        present = sum(1 for i in whole if i in owned)
        missing = (i for i in owned if i not in whole)

        model = plan.model
        if c.precision != "fp32":
            model = AutocastModel(model, c.precision, device_type=plan.device.type)
        if c.model_batch is not None:
            model = FixedBatchModel(model, c.model_batch)
        desc = "generate" if workers.world_size == 1 else f"generate (rank 0/{workers.world_size})"
        show = progress and workers.rank == 0
        bar = tqdm(
            total=len(owned) - present,
            desc=desc,
            disable=not show,
            dynamic_ncols=True,
            bar_format=PROGRESS_FORMAT,
            unit="img",
        )
        steps_per_image = c.steps or plan.schedule.num_steps
        for number, batch in enumerate(_batches(missing, plan.batch_size), 1):

            def tick(_: SampleStep, share: float = len(batch) / steps_per_image) -> None:
                bar.update(share)

            try:
                x = _sample_batch(plan, model, batch, tick if show else None, cuda_graph)
            except FloatingPointError as err:  # the sampler names the step and t
                raise FloatingPointError(f"{_batch_name(batch, number)}: {err}") from None
            _check_finite(x, batch, number)
            pixels = to_uint8(x)  # (B, C, H, W) uint8 on the CPU
            for i, image in zip(batch, pixels, strict=True):
                write_png(image, out / file_name(i, c.n))
                generated_here += 1
            fsync_dir(out)
            bar.update(generated_here - bar.n)  # whole images, no rounding drift
        bar.close()

        generated, already, remade_count = group.sum(  # waits for every rank
            [generated_here, present, len(remade)]
        )
        finished = write_manifest(out, c, plan.sample_shape) if workers.rank == 0 else -1
    except BaseException:
        if bar is not None:
            bar.close()  # before the caller prints its message
        if generated_here == 0 and workers.world_size == 1:
            run_dir.undo()
        raise
    finally:
        run_dir.close()
        group.close()
    return GenerateResult(
        out_dir=out,
        generated=int(generated),
        already_present=int(already),
        finished=finished,
        n=c.n,
        seconds=time.perf_counter() - start_time,
        world_size=workers.world_size,
        remade=int(remade_count),
        remade_names=tuple(file_name(i, c.n) for i in remade[:3]),
    )


def generate(
    model: Callable[..., Tensor],
    schedule: NoiseSchedule,
    out_dir: str | os.PathLike[str],
    config: GenerateConfig,
    *,
    model_name: str,
    batch_size: int = 256,
    indices: range | None = None,
    sample_shape: Sequence[int] | None = None,
    workers: Workers | None = None,
    progress: bool = True,
    cuda_graph: bool = False,
) -> GenerateResult:
    """Generate images ``indices`` (default all of 0 … n−1) of a run into ``out_dir``.

    Args:
        model: ``model(x_t, t, labels=None) -> ε̂``, on the device to sample on.
        schedule: the schedule it was trained with.
        out_dir: the run's directory; created if needed; may hold a partial
            run with the same settings (it is resumed).
        config: the settings that decide the images (:class:`GenerateConfig`).
        model_name: recorded in ``run.json`` (e.g. ``"digits"``), with the
            model's SHA-256.
        batch_size: samples per sampler call; bounds the memory, changes no image.
        indices: a sub-range to make in this call (split a run into parts).
        sample_shape: (C, H, W) of one image; default from the model.
        workers: this process's share; default from ``torchrun``'s env vars.
        progress: show a progress bar (on rank 0).
        cuda_graph: one CUDA-graph replay per step (same images, fewer launches).

    Returns:
        a :class:`GenerateResult`; ``.summary()`` is the line the CLI prints.
    """
    plan = prepare(
        model,
        schedule,
        out_dir,
        config,
        model_name=model_name,
        batch_size=batch_size,
        indices=indices,
        sample_shape=sample_shape,
        workers=workers,
    )
    return run_plan(plan, progress=progress, cuda_graph=cuda_graph)
