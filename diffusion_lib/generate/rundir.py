"""A run's directory: ``run.json``, the PNG files, the manifest, and how they are written."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io
import json
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..files import check_writable_dir, write_atomic
from ..images import is_whole_png, save_png
from ..schedule import NoiseSchedule
from .config import GenerateConfig
from .lock import RunConflict

RUN_FILE = "run.json"
MANIFEST_FILE = "manifest.csv"
MANIFEST_COLUMNS = ("file", "index", "seed", "label")
RUN_FORMAT = "diffusion_lib.generate"
RUN_FORMAT_VERSION = 1
_ADDED_SETTINGS = {"precision": "fp32", "sigma_schedule": "karras"}
"""Settings added after format version 1, with the value an older ``run.json`` implies."""
_SAMPLE_NAME = re.compile(r"^sample_(\d+)\.png$")
_SAMPLE_TMP = re.compile(r"^sample_(\d+)\.png(?:\.\d+)?\.tmp$")
_RUN_TMP = re.compile(rf"^(?:{re.escape(RUN_FILE)}|{re.escape(MANIFEST_FILE)})(?:\.\d+)?\.tmp$")


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
    from .. import __version__

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
    """Check that ``out_dir`` is new or holds this same run, and can be written; read only.

    Returns:
        True when ``out_dir/run.json`` already exists (a resume).

    Raises:
        ValueError: ``out_dir`` is empty, a file, cannot be created or written
            (``/proc/x``, a path under a file, a read-only or full disk), holds
            another run's ``run.json`` (the differences are listed), or holds
            ``sample_*.png`` files but no ``run.json``.
    """
    check_writable_dir(out_dir)
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
            raise RunConflict(
                f"{out_dir} holds a different run (see its {RUN_FILE}): "
                + "; ".join(diffs)
                + ". Use another output directory, or repeat that run's settings to resume it "
                "(only the batch size and the device may differ)."
            )
        return True
    if out_dir.is_dir() and any(_SAMPLE_NAME.match(e.name) for e in os.scandir(out_dir)):
        raise RunConflict(
            f"{out_dir} holds sample_*.png files but no {RUN_FILE}, so they are not a run "
            "this tool can resume; choose another output directory"
        )
    return False


def finished_indices(
    out_dir: Path, n: int, sample_shape: Sequence[int] | None = None, *, decode: bool = False
) -> set[int]:
    """Indices i < n whose final file ``sample_i.png`` exists and is a whole PNG.

    Args:
        sample_shape: (C, H, W); when given, each PNG must have that size and mode.
        decode: also decode every pixel (slower; a resume does it once per run).
    """
    if not out_dir.is_dir():
        return set()
    shape = None if sample_shape is None else tuple(sample_shape)
    found = set()
    for entry in os.scandir(out_dir):
        m = _SAMPLE_NAME.match(entry.name)
        if m and int(m.group(1)) < n and entry.name == file_name(int(m.group(1)), n):
            if is_whole_png(entry.path, shape, decode=decode):
                found.add(int(m.group(1)))
    return found


def broken_indices(out_dir: Path, n: int, whole: set[int]) -> list[int]:
    """Indices i < n with a file ``sample_i.png`` that is not in ``whole`` (0-byte, truncated…)."""
    broken = []
    for entry in os.scandir(out_dir):
        m = _SAMPLE_NAME.match(entry.name)
        if m and int(m.group(1)) < n and entry.name == file_name(int(m.group(1)), n):
            if int(m.group(1)) not in whole:
                broken.append(int(m.group(1)))
    return sorted(broken)


def write_manifest(
    out_dir: Path, config: GenerateConfig, sample_shape: Sequence[int] | None = None
) -> int:
    """Rebuild ``manifest.csv`` from the whole image files (atomically); return its row count.

    Columns: ``file``, ``index``, ``seed``, ``label`` (empty when unconditional).
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(MANIFEST_COLUMNS)
    done = sorted(finished_indices(out_dir, config.n, sample_shape))
    for i in done:
        label = config.label_of(i)
        label_cell = "" if label is None else label
        writer.writerow([file_name(i, config.n), i, config.seed + i, label_cell])
    write_atomic(out_dir / MANIFEST_FILE, buffer.getvalue().encode())
    return len(done)


def remove_stale_tmp(out_dir: Path, owns: Callable[[int], bool], rank: int) -> None:
    """Remove the temp files a killed run left: PNGs whose index ``owns`` accepts, and on
    rank 0 ``run.json`` / ``manifest.csv`` temps. Call it under the run's lock."""
    for entry in os.scandir(out_dir):
        m = _SAMPLE_TMP.match(entry.name)
        stale = (m is not None and owns(int(m.group(1)))) or (
            rank == 0 and _RUN_TMP.match(entry.name) is not None
        )
        if stale:
            with contextlib.suppress(FileNotFoundError):
                os.remove(entry.path)


def write_png(image: Tensor, path: Path) -> None:
    """Write one PNG whole or not at all: per-process temp file, fsync, ``os.replace``.

    The caller fsyncs the directory once per batch (:func:`diffusion_lib.files.fsync_dir`).
    """
    write_atomic(path, lambda f: save_png(image, f), sync_dir=False)
