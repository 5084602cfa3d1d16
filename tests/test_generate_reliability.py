"""generate when things go wrong: broken PNGs on resume, two runs in one directory, a full
disk, Ctrl-C, NaN samples; and a progress bar that moves with the steps."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from cli_args import start_cli

from diffusion_lib.cli import main
from diffusion_lib.generate import GenerateConfig, RunConflict, RunLock, prepare, run_plan
from diffusion_lib.images import is_whole_png
from diffusion_lib.pretrained import load_pretrained

ROOT = Path(__file__).resolve().parents[1]
N = 6
ARGS = [
    "generate",
    "--no-progress",
    "--model",
    "digits",
    "-n",
    str(N),
    "--steps",
    "2",
    "--labels",
    "0-9",
    "--seed",
    "3",
    "--threads",
    "1",
    "--batch-size",
    "2",
]


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("clean") / "run"
    assert main([*ARGS, "--out", str(out)]) == 0
    return _files(out)


def _files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("sample_*.png"))}


def _one_line(capsys, *words: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    for word in words:
        assert word in err, (word, err)
    return err


def _temps(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.endswith(".tmp"))


# ------------------------------------------------------------ resume
def test_resume_redoes_empty_and_truncated_pngs(clean, tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*ARGS, "--out", str(out)]) == 0
    (out / "sample_00001.png").write_bytes(b"")
    data = (out / "sample_00004.png").read_bytes()
    (out / "sample_00004.png").write_bytes(data[: len(data) // 2])
    (out / "sample_00005.png").write_bytes(data[:-1])  # one byte short
    (out / "manifest.csv").unlink()
    capsys.readouterr()
    assert main([*ARGS, "--out", str(out)]) == 0
    assert "generated 3 images (3 already present)" in capsys.readouterr().out
    assert _files(out) == clean
    assert len((out / "manifest.csv").read_text().splitlines()) == N + 1


def test_is_whole_png(tmp_path, clean):
    good = tmp_path / "good.png"
    good.write_bytes(clean["sample_00000.png"])
    assert is_whole_png(good, (1, 8, 8))
    assert not is_whole_png(good, (1, 16, 16))  # another size
    assert not is_whole_png(good, (3, 8, 8))  # another mode
    for cut in (0, 8, 30, len(good.read_bytes()) - 1):
        part = tmp_path / f"cut{cut}.png"
        part.write_bytes(good.read_bytes()[:cut])
        assert not is_whole_png(part, (1, 8, 8))
    zeros = tmp_path / "zeros.png"
    zeros.write_bytes(bytes(len(good.read_bytes())))  # a power loss can leave zeros
    assert not is_whole_png(zeros)
    mangled = bytearray(good.read_bytes())
    mangled[45:55] = bytes(10)  # inside the pixel data, ends intact
    bad = tmp_path / "mangled.png"
    bad.write_bytes(bytes(mangled))
    assert not is_whole_png(bad, (1, 8, 8))


def test_stale_temp_files_of_any_process_are_removed(clean, tmp_path):
    out = tmp_path / "run"
    assert main([*ARGS, "--out", str(out), "--indices", "0:2"]) == 0
    for name in (
        "sample_00003.png.tmp",
        "sample_00003.png.12345.tmp",
        "run.json.999.tmp",
        "manifest.csv.tmp",
    ):
        (out / name).write_bytes(b"")
    assert main([*ARGS, "--out", str(out)]) == 0
    assert _temps(out) == [] and _files(out) == clean


# ------------------------------------------------------------ two runs
def test_a_second_run_into_a_locked_directory_fails_in_one_line(clean, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    lock = RunLock(out)  # as another process would hold it (flock is per open file)
    try:
        assert main([*ARGS, "--out", str(out)]) == 2
        _one_line(capsys, "another run is writing into", f"pid {os.getpid()}")
        assert sorted(p.name for p in out.iterdir()) == [".lock"]
    finally:
        lock.release()
    assert main([*ARGS, "--out", str(out)]) == 0
    assert _files(out) == clean


def test_plans_prepared_side_by_side_never_mix(tmp_path):
    """The review's F5: prepare A, prepare B, run A, run B into one empty directory."""
    model, schedule = load_pretrained("digits")
    out = tmp_path / "run"
    a = prepare(
        model, schedule, out, GenerateConfig(n=2, steps=2, seed=0, labels=(1,)), model_name="digits"
    )
    b = prepare(
        model,
        schedule,
        out,
        GenerateConfig(n=3, steps=3, seed=100, labels=(1,)),
        model_name="digits",
    )
    run_plan(a, progress=False)

    def files() -> dict[str, bytes]:  # .lock is B's to take: its stamp may change
        return {p.name: p.read_bytes() for p in out.iterdir() if p.name != ".lock"}

    snapshot = files()
    with pytest.raises(RunConflict, match=r"holds a different run.*seed: 0 there, 100 now"):
        run_plan(b, progress=False)
    assert files() == snapshot
    assert json.loads((out / "run.json").read_text())["seed"] == 0


