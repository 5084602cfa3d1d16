"""diffusers interop: our DDPM/DDIM on a diffusers UNet2DModel equal its pipelines.

A tiny UNet2DModel is built from a config and randomly initialised (no download).
The pipelines draw x_T and every step's noise from one generator in order; the same
draws, passed as ``x_T`` and ``step_noise``, must give the same images.
"""

from __future__ import annotations

import pytest
import torch

from diffusion_lib.interop import DiffusersEpsModel, from_diffusers, schedule_from_diffusers
from diffusion_lib.sampling import sample

diffusers = pytest.importorskip("diffusers")
SHAPE = (3, 1, 8, 8)


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    return diffusers.UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        layers_per_block=1,
        block_out_channels=(8, 16),
        norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
    ).eval()


def pipeline_draws(seed: int, noisy_steps: int):
    """x_T and the step noises as a pipeline's one generator draws them."""
    g = torch.Generator().manual_seed(seed)
    x_T = torch.randn(SHAPE, generator=g)
    return x_T, [torch.randn(SHAPE, generator=g) for _ in range(noisy_steps)]


def as_image(x: torch.Tensor):
    return (x / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()  # what output_type="np" gives


@pytest.mark.parametrize("steps", [10, 25])
def test_ddpm_equals_ddpm_pipeline(unet, steps):
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=100)
    pipe = diffusers.DDPMPipeline(unet=unet, scheduler=scheduler)
    ref = pipe(
        batch_size=3,
        generator=torch.Generator().manual_seed(5),
        num_inference_steps=steps,
        output_type="np",
    ).images
    model, schedule = from_diffusers(unet, scheduler)
    x_T, zs = pipeline_draws(5, steps - 1)
    ours = sample(
        model,
        schedule,
        SHAPE,
        sampler="ddpm",
        steps=steps,
        spacing="leading",
        variance="beta_tilde",
        x0_mode="clip",
        x_T=x_T,
        step_noise=zs,
        progress=False,
    )
    assert abs(as_image(ours) - ref).max() < 1e-5


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_equals_ddim_pipeline(unet, eta):
    scheduler = diffusers.DDIMScheduler(num_train_timesteps=100)
    pipe = diffusers.DDIMPipeline(unet=unet, scheduler=scheduler)
    ref = pipe(
        batch_size=3,
        generator=torch.Generator().manual_seed(6),
        eta=eta,
        num_inference_steps=10,
        output_type="np",
    ).images
    model, schedule = from_diffusers(unet, scheduler)
    # the DDIM pipeline draws a z at every step when η > 0 (the last one times σ = 0)
    x_T, zs = pipeline_draws(6, 10 if eta > 0 else 0)
    # the pipeline leaves use_clipped_model_output off: the raw ε̂ after clipping x̂0
    ours = sample(
        model,
        schedule,
        SHAPE,
        sampler="ddim",
        eta=eta,
        steps=10,
        spacing="leading",
        x0_mode="clip",
        rederive_eps=False,
        x_T=x_T,
        step_noise=zs[:9] if eta > 0 else None,
        progress=False,
    )
    assert abs(as_image(ours) - ref).max() < 1e-5


def test_the_schedule_holds_the_schedulers_alpha_bar():
    scheduler = diffusers.DDPMScheduler(beta_schedule="squaredcos_cap_v2")
    schedule = schedule_from_diffusers(scheduler.config)  # a config works too
    torch.testing.assert_close(schedule.alphas_cumprod, scheduler.alphas_cumprod, rtol=1e-6, atol=0)


def test_unsupported_predictions_and_labels_are_named(unet):
    with pytest.raises(ValueError, match="prediction_type is 'v_prediction'"):
        schedule_from_diffusers(diffusers.DDPMScheduler(prediction_type="v_prediction"))
    model = DiffusersEpsModel(unet)
    with pytest.raises(ValueError, match="no class embedding"):
        zeros = torch.zeros(3, dtype=torch.long)
        model(torch.zeros(SHAPE), zeros, zeros)
    with pytest.raises(ValueError, match="null_label must be the UNet's last class id"):
        DiffusersEpsModel(unet, null_label=3)


def test_a_class_conditional_unet_takes_guidance_both_ways():
    torch.manual_seed(1)
    unet = diffusers.UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        layers_per_block=1,
        block_out_channels=(8, 16),
        norm_num_groups=4,
        num_class_embeds=4,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
    ).eval()
    model, schedule = from_diffusers(unet, diffusers.DDIMScheduler(num_train_timesteps=100), 3)
    assert model.num_classes == 3 and model.null_label == 3
    kw = dict(sampler="ddim", steps=5, labels=[0, 1, 2], guidance_scale=3.0, seed=0, progress=False)
    two = sample(model, schedule, SHAPE, cfg_mode="two_pass", **kw)
    batched = sample(model, schedule, SHAPE, cfg_mode="batched", **kw)
    torch.testing.assert_close(two, batched, rtol=0, atol=1e-5)
