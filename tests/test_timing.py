"""diffusion_lib.bench.timing: best-of timing and the bench table's headline lines."""

from __future__ import annotations

import json
import time

import pytest

from diffusion_lib.bench.report import HEADER, bench_headlines
from diffusion_lib.bench.tables import RESULTS_DIR
from diffusion_lib.bench.timing import best_time


def test_best_time_warms_up_then_takes_the_best():
    calls = []

    def work():
        calls.append(1)
        time.sleep(0.02 if len(calls) == 1 else 0.001)  # a slow first call

    seconds = best_time(work, reps=3)
    assert len(calls) == 4 and seconds < 0.015
    with pytest.raises(ValueError, match="reps"):
        best_time(work, reps=0)


def test_bench_headlines_one_line_per_batch_of_the_committed_cpu_table():
    path = RESULTS_DIR / "cpu.json"
    if not path.is_file():
        pytest.skip("no committed CPU table")
    result = json.loads(path.read_text())
    lines = bench_headlines(result)
    assert len(lines) == len(result["batches"])
    assert all(len(line) == len(HEADER) for line in lines)
    assert lines[0].split()[0] == str(result["batches"][0]["batch"])
