"""Checkpoints as safetensors + JSON, and the models shipped in the package.

A checkpoint is two files with one stem: ``digits.json`` (everything needed to
rebuild and trust it: model kind and config, noise schedule, training settings,
data split, git commit, the SHA-256 of the weights) and the float32 weights (the
EMA copy) it names: ``digits.safetensors`` in a version-1 checkpoint (the shipped
ones), ``digits.<sha256[:16]>.safetensors`` in a version-2 one (what
:func:`save_checkpoint` writes: a new checkpoint replaces the old one in one
rename, see there). Nothing is ever unpickled, and nothing is allocated before
the JSON is checked (sizes bounded, T ≤ 100,000) and the model it describes
(built on the ``meta`` device) matches the weights' header, tensor by tensor.

    >>> model, schedule = load_pretrained("digits")      # doctest: +SKIP
    >>> available_models()                               # doctest: +SKIP
    ['digits', 'digits_cosine', 'moons']
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._extras import extra
from .device import usable_device
from .files import (
    UnsafeFileError,
    fsync_dir,
    open_regular,
    read_json,
    write_atomic,
)
from .models import MODEL_KINDS, build_model, config_from_dict, count_parameters, model_kind
from .schedule import NoiseSchedule, make_schedule

with extra("cli"):  # or [metrics]: both bring safetensors
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file, save

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
CHECKPOINT_FORMAT = "diffusion_lib.checkpoint"
CHECKPOINT_VERSION = 2
"""The version :func:`save_checkpoint` writes: ``weights_file`` names the weights
(``<stem>.<sha256[:16]>.safetensors``)."""
READABLE_VERSIONS = (1, 2)
"""Version 1 (the shipped checkpoints): the weights are ``<stem>.safetensors``."""
MAX_TIMESTEPS = 100_000
"""The largest T (``schedule.num_timesteps``) a checkpoint may ask for."""
MAX_CONFIG_INT = 1 << 20
"""The largest int a checkpoint's ``model_config`` may hold (a width, a class count)."""
MAX_CONFIG_LIST = 16
"""The longest list in a ``model_config`` (e.g. ``channels``: one width per level)."""
_BLOCK_LIMITS = {"num_res_blocks": 64, "depth": 256}
"""Fields that set how many modules are built: bounded before anything is built."""
FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")
"""safetensors dtypes a checkpoint's weights may have."""
_WEIGHTS_NAME = re.compile(r"^[^/\\\x00]+\.safetensors$")
_CONTENT_TAG = re.compile(r"\.[0-9a-f]{16}$")


class CheckpointError(ValueError):
    """A checkpoint file is unreadable, truncated, or does not match its config."""


