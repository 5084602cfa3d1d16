"""Every bad argument raises a ValueError/TypeError that names what is valid."""

from __future__ import annotations

import pytest
import torch
from conftest import ClassOracle, GaussianOracle
from torch import nn

from diffusion_lib.device import resolve_device
from diffusion_lib.sampling import ddim_step, process_x0, sample, timestep_spacing
from diffusion_lib.schedule import linear_schedule

SCHED = linear_schedule(100)
UNCOND = GaussianOracle(SCHED, 0.0, 1.0)
COND = ClassOracle(SCHED)


def run(model=UNCOND, shape=(2, 3), **kw):
    kw.setdefault("progress", False)
    return sample(model, SCHED, shape, **kw)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (
            dict(sampler="plms"),
            ValueError,
            "unknown sampler 'plms'.*'ddpm', 'ddim', 'naive_strided', 'euler', 'heun', 'dpmpp_2m'",
        ),
        (
            dict(spacing="random"),
            ValueError,
            "unknown spacing 'random'.*'leading', 'linspace', 'trailing'",
        ),
        (dict(variance="learned"), ValueError, "unknown variance 'learned'.*'beta', 'beta_tilde'"),
        (dict(x0_mode="tanh"), ValueError, "unknown x0_mode 'tanh'.*'none', 'clip', 'dynamic'"),
        (dict(steps=0), ValueError, r"steps must be between 1 and T = 100, got 0"),
        (dict(steps=101), ValueError, r"steps must be between 1 and T = 100, got 101"),
        (dict(steps=2.5), TypeError, "steps must be an int"),
        (dict(sampler="ddim", eta=-0.1), ValueError, r"eta must be in \[0, 1\]"),
        (dict(sampler="ddpm", eta=0.5), ValueError,
         "eta does not apply to sampler='ddpm'; it applies to 'ddim'"),
        (dict(seeds=[1, 2, 3]), ValueError, "got 3 seeds for a batch of 2"),
        (dict(seeds=[-1, 2]), ValueError, r"seeds must be integers in \[0, 2\*\*63 - 1\]"),
        (dict(seed=1, seeds=[1, 2]), ValueError, "either `seed`.*or `seeds`"),
        (dict(shape=(2, 5)), None, None),  # a valid call must not raise
        (dict(labels=1), ValueError, "model is unconditional"),
        (dict(guidance_scale=3.0), ValueError, "model is unconditional"),
        (dict(x_T=torch.zeros(3, 3)), ValueError, r"x_T has shape \(3, 3\), expected \(2, 3\)"),
        (dict(shape=(0, 3)), ValueError, r"shape must be \(B, \.\.\.\)"),
        (dict(shape=(4,)), ValueError, r"shape must be \(B, \.\.\.\)"),
    ],
)
def test_sample_bad_arguments(kwargs, error, match):
    if match is None:
        run(**kwargs)  # a valid call must not raise
        return
    with pytest.raises(error, match=match):
        run(**kwargs)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(labels=[0, 5]), ValueError, r"labels must lie in \[0, 3\].*got min 0, max 5"),
        (dict(labels=[0, 1, 2]), ValueError, "got 3 labels for a batch of 2"),
        (dict(labels=[0.5, 1.0]), TypeError, "labels must be integers"),
        (dict(guidance_scale=2.0), ValueError, "needs `labels`"),
        (dict(labels=[0, 1], guidance_scale=2.0, cfg_mode="fast"), ValueError, "unknown cfg_mode"),
    ],
)
def test_conditional_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        run(COND, (2, 1, 2, 2), **kwargs)


def test_shape_the_model_rejects_is_a_value_error():
    conv = nn.Conv2d(1, 1, 3, padding=1)

    class Net(nn.Module):
        null_label = None

        def __init__(self):
            super().__init__()
            self.conv = conv

        def forward(self, x, t, labels=None):
            return self.conv(x)

    with pytest.raises(ValueError, match=r"model rejected an input batch of shape \(2, 3, 8, 8\)"):
        sample(Net(), SCHED, (2, 3, 8, 8), progress=False)


def test_model_returning_wrong_shape_is_a_value_error():
    class Bad(nn.Module):
        null_label = None

        def forward(self, x, t, labels=None):
            return x[:, :1]

    with pytest.raises(ValueError, match="must return ε̂ with the shape of x_t"):
        sample(Bad(), SCHED, (2, 3), progress=False)


def test_step_level_errors():
    with pytest.raises(ValueError, match="unknown x0_mode"):
        process_x0(torch.zeros(1, 2), "soft")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"eta must be in \[0, 1\]"):
        ddim_step(SCHED, torch.zeros(1, 2), 5, torch.zeros(1, 2), None, eta=-1)
    with pytest.raises(ValueError, match="needs `noise`"):
        ddim_step(SCHED, torch.zeros(1, 2), 5, torch.zeros(1, 2), None, eta=0.5)
    with pytest.raises(ValueError, match="unknown spacing"):
        timestep_spacing(100, 10, "even")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("gpu0")
