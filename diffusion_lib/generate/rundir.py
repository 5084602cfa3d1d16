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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..images import save_png
from ..schedule import NoiseSchedule
from .config import GenerateConfig

RUN_FILE = "run.json"
MANIFEST_FILE = "manifest.csv"
MANIFEST_COLUMNS = ("file", "index", "seed", "label")
RUN_FORMAT = "diffusion_lib.generate"
RUN_FORMAT_VERSION = 1
_ADDED_SETTINGS = {"precision": "fp32"}
"""Settings added after format version 1, with the value an older ``run.json`` implies."""
TMP_SUFFIX = ".tmp"
_SAMPLE_NAME = re.compile(r"^sample_(\d+)\.png$")
_SAMPLE_TMP = re.compile(r"^sample_(\d+)\.png\.tmp$")


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



def _write_png(image: Tensor, path: Path) -> None:
    tmp = path.with_name(path.name + TMP_SUFFIX)
    try:
        save_png(image, tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise

