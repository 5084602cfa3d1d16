"""The smallest command lines of ``train`` and ``bench`` that the CLI tests share, and how
they start the command line in a process of its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TINY_TRAIN = ["train", "--model", "moons", "--steps", "2", "--no-progress", "--threads", "1"]
TINY_BENCH = [
    "bench",
    "--no-compile",
    "--generation-sizes",
    "0",
    "--repeats",
    "1",
    "--threads",
    "1",
    "--batch-sizes",
    "2",
    "--steps",
    "2",
]


def start_cli(argv: list[str]) -> subprocess.Popen[str]:
    """``python -m diffusion_lib *argv`` in a process of its own (one OpenMP thread, this
    checkout on the path), text pipes for its output, started as from a terminal: with
    SIGINT at its default. A background job of a shell without job control starts with
    SIGINT ignored; the child would inherit that, and rightly keep it."""
    return subprocess.Popen(
        [sys.executable, "-m", "diffusion_lib", *argv],
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
