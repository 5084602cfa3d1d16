"""The trainer: the loss falls, the EMA is an EMA, runs are reproducible, the CLI writes."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from diffusion_lib.models import MLPConfig, UNetConfig
from diffusion_lib.train import PRESETS, TrainConfig, train

TINY_UNET = UNetConfig(channels=(8, 16), num_res_blocks=1, attention=False, groups=4)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def test_digits_loss_falls_in_a_few_steps():
    cfg = TrainConfig(
        dataset="digits", steps=25, batch_size=8, lr=3e-3, warmup_steps=1, device="cpu"
    )
    result = train(PRESETS["digits"].model, cfg, progress=False)  # the shipped architecture
    assert len(result.losses) == 25
    # ε̂ ≡ 0 at initialisation, so the first loss is the mean of ε² over 8·64 values ≈ 1
    assert 0.8 < result.losses[0] < 1.2
    assert _mean(result.losses[-10:]) < 0.6 * _mean(result.losses[:5])


def test_moons_loss_falls_in_a_few_steps():
    cfg = TrainConfig(
        dataset="moons",
        steps=40,
        batch_size=64,
        lr=3e-3,
        warmup_steps=1,
        label_dropout=0.0,
        device="cpu",
    )
    result = train(PRESETS["moons"].model, cfg, progress=False)
    assert _mean(result.losses[-10:]) < 0.7 * _mean(result.losses[:5])


def test_ema_with_zero_decay_is_the_last_iterate_and_runs_are_reproducible():
    cfg = TrainConfig(
        dataset="moons", steps=5, batch_size=16, ema_decay=0.0, label_dropout=0.0, device="cpu"
    )
    first = train(MLPConfig(hidden=32, depth=1), cfg, progress=False)
    second = train(MLPConfig(hidden=32, depth=1), cfg, progress=False)
    assert first.losses == second.losses
    for p_ema, p_raw in zip(first.model.parameters(), first.raw_model.parameters(), strict=True):
        assert torch.equal(p_ema, p_raw)
    assert not first.model.training


def test_ema_lags_the_iterate():
    cfg = TrainConfig(
        dataset="moons", steps=5, batch_size=16, ema_decay=0.9, label_dropout=0.0, device="cpu"
    )
    result = train(MLPConfig(hidden=32, depth=1), cfg, progress=False)
    differs = [
        not torch.equal(a, b)
        for a, b in zip(result.model.parameters(), result.raw_model.parameters(), strict=True)
    ]
    assert any(differs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dataset": "mnist"}, "digits, moons"),
        ({"schedule": "quadratic"}, "linear, cosine, sigmoid"),
        ({"label_dropout": 1.5}, r"\[0, 1\)"),
        ({"steps": 0}, ">= 1"),
        ({"device": "tpu"}, "cpu"),
    ],
)
def test_bad_train_settings_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        cfg = TrainConfig(**kwargs)
        train(TINY_UNET, dataclasses.replace(cfg, steps=1), progress=False)


def test_dataset_and_architecture_must_match():
    with pytest.raises(ValueError, match="needs an MLPConfig"):
        train(TINY_UNET, TrainConfig(dataset="moons", steps=1, device="cpu"), progress=False)


def test_presets_record_the_shipped_recipes():
    assert PRESETS["digits"].train.schedule == "linear"
    assert PRESETS["digits"].train.num_timesteps == 1000
    assert 0.1 <= PRESETS["digits"].train.label_dropout <= 0.2
    assert PRESETS["digits_cosine"].train.schedule == "cosine"
    assert PRESETS["moons"].train.dataset == "moons"


def test_cli_trains_and_writes_a_loadable_checkpoint(tmp_path, capsys):
    from diffusion_lib.cli import main
    from diffusion_lib.pretrained import load_checkpoint

    out = tmp_path / "moons_tiny"
    code = main(
        [
            "train",
            "--model",
            "moons",
            "--out",
            str(out),
            "--steps",
            "3",
            "--device",
            "cpu",
            "--no-progress",
        ]
    )
    assert code == 0
    assert "wrote" in capsys.readouterr().out
    info = json.loads((tmp_path / "moons_tiny.json").read_text())
    assert info["training"]["steps"] == 3
    assert info["schedule"] == {"name": "linear", "num_timesteps": 1000}
    assert info["command"].startswith("python -m diffusion_lib")
    assert "--steps 3" in info["command"]
    assert isinstance(info["git_commit"], str) and info["git_commit"]
    model, _ = load_checkpoint(out)
    assert model(torch.zeros(4, 2), torch.arange(4)).shape == (4, 2)
