"""A run's directory: ``run.json``, the PNG files, the manifest, and how they are written.

Every name the run writes is written by :func:`~diffusion_lib.files.write_atomic` (a new,
exclusive temp file, then a rename: a link planted under any of these names is replaced,
never followed), and every file the run reads must be a regular file of a bounded size,
opened without following links: a FIFO, a device or a link named ``run.json`` is refused
in one line; one named ``sample_*.png`` is not a whole image, so it is made again.
The manifest records each image's SHA-256, and a resume checks the images it keeps
against it (:func:`manifest_hashes`).
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
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..files import (
    check_writable_dir,
    file_kind,
    os_error_line,
    read_json,
    read_regular,
    write_atomic,
)
from ..images import png_is_whole, png_max_bytes, save_png
from ..schedule import NoiseSchedule
from .config import GenerateConfig
from .lock import LOCK_FILE, RunConflict

RUN_FILE = "run.json"
MANIFEST_FILE = "manifest.csv"
MANIFEST_COLUMNS = ("file", "index", "seed", "label", "sha256")
RUN_FORMAT = "diffusion_lib.generate"
RUN_FORMAT_VERSION = 1
_ADDED_SETTINGS = {
    "precision": "fp32",
    "sigma_schedule": "karras",
    "s_churn": 0.0,
    "s_tmin": 0.0,
    "s_tmax": math.inf,
    "s_noise": 1.0,
}
"""Settings added after format version 1, with the value an older ``run.json`` implies."""
_SAMPLE_NAME = re.compile(r"^sample_(\d+)\.png$")
_TMP_TAG = r"(?:\.[0-9a-f-]+)?\.tmp"  # .tmp, .<pid>.tmp (older runs) or .<pid>-<random>.tmp
_SAMPLE_TMP = re.compile(rf"^sample_(\d+)\.png{_TMP_TAG}$")
_RUN_TMP = re.compile(rf"^(?:{re.escape(RUN_FILE)}|{re.escape(MANIFEST_FILE)}){_TMP_TAG}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


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
    """``run.json``: a regular file (no link) of at most 1 MiB, or one-line ValueError."""
    try:
        existing = read_json(path, "run file", follow_symlinks=False)
    except (OSError, ValueError) as err:
        reason = os_error_line(err) if isinstance(err, OSError) else str(err)
        raise ValueError(
            f"{path} is not a readable {RUN_FORMAT} run file ({reason}); "
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
            another run's ``run.json`` (the differences are listed), holds
            ``sample_*.png`` files but no ``run.json``, or holds something other
            than a regular file under a name the run reads (``run.json``, ``.lock``)
            or a directory under a name it writes.
    """
    check_writable_dir(out_dir)
    _check_names(out_dir)
    run_file = out_dir / RUN_FILE
    if os.path.lexists(run_file):  # a dangling link is refused too, not taken for "new"
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


def _check_names(out_dir: Path) -> None:
    """Refuse what the run could only fail on later: a ``.lock`` or ``run.json`` that is not a
    regular file, a directory under a name the run writes (RunConflict naming it)."""
    if not out_dir.is_dir():
        return
    for entry in os.scandir(out_dir):
        name = entry.name
        ours = name in (LOCK_FILE, RUN_FILE, MANIFEST_FILE) or _SAMPLE_NAME.match(name)
        if not ours:
            continue
        try:
            mode = entry.stat(follow_symlinks=False).st_mode
        except OSError:
            continue
        regular_only = name in (LOCK_FILE, RUN_FILE)
        if stat.S_ISDIR(mode) or (regular_only and not stat.S_ISREG(mode)):
            raise RunConflict(
                f"{entry.path} is {file_kind(mode)}, not a file this tool wrote; nothing was "
                "written: remove it (after checking what it is) or choose another output "
                "directory"
            )


def _sample_digest(path: str, shape: tuple[int, ...] | None, decode: bool) -> str | None:
    """SHA-256 of ``path`` if it is a regular file (no link) holding a whole PNG, else None."""
    limit = None if shape is None else png_max_bytes(shape)
    try:
        data = read_regular(path, "image", max_bytes=limit, follow_symlinks=False)
    except (OSError, ValueError):
        return None
    if not png_is_whole(data, shape, decode=decode):
        return None
    return hashlib.sha256(data).hexdigest()


def whole_images(
    out_dir: Path, n: int, sample_shape: Sequence[int] | None = None, *, decode: bool = False
) -> dict[int, str]:
    """{i: SHA-256 of ``sample_i.png``} for i < n whose file is a whole PNG (a regular file).

    Args:
        sample_shape: (C, H, W); when given, each PNG must have that size and mode.
        decode: also decode every pixel (slower; a resume does it once per run).

    A link, a FIFO or a directory under a sample's name is never opened in a way
    that blocks or follows it: it is not a whole image.
    """
    if not out_dir.is_dir():
        return {}
    shape = None if sample_shape is None else tuple(sample_shape)
    found = {}
    for entry in os.scandir(out_dir):
        m = _SAMPLE_NAME.match(entry.name)
        if m and int(m.group(1)) < n and entry.name == file_name(int(m.group(1)), n):
            digest = _sample_digest(entry.path, shape, decode)
            if digest is not None:
                found[int(m.group(1))] = digest
    return found


def finished_indices(
    out_dir: Path, n: int, sample_shape: Sequence[int] | None = None, *, decode: bool = False
) -> set[int]:
    """Indices i < n whose final file ``sample_i.png`` exists and is a whole PNG
    (:func:`whole_images`)."""
    return set(whole_images(out_dir, n, sample_shape, decode=decode))


def manifest_hashes(out_dir: Path, n: int) -> dict[int, str]:
    """{i: SHA-256} recorded in ``manifest.csv`` for i < n; empty when there is none.

    A manifest of an older version (no ``sha256`` column), one that is not a
    regular file, or rows that do not parse give no hash: those images are
    checked by decoding only, as before.
    """
    try:
        data = read_regular(
            out_dir / MANIFEST_FILE,
            "manifest",
            max_bytes=256 * (n + 1) + 4096,
            follow_symlinks=False,
        )
        rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))
    except (OSError, ValueError, csv.Error):
        return {}
    hashes = {}
    for row in rows:
        index, name, digest = row.get("index"), row.get("file"), row.get("sha256")
        if not (
            isinstance(index, str)
            and re.fullmatch(r"[0-9]{1,18}", index)
            and isinstance(digest, str)
        ):
            continue
        i = int(index)
        if i < n and name == file_name(i, n) and _SHA256.match(digest):
            hashes[i] = digest
    return hashes


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

    Columns: ``file``, ``index``, ``seed``, ``label`` (empty when unconditional),
    ``sha256`` (of the PNG file, which a resume checks the image against).
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(MANIFEST_COLUMNS)
    digests = whole_images(out_dir, config.n, sample_shape)
    done = sorted(digests)
    for i in done:
        label = config.label_of(i)
        label_cell = "" if label is None else label
        writer.writerow([file_name(i, config.n), i, config.seed + i, label_cell, digests[i]])
    write_atomic(out_dir / MANIFEST_FILE, buffer.getvalue().encode())
    return len(done)


def remove_stale_tmp(out_dir: Path, owns: Callable[[int], bool], rank: int) -> None:
    """Remove the temp files a killed run left: PNGs whose index ``owns`` accepts, and on
    rank 0 ``run.json`` / ``manifest.csv`` temps. Call it under the run's lock.

    Whatever is under such a name (a file, a link, a FIFO) is removed, never opened: a
    link is removed, not the file it points to."""
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
