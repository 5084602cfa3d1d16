"""diffusion_lib.bench.memory: peak memory per batch size, measured in a fresh process."""

from __future__ import annotations

import subprocess
import sys

import pytest

from diffusion_lib.bench.memory import measure_sampling_peak, peak_rss_mib


def test_peak_rss_follows_an_allocation_in_a_fresh_process():
    """200 MiB written after start-up raise the peak by about that much."""
    code = (
        "from diffusion_lib.bench.memory import peak_rss_mib\n"
        "before = peak_rss_mib()\n"
        "block = b'x' * (200 << 20)\n"
        "print(before, peak_rss_mib())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    before, after = map(float, out.stdout.split())
    assert before > 0 and 180 < after - before < 260


def test_peak_rss_is_positive_here():
    assert peak_rss_mib() > 0


def test_sampling_peak_of_a_small_batch_on_cpu():
    base, peak = measure_sampling_peak(4)
    assert 0 < base <= peak


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "8"])
def test_bad_batch_size_is_refused(bad):
    with pytest.raises(ValueError, match="batch_size"):
        measure_sampling_peak(bad)


def test_bad_device_is_refused():
    with pytest.raises(ValueError, match="device"):
        measure_sampling_peak(4, device="mps")
