"""Peak memory of sampling one batch, each batch size measured in a fresh process.

A process's peak memory only ever grows, so measuring several batch sizes in
one process would give each the peak of the largest before it. Each
measurement therefore runs ``python -m diffusion_lib.bench.memory B DEVICE`` in a
child process: load the digits model, note the memory, sample one DDIM step (memory
does not grow with the number of steps), note the peak.

- On CUDA the peak is ``torch.cuda.max_memory_allocated`` (tensors only).
- On a CPU it is the peak resident set size, read from ``VmHWM`` in
  ``/proc/self/status``. Not ``resource.getrusage(...).ru_maxrss``: Linux
  keeps that high-water mark across ``exec``, so a child started from a large
  process (a notebook kernel) reports at least the parent's size at fork time,
  the same number for every batch size. ``VmHWM`` starts afresh at ``exec``.
  Off Linux (no ``/proc``) ``ru_maxrss`` is the fallback, in KiB on Linux and
  BSD, bytes on macOS.
"""

from __future__ import annotations

import resource
import subprocess
import sys

__all__ = ["measure_sampling_peak", "peak_rss_mib"]


def peak_rss_mib() -> float:
    """This process's peak resident set size in MiB (``VmHWM``; ``ru_maxrss`` off Linux)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
    except (OSError, StopIteration):  # not Linux
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def measure_sampling_peak(batch_size: int, device: str = "cpu") -> tuple[float, float]:
    """Peak memory of sampling one batch of the shipped digits model, in a fresh process.

    Args:
        batch_size: B ≥ 1 digits, labels 0, 1, …, 9, 0, …
        device: ``"cpu"`` or ``"cuda"``.

    Returns:
        (MiB with the model loaded before sampling, peak MiB while sampling):
        allocated CUDA memory on ``"cuda"``, the process's peak RSS on a CPU.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    cmd = [sys.executable, "-m", "diffusion_lib.bench.memory", str(batch_size), device]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"the memory child failed:\n{run.stderr}")
    base, peak = run.stdout.split()[-2:]
    return float(base), float(peak)


def _child(batch_size: int, device: str) -> tuple[float, float]:
    import torch

    from ..data import NUM_DIGIT_CLASSES
    from ..pretrained import load_pretrained
    from ..sampling import sample

    def now() -> float:
        if device == "cuda":
            return torch.cuda.max_memory_allocated() / 2**20
        return peak_rss_mib()

    model, schedule = load_pretrained("digits", device=device)
    base = torch.cuda.memory_allocated() / 2**20 if device == "cuda" else peak_rss_mib()
    labels = [i % NUM_DIGIT_CLASSES for i in range(batch_size)]
    sample(
        model,
        schedule,
        (batch_size, 1, 8, 8),
        labels=labels,
        seed=0,
        sampler="ddim",
        steps=1,
        progress=False,
    )
    return base, now()


if __name__ == "__main__":
    base_mib, peak_mib = _child(int(sys.argv[1]), sys.argv[2])
    print(base_mib, peak_mib)
