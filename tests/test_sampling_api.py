"""The sampler API an engineer needs, and the bad inputs it must refuse clearly.

Covers issue 11 §3 (noise from outside, mean and σ per step, the model's raw and
guided outputs, the step API by timestep, conventions as options, dtypes) and
the Python-API cases of shared/reviews/reliability-review.md (Appendix B) that
gave a traceback, a misleading message or a silently wrong result.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ClassOracle
from torch import nn

from diffusion_lib import ModelAdapter
from diffusion_lib.exact.oracle import GaussianOracle
from diffusion_lib.sampling import checks as sample_checks
from diffusion_lib.sampling import ddim_step, sample, sample_progressive, sampling_schedule, step_at
from diffusion_lib.sampling.guidance import combine
from diffusion_lib.schedule import linear_schedule

SCHED = linear_schedule(100)
MODEL = GaussianOracle(SCHED, 0.1, 0.5)


def run(model=MODEL, shape=(2, 3), **kw):
    kw.setdefault("seed", 0)
    kw.setdefault("progress", False)
    return sample(model, SCHED, shape, **kw)


# ------------------------------------------------------------ noise from outside
@pytest.mark.parametrize(
    "kw", [dict(sampler="ddpm"), dict(sampler="ddim", eta=0.5), dict(sampler="naive_strided")]
)
@pytest.mark.parametrize("graph", [False, True])
def test_a_run_is_fixed_from_outside_by_x_T_and_step_noise(kw, graph):
    if graph and kw["sampler"] == "naive_strided":
        pytest.skip("the naive sampler has no graph path")
    steps = list(sample_progressive(MODEL, SCHED, (3, 2), steps=10, seed=5, progress=False, **kw))
    x_T = steps[0].x_t
    zs = [s.noise for s in steps if s.noise is not None]
    again = run(shape=(3, 2), steps=10, x_T=x_T, step_noise=zs, seed=999, cuda_graph=graph, **kw)
    assert torch.equal(again, steps[-1].x_prev)
    as_tensor = run(shape=(3, 2), steps=10, x_T=x_T, step_noise=torch.stack(zs), seed=1, **kw)
    as_callable = run(
        shape=(3, 2), steps=10, x_T=x_T, step_noise=lambda i: steps[i].noise, seed=2, **kw
    )
    assert torch.equal(as_tensor, again) and torch.equal(as_callable, again)


def test_step_noise_of_the_wrong_length_or_shape_is_refused():
    with pytest.raises(ValueError, match=r"holds 3 noise tensors; this run adds noise at 9 steps"):
        run(steps=10, step_noise=[torch.zeros(2, 3)] * 3)
    with pytest.raises(ValueError, match=r"step_noise gave \(2, 4\) at step 0, expected \(2, 3\)"):
        run(steps=10, step_noise=lambda i: torch.zeros(2, 4))


# -------------------------------------------------- what each step reports
@pytest.mark.parametrize(
    "kw",
    [
        dict(sampler="ddpm", variance="beta"),
        dict(sampler="ddim"),
        dict(sampler="ddim", eta=1.0),
        dict(sampler="naive_strided"),
    ],
)
def test_every_step_reports_its_mean_and_sigma(kw):
    for step in sample_progressive(MODEL, SCHED, (4, 2), steps=10, seed=0, progress=False, **kw):
        z = step.noise if step.noise is not None else torch.zeros_like(step.x_t)
        torch.testing.assert_close(step.x_prev, step.mean + step.sigma * z, rtol=0, atol=1e-6)
        if step.noise is None:
            assert torch.all(step.sigma == 0)
    assert torch.all(step.sigma == 0) or kw["sampler"] == "naive_strided"  # the last step


def test_guided_steps_report_both_model_outputs():
    schedule = linear_schedule(100)
    model = ClassOracle(schedule)
    for mode in ("batched", "two_pass"):
        for step in sample_progressive(
            model,
            schedule,
            (3, 2),
            steps=5,
            labels=[0, 1, 2],
            guidance_scale=3.0,
            cfg_mode=mode,
            seed=0,
            progress=False,
        ):
            torch.testing.assert_close(
                step.model_output, combine(step.eps_uncond, step.eps_cond, 3.0)
            )
    plain = next(
        sample_progressive(
            model, schedule, (3, 2), steps=5, labels=[0, 1, 2], seed=0, progress=False
        )
    )
    assert plain.eps_cond is None and plain.eps_uncond is None
    assert plain.model_output is not None


def test_model_output_is_raw_and_eps_is_rederived_after_clipping():
    wild = GaussianOracle(SCHED, 3.0, 0.5)  # data far outside [-1, 1]: clipping bites
    step = next(
        sample_progressive(wild, SCHED, (2, 3), sampler="ddim", steps=5, seed=0, progress=False)
    )
    assert not torch.allclose(step.model_output, step.eps)
    raw = next(
        sample_progressive(
            wild, SCHED, (2, 3), sampler="ddim", steps=5, seed=0, rederive_eps=False, progress=False
        )
    )
    torch.testing.assert_close(raw.model_output, raw.eps)


# ------------------------------------------------------------ the step API by t
def test_step_at_a_timestep_equals_the_step_at_its_index():
    walk = sampling_schedule(SCHED, 10)
    x, eps, z = torch.randn(2, 3), torch.randn(2, 3), torch.randn(2, 3)
    for i, t in enumerate(walk.timesteps.tolist()):
        assert walk.index_of(t) == i
        a = step_at(walk, x, t, eps, z, sampler="ddim", eta=0.3)
        b = ddim_step(walk, x, i, eps, z, eta=0.3)
        assert torch.equal(a.x_prev, b.x_prev)
    with pytest.raises(ValueError, match=r"timestep 50 is not one of this schedule's 10"):
        step_at(walk, x, 50, eps)
    with pytest.raises(TypeError, match="timestep must be an int"):
        step_at(walk, x, 9.0, eps)  # type: ignore[arg-type]


def test_final_alpha_first_keeps_the_last_step_on_alpha_zero():
    walk = sampling_schedule(SCHED, 10, "leading")  # 0, 10, …, 90
    one, first = walk.ddim_coefficients(0.0, "one"), walk.ddim_coefficients(0.0, "first")
    assert one.c_x0[0] == 1.0
    assert first.c_x0[0] == pytest.approx(SCHED.alphas_cumprod_f64[0] ** 0.5)
    with pytest.raises(ValueError, match="unknown final_alpha 'zero'"):
        walk.ddim_coefficients(0.0, "zero")  # type: ignore[arg-type]


# ------------------------------------------------------ the model convention
def test_model_adapter_translates_signature():
    net = nn.Linear(3, 3)
    adapter = ModelAdapter(net, lambda m, x, t, y: m(x) * 0 + t[:, None].float(), null_label=None)
    out = adapter(torch.zeros(2, 3), torch.tensor([4, 5]))
    assert out.tolist() == [[4.0] * 3, [5.0] * 3]
    assert list(adapter.parameters())  # the wrapped module's weights are visible


# --------------------------------------------------------------------- dtypes
def test_a_half_precision_model_gets_a_message_about_dtype():
    net = torch.nn.Linear(3, 3).half()

    def model(x, t, labels=None):
        return net(x)

    model.null_label = None
    with pytest.raises(ValueError, match=r"float32.*AutocastModel"):
        run(model=model)


def test_a_half_x_T_is_upcast_and_the_callers_tensor_is_kept():
    x_T = torch.randn(2, 3).half()
    out = run(x_T=x_T, sampler="ddim", steps=5)
    assert out.dtype == torch.float32 and x_T.dtype == torch.float16
    torch.testing.assert_close(out, run(x_T=x_T.float(), sampler="ddim", steps=5))


# -------------------------------------------------- non-finite and shape, per step
class BreaksAt(torch.nn.Module):
    """An oracle that returns NaN/inf (or a new shape) from its ``call``-th call on."""

    null_label = None

    def __init__(self, call: int, what: str) -> None:
        super().__init__()
        self.call, self.what, self.calls = call, what, 0

    def forward(self, x, t, labels=None):
        self.calls += 1
        eps = MODEL(x, t)
        if self.calls < self.call:
            return eps
        if self.what == "shape":
            return eps[:1]
        return eps * float(self.what)


@pytest.mark.parametrize("what", ["nan", "inf"])
@pytest.mark.parametrize(
    "kw",
    [
        dict(sampler="ddpm"),
        dict(sampler="ddim"),
        dict(sampler="ddim", cuda_graph=True),
        dict(sampler="ddpm", cuda_graph=True),
        dict(sampler="naive_strided"),
    ],
)
def test_a_non_finite_model_output_names_its_step(what, kw):
    # step 3 of 10 (0-based): t = 69 on the trailing walk 9, 19, …, 99; the naive
    # sampler walks 90, 80, …, 0
    t = 60 if kw["sampler"] == "naive_strided" else 69
    with pytest.raises(FloatingPointError, match=rf"NaN/inf at step 3 of 10 \(t = {t}\)"):
        run(model=BreaksAt(4, what), steps=10, **kw)


def test_the_deferred_check_of_an_accelerator_names_the_step_too(monkeypatch):
    # off the CPU the check keeps the first bad t on the device and reads it at the end
    real = sample_checks.FiniteWatch.__init__

    def deferred(self, device, timesteps, visit):
        real(self, torch.device("meta"), timesteps, visit)
        self.eager, self.bad = False, torch.full((), -1, dtype=torch.long)

    monkeypatch.setattr(sample_checks.FiniteWatch, "__init__", deferred)
    for graph in (False, True):
        with pytest.raises(FloatingPointError, match=r"NaN/inf at step 3 of 10 \(t = 69\)"):
            run(model=BreaksAt(4, "nan"), steps=10, sampler="ddim", cuda_graph=graph)


def test_a_model_that_changes_its_output_shape_is_caught_at_that_step():
    with pytest.raises(ValueError, match=r"returned shape \(1, 3\) at step 2 \(t = 79\)"):
        run(model=BreaksAt(3, "shape"), steps=10, sampler="ddim")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_a_non_finite_x_T_is_refused(bad):
    x_T = torch.zeros(2, 3)
    x_T[1, 2] = bad
    with pytest.raises(ValueError, match=r"x_T holds 1 NaN/inf value"):
        run(x_T=x_T)


# --------------------------- integer-like arguments; a device or T that disagrees
# (the table of bad arguments to sample() is in tests/test_bad_input.py)
GUIDED = dict(model=ClassOracle(SCHED), labels=[0, 1])


def test_integer_like_labels_and_seeds_are_taken():
    a = run(**GUIDED, seed=np.int64(3))
    b = run(model=GUIDED["model"], labels=np.array([0, 1]), seed=3)
    c = run(model=GUIDED["model"], labels=torch.tensor([0, 1]), seed=None, seeds=[np.int32(3), 4])
    assert torch.equal(a, b) and torch.equal(a, c)
    d = run(model=GUIDED["model"], labels=np.int64(1), seed=3)  # one label, broadcast
    assert torch.equal(d, run(model=GUIDED["model"], labels=[1, 1], seed=3))


def test_a_device_that_disagrees_with_the_model_is_named():
    net = torch.nn.Linear(3, 3)

    def model_fn(x, t, labels=None):
        return net(x)

    class Wrapped(torch.nn.Module):
        null_label = None

        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x, t, labels=None):
            return model_fn(x, t)

    with pytest.raises(
        ValueError,
        match=r"device='meta' was asked but the model's weights are "
        r"on cpu",
    ):
        run(model=Wrapped(), device="meta")


def test_a_schedule_of_another_length_than_the_models_is_refused():
    model = GaussianOracle(SCHED, 0.1, 0.5)
    model.num_timesteps = 1000  # e.g. the shipped models, trained with T = 1000
    with pytest.raises(
        ValueError,
        match=r"trained with T = 1000 timesteps but the schedule has "
        r"T = 100",
    ):
        run(model=model)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_an_absent_device_is_refused_in_one_line():
    from diffusion_lib.pretrained import load_pretrained

    with pytest.raises(ValueError, match="device 'cuda' is not available on this machine"):
        load_pretrained("digits", device="cuda")
    with pytest.raises(ValueError, match="device 'cuda:3' is not available on this machine"):
        run(device="cuda:3")  # a model without weights: the device is checked all the same
