"""Every bad argument raises a ValueError/TypeError that names what is valid."""

from __future__ import annotations

import pytest
import torch
from conftest import ClassOracle
from torch import nn

from diffusion_lib.device import resolve_device
from diffusion_lib.exact.oracle import GaussianOracle
from diffusion_lib.sampling import ddim_step, process_x0, sample, timestep_spacing
from diffusion_lib.schedule import linear_schedule

SCHED = linear_schedule(100)
UNCOND = GaussianOracle(SCHED, 0.0, 1.0)
COND = dict(model=ClassOracle(SCHED))  # classes 0, 1, 2; null label 3
GUIDED = dict(COND, labels=[0, 1])


def run(model=UNCOND, shape=(2, 3), **kw):
    kw.setdefault("progress", False)
    return sample(model, SCHED, shape, **kw)


# The one table of bad arguments to sample(): (kwargs of run(), error, message).
BAD_ARGUMENTS = [
    # choices
    (
        dict(sampler="plms"),
        ValueError,
        "unknown sampler 'plms'.*'ddpm', 'ddim', 'naive_strided', 'euler', 'heun', 'dpmpp_2m', "
        "'edm'",
    ),
    (
        dict(spacing="random"),
        ValueError,
        "unknown spacing 'random'.*'leading', 'linspace', 'trailing'",
    ),
    (dict(variance="learned"), ValueError, "unknown variance 'learned'.*'beta', 'beta_tilde'"),
    (dict(x0_mode="tanh"), ValueError, "unknown x0_mode 'tanh'.*'none', 'clip', 'dynamic'"),
    (dict(final_alpha="zero"), ValueError, "unknown final_alpha"),
    (dict(GUIDED, guidance_scale=2.0, cfg_mode="fast"), ValueError, "unknown cfg_mode"),
    # steps
    (dict(steps=0), ValueError, r"steps must be between 1 and T = 100, got 0"),
    (dict(steps=101), ValueError, r"steps must be between 1 and T = 100, got 101"),
    (dict(steps=2.5), TypeError, "steps must be an int"),
    (dict(steps=10.0), TypeError, "steps must be an int"),
    (dict(steps="10"), TypeError, "steps must be an int"),
    # η: a number in [0, 1], for DDIM only
    (dict(sampler="ddim", eta=-0.1), ValueError, r"eta must be in \[0, 1\]"),
    (dict(sampler="ddim", eta=1.0001), ValueError, r"eta must be in \[0, 1\]"),
    (dict(sampler="ddim", eta=5), ValueError, r"eta must be in \[0, 1\]"),
    (dict(sampler="ddim", eta=float("inf")), ValueError, r"eta must be in \[0, 1\]"),
    (dict(sampler="ddim", eta=float("nan")), ValueError, r"eta must be in \[0, 1\]"),
    (dict(sampler="ddim", eta="0.5"), TypeError, "eta must be a number in"),
    (
        dict(sampler="ddpm", eta=0.5),
        ValueError,
        "eta does not apply to sampler='ddpm'; it applies to 'ddim'",
    ),
    # EDM's churn options: numbers in their range, for sampler="edm" only
    (dict(sampler="edm", s_churn=-1.0), ValueError, "s_churn must be a finite number >= 0"),
    (dict(sampler="edm", s_churn=float("inf")), ValueError, "s_churn must be a finite number"),
    (dict(sampler="edm", s_churn=float("nan")), ValueError, "s_churn must be a finite number"),
    (dict(sampler="edm", s_churn="10"), TypeError, "s_churn must be a finite number"),
    (dict(sampler="edm", s_churn=True), TypeError, "s_churn must be a finite number"),
    (dict(sampler="edm", s_noise=0.0), ValueError, "s_noise must be a finite number > 0"),
    (dict(sampler="edm", s_noise=-1.0), ValueError, "s_noise must be a finite number > 0"),
    (dict(sampler="edm", s_noise=float("inf")), ValueError, "s_noise must be a finite number"),
    (dict(sampler="edm", s_tmin=-0.5), ValueError, "s_tmin must be a finite number >= 0"),
    (dict(sampler="edm", s_tmin=float("inf")), ValueError, "s_tmin must be a finite number"),
    (dict(sampler="edm", s_tmax=-1.0), ValueError, "s_tmax must be a number >= 0 or inf"),
    (dict(sampler="edm", s_tmax=float("nan")), ValueError, "s_tmax must be a number >= 0 or inf"),
    (
        dict(sampler="edm", s_tmin=5.0, s_tmax=1.0),
        ValueError,
        r"s_tmin \(5\) must be <= s_tmax \(1\): EDM churns the steps with σ in",
    ),
    (
        dict(sampler="ddpm", s_churn=1),
        ValueError,
        "s_churn does not apply to sampler='ddpm'; it applies to 'edm'",
    ),
    (
        dict(sampler="heun", s_noise=1.003),
        ValueError,
        "s_noise does not apply to sampler='heun'; it applies to 'edm'",
    ),
    # seeds: integers, never truncated or parsed, one per sample
    (dict(seeds=[1, 2, 3]), ValueError, "got 3 seeds for a batch of 2"),
    (dict(seeds=[-1, 2]), ValueError, r"seeds must be integers in \[0, 2\*\*63 - 1\]"),
    (dict(seed=1, seeds=[1, 2]), ValueError, "either `seed`.*or `seeds`"),
    (dict(seed=1.9), TypeError, "seed must be an integer"),
    (dict(seed="abc"), TypeError, "seed must be an integer"),
    (dict(seed="12"), TypeError, "seed must be an integer"),
    (dict(seeds=[0.7, 1.2]), TypeError, "seeds must be integers"),
    (dict(seeds="ab"), TypeError, "seeds must be a sequence"),
    # guidance scale: a finite number
    (dict(GUIDED, guidance_scale=float("nan")), ValueError, "guidance_scale must be a finite"),
    (dict(GUIDED, guidance_scale=float("inf")), ValueError, "guidance_scale must be a finite"),
    (dict(GUIDED, guidance_scale="abc"), TypeError, "guidance_scale must be a number"),
    (dict(GUIDED, guidance_scale="3"), TypeError, "guidance_scale must be a number"),
    # labels: for a conditional model only, integers in [0, null label], one per sample
    (dict(labels=1), ValueError, "model is unconditional"),
    (dict(guidance_scale=3.0), ValueError, "model is unconditional"),
    (dict(COND, guidance_scale=2.0), ValueError, "needs `labels`"),
    (dict(COND, labels=[0, 5]), ValueError, r"labels must lie in \[0, 3\].*got min 0, max 5"),
    (dict(COND, labels=[0, 1, 2]), ValueError, "got 3 labels for a batch of 2"),
    (dict(COND, labels=[[0, 1], [1, 0]]), ValueError, "got 4 labels for a batch of 2"),
    (dict(COND, labels=[0.5, 1.0]), TypeError, "labels must be integers"),
    (dict(COND, labels="3"), TypeError, "labels must be an int or a sequence"),
    (dict(COND, labels=1.0), TypeError, "labels must be an int or a sequence"),
    # shapes and x_T
    (dict(shape=(0, 3)), ValueError, r"shape must be \(B, \.\.\.\)"),
    (dict(shape=(4,)), ValueError, r"shape must be \(B, \.\.\.\)"),
    (dict(shape=4), TypeError, r"shape must be a sequence \(B, \.\.\.\)"),
    (dict(shape="23"), TypeError, r"shape must be a sequence"),
    (dict(shape=(2, 3.0)), TypeError, "shape must hold ints"),
    (dict(x_T=torch.zeros(3, 3)), ValueError, r"x_T has shape \(3, 3\), expected \(2, 3\)"),
    (dict(x_T=[[0.0] * 3] * 2), TypeError, "x_T must be a tensor"),
]


@pytest.mark.parametrize("kwargs, error, match", BAD_ARGUMENTS)
def test_sample_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        run(**kwargs)


def test_a_valid_call_does_not_raise():
    assert run(shape=(2, 5)).shape == (2, 5)
    assert run(**GUIDED, guidance_scale=2.0, cfg_mode="two_pass").shape == (2, 3)


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
