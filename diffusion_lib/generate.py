"""Generate many samples to PNG files: reproducible, resumable, shardable.

A run makes images ``0 … n−1`` in one directory::

    DIR/run.json               the settings, written before any image
    DIR/sample_00000.png …     one 8-bit PNG per index (see :mod:`diffusion_lib.images`)
    DIR/manifest.csv           file, index, seed, label: one row per finished image

The rules that make it safe to kill, resume and split:

- **Index i owns everything about image i**: its seed is ``seed + i`` (its own
  noise stream, :mod:`diffusion_lib.noise`) and its label is
  ``labels[i % len(labels)]``. Nothing depends on the batch it lands in.
- **The model sees fixed-size chunks.** A CPU or GPU kernel may pick another
  algorithm for another batch size and round differently (on a CPU, a Linear
  layer fed 3 rows instead of 40 differs by ~1e-6, and 20 DDIM steps grow that
  to ~1e-5: rarely a pixel, but not bit-identical). :class:`FixedBatchModel` always calls
  the model with exactly ``model_batch`` rows (padding the last chunk), so
  image i is bit-identical whatever ``batch_size`` is, after a resume, or under
  ``torchrun``. ``model_batch`` is a setting recorded in ``run.json``.
- **A file is done only under its final name**: each PNG is written to
  ``sample_i.png.tmp`` and then ``os.replace``-d, so a kill (even ``kill -9``)
  leaves either a whole image or a stale ``.tmp`` that the next run removes.
  Batches are formed from the *missing* indices only.
- **The settings are checked before anything is touched**: re-running into a
  directory whose ``run.json`` differs fails with the differences listed.
  ``batch_size`` and the device are not settings: they do not change any
  image (but CPU and CUDA kernels round differently, so do not mix devices
  within one set if you need a bit-exact set).
- **The manifest is rebuilt at the end** from the settings and the files that
  exist, written to a temp name and replaced, so it always matches the files.
- **Scale-out with ``torchrun``**: with ``WORLD_SIZE`` = K, rank r takes the
  missing indices with ``i % K == r``; a process group (gloo on CPU, NCCL on
  CUDA) is used only to sync after ``run.json`` is written and at the end,
  after which rank 0 writes the manifest. The union is exactly the images one
  process makes.

Only image models are supported: a 2-D model (``moons``) makes points, not
pictures; sample those with :func:`diffusion_lib.sampling.sample` directly.

    >>> from diffusion_lib.pretrained import load_pretrained           # doctest: +SKIP
    >>> model, schedule = load_pretrained("digits")                  # doctest: +SKIP
    >>> cfg = GenerateConfig(n=100, labels=tuple(range(10)), guidance=3.0)
    >>> generate(model, schedule, "out/digits", cfg, model_name="digits")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io
import json
import math
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .device import model_device
from .guidance import CFG_MODES, CfgMode
from .images import IMAGE_CHANNELS, save_png, to_uint8
from .model_api import null_label_of
from .noise import MAX_SEED
from .sampling import (
    SAMPLERS,
    SPACINGS,
    VARIANCES,
    X0_MODES,
    Sampler,
    Spacing,
    Variance,
    X0Mode,
    check_choice,
    sample,
)
from .schedule import NoiseSchedule
from .speed import AutocastModel

RUN_FILE = "run.json"
MANIFEST_FILE = "manifest.csv"
MANIFEST_COLUMNS = ("file", "index", "seed", "label")
RUN_FORMAT = "diffusion_lib.generate"
RUN_FORMAT_VERSION = 1
PRECISIONS = ("fp32", "bf16", "fp16")
"""``GenerateConfig.precision`` values; fp16 needs CUDA."""
_ADDED_SETTINGS = {"precision": "fp32"}
"""Settings added after format version 1, with the value an older ``run.json`` implies."""
TMP_SUFFIX = ".tmp"
DEFAULT_MODEL_BATCH = 64
_SAMPLE_NAME = re.compile(r"^sample_(\d+)\.png$")
_SAMPLE_TMP = re.compile(r"^sample_(\d+)\.png\.tmp$")


# ------------------------------------------------------------------ settings
@dataclass(frozen=True)
class GenerateConfig:
    """Everything that decides the images of a run (recorded in ``run.json``).

    Attributes:
        n: how many images, indices 0 … n−1.
        seed: base seed; image i uses seed + i.
        sampler, steps, spacing, eta, variance, x0_mode: as in
            :func:`diffusion_lib.sampling.sample`; ``steps=None`` = all T.
        labels: classes cycled over the indices (image i gets
            ``labels[i % len(labels)]``), or ``None`` for unconditional.
        guidance: classifier-free guidance scale w, or ``None``; needs labels.
        cfg_mode: ``"batched"`` or ``"two_pass"`` guidance evaluation.
        model_batch: rows per model call (:class:`FixedBatchModel`); ``None``
            calls the model with whole batches (faster on big GPUs, but then
            the last bits of an image may depend on the batch size).
        precision: ``"fp32"``, or run the network under ``"bf16"`` (CPU or
            CUDA) or ``"fp16"`` (CUDA) autocast
            (:class:`~diffusion_lib.speed.AutocastModel`; the sampler stays fp32).
            It changes the images a little, so it is a setting.
    """

    n: int
    seed: int = 0
    sampler: Sampler = "ddim"
    steps: int | None = 50
    spacing: Spacing = "leading"
    eta: float = 0.0
    variance: Variance = "beta_tilde"
    x0_mode: X0Mode = "clip"
    labels: tuple[int, ...] | None = None
    guidance: float | None = None
    cfg_mode: CfgMode = "batched"
    model_batch: int | None = DEFAULT_MODEL_BATCH
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.labels is not None and not isinstance(self.labels, tuple):
            try:
                object.__setattr__(self, "labels", tuple(self.labels))
            except TypeError:
                raise ValueError(
                    f"labels must be a sequence of ints or None, got {self.labels!r}"
                ) from None

    def label_of(self, index: int) -> int | None:
        """The label of image ``index``, or ``None`` when unconditional."""
        return None if self.labels is None else self.labels[index % len(self.labels)]


def parse_labels(spec: str) -> tuple[int, ...]:
    """Parse a labels spec: ``"3"``, ``"1,4,7"``, ``"0-9"`` or a mix such as ``"0-2,7"``.

    >>> parse_labels("0-2,7")
    (0, 1, 2, 7)
    """
    hint = "use a class (3), a range (0-9), a list (1,4,7) or a mix (0-4,7)"
    labels: list[int] = []
    for part in str(spec).replace(" ", "").split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if m is None:
            raise ValueError(f"invalid labels {spec!r}: {hint}")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise ValueError(f"invalid labels {spec!r}: range {part} runs backwards; {hint}")
        labels.extend(range(lo, hi + 1))
    return tuple(labels)


def parse_indices(spec: str, n: int) -> range:
    """``"A:B"`` → ``range(A, B)`` within [0, n); either end may be left out."""
    m = re.fullmatch(r"\s*(\d*)\s*:\s*(\d*)\s*", str(spec))
    if m is None:
        raise ValueError(f"invalid indices {spec!r}: use START:STOP, e.g. 0:5000 or 5000:")
    start = int(m.group(1)) if m.group(1) else 0
    stop = int(m.group(2)) if m.group(2) else n
    if not 0 <= start < stop <= n:
        raise ValueError(
            f"indices {spec!r} must satisfy 0 <= START < STOP <= n = {n}; got {start}:{stop}"
        )
    return range(start, stop)


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def image_shape_of(model: object) -> tuple[int, ...]:
    """The (C, H, W) of one sample, read from ``model.sample_shape`` or ``model.config``.

    Raises:
        ValueError: the model makes something other than images (e.g. 2-D
            points), or its sample shape cannot be told.
    """
    shape = getattr(model, "sample_shape", None)
    config = getattr(model, "config", None)
    if shape is None and config is not None:
        if hasattr(config, "image_size") and hasattr(config, "image_channels"):
            shape = (config.image_channels, config.image_size, config.image_size)
        elif hasattr(config, "dim"):
            shape = (config.dim,)
    if shape is None:
        raise ValueError(
            f"cannot tell the sample shape of a {type(model).__name__}: give it a "
            "`sample_shape` attribute, e.g. (1, 8, 8), or pass sample_shape="
        )
    return check_image_shape(shape)


def check_image_shape(shape: Sequence[int]) -> tuple[int, ...]:
    """``shape`` as a tuple if it is (C, H, W) with C in 1, 3, 4; else ``ValueError``."""
    shape = tuple(int(d) for d in shape)
    if len(shape) != 3 or shape[0] not in IMAGE_CHANNELS or min(shape) < 1:
        raise ValueError(
            f"generation to PNG needs an image model with samples of shape (C, H, W), C in "
            f"{IMAGE_CHANNELS}; this model makes samples of shape {shape} (2-D points for "
            "'moons'): sample those with diffusion_lib.sample(model, schedule, (n, *shape)) "
            "and save the array yourself"
        )
    return shape


def check_config(config: GenerateConfig, model: object, schedule: NoiseSchedule) -> None:
    """Raise ``ValueError`` naming the bad setting and the valid values; touch nothing."""
    c = config
    if not _is_int(c.n) or c.n < 1:
        raise ValueError(f"n must be an int >= 1, got {c.n!r}")
    if not _is_int(c.seed) or c.seed < 0 or c.seed + c.n - 1 > MAX_SEED:
        raise ValueError(f"seed must be an int in [0, 2**63 - n], got {c.seed!r}")
    check_choice("sampler", c.sampler, SAMPLERS)
    check_choice("spacing", c.spacing, SPACINGS)
    check_choice("variance", c.variance, VARIANCES)
    check_choice("x0_mode", c.x0_mode, X0_MODES)
    check_choice("cfg_mode", c.cfg_mode, CFG_MODES)
    num_timesteps = schedule.num_steps
    if c.steps is not None and (not _is_int(c.steps) or not 1 <= c.steps <= num_timesteps):
        raise ValueError(
            f"steps must be an int between 1 and T = {num_timesteps} (the model's schedule), "
            f"got {c.steps!r}"
        )
    if not (isinstance(c.eta, (int, float)) and math.isfinite(c.eta) and c.eta >= 0):
        raise ValueError(f"eta must be a finite number >= 0, got {c.eta!r}")
    if c.eta != 0 and c.sampler != "ddim":
        raise ValueError(f"eta only applies to sampler 'ddim', got eta={c.eta} with {c.sampler!r}")
    if c.model_batch is not None and (not _is_int(c.model_batch) or c.model_batch < 1):
        raise ValueError(f"model_batch must be an int >= 1 or None, got {c.model_batch!r}")
    check_choice("precision", c.precision, PRECISIONS)

    null_label = null_label_of(model)
    num_classes = int(getattr(model, "num_classes", null_label or 0) or 0)
    if c.labels is not None:
        if null_label is None or num_classes < 1:
            raise ValueError(
                "labels were given but the model is unconditional (it has no classes); "
                "leave the labels out"
            )
        if len(c.labels) == 0 or not all(_is_int(y) for y in c.labels):
            raise ValueError(f"labels must be a non-empty sequence of ints, got {c.labels!r}")
        bad = sorted({int(y) for y in c.labels if not 0 <= y < num_classes})
        if bad:
            raise ValueError(
                f"labels {bad} are out of range: this model's classes are 0-{num_classes - 1} "
                "(leave the labels out for unconditional samples)"
            )
    if c.guidance is not None:
        if null_label is None:
            raise ValueError(
                "guidance was given but the model is unconditional (it has no null label); "
                "classifier-free guidance needs a class-conditional model"
            )
        if c.labels is None:
            raise ValueError("guidance needs labels (the classes to guide towards)")
        if not (isinstance(c.guidance, (int, float)) and math.isfinite(c.guidance)):
            raise ValueError(f"guidance must be a finite number, got {c.guidance!r}")


# ------------------------------------------------------------- fingerprints
def model_fingerprint(model: object) -> str | None:
    """SHA-256 of a module's state dict (names, dtypes, shapes, bytes); ``None`` otherwise."""
    if not isinstance(model, nn.Module):
        return None
    digest = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        tensor = value.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def schedule_fingerprint(schedule: NoiseSchedule) -> str:
    """SHA-256 of the schedule's β_t (float32) and its timesteps."""
    digest = hashlib.sha256()
    digest.update(schedule.betas.detach().cpu().float().numpy().tobytes())
    digest.update(schedule.timesteps.detach().cpu().numpy().astype(np.int64).tobytes())
    return digest.hexdigest()