def git_commit() -> str:
    """The current git commit of this source tree, or ``"unknown"``."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and len(commit) == 40 else "unknown"


def _paths(stem: str | Path) -> tuple[Path, Path]:
    """(``<stem>.safetensors``, ``<stem>.json``): the version-1 weights and the JSON.

    ``stem`` may end in ``.json`` or ``.safetensors``; a content-named
    ``<stem>.<sha256[:16]>.safetensors`` means ``<stem>``.
    """
    stem = Path(stem)
    if stem.suffix == ".safetensors":
        stem = stem.with_suffix("")
        tag = _CONTENT_TAG.search(stem.name)
        if tag and not stem.with_name(stem.name + ".json").exists():
            stem = stem.with_name(stem.name[: tag.start()])
    elif stem.suffix == ".json":
        stem = stem.with_suffix("")
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def _weights_of(info: dict[str, Any], json_path: Path) -> Path:
    """The weights file a checked checkpoint JSON names (same directory)."""
    if info.get("format_version") == 1:
        return json_path.with_name(json_path.name[: -len(".json")] + ".safetensors")
    return json_path.with_name(info["weights_file"])


def checkpoint_files(stem: str | Path) -> tuple[Path, Path]:
    """(weights, JSON) of the checkpoint at ``stem``: the weights its JSON names."""
    _, json_path = _paths(stem)
    return _weights_of(read_checkpoint_info(stem), json_path), json_path


def _sha256(path: Path) -> str:
    """SHA-256 of a regular file, read in chunks (never a FIFO or a device)."""
    try:
        fd, _ = open_regular(path, "checkpoint weights")
    except UnsafeFileError as err:
        raise CheckpointError(str(err)) from None
    digest = hashlib.sha256()
    try:
        while chunk := os.read(fd, 1 << 20):
            digest.update(chunk)
    finally:
        os.close(fd)
    return digest.hexdigest()


_STALE_TMP = re.compile(r"\.(?:json|safetensors)\.(\d+)(?:-[0-9a-f]+)?\.tmp$")


def _remove_dead_temps(json_path: Path) -> None:
    """Remove temp files of this stem left by a save that was killed (its pid is gone)."""
    prefix = json_path.name[: -len(".json")] + "."
    with contextlib.suppress(OSError), os.scandir(json_path.parent) as entries:
        for entry in entries:
            m = _STALE_TMP.search(entry.name)
            if not (m and entry.name.startswith(prefix)) or int(m.group(1)) == os.getpid():
                continue
            try:
                os.kill(int(m.group(1)), 0)
                continue  # alive (maybe saving right now): leave it
            except ProcessLookupError:
                pass
            except (PermissionError, OverflowError):
                continue
            with contextlib.suppress(OSError):
                os.remove(entry.path)


def _committed_weights(json_path: Path) -> Path | None:
    """The weights file the checkpoint JSON at ``json_path`` names now, if the JSON is valid
    and the name is this stem's own (``<stem>.safetensors`` or ``<stem>.<16 hex>.safetensors``:
    a save never removes another checkpoint's weights)."""
    try:
        info = read_checkpoint_info(json_path)
    except (OSError, ValueError):
        return None
    weights = _weights_of(info, json_path)
    stem = json_path.name[: -len(".json")]
    own = re.fullmatch(rf"{re.escape(stem)}(?:\.[0-9a-f]{{16}})?\.safetensors", weights.name)
    return weights if own else None


