"""Stopping signals and waits, as classes: SIGTERM (what batch schedulers send) is handled
like Ctrl-C in every command (one line, exit 143; generate's finished images stay whole and
a re-run resumes byte-identically), a second signal during the cleanup prints no traceback,
SIGTERM while torch is imported is one line, and a distributed run whose peer never starts
says what it waits for and gives up after DIFFUSION_LIB_DIST_TIMEOUT seconds."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from cli_args import TINY_BENCH, TINY_TRAIN, start_cli

from diffusion_lib.cli import _signals, main
from diffusion_lib.cli._signals import Terminated

N = 40
RUN = [
    "generate",
    "--no-progress",
    "--model",
    "digits",
    "-n",
    str(N),
    "--steps",
    "8",
    "--labels",
    "0-9",
    "--seed",
    "5",
    "--threads",
    "1",
    "--batch-size",
    "2",
    "--model-batch",
    "2",
]
TRAIN = TINY_TRAIN
BENCH = [*TINY_BENCH, "--no-write"]


def _pngs(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("sample_*.png"))}


def _one_line(err: str, *words: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    for word in words:
        assert word in lines[0], (word, err)
    return lines[0]


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> tuple[dict[str, bytes], bytes]:
    """The images and manifest of an uninterrupted run."""
    out = tmp_path_factory.mktemp("clean") / "run"
    assert main([*RUN, "--out", str(out)]) == 0
    return _pngs(out), (out / "manifest.csv").read_bytes()


def _start(out: Path) -> subprocess.Popen[str]:
    return start_cli([*RUN, "--out", str(out)])


def _wait_for_first_image(proc: subprocess.Popen[str], out: Path) -> None:
    deadline = time.monotonic() + 120
    while not any(out.glob("sample_*.png")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no image after 120 s"
        time.sleep(0.01)


def _resume_matches(out: Path, clean: tuple[dict[str, bytes], bytes], capsys) -> None:
    assert main([*RUN, "--out", str(out)]) == 0
    capsys.readouterr()
    assert _pngs(out) == clean[0]
    assert (out / "manifest.csv").read_bytes() == clean[1]
    assert not list(out.glob("*.tmp"))


# ------------------------------------------------------------ SIGTERM mid-run, then resume
def test_sigterm_mid_run_is_one_line_143_and_the_resume_is_byte_identical(clean, tmp_path, capsys):
    out = tmp_path / "run"
    proc = _start(out)
    _wait_for_first_image(proc, out)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    _one_line(err, "terminated (SIGTERM)", "every finished image", "re-run the same command")
    made = len(_pngs(out))
    assert 1 <= made < N, made  # stopped mid-run
    _resume_matches(out, clean, capsys)


# ------------------------------------------------------------ a second signal in the cleanup
@pytest.mark.parametrize(
    "signals, gap",
    [
        ((signal.SIGINT, signal.SIGINT, signal.SIGINT), 0.003),
        ((signal.SIGTERM, signal.SIGINT), 0.02),
    ],
    ids=["ctrl-c-x3", "term-then-ctrl-c"],
)
def test_a_second_signal_during_the_cleanup_prints_no_traceback(
    signals, gap, clean, tmp_path, capsys
):
    out = tmp_path / "run"
    proc = _start(out)
    _wait_for_first_image(proc, out)
    for sig in signals:
        proc.send_signal(sig)
        time.sleep(gap)
    _, err = proc.communicate(timeout=60)
    # the first signal Python handles decides (two pending at once are handled in
    # signal-number order); every later one is ignored
    assert proc.returncode in (130, 143), (proc.returncode, err)
    word = "terminated (SIGTERM)" if proc.returncode == 143 else "interrupted"
    _one_line(err, word, "re-run the same command")
    _resume_matches(out, clean, capsys)


def test_sigterm_while_torch_is_imported_is_one_line_143(tmp_path):
    proc = _start(tmp_path / "o")
    time.sleep(0.5)  # torch is still being imported
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    _one_line(err, "terminated (SIGTERM) while starting up", "nothing was written")
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------ every command, in-process
@pytest.mark.parametrize(
    "stop, code, word",
    [
        (KeyboardInterrupt, 130, "interrupted"),
        (Terminated, 143, "terminated (SIGTERM)"),
    ],
    ids=["ctrl-c", "sigterm"],
)
@pytest.mark.parametrize(
    "argv, target",
    [
        (RUN, "diffusion_lib.cli.generate.run_plan"),
        (RUN, "diffusion_lib.cli.generate._load_model"),
        (TRAIN, "diffusion_lib.train.train"),
        (BENCH, "diffusion_lib.cli.bench.run_bench"),
    ],
    ids=["generate-run", "generate-load", "train", "bench"],
)
def test_every_command_stops_in_one_line(
    argv, target, stop, code, word, tmp_path, capsys, monkeypatch
):
    def stopped(*args, **kwargs):
        raise stop()

    monkeypatch.setattr(target, stopped)
    out = tmp_path / "out" / ("m" if argv is TRAIN else "run")
    extra = [] if argv is BENCH else ["--out", str(out)]
    assert main([*argv, *extra]) == code
    _one_line(capsys.readouterr().err, word)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.png"))


def test_the_first_signal_raises_and_later_ones_are_ignored():
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    caught = []
    with _signals.handled(command_line=False):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1.0)  # the handler runs here
        except Terminated:
            caught.append("SIGTERM")
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGINT):
            os.kill(os.getpid(), sig)  # during the "cleanup": nothing happens
        time.sleep(0.2)
    assert caught == ["SIGTERM"]
    assert {sig: signal.getsignal(sig) for sig in before} == before  # given back


def test_a_signal_ignored_from_the_start_stays_ignored():
    # a shell starts a background job (`cmd &`) with SIGINT ignored; Ctrl-C is not for it
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with _signals.handled(command_line=False):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)  # nothing raised
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


# ------------------------------------------------------------ a peer that never starts
def _free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def _world(monkeypatch, rank: int, timeout: str) -> None:
    for key, value in (
        ("WORLD_SIZE", "2"),
        ("RANK", str(rank)),
        ("LOCAL_RANK", str(rank)),
        ("MASTER_ADDR", "127.0.0.1"),
        ("MASTER_PORT", _free_port()),
        ("DIFFUSION_LIB_DIST_TIMEOUT", timeout),
    ):
        monkeypatch.setenv(key, value)


@pytest.mark.parametrize("rank", [0, 1], ids=["rank0-alone", "rank1-alone"])
def test_a_peer_that_never_starts_is_given_up_on_in_one_line(rank, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("diffusion_lib.generate.workers.NOTICE_AFTER_S", 0.5)
    _world(monkeypatch, rank, "2")
    out = tmp_path / "run"
    start = time.monotonic()
    assert main([*RUN, "--out", str(out)]) == 1
    took = time.monotonic() - start
    assert took < 30, took  # not torch's default of 2 hours
    lines = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(lines)
    notice, error = lines[0], lines[-1]
    assert f"rank {rank} is waiting for the other 1 process of WORLD_SIZE=2 at 127.0.0.1" in notice
    assert "DIFFUSION_LIB_DIST_TIMEOUT" in notice
    assert error.startswith(f"error: rank {rank} gave up after"), error
    assert "DIFFUSION_LIB_DIST_TIMEOUT (now 2 s)" in error
    assert len(lines) == 2, lines
    assert not out.exists()  # nothing is written before the ranks meet


@pytest.mark.parametrize("value", ["0", "-5", "abc", "nan", "inf", "1e99", "10s"])
def test_a_bad_dist_timeout_is_a_bad_argument(value, tmp_path, capsys, monkeypatch):
    _world(monkeypatch, 0, value)
    assert main([*RUN, "--out", str(tmp_path / "run")]) == 2
    _one_line(capsys.readouterr().err, "DIFFUSION_LIB_DIST_TIMEOUT must be", repr(value))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("port", ["x", "0", "70000", "-1"])
def test_a_bad_master_port_is_a_bad_argument(port, tmp_path, capsys, monkeypatch):
    _world(monkeypatch, 0, "2")
    monkeypatch.setenv("MASTER_PORT", port)
    assert main([*RUN, "--out", str(tmp_path / "run")]) == 2
    _one_line(capsys.readouterr().err, "MASTER_PORT must be a port number")