def file_name(index: int, n: int) -> str:
    """``sample_00042.png``: five digits, more when n needs them."""
    return f"sample_{index:0{max(5, len(str(n - 1)))}d}.png"


def run_settings(
    config: GenerateConfig,
    model: object,
    schedule: NoiseSchedule,
    model_name: str,
    sample_shape: Sequence[int],
) -> dict[str, Any]:
    """The ``run.json`` of a run: every setting that decides its images, JSON-normalised."""
    from . import __version__

    settings = {
        "format": RUN_FORMAT,
        "format_version": RUN_FORMAT_VERSION,
        "library_version": __version__,
        "model": model_name,
        "model_sha256": model_fingerprint(model),
        "num_timesteps": schedule.num_steps,
        "schedule_sha256": schedule_fingerprint(schedule),
        "sample_shape": list(sample_shape),
        "file_pattern": f"sample_{{index:0{max(5, len(str(config.n - 1)))}d}}.png",
        **dataclasses.asdict(config),
    }
    return json.loads(json.dumps(settings))  # tuples → lists, as read back from disk


# ------------------------------------------------------- batch invariance
class FixedBatchModel(nn.Module):
    """Call ``model`` with exactly ``model_batch`` rows every time.

    Rows are split into chunks of ``model_batch``; the last chunk is padded
    (copies of its last row) and the padding's output dropped. Every row of a
    diffusion model is computed independently of the others (no batch norm
    at eval), so only the *shape* of a call can change its rounding: with the
    shape fixed, row i's ε̂ does not depend on how many rows came with it.

    Args:
        model: follows ``model(x_t, t, labels=None) -> ε̂``.
        model_batch: rows per call, >= 1.
    """

    def __init__(self, model: Callable[..., Tensor], model_batch: int) -> None:
        super().__init__()
        if not _is_int(model_batch) or model_batch < 1:
            raise ValueError(f"model_batch must be an int >= 1, got {model_batch!r}")
        self.model = model
        self.model_batch = int(model_batch)
        self.null_label = null_label_of(model)
        self.num_classes = getattr(model, "num_classes", 0)

    def forward(self, x_t: Tensor, t: Tensor, labels: Tensor | None = None) -> Tensor:
        k = self.model_batch
        rows = x_t.shape[0]
        outputs = []
        for start in range(0, rows, k):
            stop = min(start + k, rows)
            pad = k - (stop - start)
            x, tt = x_t[start:stop], t[start:stop]  # (b, ...), (b,)
            y = None if labels is None else labels[start:stop]
            if pad:
                x = torch.cat([x, x[-1:].expand(pad, *x.shape[1:])])  # (k, ...)
                tt = torch.cat([tt, tt[-1:].expand(pad)])
                y = None if y is None else torch.cat([y, y[-1:].expand(pad)])
            outputs.append(self.model(x, tt, y)[: stop - start])
        return torch.cat(outputs)  # (B, ...)