def save_checkpoint(
    stem: str | Path,
    model: nn.Module,
    *,
    schedule: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write ``model`` as ``<stem>.json`` + ``<stem>.<sha256[:16]>.safetensors``.

    Args:
        stem: path without extension, e.g. ``diffusion_lib/weights/digits``.
        model: a model built from a config dataclass (``model.config``).
        schedule: ``{"name": "linear", "num_timesteps": 1000}`` for a diffusion
            model, None for the classifier.
        metadata: extra JSON-serialisable entries (training settings, data
            split, results, the command that produced it).

    Returns:
        the two paths written (weights, JSON).

    A checkpoint already at ``stem`` is replaced in one atomic step. Everything
    slow (serialising, hashing, ``git``) is done before the first write; then the
    weights go to a new file named by their content, the JSON that names them
    replaces the old JSON in one rename (the one commit point), and only then are
    the weights the old JSON named removed. A kill at any moment leaves the old
    checkpoint or the new one, whole and loadable (at worst an unused weights file
    or a temp file beside it; a later save removes temps of dead processes).
    """
    _, json_path = _paths(stem)
    config = model.config
    state = {
        k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()
    }
    data = save(state)
    digest = hashlib.sha256(data).hexdigest()
    weights_path = json_path.with_name(
        f"{json_path.name[: -len('.json')]}.{digest[:16]}.safetensors"
    )
    info: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "name": json_path.name[: -len(".json")],
        "kind": model_kind(config),
        "model_config": dataclasses.asdict(config),
        "schedule": schedule,
        "parameter_count": count_parameters(model),
        "weights_file": weights_path.name,
        "weights_sha256": digest,
        "weights_bytes": len(data),
        "git_commit": git_commit(),
        **(metadata or {}),
    }
    text = (json.dumps(info, indent=2, default=_json_default) + "\n").encode()
    old_weights = _committed_weights(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_temps(json_path)
    write_atomic(weights_path, data, mode=0o644)  # a new name: the old pair is untouched
    write_atomic(json_path, text)  # the commit point: the old JSON or the new one
    if old_weights is not None and old_weights != weights_path:
        with contextlib.suppress(OSError):  # a link is removed, not what it points to
            os.remove(old_weights)
            fsync_dir(json_path.parent)
    return weights_path, json_path


def _json_default(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (tuple, set)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def read_checkpoint_info(stem: str | Path) -> dict[str, Any]:
    """The parsed and validated ``<stem>.json`` of a checkpoint.

    The file must be a regular file (a link to one is fine) of at most 1 MiB,
    nested at most 64 levels; every field the loader uses is type-checked and
    bounded (T ≤ :data:`MAX_TIMESTEPS`, the model's sizes), so nothing large is
    built from it.
    """
    weights_path, json_path = _paths(stem)
    missing = FileNotFoundError(
        f"checkpoint config {json_path} not found; a checkpoint is a pair "
        f"{json_path.name} + {weights_path.name} (or the weights file its JSON names)"
    )
    if not os.path.lexists(json_path):
        raise missing
    try:
        info = read_json(json_path, "checkpoint config", error=CheckpointError)
    except FileNotFoundError:  # a dangling link
        raise missing from None
    if not isinstance(info, dict) or info.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{json_path} is not a {CHECKPOINT_FORMAT} config (missing or wrong 'format' field)"
        )
    version = info.get("format_version")
    if isinstance(version, bool) or version not in READABLE_VERSIONS:
        raise CheckpointError(
            f"{json_path} has format_version {version!r:.40}; this library reads versions "
            + " and ".join(map(str, READABLE_VERSIONS))
        )
    required = ("kind", "model_config", "weights_sha256") + (
        ("weights_file",) if version >= 2 else ()
    )
    for key in required:
        if key not in info:
            raise CheckpointError(f"{json_path} lacks the required field {key!r}")
    _check_fields(info, json_path)
    return info


def _check_fields(info: dict[str, Any], json_path: Path) -> None:
    """Each field of a checkpoint JSON has the type it must have; CheckpointError names it."""

    def bad(field: str, expected: str) -> CheckpointError:
        value = repr(info_value(field))
        value = value if len(value) <= 40 else value[:40] + "…"
        return CheckpointError(f"{json_path}: field {field!r} must be {expected}, got {value}")

    def info_value(field: str) -> Any:
        value: Any = info
        for part in field.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return value

    if not isinstance(info["kind"], str):
        raise bad("kind", "a string such as 'unet'")
    if not isinstance(info["weights_sha256"], str):
        raise bad("weights_sha256", "a hex string")
    if (
        "weights_file" in info
        and info["format_version"] >= 2
        and not (
            isinstance(info["weights_file"], str)
            and _WEIGHTS_NAME.match(info["weights_file"])
            and not info["weights_file"].startswith(".")
        )
    ):
        raise bad("weights_file", "a file name <stem>.<hash>.safetensors in the JSON's directory")
    if not isinstance(info["model_config"], dict):
        raise bad("model_config", "an object of the model's settings")
    schedule = info.get("schedule")
    if schedule is not None:
        if not isinstance(schedule, dict):
            raise bad("schedule", 'an object such as {"name": "linear", "num_timesteps": 1000}')
        if not isinstance(schedule.get("name"), str):
            raise bad("schedule.name", "a schedule name such as 'linear'")
        steps = schedule.get("num_timesteps")
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_TIMESTEPS:
            raise bad("schedule.num_timesteps", f"an int in [1, {MAX_TIMESTEPS:,}]")
    kinds = {kind: cls for kind, (_, cls) in MODEL_KINDS.items()}
    config_cls = kinds.get(info["kind"])
    if config_cls is None:
        return  # config_from_dict names the valid kinds
    for f in dataclasses.fields(config_cls):
        if f.name not in info["model_config"]:
            continue
        value, default = info["model_config"][f.name], f.default
        top = _BLOCK_LIMITS.get(f.name, MAX_CONFIG_INT)
        if isinstance(default, bool):
            ok, expected = isinstance(value, bool), "true or false"
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool) and abs(value) <= top
            expected = f"an int of at most {top:,}"
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            expected = "a number"
        elif isinstance(default, tuple):
            ok = (
                isinstance(value, list)
                and len(value) <= MAX_CONFIG_LIST
                and all(
                    isinstance(v, int) and not isinstance(v, bool) and abs(v) <= top for v in value
                )
            )
            expected = f"a list of at most {MAX_CONFIG_LIST} ints of at most {top:,}"
        else:
            continue
        if not ok:
            raise bad(f"model_config.{f.name}", expected)


def _header(weights_path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """{tensor name: (dtype, shape)} from a safetensors file's header; nothing is loaded."""
    try:
        with safe_open(str(weights_path), framework="pt", device="cpu") as f:
            header = {}
            for name in f.keys():
                part = f.get_slice(name)
                header[name] = (str(part.get_dtype()), tuple(int(d) for d in part.get_shape()))
            return header
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{weights_path} is not a readable safetensors file: {err}") from None


def _mismatch(expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]]) -> str:
    """What differs between the model's tensors and the file's ("" when they match)."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = [
        f"{k}: {found[k]} (expected {expected[k]})"
        for k in sorted(set(expected) & set(found))
        if found[k] != expected[k]
    ]
    problems = []
    if missing:
        problems.append(f"missing tensors {missing[:5]}{' …' if len(missing) > 5 else ''}")
    if unexpected:
        problems.append(f"unexpected tensors {unexpected[:5]}{' …' if len(unexpected) > 5 else ''}")
    if wrong:
        problems.append(f"wrong shapes {wrong[:5]}{' …' if len(wrong) > 5 else ''}")
    return "; ".join(problems)


def load_checkpoint(
    stem: str | Path, device: torch.device | str | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model of ``<stem>.json`` and load the weights it names into it.

    Returns:
        (model in eval mode on ``device``, the parsed JSON config).

    Raises:
        FileNotFoundError: a file of the pair is missing.
        CheckpointError: the JSON is invalid (or too large, too deep, asks for too
            large a model or T), a file is not a regular file, the weights are
            truncated or corrupt (SHA-256 mismatch, unreadable safetensors), not
            float, or their tensor names / shapes differ from the model the JSON
            describes. Checked in that order, before the model is allocated.
    """
    _, json_path = _paths(stem)
    info = read_checkpoint_info(stem)
    weights_path = _weights_of(info, json_path)
    if not weights_path.exists():
        raise FileNotFoundError(
            f"checkpoint weights {weights_path} not found (expected next to {json_path})"
        )
    digest = _sha256(weights_path)
    if digest != info["weights_sha256"]:
        size = weights_path.stat().st_size
        raise CheckpointError(
            f"{weights_path} does not match {json_path.name}: SHA-256 {digest[:12]}… "
            f"({size} bytes), expected {info['weights_sha256'][:12]}… "
            f"({info.get('weights_bytes', '?')} bytes); the file is truncated or was replaced"
        )
    header = _header(weights_path)
    not_float = sorted(k for k, (dtype, _) in header.items() if dtype not in FLOAT_DTYPES)
    if not_float:
        name = not_float[0]
        raise CheckpointError(
            f"{weights_path}: tensor {name!r} has dtype {header[name][0]}; a checkpoint's "
            f"weights are float ({', '.join(FLOAT_DTYPES)})"
            + (f" ({len(not_float)} tensors are not)" if len(not_float) > 1 else "")
        )
    try:
        config = config_from_dict(info["kind"], info["model_config"])
        with torch.device("meta"):  # shapes only: nothing is allocated
            skeleton = build_model(info["kind"], config)
    except (TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(
            f"{json_path}: model_config does not describe a model: {err}"
        ) from None
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    problems = _mismatch(expected, {k: shape for k, (_, shape) in header.items()})
    if problems:
        raise CheckpointError(
            f"{weights_path} does not match the {info['kind']} described in {json_path.name}: "
            + problems
        )
    try:
        state = load_file(str(weights_path), device="cpu")
        model = build_model(info["kind"], config)
        model.load_state_dict(state)
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{weights_path} is not a readable safetensors file: {err}") from None
    except (RuntimeError, MemoryError) as err:  # e.g. out of memory
        reason = str(err).split("\n")[0] or "out of memory"
        raise CheckpointError(f"{weights_path}: the model cannot be built: {reason}") from None
    model.eval()
    if info.get("schedule"):  # checked above: a dict with an int num_timesteps
        model.num_timesteps = info["schedule"]["num_timesteps"]  # the sampler refuses another T
    if device is not None:
        model.to(device)
    return model, info


def available_models() -> list[str]:
    """Names of the shipped diffusion models, e.g. ``['digits', 'digits_cosine', 'moons']``."""
    names = []
    for path in sorted(WEIGHTS_DIR.glob("*.json")):
        try:
            info = read_json(path, "checkpoint config")
        except (OSError, ValueError):
            continue
        if isinstance(info, dict) and info.get("schedule"):
            names.append(path.stem)
    return names


def schedule_from_info(info: dict[str, Any]) -> NoiseSchedule:
    """The noise schedule a checkpoint's model was trained with."""
    spec = info.get("schedule")
    if not spec:
        raise CheckpointError(f"checkpoint {info.get('name')!r} has no noise schedule")
    if not isinstance(spec, dict) or not isinstance(spec.get("num_timesteps"), int):
        raise CheckpointError(
            f"checkpoint {info.get('name')!r}: 'schedule' must be an object such as "
            f'{{"name": "linear", "num_timesteps": 1000}}, got {spec!r:.60}'
        )
    try:
        return make_schedule(spec.get("name"), spec["num_timesteps"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"checkpoint {info.get('name')!r}: bad 'schedule': {err}") from None


def load_pretrained(
    name: str, device: torch.device | str | None = None
) -> tuple[nn.Module, NoiseSchedule]:
    """Load a shipped diffusion model: the EMA weights, in eval mode, and its schedule.

    Args:
        name: one of :func:`available_models` (``"digits"``, ``"digits_cosine"``,
            ``"moons"``).
        device: where to put the model and the schedule (default CPU).

    Returns:
        (model, schedule): ``model(x_t, t, labels=None) -> ε̂`` and the
        :class:`~diffusion_lib.schedule.NoiseSchedule` it was trained with. The model
        carries ``num_timesteps`` (T), so sampling it with a schedule of another
        length is refused rather than silently wrong.
    """
    names = available_models()
    if name not in names and not (WEIGHTS_DIR / f"{name}.json").is_file():
        raise ValueError(
            f"unknown pretrained model {name!r}; available models are {', '.join(names) or 'none'}"
        )
    if device is not None:
        device = usable_device(device)  # one clear line for cuda on a CPU machine, mps, …
    model, info = load_checkpoint(WEIGHTS_DIR / name, device=device)
    if not info.get("schedule"):
        raise ValueError(
            f"{name!r} is not a diffusion model (its checkpoint has no noise schedule); "
            f"diffusion models are {', '.join(names)}"
        )
    schedule = schedule_from_info(info)
    return model, schedule.to(device) if device is not None else schedule
