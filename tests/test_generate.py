"""``python -m diffusion_lib generate``: same images whatever the batch size, resume
after ``kill -9``, 2-process ``torchrun``, and bad arguments that touch nothing.

The model is a tiny *untrained* UNet with random weights, saved as a checkpoint:
the generation machinery does not care whether the weights are trained.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffusion_lib.cli import main
from diffusion_lib.generate import (
    FixedBatchModel,
    GenerateConfig,
    generate,
    parse_indices,
    parse_labels,
)
from diffusion_lib.images import to_uint8
from diffusion_lib.models import MLPConfig, UNetConfig, build_model
from diffusion_lib.pretrained import load_checkpoint, save_checkpoint, schedule_from_info
from diffusion_lib.sampling import sample

ROOT = Path(__file__).resolve().parents[1]
N = 12
COMMON = [
    "-n",
    str(N),
    "--sampler",
    "ddim",
    "--steps",
    "5",
    "--labels",
    "0-9",
    "--guidance",
    "3",
    "--seed",
    "7",
    "--threads",
    "1",
    "--device",
    "cpu",
    "--no-progress",
]


def _random_unet(num_classes: int) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = UNetConfig(channels=(8, 16), num_res_blocks=1, attention=False, num_classes=num_classes)
    model = build_model("unet", cfg)
    with torch.no_grad():  # the zero-initialised output layers would make ε̂ = 0
        for p in model.parameters():
            if p.ndim > 1 and not p.abs().sum():
                p.normal_(0, 0.2)
    return model


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("checkpoints")
    linear = {"name": "linear", "num_timesteps": 1000}
    paths = {}
    for name, model in [
        ("cond", _random_unet(10)),
        ("uncond", _random_unet(0)),
        ("points", build_model("mlp", MLPConfig(hidden=16, depth=1, time_dim=8))),
    ]:
        _, paths[name] = save_checkpoint(root / name, model, schedule=linear)
    return paths


@pytest.fixture(scope="module")
def reference(checkpoints, tmp_path_factory) -> Path:
    """One run of all N images in a single batch."""
    out = tmp_path_factory.mktemp("reference") / "run"
    assert _generate(checkpoints["cond"], out, "--batch-size", str(N), *COMMON) == 0
    return out


def _generate(model: Path | str, out: Path, *args: str) -> int:
    """``generate --model MODEL --out OUT ARGS…`` in this process; its exit code."""
    return main(["generate", "--model", str(model), "--out", str(out), *args])


def _pngs(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("sample_*.png"))}


def _manifest(out: Path) -> list[dict[str, str]]:
    with open(out / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "diffusion_lib", "generate", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


# ------------------------------------------------------------------ the run
def test_files_manifest_and_settings(reference, checkpoints):
    files = _pngs(reference)
    assert list(files) == [f"sample_{i:05d}.png" for i in range(N)]
    rows = _manifest(reference)
    assert [r["file"] for r in rows] == list(files)
    assert [r["seed"] for r in rows] == [str(7 + i) for i in range(N)]
    assert [r["label"] for r in rows] == [str(i % 10) for i in range(N)]
    run = json.loads((reference / "run.json").read_text())
    assert run["n"] == N and run["seed"] == 7 and run["labels"] == list(range(10))
    assert run["sampler"] == "ddim" and run["steps"] == 5 and run["guidance"] == 3.0
    assert "batch_size" not in run and len(run["model_sha256"]) == 64
    assert not list(reference.glob("*.tmp"))

    # the pixels are the library's samples scaled from [−1, 1]: image 11 by hand
    model, info = load_checkpoint(checkpoints["cond"])
    x = sample(
        FixedBatchModel(model, 64),
        schedule_from_info(info),
        (1, 1, 8, 8),
        sampler="ddim",
        steps=5,
        spacing="trailing",  # generate's default
        labels=[1],
        guidance_scale=3.0,
        seeds=[7 + 11],
        progress=False,
    )
    with Image.open(reference / "sample_00011.png") as img:
        assert img.mode == "L" and img.size == (8, 8)
        assert np.array_equal(np.asarray(img), to_uint8(x)[0, 0].numpy())


def test_batch_size_does_not_change_any_image(reference, checkpoints, tmp_path, capsys):
    out = tmp_path / "b5"
    assert _generate(checkpoints["cond"], out, "--batch-size", "5", *COMMON) == 0
    assert _pngs(out) == _pngs(reference)
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary.startswith(f"generated {N} images (0 already present) in ")
    assert "images/s" in summary


def test_a_run_split_in_two_halves_equals_one_run(reference, checkpoints, tmp_path, capsys):
    out = tmp_path / "halves"
    model = checkpoints["cond"]
    assert _generate(model, out, "--indices", "0:7", "--batch-size", "3", *COMMON) == 0
    assert len(_manifest(out)) == 7
    assert f"7 of {N} images done" in capsys.readouterr().out
    assert _generate(model, out, "--indices", "7:", "--batch-size", "4", *COMMON) == 0
    assert _pngs(out) == _pngs(reference)
    assert _manifest(out) == _manifest(reference)
    # running the whole command again finds nothing to do
    assert _generate(model, out, *COMMON) == 0
    assert f"generated 0 images ({N} already present)" in capsys.readouterr().out


def test_unconditional_run_has_empty_labels(checkpoints, tmp_path):
    cfg = GenerateConfig(n=3, steps=2)
    model, info = load_checkpoint(checkpoints["uncond"])
    result = generate(
        model, schedule_from_info(info), tmp_path / "u", cfg, model_name="uncond", progress=False
    )
    assert result.complete and result.generated == 3
    assert [r["label"] for r in _manifest(tmp_path / "u")] == ["", "", ""]


def test_fixed_model_batch_makes_rows_batch_invariant(checkpoints):
    model, _ = load_checkpoint(checkpoints["cond"])
    x = torch.randn(40, 1, 8, 8)
    t = torch.randint(0, 1000, (40,))
    y = torch.randint(0, 11, (40,))
    fixed = FixedBatchModel(model, 16)
    with torch.no_grad():
        whole = fixed(x, t, y)
        assert torch.equal(whole[:3], fixed(x[:3], t[:3], y[:3]))
        assert torch.equal(whole[17:18], fixed(x[17:18], t[17:18], y[17:18]))
        assert torch.allclose(whole, model(x, t, y), atol=1e-5)


# ----------------------------------------------------------------- resume
def test_resume_after_sigkill(checkpoints, tmp_path):
    n = 40
    args = [
        "--model",
        str(checkpoints["cond"]),
        "--num-images",
        str(n),
        "--steps",
        "20",
        "--labels",
        "0-9",
        "--guidance",
        "3",
        "--seed",
        "3",
        "--threads",
        "1",
        "--device",
        "cpu",
        "--no-progress",
    ]
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        _cli(*args, "--out", str(out), "--batch-size", "4"),
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while len(list(out.glob("sample_*.png"))) < 6 and proc.poll() is None:
            assert time.monotonic() < deadline, "the run made no images within 60 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, err.decode()
    before = len(list(out.glob("sample_*.png")))
    assert 6 <= before < n
    (out / "sample_00039.png.tmp").write_bytes(b"half an image")  # as if killed mid-write

    assert main(["generate", *args, "--out", str(out), "--batch-size", "7"]) == 0
    clean = tmp_path / "clean"
    assert main(["generate", *args, "--out", str(clean), "--batch-size", str(n)]) == 0
    assert _pngs(out) == _pngs(clean) and len(_pngs(out)) == n
    assert len(_manifest(out)) == n and _manifest(out) == _manifest(clean)
    assert not list(out.glob("*.tmp"))


# --------------------------------------------------------------- torchrun
def test_torchrun_two_processes_make_the_same_images(reference, checkpoints, tmp_path):
    out = tmp_path / "torchrun"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--standalone",
        "-m",
        "diffusion_lib",
        "generate",
        "--model",
        str(checkpoints["cond"]),
        "--out",
        str(out),
        "--batch-size",
        "4",
        *COMMON,
    ]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _pngs(out) == _pngs(reference)
    assert _manifest(out) == _manifest(reference)
    assert f"generated {N} images (0 already present)" in done.stdout
    assert "(2 processes)" in done.stdout


# ----------------------------------------------------------- bad arguments
BAD = [
    (["--model", "no_such_model"], "unknown pretrained model 'no_such_model'"),
    (["--steps", "0"], "steps must be an int >= 1"),
    (["--steps", "1001"], "steps must be an int between 1 and T = 1000"),
    (["--labels", "3,10"], r"labels \[10\] are out of range: this model's classes are 0-9"),
    (["--labels", "0-x"], "invalid labels '0-x'"),
    (["--guidance", "3"], "guidance needs labels"),
    (["--model", "uncond", "--guidance", "3"], "guidance was given but the model is unconditional"),
    (["--model", "uncond", "--labels", "1"], "labels were given but the model is unconditional"),
    (["--model", "points"], "generation to PNG needs an image model"),
    (["--n", "0"], r"n must be an int in \[1, 100,000,000\]"),
    (["--batch-size", "0"], "batch_size must be an int >= 1"),
    (["--sampler", "ddpm", "--eta", "0.5"], "eta does not apply to sampler='ddpm'"),
    (["--indices", "5:99"], "must satisfy 0 <= START < STOP <= n = 12"),
    (["--device", "nonsense"], "unknown device 'nonsense'"),
    (["--precision", "fp16", "--device", "cpu"], "precision 'fp16' needs a CUDA device"),
]


@pytest.mark.parametrize("extra, message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_arguments_fail_fast_and_touch_nothing(extra, message, checkpoints, tmp_path, capsys):
    out = tmp_path / "never"
    if "--model" in extra:
        name = extra[extra.index("--model") + 1]
        extra[extra.index("--model") + 1] = str(checkpoints.get(name, name))
    else:
        extra = ["--model", str(checkpoints["cond"]), *extra]
    args = ["--n", "12", "--steps", "5", "--no-progress", "--out", str(out)]
    assert main(["generate", *args, *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert re.search(message, err), err
    assert not out.exists()


def test_unknown_sampler_is_an_argparse_error(checkpoints, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _generate(checkpoints["cond"], tmp_path / "x", "--n", "4", "--sampler", "plms")
    assert exit_info.value.code == 2
    assert "invalid choice: 'plms'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_an_out_dir_with_another_runs_settings_is_left_alone(
    reference, checkpoints, tmp_path, capsys
):
    out = tmp_path / "other"
    assert _generate(checkpoints["cond"], out, "--indices", "0:2", *COMMON) == 0
    capsys.readouterr()
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.iterdir()}
    changed = [a if a != "7" else "8" for a in COMMON]  # --seed 8
    assert _generate(checkpoints["cond"], out, *changed) == 2
    err = capsys.readouterr().err
    assert "holds a different run" in err and "seed: 7 there, 8 now" in err
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.iterdir()} == before

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "sample_00000.png").write_bytes(b"someone else's")
    assert _generate(checkpoints["cond"], foreign, *COMMON) == 2
    assert "no run.json" in capsys.readouterr().err
    assert [p.name for p in foreign.iterdir()] == ["sample_00000.png"]


def test_parse_labels_and_indices():
    assert parse_labels("0-9") == tuple(range(10))
    assert parse_labels("3") == (3,)
    assert parse_labels("1,4,7") == (1, 4, 7)
    assert parse_labels("0-2, 7") == (0, 1, 2, 7)
    for bad in ["", "a", "3-1", "1,,2", "-1"]:
        with pytest.raises(ValueError, match="labels"):
            parse_labels(bad)
    assert parse_indices("0:5", 10) == range(0, 5)
    assert parse_indices("5:", 10) == range(5, 10)
    assert parse_indices(":3", 10) == range(0, 3)
    for bad in ["5", "3:3", "0:11", "a:b"]:
        with pytest.raises(ValueError, match="indices"):
            parse_indices(bad, 10)


def test_sigma_schedule_is_a_recorded_setting_and_old_runs_still_resume(
    checkpoints, tmp_path, capsys
):
    out = tmp_path / "ode"
    args = [
        "generate",
        "--model",
        str(checkpoints["cond"]),
        "--out",
        str(out),
        "-n",
        "2",
        "--sampler",
        "heun",
        "--steps",
        "4",
        "--labels",
        "1",
        "--threads",
        "1",
        "--no-progress",
    ]
    assert main([*args, "--sigma-schedule", "uniform"]) == 0
    assert json.loads((out / "run.json").read_text())["sigma_schedule"] == "uniform"
    capsys.readouterr()
    assert main(args) == 2  # the default, karras, is another run
    assert "sigma_schedule: 'uniform' there, 'karras' now" in capsys.readouterr().err
    # a run.json written before the setting existed implies karras, and resumes with it
    settings = json.loads((out / "run.json").read_text())
    settings.pop("sigma_schedule")
    (out / "run.json").write_text(json.dumps(settings))
    assert main(args) == 0
    assert "generated 0 images (2 already present)" in capsys.readouterr().out


def test_edm_churn_flags_are_recorded_settings_and_old_runs_still_resume(
    checkpoints, tmp_path, capsys
):
    out = tmp_path / "edm"
    args = ["generate", "--model", str(checkpoints["cond"]), "--out", str(out), "-n", "2",
            "--steps", "4", "--labels", "1", "--threads", "1", "--no-progress"]  # fmt: skip
    assert main([*args, "--sampler", "edm", "--s-churn", "5", "--s-noise", "1.003"]) == 0
    settings = json.loads((out / "run.json").read_text())
    assert (settings["s_churn"], settings["s_noise"], settings["s_tmax"]) == (5.0, 1.003, math.inf)
    capsys.readouterr()
    assert main([*args, "--sampler", "edm", "--s-churn", "5"]) == 2  # s_noise 1 is another run
    assert "s_noise: 1.003 there, 1.0 now" in capsys.readouterr().err
    assert main([*args, "--sampler", "heun", "--s-churn", "5", "--out", str(tmp_path / "h")]) == 2
    err = capsys.readouterr().err
    assert "s_churn does not apply to sampler='heun'; it applies to 'edm'" in err
    assert main([*args, "--sampler", "edm", "--s-tmin", "5", "--s-tmax", "1"]) == 2
    assert "s_tmin (5) must be <= s_tmax (1)" in capsys.readouterr().err
    # a run.json written before the churn settings existed implies their defaults
    old = tmp_path / "old"
    assert main([*args[:4], str(old), *args[5:], "--sampler", "heun"]) == 0
    settings = json.loads((old / "run.json").read_text())
    for key in ("s_churn", "s_tmin", "s_tmax", "s_noise"):
        settings.pop(key)
    (old / "run.json").write_text(json.dumps(settings))
    assert main([*args[:4], str(old), *args[5:], "--sampler", "heun"]) == 0