# --------------------------------------------------------- output directory
def _read_run_file(path: Path) -> dict[str, Any]:
    try:
        existing = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(
            f"{path} is not a readable {RUN_FORMAT} run file ({err}); "
            "choose another output directory"
        ) from None
    if not isinstance(existing, dict) or existing.get("format") != RUN_FORMAT:
        raise ValueError(f"{path} is not a {RUN_FORMAT} run file; choose another output directory")
    return existing


def check_out_dir(out_dir: Path, settings: dict[str, Any]) -> bool:
    """Check that ``out_dir`` is new or holds this same run; read only.

    Returns:
        True when ``out_dir/run.json`` already exists (a resume).

    Raises:
        ValueError: ``out_dir`` is a file, holds another run's ``run.json``
            (the differences are listed), or holds ``sample_*.png`` files but
            no ``run.json``.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"output path {out_dir} exists and is not a directory")
    run_file = out_dir / RUN_FILE
    if run_file.exists():
        existing = {**_ADDED_SETTINGS, **_read_run_file(run_file)}
        keys = sorted(set(existing) | set(settings))
        diffs = [
            f"{key}: {existing.get(key)!r} there, {settings.get(key)!r} now"
            for key in keys
            if existing.get(key) != settings.get(key)
        ]
        if diffs:
            raise ValueError(
                f"{out_dir} holds a different run (see its {RUN_FILE}): "
                + "; ".join(diffs)
                + ". Use another output directory, or repeat that run's settings to resume it "
                "(only the batch size and the device may differ)."
            )
        return True
    if out_dir.is_dir() and any(_SAMPLE_NAME.match(e.name) for e in os.scandir(out_dir)):
        raise ValueError(
            f"{out_dir} holds sample_*.png files but no {RUN_FILE}, so they are not a run "
            "this tool can resume; choose another output directory"
        )
    return False


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``path`` via ``path.tmp`` + fsync + ``os.replace``: never half-written."""
    tmp = path.with_name(path.name + TMP_SUFFIX)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def finished_indices(out_dir: Path, n: int) -> set[int]:
    """Indices i < n whose final file ``sample_i.png`` exists."""
    if not out_dir.is_dir():
        return set()
    found = set()
    for entry in os.scandir(out_dir):
        m = _SAMPLE_NAME.match(entry.name)
        if m and int(m.group(1)) < n and entry.name == file_name(int(m.group(1)), n):
            found.add(int(m.group(1)))
    return found


