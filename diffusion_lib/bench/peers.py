"""The speed table's peers: diffusers' scheduler loops and k-diffusion's DPM-Solver++(2M),
driving the library's own model.

Each loop is written as its library's pipelines write it, with the model called directly:
``model(x_t, t, labels)`` returns ε̂, as ``UNet2DModel(x_t, t).sample`` does for diffusers
(:mod:`diffusion_lib.interop` and ``docs/diffusers.md`` map the two conventions). The
schedulers are built from the library schedule's β (``trained_betas``), so both sides walk
the same noise levels:

- ``diffusers DDPM``: ``DDPMScheduler(variance_type="fixed_large", clip_sample=True)``,
  σ² = β and x̂0 clipped: the settings of the library's ``eager`` row, timed over the same
  steps of the 1,000;
- ``diffusers DPM-Solver++(2M)-50``: ``DPMSolverMultistepScheduler(algorithm_type=
  "dpmsolver++", solver_order=2, use_karras_sigmas=True)``, the same 50 timesteps as the
  library's ``dpmpp_2m`` (Karras ρ = 7); diffusers clips no x̂0 here, the library does;
- ``diffusers DDIM-50``: ``DDIMScheduler(clip_sample=True, set_alpha_to_one=True,
  timestep_spacing="trailing")``, η = 0, ``use_clipped_model_output=True``: the library's
  DDIM defaults (``tests/test_diffusers_equivalence.py`` checks they compute the same);
- ``k-diffusion DPM-Solver++(2M)-50``: ``sample_dpmpp_2m`` with
  ``DiscreteEpsDDPMDenoiser`` on the schedule's ᾱ and ``get_sigmas_karras(50, …)``.

Seeds: x_T and every z come from one ``torch.Generator`` on the device seeded with the
library rows' seed (0), as diffusers' pipelines take a generator; the library draws per
sample from seeds 0 … B − 1 (same seeds, another stream, so the samples differ). A peer
whose package is missing is one note row saying why (``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import warnings
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..schedule import NoiseSchedule

PEER_STEPS = 50
"""Steps of the whole-run peers (DPM-Solver++(2M), DDIM), as of the library rows they face."""

SEED = 0

INSTALL = "pip install -e '.[bench]' (or pip install diffusers)"


@dataclass(frozen=True)
class Peer:
    """One peer loop."""

    name: str
    """Its row in the table, e.g. ``"diffusers DDPM"``."""
    versus: str
    """The library row it is compared with: ``"eager"``, ``"dpmpp_2m-50"`` or ``"ddim-50"``."""
    steps: int | None
    """Steps of a timed run: ``None`` for the per-step peer (the eager row's steps)."""
    iterate: Callable[[Any, int | None], Iterator[Tensor]] | None
    """``iterate(model, n)``: x after each of the first ``n`` steps (``None``: all); ``None``
    for a peer that cannot be stopped between steps (k-diffusion: timed whole only)."""
    whole: Callable[[Any], Tensor] | None = None
    """``whole(model)``: one whole run, for a peer without ``iterate``."""
    note: str = ""

    def run(self, model: Any, n: int | None = None) -> Tensor:
        """The sample after ``n`` steps (``None``: the whole run)."""
        if self.iterate is None:
            assert self.whole is not None
            return self.whole(model)
        return deque(self.iterate(model, n), maxlen=1)[0]  # the last x


def _quiet(make: Callable[[], Any]) -> Any:
    with warnings.catch_warnings():  # diffusers warns about configs it deprecates
        warnings.simplefilter("ignore")
        return make()


def diffusers_peers(
    schedule: NoiseSchedule, shape: tuple[int, ...], device: torch.device
) -> tuple[list[Peer], str]:
    """The three diffusers loops, or ``([], why not)`` when diffusers does not import."""
    try:
        import diffusers
    except Exception as err:  # ImportError, or a broken install
        return [], (
            f"diffusers peers not measured: `import diffusers` failed "
            f"({type(err).__name__}: {err}); {INSTALL}"
        )
    betas = schedule.betas.detach().cpu().numpy()
    T, batch = len(betas), shape[0]

    def make(cls: Any, **kw: Any) -> Any:
        return _quiet(lambda: cls(num_train_timesteps=T, trained_betas=betas, **kw))

    ddpm = make(diffusers.DDPMScheduler, variance_type="fixed_large", clip_sample=True)
    dpm = make(
        diffusers.DPMSolverMultistepScheduler,
        algorithm_type="dpmsolver++",
        solver_order=2,
        use_karras_sigmas=True,
    )
    ddim = make(
        diffusers.DDIMScheduler,
        clip_sample=True,
        set_alpha_to_one=True,
        timestep_spacing="trailing",
    )

    def x_T() -> tuple[Tensor, torch.Generator]:
        gen = torch.Generator(device).manual_seed(SEED)
        return torch.randn(shape, generator=gen, device=device), gen

    @torch.no_grad()
    def ddpm_loop(model: Any, n: int | None) -> Iterator[Tensor]:
        ddpm.set_timesteps(T)  # DDPMPipeline: timesteps on the CPU, as here
        x, gen = x_T()
        for t in ddpm.timesteps[:n]:
            eps = model(x, t.to(device).expand(batch))  # UNet2DModel moves t the same way
            x = ddpm.step(eps, t, x, generator=gen).prev_sample
            yield x

    @torch.no_grad()
    def dpm_loop(model: Any, n: int | None) -> Iterator[Tensor]:
        _quiet(lambda: dpm.set_timesteps(PEER_STEPS, device=device))  # as SD's pipelines do
        x, gen = x_T()
        x = x * dpm.init_noise_sigma
        for t in dpm.timesteps[:n]:
            x = dpm.step(model(x, t.expand(batch)), t, x, generator=gen).prev_sample
            yield x

    @torch.no_grad()
    def ddim_loop(model: Any, n: int | None) -> Iterator[Tensor]:
        ddim.set_timesteps(PEER_STEPS)  # DDIMPipeline: timesteps on the CPU
        x, gen = x_T()
        for t in ddim.timesteps[:n]:
            eps = model(x, t.to(device).expand(batch))
            x = ddim.step(
                eps, t, x, eta=0.0, use_clipped_model_output=True, generator=gen
            ).prev_sample
            yield x

    version = getattr(diffusers, "__version__", "?")
    return [
        Peer(
            "diffusers DDPM",
            "eager",
            None,
            ddpm_loop,
            note=f"diffusers {version} DDPMScheduler, fixed_large, clip_sample",
        ),
        Peer(
            "diffusers DPM-Solver++(2M)-50",
            "dpmpp_2m-50",
            PEER_STEPS,
            dpm_loop,
            note=f"diffusers {version} DPMSolverMultistepScheduler, Karras σ",
        ),
        Peer(
            "diffusers DDIM-50",
            "ddim-50",
            PEER_STEPS,
            ddim_loop,
            note=f"diffusers {version} DDIMScheduler, trailing, clip_sample",
        ),
    ], ""


def kdiffusion_peer(
    schedule: NoiseSchedule, shape: tuple[int, ...], device: torch.device
) -> tuple[list[Peer], str]:
    """k-diffusion's ``sample_dpmpp_2m``, or ``([], why not)``.

    ``import k_diffusion`` imports the whole package (its models, evaluation and
    augmentation need torchvision, kornia, clip-anytorch, clean-fid, scikit-image, wandb,
    torchsde, torchdiffeq, …), so it is measured only where all of that is installed; it is
    not a dependency of any extra here.
    """
    try:
        from k_diffusion import sampling as k_sampling
        from k_diffusion.external import DiscreteEpsDDPMDenoiser
    except Exception as err:  # ImportError, or one of its many dependencies failing
        return [], (
            f"k-diffusion peer not measured: `import k_diffusion` failed "
            f"({type(err).__name__}: {err}); it imports its whole package (torchvision, "
            "kornia, clip-anytorch, clean-fid, torchsde, …)"
        )

    def whole(model: Any) -> Tensor:
        denoiser = DiscreteEpsDDPMDenoiser(model, schedule.alphas_cumprod.to(device), quantize=True)
        sigmas = k_sampling.get_sigmas_karras(
            PEER_STEPS, float(denoiser.sigma_min), float(denoiser.sigma_max), device=device
        )
        gen = torch.Generator(device).manual_seed(SEED)
        x = torch.randn(shape, generator=gen, device=device) * sigmas[0]
        with torch.no_grad():
            return k_sampling.sample_dpmpp_2m(denoiser, x, sigmas, disable=True)

    version = _version("k-diffusion")
    return [
        Peer(
            "k-diffusion DPM-Solver++(2M)-50",
            "dpmpp_2m-50",
            PEER_STEPS,
            None,
            whole,
            note=f"k-diffusion {version} sample_dpmpp_2m, Karras σ",
        )
    ], ""


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


def all_peers(
    schedule: NoiseSchedule, shape: tuple[int, ...], device: torch.device
) -> tuple[list[Peer], list[str]]:
    """Every peer that imports, and one line per package that does not (why not)."""
    peers: list[Peer] = []
    missing: list[str] = []
    for find in (diffusers_peers, kdiffusion_peer):
        found, why = find(schedule, shape, device)
        peers += found
        if why:
            missing.append(why)
    return peers, missing


__all__ = ["INSTALL", "PEER_STEPS", "Peer", "all_peers", "diffusers_peers", "kdiffusion_peer"]
