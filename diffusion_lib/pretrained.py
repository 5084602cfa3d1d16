"""Checkpoints as safetensors + JSON, and the models shipped in the package.

A checkpoint is two files with one stem: ``digits.safetensors`` (float32
weights, the EMA copy) and ``digits.json`` (everything needed to rebuild and
trust it: model kind and config, noise schedule, training settings, data
split, git commit, the SHA-256 of the weights). Nothing is ever unpickled.

    >>> model, schedule = load_pretrained("digits")      # doctest: +SKIP
    >>> available_models()                               # doctest: +SKIP
    ['digits', 'digits_cosine', 'moons']
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from .device import usable_device
from .files import write_atomic
from .models import MODEL_KINDS, build_model, config_from_dict, count_parameters, model_kind
from .schedule import NoiseSchedule, make_schedule

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
CHECKPOINT_FORMAT = "diffusion_lib.checkpoint"
CHECKPOINT_VERSION = 1


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
    stem = Path(stem)
    if stem.suffix in (".json", ".safetensors"):
        stem = stem.with_suffix("")
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_checkpoint(
    stem: str | Path,
    model: nn.Module,
    *,
    schedule: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write ``model`` as ``<stem>.safetensors`` + ``<stem>.json``.

    Args:
        stem: path without extension, e.g. ``diffusion_lib/weights/digits``.
        model: a model built from a config dataclass (``model.config``).
        schedule: ``{"name": "linear", "num_timesteps": 1000}`` for a diffusion
            model, None for the classifier.
        metadata: extra JSON-serialisable entries (training settings, data
            split, results, the command that produced it).

    Returns:
        the two paths written.
    """
    weights_path, json_path = _paths(stem)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    config = model.config
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in
             model.state_dict().items()}
    write_atomic(weights_path, save(state))  # whole or absent, even on a full disk
    weights_path.chmod(0o644)  # the files ship in the package
    info: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "name": weights_path.stem,
        "kind": model_kind(config),
        "model_config": dataclasses.asdict(config),
        "schedule": schedule,
        "parameter_count": count_parameters(model),
        "weights_file": weights_path.name,
        "weights_sha256": _sha256(weights_path),
        "weights_bytes": weights_path.stat().st_size,
        "git_commit": git_commit(),
        **(metadata or {}),
    }
    write_atomic(json_path, (json.dumps(info, indent=2, default=_json_default) + "\n").encode())
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
    """The parsed and validated ``<stem>.json`` of a checkpoint."""
    weights_path, json_path = _paths(stem)
    if not json_path.is_file():
        raise FileNotFoundError(
            f"checkpoint config {json_path} not found; a checkpoint is a pair "
            f"{json_path.name} + {weights_path.name}"
        )
    try:
        info = json.loads(json_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(
            f"{json_path} is not valid JSON ({err}); expected a {CHECKPOINT_FORMAT} config"
        ) from None
    if not isinstance(info, dict) or info.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{json_path} is not a {CHECKPOINT_FORMAT} config (missing or wrong 'format' field)"
        )
    if info.get("format_version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{json_path} has format_version {info.get('format_version')!r}; "
            f"this library reads version {CHECKPOINT_VERSION}"
        )
    for key in ("kind", "model_config", "weights_sha256"):
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
    if not isinstance(info["model_config"], dict):
        raise bad("model_config", "an object of the model's settings")
    schedule = info.get("schedule")
    if schedule is not None:
        if not isinstance(schedule, dict):
            raise bad("schedule", 'an object such as {"name": "linear", "num_timesteps": 1000}')
        if not isinstance(schedule.get("name"), str):
            raise bad("schedule.name", "a schedule name such as 'linear'")
        steps = schedule.get("num_timesteps")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise bad("schedule.num_timesteps", "an int >= 1")
    kinds = {kind: cls for kind, (_, cls) in MODEL_KINDS.items()}
    config_cls = kinds.get(info["kind"])
    if config_cls is None:
        return  # config_from_dict names the valid kinds
    for f in dataclasses.fields(config_cls):
        if f.name not in info["model_config"]:
            continue
        value, default = info["model_config"][f.name], f.default
        if isinstance(default, bool):
            ok, expected = isinstance(value, bool), "true or false"
        elif isinstance(default, int):
            ok, expected = isinstance(value, int) and not isinstance(value, bool), "an int"
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            expected = "a number"
        elif isinstance(default, tuple):
            ok = isinstance(value, list) and all(
                isinstance(v, int) and not isinstance(v, bool) for v in value
            )
            expected = "a list of ints"
        else:
            continue
        if not ok:
            raise bad(f"model_config.{f.name}", expected)


def load_checkpoint(
    stem: str | Path, device: torch.device | str | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model of ``<stem>.json`` and load ``<stem>.safetensors`` into it.

    Returns:
        (model in eval mode on ``device``, the parsed JSON config).

    Raises:
        FileNotFoundError: a file of the pair is missing.
        CheckpointError: the JSON is invalid, the weights are truncated or
            corrupt (SHA-256 mismatch, unreadable safetensors), or their tensor
            names / shapes differ from the model the JSON describes.
    """
    weights_path, json_path = _paths(stem)
    info = read_checkpoint_info(stem)
    if not weights_path.is_file():
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
    try:
        state = load_file(str(weights_path), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{weights_path} is not a readable safetensors file: {err}") from None

    try:
        config = config_from_dict(info["kind"], info["model_config"])
        model = build_model(info["kind"], config)
    except (TypeError, ValueError) as err:
        raise CheckpointError(
            f"{json_path}: model_config does not describe a model: {err}"
        ) from None
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = [f"{k}: {found[k]} (expected {expected[k]})" for k in sorted(set(expected) & set(found))
             if found[k] != expected[k]]
    if missing or unexpected or wrong:
        problems = []
        if missing:
            problems.append(f"missing tensors {missing[:5]}{' …' if len(missing) > 5 else ''}")
        if unexpected:
            problems.append(
                f"unexpected tensors {unexpected[:5]}{' …' if len(unexpected) > 5 else ''}"
            )
        if wrong:
            problems.append(f"wrong shapes {wrong[:5]}{' …' if len(wrong) > 5 else ''}")
        raise CheckpointError(
            f"{weights_path} does not match the {info['kind']} described in {json_path.name}: "
            + "; ".join(problems)
        )
    model.load_state_dict(state)
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
            info = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
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
