"""Classifier-free guidance: the formula, two-pass == batched, the null label."""

from __future__ import annotations

import pytest
import torch
from conftest import ClassOracle

from diffusion_lib.sampling import sample
from diffusion_lib.sampling.guidance import combine, make_eps_fn
from diffusion_lib.schedule import linear_schedule


def test_combine_endpoints():
    u, c = torch.randn(3, 2), torch.randn(3, 2)
    torch.testing.assert_close(combine(u, c, 0.0), u)
    torch.testing.assert_close(combine(u, c, 1.0), c)
    torch.testing.assert_close(combine(u, c, 3.0), u + 3 * (c - u))


def test_two_pass_equals_batched_and_call_counts():
    schedule = linear_schedule(1000)
    model = ClassOracle(schedule)
    x = torch.randn(4, 1, 3, 3)
    t = torch.full((4,), 500)
    y = torch.tensor([0, 1, 2, 0])
    model.calls.clear()
    two = make_eps_fn(model, y, 4.0, "two_pass")(x, t)
    assert model.calls == [4, 4]
    model.calls.clear()
    one = make_eps_fn(model, y, 4.0, "batched")(x, t)
    assert model.calls == [8]
    torch.testing.assert_close(one, two)


def test_two_pass_equals_batched_through_the_whole_loop():
    schedule = linear_schedule(1000)
    model = ClassOracle(schedule)
    kw = dict(labels=[0, 1, 2], guidance_scale=3.0, seed=0, steps=25, progress=False)
    a = sample(model, schedule, (3, 1, 2, 2), cfg_mode="two_pass", **kw)
    b = sample(model, schedule, (3, 1, 2, 2), cfg_mode="batched", **kw)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_scale_one_is_the_conditional_model_and_zero_the_unconditional():
    schedule = linear_schedule(1000)
    model = ClassOracle(schedule)
    kw = dict(seed=1, steps=10, progress=False)
    cond = sample(model, schedule, (3, 1, 2, 2), labels=[0, 1, 2], **kw)
    w1 = sample(model, schedule, (3, 1, 2, 2), labels=[0, 1, 2], guidance_scale=1.0, **kw)
    torch.testing.assert_close(cond, w1, rtol=1e-5, atol=1e-5)
    uncond = sample(model, schedule, (3, 1, 2, 2), **kw)
    w0 = sample(model, schedule, (3, 1, 2, 2), labels=[0, 1, 2], guidance_scale=0.0, **kw)
    torch.testing.assert_close(uncond, w0, rtol=1e-5, atol=1e-5)


def test_zeros_like_is_class_zero_not_unconditional():
    # The chapter's null condition zeros_like(labels) is a real class for integer labels.
    schedule = linear_schedule(1000)
    model = ClassOracle(schedule)
    x, t = torch.randn(2, 1, 2, 2), torch.full((2,), 300)
    labels = torch.tensor([1, 2])
    zeros = model(x, t, torch.zeros_like(labels))
    class0 = model(x, t, torch.tensor([0, 0]))
    null = model(x, t, None)
    torch.testing.assert_close(zeros, class0)
    assert not torch.allclose(zeros, null)


def test_guidance_errors():
    schedule = linear_schedule(100)
    model = ClassOracle(schedule)
    with pytest.raises(ValueError, match="needs `labels`"):
        make_eps_fn(model, None, 3.0)
    with pytest.raises(ValueError, match=r"unknown cfg_mode 'triple'.*batched, two_pass"):
        make_eps_fn(model, torch.tensor([0]), 3.0, "triple")


# ------------------------------------------- guidance rescale and interval
def _steps(**kw):
    from diffusion_lib.sampling import sample_progressive

    schedule = linear_schedule(100)
    return list(
        sample_progressive(
            ClassOracle(schedule),
            schedule,
            (3, 4),
            sampler="ddim",
            steps=10,
            labels=[0, 1, 2],
            guidance_scale=4.0,
            seed=0,
            progress=False,
            **kw,
        )
    )


def test_guidance_rescale_one_gives_the_conditional_scale():
    for step in _steps(guidance_rescale=1.0):
        std = step.model_output.std(dim=1)
        torch.testing.assert_close(std, step.eps_cond.std(dim=1), rtol=1e-4, atol=1e-6)
    plain = _steps()
    zero = _steps(guidance_rescale=0.0)
    assert all(torch.equal(a.x_prev, b.x_prev) for a, b in zip(plain, zero, strict=True))


def test_guidance_interval_guides_only_inside():
    for step in _steps(guidance_interval=(30, 60)):
        if 30 <= step.t <= 60:
            guided = step.eps_uncond + 4.0 * (step.eps_cond - step.eps_uncond)
            torch.testing.assert_close(step.model_output, guided)
        else:
            torch.testing.assert_close(step.model_output, step.eps_cond)


@pytest.mark.parametrize("interval, guided_steps", [((29, 59), [59, 49, 39, 29]), ((49, 49), [49])])
def test_guidance_interval_includes_both_ends(interval, guided_steps):
    # 10 trailing steps at T = 100 visit 9, 19, …, 99: a step exactly at lo or hi is
    # guided (closed [lo, hi]; the paper's (σ_lo, σ_hi] would leave t = lo unguided)
    lo, hi = interval
    guided_at = []
    for step in _steps(guidance_interval=interval):
        guided = step.eps_uncond + 4.0 * (step.eps_cond - step.eps_uncond)
        assert not torch.allclose(guided, step.eps_cond)  # the two cases are told apart
        expected = guided if lo <= step.t <= hi else step.eps_cond
        torch.testing.assert_close(step.model_output, expected)
        if torch.allclose(step.model_output, guided):
            guided_at.append(step.t)
    assert guided_at == guided_steps and lo in guided_at and hi in guided_at


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(guidance_rescale=1.5), r"guidance_rescale must be in \[0, 1\]"),
        (dict(guidance_rescale="x"), "guidance_rescale must be a number"),
        (dict(guidance_interval=(60, 30)), r"guidance_interval must be \(lo, hi\)"),
        (dict(guidance_interval=(0.5, 30)), r"guidance_interval must be \(lo, hi\)"),
    ],
)
def test_bad_guidance_options_are_named(kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        _steps(**kw)
