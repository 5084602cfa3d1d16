"""Runs that fail at the worst moment, as classes: out of memory is one line naming the
batch option to lower (never blamed on the input shape) in generate, train and bench;
--threads is bounded; a train whose loss goes NaN/inf stops with one line, exit 1 and no
checkpoint; train --out naming a directory is a bad argument."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_args import TINY_BENCH
from torch import nn

from diffusion_lib.cli import main
from diffusion_lib.device import check_threads, is_out_of_memory, max_threads
from diffusion_lib.pretrained import load_pretrained

GEN = [
    "generate",
    "--no-progress",
    "--model",
    "digits",
    "-n",
    "4",
    "--steps",
    "2",
    "--labels",
    "0-9",
    "--threads",
    "1",
    "--batch-size",
    "2",
]
TRAIN = ["train", "--model", "moons", "--steps", "20", "--no-progress", "--threads", "1"]
BENCH = [*TINY_BENCH, "--no-write"]


def _alloc_error() -> RuntimeError:
    """The CPU allocator's real error, raised by torch itself."""
    try:
        torch.empty(10**13)
    except RuntimeError as err:
        return err
    raise AssertionError("10**13 floats were allocated")  # pragma: no cover


OOM = [
    pytest.param(
        lambda: torch.OutOfMemoryError(
            "CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 79.11 GiB total capacity)"
        ),
        id="cuda-oom",
    ),
    pytest.param(_alloc_error, id="cpu-allocator-real"),
    pytest.param(lambda: RuntimeError("std::bad_alloc"), id="bad-alloc"),
    pytest.param(
        lambda: RuntimeError(
            "[enforce fail at alloc_cpu.cpp:121] data. DefaultCPUAllocator: not enough memory: "
            "you tried to allocate 1638400000 bytes."
        ),
        id="cpu-not-enough",
    ),
    pytest.param(lambda: MemoryError(), id="memory-error-bare"),
    pytest.param(
        lambda: MemoryError(
            "Unable to allocate 728. TiB for an array with shape "
            "(100000000000000,) and data type float64"
        ),
        id="numpy",
    ),
]


BLAMES_SHAPE = ("check the `shape`", "rejected an input batch")


def _one_line(capsys, *words: str, absent: tuple[str, ...] = ()) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: ") and "Traceback" not in err, err
    for word in words:
        assert word in err, (word, err)
    for word in absent:
        assert word not in err, (word, err)
    return err


def _raiser(make):
    def raise_it(*args, **kwargs):
        raise make()

    return raise_it


# ------------------------------------------------------------ out of memory
@pytest.mark.parametrize("make", OOM)
def test_out_of_memory_while_sampling_names_the_batch_options(make, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("diffusion_lib.generate.run.sample", _raiser(make))
    out = tmp_path / "run"
    assert main([*GEN, "--out", str(out)]) == 1
    _one_line(
        capsys,
        "out of",
        "memory",
        "--batch-size (now 2",
        "--model-batch (now 64",
        absent=BLAMES_SHAPE,
    )
    assert not out.exists()  # nothing made, so nothing kept


@pytest.mark.parametrize("make", OOM)
def test_out_of_memory_in_the_first_model_call_is_not_blamed_on_the_shape(
    make, tmp_path, capsys, monkeypatch
):
    model, schedule = load_pretrained("digits")

    class Hungry(nn.Module):
        null_label, num_classes, sample_shape = model.null_label, model.num_classes, (1, 8, 8)

        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, x, t, labels=None):
            raise make()

    monkeypatch.setattr(
        "diffusion_lib.cli.generate._load_model",
        lambda name, device: (Hungry(), schedule, "digits"),
    )
    out = tmp_path / "run"
    assert main([*GEN, "--model-batch", "0", "--out", str(out)]) == 1
    _one_line(
        capsys,
        "out of",
        "--batch-size (now 2",
        "--model-batch (now 0, whole batches",
        absent=BLAMES_SHAPE,
    )
    assert not out.exists()


