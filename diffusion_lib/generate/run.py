"""The run: check everything (:func:`prepare`), then make the missing images (:func:`run_plan`)."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..device import model_device
from ..images import to_uint8
from ..sampling import sample
from ..schedule import NoiseSchedule
from ..speed import AutocastModel
from .config import GenerateConfig, _is_int, check_config, check_image_shape, image_shape_of
from .fixed_batch import FixedBatchModel
from .rundir import (
    _SAMPLE_TMP,
    MANIFEST_FILE,
    RUN_FILE,
    TMP_SUFFIX,
    _write_atomic,
    _write_png,
    check_out_dir,
    file_name,
    finished_indices,
    run_settings,
    write_manifest,
)
from .workers import Workers, _ProcessGroup


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


def _batches(indices: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(indices), size):
        yield list(indices[start : start + size])


def _remove_stale_tmp(out_dir: Path, plan: GeneratePlan) -> None:
    """Remove the ``.tmp`` files a killed run left behind for indices this process owns."""
    for entry in os.scandir(out_dir):
        m = _SAMPLE_TMP.match(entry.name)
        if m and int(m.group(1)) in plan.indices and plan.workers.owns(int(m.group(1))):
            with contextlib.suppress(FileNotFoundError):
                os.remove(entry.path)
        elif plan.workers.rank == 0 and entry.name in (
            RUN_FILE + TMP_SUFFIX,
            MANIFEST_FILE + TMP_SUFFIX,
        ):
            with contextlib.suppress(FileNotFoundError):
                os.remove(entry.path)



def run_plan(
    plan: GeneratePlan, *, progress: bool = True, cuda_graph: bool = False
) -> GenerateResult:
    """Generate the missing images of a :class:`GeneratePlan` (see the module docstring).

    ``cuda_graph=True`` samples each batch through one CUDA graph per step
    (:class:`diffusion_lib.speed.StepGraph`); it changes no image, so it is not a
    setting in ``run.json``.
    """
    c, out, workers = plan.config, plan.out_dir, plan.workers
    start_time = time.perf_counter()
    group = _ProcessGroup(workers, plan.device)
    try:
        if workers.rank == 0:
            out.mkdir(parents=True, exist_ok=True)
            if not (out / RUN_FILE).exists():
                _write_atomic(out / RUN_FILE, (json.dumps(plan.settings, indent=2) + "\n").encode())
        group.sum([0])  # everyone waits until run.json exists
        _remove_stale_tmp(out, plan)
        done = finished_indices(out, c.n)
        owned = [i for i in plan.indices if workers.owns(i)]
        missing = [i for i in owned if i not in done]
        present = len(owned) - len(missing)

        model = plan.model
        if c.precision != "fp32":
            model = AutocastModel(model, c.precision, device_type=plan.device.type)
        if c.model_batch is not None:
            model = FixedBatchModel(model, c.model_batch)
        desc = "generate" if workers.world_size == 1 else f"generate (rank 0/{workers.world_size})"
        bar = tqdm(
            total=len(missing),
            unit="img",
            desc=desc,
            disable=not progress or workers.rank != 0,
            dynamic_ncols=True,
        )
        for batch in _batches(missing, plan.batch_size):  # one batch in memory at a time
            labels = None if c.labels is None else [c.label_of(i) for i in batch]
            x = sample(
                model,
                plan.schedule,
                (len(batch), *plan.sample_shape),
                sampler=c.sampler,
                steps=c.steps,
                spacing=c.spacing,
                variance=c.variance,
                eta=c.eta,
                x0_mode=c.x0_mode,
                labels=labels,
                guidance_scale=c.guidance,
                cfg_mode=c.cfg_mode,
                seeds=[c.seed + i for i in batch],
                progress=False,
                cuda_graph=cuda_graph,
            )
            pixels = to_uint8(x)  # (B, C, H, W) uint8 on the CPU
            for i, image in zip(batch, pixels, strict=True):
                _write_png(image, out / file_name(i, c.n))
            bar.update(len(batch))
        bar.close()

        generated, already = group.sum([len(missing), present])  # waits for every rank
        finished = write_manifest(out, c) if workers.rank == 0 else -1
    finally:
        group.close()
    return GenerateResult(
        out_dir=out,
        generated=int(generated),
        already_present=int(already),
        finished=finished,
        n=c.n,
        seconds=time.perf_counter() - start_time,
        world_size=workers.world_size,
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