def write_manifest(out_dir: Path, config: GenerateConfig) -> int:
    """Rebuild ``manifest.csv`` from the finished files (atomically); return its row count.

    Columns: ``file``, ``index``, ``seed``, ``label`` (empty when unconditional).
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(MANIFEST_COLUMNS)
    done = sorted(finished_indices(out_dir, config.n))
    for i in done:
        label = config.label_of(i)
        label_cell = "" if label is None else label
        writer.writerow([file_name(i, config.n), i, config.seed + i, label_cell])
    _write_atomic(out_dir / MANIFEST_FILE, buffer.getvalue().encode())
    return len(done)


# -------------------------------------------------------------- distributed
@dataclass(frozen=True)
class Workers:
    """Which share of the indices this process owns: ``i % world_size == rank``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Workers:
        """Read ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` as set by ``torchrun``."""
        try:
            rank = int(os.environ.get("RANK", "0"))
            world = int(os.environ.get("WORLD_SIZE", "1"))
            local = int(os.environ.get("LOCAL_RANK", str(rank)))
        except ValueError as err:
            raise ValueError(f"RANK / WORLD_SIZE / LOCAL_RANK must be integers ({err})") from None
        if world < 1 or not 0 <= rank < world:
            raise ValueError(f"need 0 <= RANK < WORLD_SIZE, got RANK={rank}, WORLD_SIZE={world}")
        return cls(rank, world, local)

    def owns(self, index: int) -> bool:
        return index % self.world_size == self.rank


