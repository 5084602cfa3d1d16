"""Which device a run picks when none is named."""

from __future__ import annotations

import torch

from diffusion_lib import default_device


def test_default_device_is_cpu_here_or_a_real_accelerator():
    dev = default_device()
    if torch.cuda.is_available():
        assert dev.type == "cuda"
    else:
        assert dev.type in {"mps", "cpu"}
