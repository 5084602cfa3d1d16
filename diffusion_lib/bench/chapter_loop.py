"""The seed chapter's DDPM sampling loop, as the chapter writes it: the speed baseline.

``python -m diffusion_lib bench`` times this against the library's loop. It keeps
every habit of the original that costs time, because that is what is measured:

- a new ``t_batch`` tensor is filled on every step;
- α_t, ᾱ_t, β_t are indexed out of the schedule on every step and pushed through
  ``torch.sqrt`` and divisions as 0-d tensors (several tiny kernels each);
- x̂0 is clipped and ε̂ re-derived, then the ε-form of the mean is used with
  σ² = β_t ("simplified variance");
- noise is ``torch.randn_like(x)`` from the global generator (so samples are
  reproducible only through ``torch.manual_seed`` and depend on the batch);
- a Python ``if t > 0`` decides the noise.

Two changes, both for the benchmark and neither on the per-step path: the
schedule is this library's :class:`~diffusion_lib.schedule.NoiseSchedule` (its
``num_steps`` is the chapter's ``schedule.timesteps``), and ``max_steps`` stops
the loop early so a slow device can time the first steps of a 1,000-step run.
The progress bar and the callback of the original are left out, as the library's
loop is timed without them too.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..schedule import NoiseSchedule


@torch.no_grad()
def chapter_ddpm_sample(
    model: nn.Module,
    schedule: NoiseSchedule,
    shape: tuple[int, ...],
    device: str | torch.device = "cpu",
    clip_denoised: bool = True,
    max_steps: int | None = None,
) -> Tensor:
    """DDPM ancestral sampling, the chapter's way. Returns x after the steps run, (B, ...)."""
    batch_size = shape[0]
    x = torch.randn(shape, device=device)
    timesteps = list(range(schedule.num_steps))[::-1]
    if max_steps is not None:
        timesteps = timesteps[:max_steps]
    for t in timesteps:
        t_batch = torch.full((batch_size,), t, device=device, dtype=torch.long)
        predicted_noise = model(x, t_batch)
        alpha = schedule.alphas[t]
        alpha_bar = schedule.alphas_cumprod[t]
        beta = schedule.betas[t]
        if clip_denoised:
            pred_x0 = (x - torch.sqrt(1 - alpha_bar) * predicted_noise) / torch.sqrt(alpha_bar)
            pred_x0 = pred_x0.clamp(-1, 1)
            predicted_noise = (x - torch.sqrt(alpha_bar) * pred_x0) / torch.sqrt(1 - alpha_bar)
        mean = (1 / torch.sqrt(alpha)) * (x - (beta / torch.sqrt(1 - alpha_bar)) * predicted_noise)
        if t > 0:
            x = mean + torch.sqrt(beta) * torch.randn_like(x)
        else:
            x = mean
    return x