@pytest.mark.parametrize("make", OOM)
def test_out_of_memory_in_train_names_batch_size_and_writes_nothing(
    make, tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr("diffusion_lib.train.train", _raiser(make))
    assert main([*TRAIN, "--batch-size", "4096", "--out", str(tmp_path / "m")]) == 1
    _one_line(capsys, "out of", "--batch-size (now 4096)", "no checkpoint was written")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("make", OOM)
def test_out_of_memory_in_bench_names_batch_sizes(make, capsys, monkeypatch):
    monkeypatch.setattr("diffusion_lib.cli.bench.run_bench", _raiser(make))
    assert main(BENCH) == 1
    _one_line(capsys, "out of", "--batch-sizes (now 2)")


@pytest.mark.parametrize(
    "error", [RuntimeError("boom"), RuntimeError("shape mismatch"), ValueError("a plain error")]
)
def test_other_errors_are_not_called_out_of_memory(error, tmp_path, capsys, monkeypatch):
    assert not is_out_of_memory(error)
    monkeypatch.setattr("diffusion_lib.generate.run.sample", _raiser(lambda: error))
    assert main([*GEN, "--out", str(tmp_path / "run")]) == 1
    _one_line(capsys, str(error), absent=("out of memory",))


# ------------------------------------------------------------ --threads
BIG = [max_threads() + 1, 100_000, 10**9, 2**31]


WORK = (
    "diffusion_lib.train.train",
    "diffusion_lib.cli.bench.run_bench",
    "diffusion_lib.cli.generate._load_model",
)


@pytest.fixture
def no_work(monkeypatch):
    """A command that starts its work (training, benchmarking, loading) fails the test."""
    started = _raiser(lambda: AssertionError("the command started before it checked its input"))
    for target in WORK:
        monkeypatch.setattr(target, started)


@pytest.mark.parametrize("threads", BIG)
@pytest.mark.parametrize("argv", [GEN, TRAIN, BENCH], ids=["generate", "train", "bench"])
def test_threads_beyond_the_bound_are_a_bad_argument(argv, threads, no_work, tmp_path, capsys):
    extra = [] if argv is BENCH else ["--out", str(tmp_path / "o")]
    assert main([*argv, *extra, "--threads", str(threads)]) == 2
    _one_line(capsys, "--threads", f"at most {max_threads()}", str(threads))
    assert list(tmp_path.iterdir()) == []


def test_the_thread_bound_is_four_times_the_cores():
    assert max_threads() == 4 * (os.cpu_count() or 1)
    assert check_threads(max_threads()) == max_threads() and check_threads(1) == 1
    assert check_threads(None) is None
    for bad in (0, -1, max_threads() + 1, 2.0, True, "4", np.float64(2)):
        with pytest.raises(ValueError, match="--threads must be an int >= 1"):
            check_threads(bad)


# ------------------------------------------------------------ train: NaN loss, --out dir
@pytest.mark.parametrize("lr", ["1e30", "1e15", "1e8"])
def test_a_diverging_train_stops_in_one_line_and_writes_no_checkpoint(lr, tmp_path, capsys):
    assert main([*TRAIN, "--lr", lr, "--out", str(tmp_path / "m")]) == 1
    _one_line(
        capsys,
        "training loss became",
        "lower the learning rate (--lr)",
        "No checkpoint was written",
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value, at", [(float("nan"), 1), (float("inf"), 3), (float("-inf"), 20)])
def test_a_loss_that_turns_non_finite_at_any_step_stops_the_run(
    value, at, tmp_path, capsys, monkeypatch
):
    import diffusion_lib.train as train_module

    real, calls = train_module.F.mse_loss, {"n": 0}

    def loss(*args, **kwargs):
        calls["n"] += 1
        out = real(*args, **kwargs)
        return out * value if calls["n"] == at else out

    monkeypatch.setattr(train_module.F, "mse_loss", loss)
    assert main([*TRAIN, "--out", str(tmp_path / "m")]) == 1
    _one_line(capsys, f"at step {at} of 20", "No checkpoint was written")
    assert list(tmp_path.iterdir()) == []


def test_non_finite_weights_after_training_are_never_saved(tmp_path, capsys, monkeypatch):
    import diffusion_lib.train as train_module

    real = train_module.AveragedModel.update_parameters

    def poisoned(self, model):
        real(self, model)
        with torch.no_grad():
            next(self.module.parameters()).fill_(float("nan"))

    monkeypatch.setattr(train_module.AveragedModel, "update_parameters", poisoned)
    assert main([*TRAIN, "--out", str(tmp_path / "m")]) == 1
    _one_line(capsys, "became NaN/inf", "No checkpoint was written")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "make",
    [
        lambda root: root,  # the directory itself
        lambda root: _mkdir(root / "weights"),  # an empty directory
        lambda root: _mkdir(root / "full", "keep.txt"),  # a directory with files
        lambda root: _mkdir(root / "m.json"),  # a directory with a file's name
    ],
    ids=["tmp", "empty", "full", "json-named"],
)
def test_train_out_naming_a_directory_is_a_bad_argument(make, tmp_path, capsys, no_work):
    target = make(tmp_path)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert main([*TRAIN, "--out", str(target)]) == 2
    _one_line(capsys, "names a directory", "add a file stem")
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def _mkdir(path: Path, *files: str) -> Path:
    path.mkdir()
    for name in files:
        (path / name).write_text("x")
    return path