def test_two_processes_at_once_never_crash_or_mix(clean, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "diffusion_lib", *ARGS, "--batch-size", "1", "--out", str(out)]
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    for proc in procs:
        proc.stdout.close()
        proc.stderr.close()
    for code, err in results:
        assert "Traceback" not in err, err
        assert code == 0 or (code == 2 and "another run is writing" in err), err
    if any(code != 0 for code, _ in results):  # the loser can finish the set afterwards
        subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=120)
    assert _files(out) == clean and _temps(out) == []


# ------------------------------------------------------------ full disk
def _disk_full_after(monkeypatch, target: str, calls: int) -> None:
    from diffusion_lib import files

    real = files.write_atomic
    count = {"n": 0}

    def write_atomic(path, data, **kw):
        if Path(path).name.startswith(target):
            count["n"] += 1
            if count["n"] > calls:
                tmp = files.tmp_name(Path(path))
                tmp.write_bytes(b"")  # as a real full disk leaves it: opened, nothing written
                try:
                    raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
                finally:
                    tmp.unlink()
        return real(path, data, **kw)

    for module in ("diffusion_lib.generate.rundir", "diffusion_lib.generate.run"):
        monkeypatch.setattr(f"{module}.write_atomic", write_atomic)


@pytest.mark.parametrize(
    ("target", "calls", "images_left"),
    [("sample_", 3, 3), ("run.json", 0, 0), ("manifest.csv", 0, N)],
)
def test_a_full_disk_is_one_line_and_the_rerun_finishes(
    target, calls, images_left, clean, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        _disk_full_after(patch, target, calls)
        assert main([*ARGS, "--out", str(out)]) == 1
    _one_line(capsys, "No space left on device", "re-run the same command")
    if images_left == 0:
        assert not out.exists()  # nothing of this run is left
    else:
        assert len(_files(out)) == images_left and _temps(out) == []
        assert all(is_whole_png(p, (1, 8, 8)) for p in out.glob("sample_*.png"))
    assert main([*ARGS, "--out", str(out)]) == 0
    assert _files(out) == clean and _temps(out) == []


def test_train_full_disk_is_one_line(tmp_path, capsys, monkeypatch):
    def full(path, data, **kw):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr("diffusion_lib.pretrained.write_atomic", full)
    argv = [
        "train",
        "--model",
        "moons",
        "--steps",
        "1",
        "--batch-size",
        "4",
        "--no-progress",
        "--threads",
        "1",
        "--device",
        "cpu",
        "--out",
        str(tmp_path / "m"),
    ]
    assert main(argv) == 1
    _one_line(capsys, "No space left on device")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------ Ctrl-C
def test_ctrl_c_mid_run_is_one_line_130_and_resumable(clean, tmp_path, capsys, monkeypatch):
    from diffusion_lib.generate import run as run_module

    real, calls = run_module.sample, {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(run_module, "sample", interrupted)
        assert main([*ARGS, "--out", str(out)]) == 130
    _one_line(capsys, "interrupted", "re-run the same command")
    assert len(_files(out)) == 2 and _temps(out) == []
    assert main([*ARGS, "--out", str(out)]) == 0
    assert _files(out) == clean


@pytest.mark.parametrize(
    "where",
    [
        "diffusion_lib.cli.generate._load_model",
        "diffusion_lib.cli.generate.prepare",
        "diffusion_lib.generate.run.RunLock",
    ],
)
def test_ctrl_c_before_the_first_image_leaves_nothing(where, tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(where, interrupted)
    out = tmp_path / "new" / "run"
    assert main([*ARGS, "--out", str(out)]) == 130
    _one_line(capsys, "interrupted")
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_during_start_up_is_one_line_130(tmp_path):
    proc = start_cli([*ARGS, "--out", str(tmp_path / "o")])
    time.sleep(0.5)  # torch is still being imported
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "interrupted" in err


# ------------------------------------------------------------ NaN
def test_nan_samples_name_the_images_and_leave_nothing(tmp_path, capsys, monkeypatch):
    model, schedule = load_pretrained("digits")
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    monkeypatch.setattr(
        "diffusion_lib.cli.generate._load_model", lambda name, device: (model, schedule, "digits")
    )
    out = tmp_path / "run"
    assert main([*ARGS, "--out", str(out)]) == 1
    # the sampler may name the step first; either way the batch and its images are named
    _one_line(capsys, "batch 1 (indices 0-1)", "NaN")
    assert not out.exists()


# ------------------------------------------------------------ progress
def test_the_bar_moves_with_the_steps(tmp_path, monkeypatch):
    from diffusion_lib.generate import run as run_module

    updates: list[float] = []
    real_tqdm = run_module.tqdm

    class Recorder(real_tqdm):  # type: ignore[misc, valid-type]
        def update(self, n=1):
            updates.append(n)
            return super().update(n)

    monkeypatch.setattr(run_module, "tqdm", Recorder)
    model, schedule = load_pretrained("digits")
    plan = prepare(
        model,
        schedule,
        tmp_path / "run",
        GenerateConfig(n=4, steps=5),
        model_name="digits",
        batch_size=4,
    )
    run_plan(plan, progress=True)
    step_updates = [u for u in updates if abs(u) > 1e-9]
    assert len(step_updates) == 5  # one per sampling step of the one batch
    assert sum(step_updates) == pytest.approx(4)
