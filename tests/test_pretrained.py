"""Checkpoints: safetensors + JSON round trip, clear errors, and the shipped models."""

from __future__ import annotations

import json
import pickle
import struct

import pytest
import torch

from diffusion_lib.models import MLP, MLPConfig, UNet, UNetConfig
from diffusion_lib.pretrained import (
    WEIGHTS_DIR,
    CheckpointError,
    available_models,
    checkpoint_files,
    load_checkpoint,
    load_pretrained,
    save_checkpoint,
)
from diffusion_lib.sampling import sample
from diffusion_lib.schedule import make_schedule

SHIPPED = ["digits", "moons"]
SMALL = UNetConfig(channels=(8, 16), num_res_blocks=1, groups=4, num_classes=3)


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = UNet(SMALL)
    with torch.no_grad():
        model.conv_out.weight.normal_()
    stem = tmp_path / "small"
    save_checkpoint(
        stem, model, schedule={"name": "cosine", "num_timesteps": 50}, metadata={"note": "test"}
    )
    return model, stem


def test_round_trip_is_exact(saved):
    model, stem = saved
    loaded, info = load_checkpoint(stem)
    assert isinstance(loaded, UNet) and not loaded.training
    assert info["note"] == "test" and info["kind"] == "unet"
    assert info["model_config"]["channels"] == [8, 16]
    for (k1, v1), (k2, v2) in zip(
        model.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert k1 == k2 and torch.equal(v1, v2)
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([3, 40])
    assert torch.equal(model.eval()(x, t, torch.tensor([0, 3])), loaded(x, t, torch.tensor([0, 3])))


def test_missing_files_name_the_file(saved):
    _, stem = saved
    checkpoint_files(stem)[0].unlink()
    with pytest.raises(FileNotFoundError, match=r"small\.[0-9a-f]{16}\.safetensors"):
        load_checkpoint(stem)
    with pytest.raises(FileNotFoundError, match=r"nothing\.json.*nothing\.safetensors"):
        load_checkpoint(stem.parent / "nothing")


def test_truncated_weights_are_reported(saved):
    _, stem = saved
    weights = checkpoint_files(stem)[0]
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"small\.[0-9a-f]{16}\.safetensors.*truncated"):
        load_checkpoint(stem)
    # even when the recorded hash is made to agree, safetensors' own check is
    # turned into a CheckpointError naming the file (not a deep traceback)
    info = json.loads((stem.parent / "small.json").read_text())
    import hashlib

    info["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    (stem.parent / "small.json").write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match=r"small\.[0-9a-f]{16}\.safetensors"):
        load_checkpoint(stem)


def test_mismatched_config_lists_the_tensors(saved):
    _, stem = saved
    json_path = stem.parent / "small.json"
    info = json.loads(json_path.read_text())
    info["model_config"]["channels"] = [8, 32]
    json_path.write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match="wrong shapes"):
        load_checkpoint(stem)
    info["model_config"]["channels"] = [8, 16]
    info["model_config"]["attention"] = False
    json_path.write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match="unexpected tensors"):
        load_checkpoint(stem)


def test_invalid_json_and_wrong_format(saved):
    _, stem = saved
    json_path = stem.parent / "small.json"
    json_path.write_text("{not json")
    with pytest.raises(CheckpointError, match=r"small\.json.*not valid JSON"):
        load_checkpoint(stem)
    json_path.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(CheckpointError, match="format"):
        load_checkpoint(stem)


def test_loading_never_unpickles(saved, monkeypatch):
    _, stem = saved

    def refuse(*args, **kwargs):
        raise AssertionError("pickle used")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    load_checkpoint(stem)
    load_pretrained("moons")


def test_available_models_and_unknown_names():
    names = available_models()
    assert set(SHIPPED) <= set(names)
    assert "classifier" not in names
    with pytest.raises(ValueError, match=r"available models are .*digits"):
        load_pretrained("cifar10")
    with pytest.raises(ValueError, match="not a diffusion model"):
        load_pretrained("classifier")


@pytest.mark.parametrize("name", [*SHIPPED, "classifier"])
def test_shipped_files_are_small_safetensors_with_provenance(name):
    weights, config = checkpoint_files(WEIGHTS_DIR / name)
    info = json.loads(config.read_text())
    data = weights.read_bytes()
    assert len(data) < 5_000_000
    header_len = struct.unpack("<Q", data[:8])[0]  # safetensors: u64 header size, JSON header
    header = json.loads(data[8 : 8 + header_len])
    assert all(v["dtype"] == "F32" for k, v in header.items() if k != "__metadata__")
    assert info["command"].startswith(f"python -m diffusion_lib train --model {name} ")
    assert info["git_commit"] and "training" in info and "data" in info
    assert info["weights_bytes"] == len(data)


def test_shipped_digits_model_samples():
    model, schedule = load_pretrained("digits")
    assert isinstance(model, UNet) and not model.training
    assert model.num_classes == 10 and model.null_label == 10
    assert schedule.num_steps == 1000
    assert torch.allclose(schedule.betas, make_schedule("linear", 1000).betas)
    x = sample(
        model,
        schedule,
        (6, 1, 8, 8),
        sampler="ddim",
        steps=8,
        labels=torch.arange(6),
        guidance_scale=3.0,
        seed=0,
        progress=False,
    )
    assert x.shape == (6, 1, 8, 8) and torch.isfinite(x).all()
    assert x.abs().max() <= 1.0 + 1e-5


def test_shipped_moons_model_samples():
    model, schedule = load_pretrained("moons", device="cpu")
    assert isinstance(model, MLP) and model.null_label is None
    assert isinstance(model.config, MLPConfig)
    x = sample(model, schedule, (32, 2), sampler="ddim", steps=10, seed=0, progress=False)
    assert x.shape == (32, 2) and torch.isfinite(x).all()


@pytest.mark.skipif("digits_cosine" not in available_models(), reason="not shipped")
def test_shipped_cosine_digits_model_samples():
    model, schedule = load_pretrained("digits_cosine")
    assert torch.allclose(schedule.betas, make_schedule("cosine", 1000).betas)
    x = sample(model, schedule, (4, 1, 8, 8), sampler="ddim", steps=8, seed=1, progress=False)
    assert x.shape == (4, 1, 8, 8) and torch.isfinite(x).all()
