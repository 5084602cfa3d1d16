"""Bad input to the command lines, as classes: one line on stderr that names what is
wrong and what is valid, exit code 2, and nothing written. Each class is tried with the
cases the reliability review found and with new ones of the same kind."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from cli_args import TINY_BENCH, TINY_TRAIN

from diffusion_lib.cli import main
from diffusion_lib.pretrained import WEIGHTS_DIR

GEN = [
    "generate",
    "--no-progress",
    "--model",
    "digits",
    "-n",
    "4",
    "--steps",
    "3",
    "--threads",
    "1",
]
TRAIN = TINY_TRAIN
BENCH = TINY_BENCH


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if a command starts its real work (training, benchmarking)."""

    def forbidden(*args, **kwargs):
        raise AssertionError("the command started working before it checked its arguments")

    monkeypatch.setattr("diffusion_lib.train.train", forbidden)
    monkeypatch.setattr("diffusion_lib.cli.bench.run_bench", forbidden)


def _snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _fails(argv: list[str], capsys, *words: str, code: int = 2) -> str:
    """Run ``argv``; assert the exit code and a single ``error:`` line holding ``words``."""
    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: "), err
    for word in words:
        assert word.lower() in err.lower(), (word, err)
    return err


# ------------------------------------------------------------ numbers
@pytest.mark.parametrize(
    "extra, words",
    [
        (["--eta", "2"], ["eta", "[0, 1]", "DDIM"]),
        (["--eta", "1.0001"], ["eta", "[0, 1]"]),
        (["--eta", "-inf"], ["eta", "[0, 1]"]),
        (["--eta", "nan"], ["eta", "[0, 1]"]),
        (["--labels", "1", "--guidance", "nan"], ["guidance", "finite"]),
        (["--labels", "1", "--guidance", "-inf"], ["guidance", "finite"]),
        (["-n", "1000000000000"], ["n must be", "100,000,000"]),
        (["-n", str(10**8 + 1)], ["n must be", "100,000,000"]),
        (["-n", "-4"], ["n must be"]),
        (["--steps", "0"], ["steps", ">= 1"]),
        (["--steps", "-5"], ["steps", ">= 1"]),
        (["--steps", "1001"], ["steps", "T = 1000"]),
        (["--seed", "-1"], ["seed"]),
        (["--model-batch", "100000000"], ["model_batch", "65536"]),
        (["--model-batch", "65537"], ["model_batch", "65536"]),
        (["--model-batch", "-1"], ["model-batch", ">= 0"]),
        (["--batch-size", "-3"], ["batch_size", ">= 1"]),
        (["--labels", "0-9999999999"], ["labels", "at most 100000"]),
        (["--labels", "0-9999999"], ["labels", "at most 100000"]),
        (["--labels", "5,0-100000"], ["labels", "at most 100000"]),
        (["--labels", "-1"], ["invalid labels"]),
        (["--indices", "-3:"], ["invalid indices", "START:STOP"]),
        (["--indices", "-1:2"], ["invalid indices"]),
        (["--indices", "2:99"], ["indices", "n = 4"]),
        (["--threads", "0"], ["--threads", ">= 1"]),
        (
            ["--preset", "recommended", "--eta", "0.5"],
            ["--preset recommended", "drop --steps, --eta", "or drop --preset"],
        ),
        (["--preset", "recommended", "--sampler", "ddim"], ["drop --sampler, --steps"]),
    ],
)
def test_generate_numbers_are_checked_where_they_enter(extra, words, tmp_path, capsys):
    _fails([*GEN, "--out", str(tmp_path / "out"), *extra], capsys, *words)
    assert _snapshot(tmp_path) == set()


def test_a_long_list_of_bad_labels_is_summarised(tmp_path, capsys):
    err = _fails(
        [*GEN, "--out", str(tmp_path / "o"), "--labels", "0-99999"],
        capsys,
        "out of range",
        "(99990 values)",
        "classes are 0-9",
    )
    assert len(err) < 300


def test_labels_huge_range_is_refused_before_expansion(tmp_path, capsys, monkeypatch):
    def no_range(*args):
        raise AssertionError("the range was expanded")

    monkeypatch.setattr("diffusion_lib.generate.config.range", no_range, raising=False)
    _fails(
        [*GEN, "--out", str(tmp_path / "o"), "--labels", "0-99999999999999999999"],
        capsys,
        "at most 100000",
    )


# ------------------------------------------------------------ devices
UNAVAILABLE = ["mps", "xla", "meta", "xpu", "cuda:7", "gpu0", "npu", "cuda:-1"]
if not torch.cuda.is_available():
    UNAVAILABLE += ["cuda", "cuda:0"]


@pytest.mark.parametrize("device", UNAVAILABLE)
@pytest.mark.parametrize("command", ["generate", "train", "bench"])
def test_unavailable_devices_are_refused_in_one_line(command, device, tmp_path, capsys, no_work):
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("mps is available here")
    argv = {"generate": GEN, "train": TRAIN, "bench": BENCH}[command]
    _fails([*argv, "--out", str(tmp_path / "o"), "--device", device], capsys, "device", "cpu")
    assert _snapshot(tmp_path) == set()


