"""Generate many samples to PNG files: reproducible, resumable, shardable.

A run makes images ``0 … n−1`` in one directory::

    DIR/run.json               the settings, written before any image
    DIR/sample_00000.png …     one 8-bit PNG per index (see :mod:`diffusion_lib.images`)
    DIR/manifest.csv           file, index, seed, label, sha256: one row per finished image

Modules: :mod:`.config` (settings and their checks), :mod:`.fixed_batch`,
:mod:`.rundir` (run.json, PNGs, manifest), :mod:`.lock`, :mod:`.workers`
(torchrun), :mod:`.run` (prepare, run_plan, generate).

The rules that make it safe to kill, resume and split:

- **Index i owns everything about image i**: its seed is ``seed + i`` (its own
  noise stream, :mod:`diffusion_lib.sampling.noise`) and its label is
  ``labels[i % len(labels)]``. Nothing depends on the batch it lands in.
- **The model sees fixed-size chunks.** A CPU or GPU kernel may pick another
  algorithm for another batch size and round differently (on a CPU, a Linear
  layer fed 3 rows instead of 40 differs by ~1e-6, and 20 DDIM steps grow that
  to ~1e-5: rarely a pixel, but not bit-identical). :class:`FixedBatchModel` always calls
  the model with exactly ``model_batch`` rows (padding the last chunk), so
  image i is bit-identical whatever ``batch_size`` is, after a resume, or under
  ``torchrun``. ``model_batch`` is a setting recorded in ``run.json``.
- **A file is done only under its final name**: each PNG is written to a new
  ``sample_i.png.<pid>-<random>.tmp`` (created exclusively, never through a link),
  fsynced and ``os.replace``-d (the directory is fsynced after each batch), so a
  kill (even ``kill -9``) leaves either a whole image or a stale ``.tmp`` that the
  next run removes before it writes anything. A resume decodes every PNG and makes
  a 0-byte or cut-short one again, and one whose bytes differ from the SHA-256 the
  manifest recorded for it (it says how many in its summary line). Only regular
  files are read (a FIFO or a link under a sample's name is made again; one named
  ``run.json`` or ``.lock`` is refused). Batches are formed from the *missing*
  indices only.
- **The settings are checked before anything is touched**: re-running into a
  directory whose ``run.json`` differs fails with the differences listed.
  One run at a time: rank 0 holds ``DIR/.lock`` (:mod:`.lock`) and checks
  ``run.json`` again under it, so a second run fails in one line and two
  plans prepared side by side can never mix their images.
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

from ..files import TMP_SUFFIX
from .config import (
    DEFAULT_MODEL_BATCH,
    MAX_IMAGES,
    MAX_LABELS,
    MAX_MODEL_BATCH,
    PRECISIONS,
    GenerateConfig,
    check_config,
    check_image_shape,
    check_settings,
    image_shape_of,
    parse_indices,
    parse_labels,
)
from .fixed_batch import FixedBatchModel
from .lock import RunConflict, RunLock
from .run import GeneratePlan, GenerateResult, generate, prepare, run_plan
from .rundir import (
    MANIFEST_COLUMNS,
    MANIFEST_FILE,
    RUN_FILE,
    RUN_FORMAT,
    RUN_FORMAT_VERSION,
    check_out_dir,
    file_name,
    finished_indices,
    model_fingerprint,
    run_settings,
    schedule_fingerprint,
    write_manifest,
)
from .workers import Workers

__all__ = [
    "DEFAULT_MODEL_BATCH",
    "MANIFEST_COLUMNS",
    "MANIFEST_FILE",
    "MAX_IMAGES",
    "MAX_LABELS",
    "MAX_MODEL_BATCH",
    "PRECISIONS",
    "RUN_FILE",
    "RUN_FORMAT",
    "RUN_FORMAT_VERSION",
    "TMP_SUFFIX",
    "FixedBatchModel",
    "GenerateConfig",
    "GeneratePlan",
    "GenerateResult",
    "RunConflict",
    "RunLock",
    "Workers",
    "check_config",
    "check_image_shape",
    "check_out_dir",
    "check_settings",
    "file_name",
    "finished_indices",
    "generate",
    "image_shape_of",
    "model_fingerprint",
    "parse_indices",
    "parse_labels",
    "prepare",
    "run_plan",
    "run_settings",
    "schedule_fingerprint",
    "write_manifest",
]
