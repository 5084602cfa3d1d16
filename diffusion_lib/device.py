"""Pick the best available device: CUDA, then Apple's MPS, then the CPU."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch


def default_device() -> torch.device:
    """``cuda`` if a CUDA device is present, else ``mps`` if available, else ``cpu``."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@contextmanager
def exact_fp32() -> Iterator[None]:
    """Inside the block, fp32 convolutions and matmuls on CUDA round as fp32, not TF32.

    On Ampere and newer GPUs torch runs fp32 convolutions in TF32 by default (a 10-bit
    mantissa, ~1e-3 relative rounding). That is fine for sampling, but it turns a
    one-ulp difference between two mathematically equal computations (DDIM η = 1 and
    DDPM σ² = β̃; two-pass and batched guidance) into ~1e-3 differences that grow over
    the steps. Checks of such identities run in this block. The previous settings come
    back on exit; on a CPU it changes nothing that matters.

    Example:
        >>> with exact_fp32():
        ...     torch.backends.cudnn.allow_tf32
        False
    """
    cudnn, matmul = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    precision = torch.get_float32_matmul_precision()
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = cudnn
        torch.backends.cuda.matmul.allow_tf32 = matmul
        torch.set_float32_matmul_precision(precision)


def resolve_device(device: torch.device | str | None) -> torch.device:
    """``device`` as a ``torch.device``; ``None`` means :func:`default_device`."""
    if device is None:
        return default_device()
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(
            f"unknown device {device!r}; use 'cpu', 'cuda', 'cuda:N', 'mps' or None (auto)"
        ) from err


def available_devices() -> list[str]:
    """The devices this machine can run on, e.g. ``['cpu']`` or ``['cpu', 'cuda:0', 'cuda:1']``."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return found


def usable_device(spec: str | torch.device | None) -> torch.device:
    """The device ``spec`` names (auto, cpu, cuda, cuda:N, mps), if it works here.

    Unlike :func:`resolve_device` this also checks that the device is present, so
    that a command line fails in one line instead of deep inside torch.

    Raises:
        ValueError: the name is unknown, or the device is not available on this
            machine (``meta`` holds no data, so it never is); the message lists
            the devices that are.
    """
    if spec is None or spec == "auto":
        return default_device()
    here = ", ".join(available_devices())
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"unknown device {str(spec)!r}; use auto, cpu, cuda, cuda:N or mps "
            f"(available here: {here})"
        ) from None
    if device.type == "cpu":
        return device
    if device.type == "cuda" and torch.cuda.is_available():
        if device.index is None or device.index < torch.cuda.device_count():
            return device
    mps = getattr(torch.backends, "mps", None)
    if device.type == "mps" and mps is not None and mps.is_available():
        return device
    raise ValueError(f"device {str(spec)!r} is not available on this machine; use one of: {here}")


def model_device(model: object) -> torch.device:
    """The device of a model's first parameter; the CPU for a model without any."""
    if isinstance(model, torch.nn.Module):
        for p in model.parameters():
            return p.device
    return torch.device("cpu")


def default_threads() -> int:
    """The CPU thread count the command lines use unless ``--threads`` says otherwise.

    One thread on a machine with 2 cores or fewer, else half the cores, at most 4.
    torch's own default (every core) was measured to be many times slower on a
    busy 2-core machine: two OpenMP threads that wait for each other stall
    whenever another process takes a core.
    """
    cores = os.cpu_count() or 1
    return 1 if cores <= 2 else min(4, cores // 2)


def max_threads() -> int:
    """The most CPU threads ``--threads`` may ask for: 4 × the cores (8 on a 2-core machine).

    More threads than that only wait for each other; a count like 100000 made OpenMP
    abort while allocating its thread pool ("libgomp: Out of memory").
    """
    return 4 * (os.cpu_count() or 1)


THREADS_HELP = (
    f"torch CPU threads, 1 to {max_threads()} (4 × the cores) (default: 1 on a machine with "
    f"<= 2 cores, else half the cores, at most 4; here {default_threads()})"
)


def check_threads(threads: object) -> int | None:
    """``threads`` as an int in [1, :func:`max_threads`], or ``None``; else ``ValueError``."""
    if threads is None:
        return None
    bound = max_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= bound:
        raise ValueError(
            f"--threads must be an int >= 1 and at most {bound} (4 × the "
            f"{os.cpu_count() or 1} CPU cores here), got {threads!r}"
        )
    return threads


def set_threads(threads: int | None) -> int:
    """``torch.set_num_threads(threads or default_threads())``; return the count.

    Raises:
        ValueError: ``threads`` < 1 or above :func:`max_threads`.
    """
    checked = check_threads(threads)
    count = default_threads() if checked is None else checked
    torch.set_num_threads(count)
    return count


_OOM_WORDS = (
    "out of memory",
    "can't allocate memory",
    "cannot allocate memory",
    "not enough memory",
    "bad_alloc",
)


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` says memory ran out: Python's ``MemoryError``, CUDA's
    ``torch.OutOfMemoryError``, or the ``RuntimeError`` of the CPU allocator
    ("DefaultCPUAllocator: can't allocate memory", ``std::bad_alloc``)."""
    if isinstance(err, MemoryError):
        return True
    oom = getattr(torch, "OutOfMemoryError", None)
    if oom is not None and isinstance(err, oom):
        return True
    if isinstance(err, RuntimeError):
        first = str(err).split("\n", 1)[0].lower()
        return any(word in first for word in _OOM_WORDS)
    return False


def out_of_memory_line(err: BaseException, advice: str) -> str:
    """One line for an out-of-memory error: ``out of memory (what ran out): advice``."""
    first = " ".join(str(err).split("\n", 1)[0].split())
    where = "GPU memory" if "cuda" in first.lower() or "mps" in first.lower() else "memory"
    detail = f" ({type(err).__name__}: {first[:200]})" if first else f" ({type(err).__name__})"
    return f"out of {where}{detail}: {advice}"