class _ProcessGroup:
    """A process group used only to sync (an all-reduce doubles as a barrier)."""

    def __init__(self, workers: Workers, device: torch.device) -> None:
        import torch.distributed as dist

        self.dist = dist
        self.active = workers.world_size > 1
        self.owned = False
        # NCCL reduces CUDA tensors only; gloo reduces CPU tensors
        self.device = device if device.type == "cuda" else torch.device("cpu")
        if self.active and not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            dist.init_process_group(backend, timeout=timedelta(hours=2))
            self.owned = True

    def sum(self, values: Sequence[int]) -> list[int]:
        """All-reduce ``values`` over the ranks (returns them as-is with one process)."""
        if not self.active:
            return [int(v) for v in values]
        tensor = torch.tensor(list(values), dtype=torch.int64, device=self.device)
        self.dist.all_reduce(tensor)
        return [int(v) for v in tensor.cpu().tolist()]

    def close(self) -> None:
        if self.owned:
            self.dist.destroy_process_group()


# ---------------------------------------------------------------- the run
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


def _write_png(image: Tensor, path: Path) -> None:
    tmp = path.with_name(path.name + TMP_SUFFIX)
    try:
        save_png(image, tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


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


__all__ = [
    "FixedBatchModel",
    "GenerateConfig",
    "GeneratePlan",
    "GenerateResult",
    "Workers",
    "check_config",
    "check_out_dir",
    "file_name",
    "finished_indices",
    "generate",
    "image_shape_of",
    "parse_indices",
    "parse_labels",
    "prepare",
    "run_plan",
    "run_settings",
    "write_manifest",
]