# ------------------------------------------------------------ output paths
def _bad_outs(tmp_path: Path) -> list[tuple[str, str]]:
    regular = tmp_path / "a_file"
    regular.write_text("x")
    outs = [
        ("/proc/diffusion_lib_test/x", "cannot"),
        (str(regular / "sub"), "is a file"),
        (str(regular / "sub" / "deeper"), "is a file"),
        ("", "empty"),
    ]
    if Path("/sys").is_dir():
        outs.append(("/sys/diffusion_lib_test", "cannot"))
    return outs


@pytest.mark.parametrize("command", ["generate", "train", "bench"])
def test_an_output_path_that_cannot_be_written_is_refused_first(command, tmp_path, capsys, no_work):
    argv = {"generate": GEN, "train": TRAIN, "bench": BENCH}[command]
    for out, word in _bad_outs(tmp_path):
        before = _snapshot(tmp_path)
        _fails([*argv, "--out", out], capsys, word)
        assert _snapshot(tmp_path) == before
    if command == "generate":  # --out names a file
        _fails([*argv, "--out", str(tmp_path / "a_file")], capsys, "not a directory")


def test_generate_out_empty_never_means_the_current_directory(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _fails([*GEN, "--out", ""], capsys, "empty")
    _fails([*GEN, "--out", "   "], capsys, "empty")
    assert _snapshot(tmp_path) == set()


# ------------------------------------------------------------ checkpoints
def _checkpoint(tmp_path: Path, name: str, mutate) -> str:
    info = json.loads((WEIGHTS_DIR / "digits.json").read_text())
    mutate(info)
    (tmp_path / f"{name}.json").write_text(json.dumps(info))
    os.symlink(WEIGHTS_DIR / "digits.safetensors", tmp_path / f"{name}.safetensors")
    return str(tmp_path / f"{name}.json")


def _set(path: str, value):
    def mutate(info):
        *parents, last = path.split(".")
        target = info
        for key in parents:
            target = target[key]
        if value is KeyError:
            del target[last]
        else:
            target[last] = value

    return mutate


@pytest.mark.parametrize(
    "path, value, field",
    [
        ("schedule", "linear", "schedule"),
        ("schedule.num_timesteps", KeyError, "schedule.num_timesteps"),
        ("model_config", None, "model_config"),
        ("model_config.channels", "abc", "model_config.channels"),
        # new ones of the same classes
        ("schedule", [1000], "schedule"),
        ("schedule.num_timesteps", "1000", "schedule.num_timesteps"),
        ("schedule.num_timesteps", 0, "schedule.num_timesteps"),
        ("schedule.name", 5, "schedule.name"),
        ("model_config", [32, 64], "model_config"),
        ("model_config.groups", "8", "model_config.groups"),
        ("model_config.attention", "yes", "model_config.attention"),
        ("model_config.dropout", "none", "model_config.dropout"),
        ("model_config.channels", [32, "64"], "model_config.channels"),
        ("kind", 3, "kind"),
    ],
)
def test_checkpoint_json_of_the_wrong_types_names_file_and_field(
    path, value, field, tmp_path, capsys
):
    ckpt = _checkpoint(tmp_path, "bad", _set(path, value))
    out = tmp_path / "out"
    argv = [*GEN[:3], ckpt, *GEN[4:], "--out", str(out)]
    _fails(argv, capsys, "bad.json", field)
    assert not out.exists()


# ------------------------------------------------------------ train and bench
@pytest.mark.parametrize(
    "extra, words",
    [
        (["--steps", "0"], ["--steps", ">= 1"]),
        (["--steps", "-1"], ["--steps", ">= 1"]),
        (["--batch-size", "0"], ["--batch-size", ">= 1"]),
        (["--batch-size", "-8"], ["--batch-size", ">= 1"]),
        (["--lr", "nan"], ["--lr", "finite"]),
        (["--lr", "inf"], ["--lr", "finite"]),
        (["--lr", "0"], ["--lr", "> 0"]),
        (["--seed", "-2"], ["--seed", ">= 0"]),
        (["--threads", "0"], ["--threads", ">= 1"]),
        (["--threads", "-3"], ["--threads", ">= 1"]),
    ],
)
def test_train_refuses_bad_arguments_before_training(extra, words, tmp_path, capsys, no_work):
    _fails([*TRAIN, "--out", str(tmp_path / "m"), *extra], capsys, *words)
    assert _snapshot(tmp_path) == set()


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--steps", "0"], ["steps", "between 1 and 1000"]),
        (["--steps", "2:0"], ["steps", "between 1 and 1000"]),
        (["--steps", "1001"], ["steps", "between 1 and 1000"]),
        (["--model", "moons"], ["bench needs an image model", "digits"]),
        (["--repeats", "0"], ["--repeats"]),
    ],
)
def test_bench_refuses_bad_arguments(extra, words, capsys):
    _fails([*BENCH, "--no-write", *extra], capsys, *words)


def test_world_size_without_a_rendezvous_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    _fails([*GEN, "--out", str(tmp_path / "o")], capsys, "WORLD_SIZE=2", "MASTER_ADDR", "torchrun")
    assert _snapshot(tmp_path) == set()


def test_help_states_the_thread_default(capsys):
    from diffusion_lib.device import default_threads

    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"here {default_threads()})" in text
    assert default_threads() == (
        1 if (os.cpu_count() or 1) <= 2 else min(4, (os.cpu_count() or 1) // 2)
    )
