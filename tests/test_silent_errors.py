"""Input that used to be accepted and give a wrong result, or an error naming the wrong
thing, as classes; each is tried with several hostile values of its class:

- sampling: a guidance_interval outside [0, T − 1] or missing every visited timestep, a
  wrongly shaped output of either guidance call, NaN/inf or integer step_noise, an
  integer/bool/complex x_T or model output, a model that writes into its input, x_T or a
  model on the meta device, the ODE samplers on a T = 1 schedule, a guidance scale whose
  guided ε̂ overflows;
- GenerateConfig fed NumPy scalars;
- messages that name the argument: the schedule constructors, the metrics (NaN features,
  invalid covariances), the interval helpers (z <= 0, float counts), the diffusers adapter
  given the wrong objects (plain stand-ins: diffusers need not be installed).
"""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from diffusion_lib.generate import GenerateConfig, check_settings
from diffusion_lib.generate.rundir import run_settings
from diffusion_lib.interop import DiffusersEpsModel, from_diffusers, schedule_from_diffusers
from diffusion_lib.metrics.estimates import Estimate, differs, wilson_interval
from diffusion_lib.metrics.frechet import frechet_distance, frechet_distance_from_features
from diffusion_lib.metrics.kid import kid
from diffusion_lib.metrics.per_class import binomial_estimate
from diffusion_lib.metrics.toy import sliced_wasserstein, toy_quality
from diffusion_lib.sampling import sample
from diffusion_lib.schedule import (
    NoiseSchedule,
    cosine_schedule,
    linear_schedule,
    make_schedule,
    sigmoid_schedule,
)

SCHED = linear_schedule(100)  # T = 100


class Gaussian(nn.Module):
    """The exact ε̂ of data N(mu, s²): E[ε | x_t] = √(1−ᾱ)(x_t − √ᾱ mu)/(ᾱ s² + 1 − ᾱ)."""

    null_label, num_classes = None, 0

    def __init__(self, mu: float = 0.3, s: float = 0.5):
        super().__init__()
        self.register_buffer("a_bar", SCHED.alphas_cumprod)
        self.mu, self.s = mu, s

    def forward(self, x_t: Tensor, t: Tensor, labels: Tensor | None = None) -> Tensor:
        a = self.a_bar[t].reshape((-1,) + (1,) * (x_t.ndim - 1))
        return (1 - a).sqrt() * (x_t - a.sqrt() * self.mu) / (a * self.s**2 + 1 - a)


class Classes(Gaussian):
    """Class c (0, 1, 2) has data N(means[c], 0.2²); the null label 3 their mean."""

    null_label, num_classes = 3, 3

    def forward(self, x_t: Tensor, t: Tensor, labels: Tensor | None = None) -> Tensor:
        if labels is None:
            labels = torch.full((x_t.shape[0],), 3, dtype=torch.long)
        a = self.a_bar[t].reshape((-1,) + (1,) * (x_t.ndim - 1))
        mu = torch.tensor([-0.5, 0.0, 0.5, 0.0])[labels].reshape(a.shape)
        return (1 - a).sqrt() * (x_t - a.sqrt() * mu) / (a * 0.04 + 1 - a)


UNCOND = Gaussian()
COND = Classes()  # classes 0, 1, 2; null label 3
GUIDED = dict(model=COND, labels=[0, 1], guidance_scale=3.0)


def run(model=UNCOND, shape=(2, 3), **kw):
    kw.setdefault("steps", 10)
    return sample(model, SCHED, shape, seed=0, progress=False, **kw)


# ------------------------------------------------------------ guidance_interval
@pytest.mark.parametrize(
    "interval",
    [(-1, 50), (0, 100), (100, 120), (-100, -1), (5, 10**9), (np.int64(-3), np.int64(4))],
)
def test_a_guidance_interval_outside_the_timesteps_is_refused(interval):
    with pytest.raises(ValueError, match=r"guidance_interval must lie within .*\[0, 99\]"):
        run(**GUIDED, guidance_interval=interval)


@pytest.mark.parametrize(
    "interval, steps", [((0, 8), 10), ((50, 58), 10), ((91, 98), 10), ((1, 98), 1)]
)
def test_a_guidance_interval_that_misses_every_visited_timestep_is_refused(interval, steps):
    # 10 trailing steps visit 9, 19, …, 99; one step visits 99 only
    with pytest.raises(ValueError, match=r"guidance_interval .* holds none of the"):
        run(**GUIDED, guidance_interval=interval, steps=steps)


def test_the_whole_interval_guides_everywhere():
    assert torch.equal(run(**GUIDED, guidance_interval=(0, 99)), run(**GUIDED))


# ------------------------------------------------------------ shapes of guidance outputs
class Shaped(nn.Module):
    """ClassOracle whose conditional or unconditional output is cut to another shape."""

    null_label, num_classes = 3, 3

    def __init__(self, which: str, cut):
        super().__init__()
        self.which, self.cut = which, cut

    def forward(self, x, t, labels=None):
        eps = COND(x, t, labels)
        uncond = labels is None or bool((labels == 3).all())
        return self.cut(eps) if (self.which == "uncond") == uncond else eps


CUTS = {
    "first-row": lambda e: e[:1],
    "one-column": lambda e: e[:, :1],
    "scalar": lambda e: e.mean(),
    "extra-dim": lambda e: e[:, None],
    "transposed": lambda e: e.T,
}


@pytest.mark.parametrize("cut", CUTS.values(), ids=CUTS.keys())
@pytest.mark.parametrize("which", ["uncond", "cond"])
def test_a_wrongly_shaped_two_pass_output_is_an_error_not_a_broadcast(which, cut):
    call = "unconditional call" if which == "uncond" else "conditional call"
    with pytest.raises(ValueError, match=rf"the model \(the {call}.*shape of x_t \(2, 3\)"):
        run(Shaped(which, cut), labels=[0, 1], guidance_scale=3.0, cfg_mode="two_pass")


# ------------------------------------------------------------ step_noise
def _noise_with(bad: float, at: int, count: int = 9) -> torch.Tensor:
    z = torch.randn(count, 2, 3, generator=torch.Generator().manual_seed(0))
    z[at, 1, 2] = bad
    return z


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("form", ["tensor", "list", "callable"])
@pytest.mark.parametrize("at", [0, 4, 8])
def test_non_finite_step_noise_names_step_noise_and_the_step(bad, form, at):
    z = _noise_with(bad, at)
    given = {"tensor": z, "list": list(z), "callable": lambda i: z[i]}[form]
    with pytest.raises(ValueError, match=rf"step_noise gave 1 NaN/inf value\(s\) at step {at}"):
        run(step_noise=given)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool, torch.complex64])
def test_step_noise_of_a_non_float_dtype_is_a_type_error(dtype):
    z = torch.zeros(9, 2, 3, dtype=dtype)
    with pytest.raises(TypeError, match=r"step_noise gave a tensor of dtype .* at step 0"):
        run(step_noise=z)


# ------------------------------------------------------------ dtypes of x_T and of ε̂
BAD_DTYPES = [torch.int64, torch.int32, torch.uint8, torch.bool, torch.complex64]


@pytest.mark.parametrize("dtype", BAD_DTYPES)
@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "euler"])
def test_an_integer_bool_or_complex_x_T_is_a_type_error(dtype, sampler):
    x_T = torch.ones(2, 3).to(dtype)
    with pytest.raises(TypeError, match=r"x_T must be a floating-point tensor.*got dtype"):
        run(x_T=x_T, sampler=sampler)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_a_half_or_double_x_T_is_converted_to_float32(dtype):
    x_T = torch.randn(2, 3, generator=torch.Generator().manual_seed(1)).to(dtype)
    assert torch.equal(run(x_T=x_T), run(x_T=x_T.float()))
    assert x_T.dtype == dtype  # the caller's tensor is not changed


class CastsOutput(nn.Module):
    """Wraps a model and returns its ε̂ cast to ``dtype``."""

    def __init__(self, inner: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.inner, self.dtype = inner, dtype
        self.null_label = getattr(inner, "null_label", None)
        self.num_classes = getattr(inner, "num_classes", 0)

    def forward(self, x, t, labels=None):
        return (self.inner(x, t, labels) * 10).to(self.dtype)


@pytest.mark.parametrize("dtype", BAD_DTYPES)
@pytest.mark.parametrize(
    "setting",
    [
        dict(),
        dict(sampler="ddim"),
        dict(sampler="heun"),
        dict(cuda_graph=True),
        dict(labels=[0, 1], guidance_scale=3.0, cfg_mode="batched"),
        dict(labels=[0, 1], guidance_scale=3.0, cfg_mode="two_pass"),
    ],
    ids=["ddpm", "ddim", "heun", "graph", "batched-cfg", "two-pass-cfg"],
)
def test_an_integer_bool_or_complex_model_output_is_a_type_error(dtype, setting):
    model = CastsOutput(COND if "labels" in setting else UNCOND, dtype)
    with pytest.raises(TypeError, match=rf"returned ε̂ of dtype {dtype}; it must be a floating"):
        run(model, **setting)


# ------------------------------------------------------------ a model that edits its input
class Writes(nn.Module):
    """Wraps a model and then changes x_t in place."""

    def __init__(self, inner: nn.Module, edit):
        super().__init__()
        self.inner, self.edit = inner, edit
        self.null_label = getattr(inner, "null_label", None)
        self.num_classes = getattr(inner, "num_classes", 0)

    def forward(self, x, t, labels=None):
        eps = self.inner(x, t, labels)
        self.edit(x)
        return eps


EDITS = {
    "add_": lambda x: x.add_(1.0),
    "mul_": lambda x: x.mul_(0.5),
    "row": lambda x: x[0].zero_(),
    "one-element": lambda x: x.view(-1)[-1:].fill_(7.0),
    "clamp_": lambda x: x.clamp_(-0.01, 0.01),
}


@pytest.mark.parametrize("edit", EDITS.values(), ids=EDITS.keys())
@pytest.mark.parametrize(
    "setting",
    [
        dict(),
        dict(sampler="ddim", eta=0.5),
        dict(sampler="dpmpp_2m"),
        dict(cuda_graph=True),
        dict(labels=[0, 1], guidance_scale=3.0, cfg_mode="two_pass"),
    ],
    ids=["ddpm", "ddim", "dpmpp_2m", "graph", "two-pass-cfg"],
)
def test_a_model_that_writes_into_its_input_is_refused(edit, setting):
    model = Writes(COND if "labels" in setting else UNCOND, edit)
    with pytest.raises(ValueError, match="the model wrote into its input x_t"):
        run(model, **setting)


# ------------------------------------------------------------ the meta device
def test_x_T_on_the_meta_device_is_named():
    with pytest.raises(ValueError, match="x_T is on the meta device"):
        run(x_T=torch.zeros(2, 3, device="meta"))


def test_a_model_on_the_meta_device_is_named():
    class OnMeta(nn.Module):
        null_label = None

        def __init__(self):
            super().__init__()
            self.net = nn.Linear(3, 3).to("meta")

        def forward(self, x, t, labels=None):
            return self.net(x)

    with pytest.raises(ValueError, match="the model's weights are on the meta device"):
        run(OnMeta())


def test_meta_step_noise_is_named():
    with pytest.raises(ValueError, match="step_noise gave a meta-device tensor"):
        run(step_noise=torch.zeros(9, 2, 3, device="meta"))


# ------------------------------------------------------------ ODE samplers at T = 1
@pytest.mark.parametrize(
    "schedule",
    [NoiseSchedule([0.3]), NoiseSchedule([0.999]), cosine_schedule(1)],
    ids=["b0.3", "b0.999", "cosine1"],
)
@pytest.mark.parametrize("sigma_schedule", ["karras", "uniform"])
def test_the_ode_samplers_on_a_one_step_schedule_equal_ddim(schedule, sigma_schedule):
    seen: list[int] = []

    class Model(nn.Module):
        null_label = None

        def forward(self, x, t, labels=None):
            seen.extend(t.tolist())
            return 0.3 * x

    kw = dict(seed=0, progress=False, x0_mode="none")
    ddim = sample(Model(), schedule, (3, 2), sampler="ddim", **kw)
    for name in ("euler", "heun", "dpmpp_2m"):
        x = sample(Model(), schedule, (3, 2), sampler=name, sigma_schedule=sigma_schedule, **kw)
        torch.testing.assert_close(x, ddim, rtol=1e-5, atol=1e-6)
    assert set(seen) == {0}  # the one timestep there is, never −1


# ------------------------------------------------------------ guidance that overflows
@pytest.mark.parametrize("w", [1e45, 1e300, -1e300])
def test_a_guidance_scale_that_overflows_is_named(w):
    with pytest.raises(FloatingPointError, match=r"guidance_scale .* is too large"):
        run(COND, labels=[0, 1], guidance_scale=w)


# ------------------------------------------------------------ GenerateConfig, NumPy scalars
class Digits(nn.Module):
    null_label, num_classes, sample_shape = 10, 10, (1, 8, 8)

    def forward(self, x, t, labels=None):
        return torch.zeros_like(x)


@pytest.mark.parametrize(
    "py, np_kw",
    [
        (dict(n=4, seed=3), dict(n=np.int64(4), seed=np.int32(3))),
        (
            dict(n=4, steps=7, model_batch=8),
            dict(n=np.int64(4), steps=np.int16(7), model_batch=np.uint8(8)),
        ),
        (
            dict(n=4, sampler="ddim", eta=0.5),
            dict(n=4, sampler=np.str_("ddim"), eta=np.float64(0.5)),
        ),
        (
            dict(n=4, labels=(1, 2), guidance=3),
            dict(n=4, labels=np.array([1, 2]), guidance=np.int64(3)),
        ),
        (
            dict(n=4, labels=(1, 2), guidance=2.5),
            dict(n=4, labels=[np.int64(1), np.int8(2)], guidance=np.float32(2.5)),
        ),
    ],
)
def test_numpy_scalars_in_generate_config_are_their_python_values(py, np_kw):
    plain, numpy = GenerateConfig(**py), GenerateConfig(**np_kw)
    assert plain == numpy
    check_settings(numpy)
    for value in (*vars(numpy).values(), *(numpy.labels or ())):
        assert not isinstance(value, np.generic), vars(numpy)
    settings = [run_settings(c, Digits(), SCHED, "digits", (1, 8, 8)) for c in (plain, numpy)]
    assert json.dumps(settings[0], indent=2) == json.dumps(settings[1], indent=2)


@pytest.mark.parametrize(
    "kw, name",
    [
        (dict(n=np.float64(4.0)), "n must be"),
        (dict(n=np.bool_(True)), "n must be"),
        (dict(n=4, seed=np.float32(1)), "seed must be"),
        (dict(n=4, guidance=np.bool_(True), labels=(1,)), "guidance must be"),
        (dict(n=4, labels=np.array([1.5, 2.0])), "labels must be"),
    ],
)
def test_numpy_values_of_the_wrong_kind_are_refused_by_name(kw, name):
    with pytest.raises(ValueError, match=name):
        check_settings(GenerateConfig(**kw))


# ------------------------------------------------------------ schedules name the argument
@pytest.mark.parametrize(
    "call, named",
    [
        (lambda: cosine_schedule(10, s=-1), "cosine_schedule's s"),
        (lambda: cosine_schedule(10, s=-0.5), "cosine_schedule's s"),
        (lambda: cosine_schedule(10, s=float("nan")), "cosine_schedule's s"),
        (lambda: cosine_schedule(10, s=float("inf")), "cosine_schedule's s"),
        (lambda: cosine_schedule(10, s="0.008"), "cosine_schedule's s"),
        (lambda: cosine_schedule(10, max_beta=0), "cosine_schedule's max_beta"),
        (lambda: cosine_schedule(10, max_beta=1.0), "cosine_schedule's max_beta"),
        (lambda: cosine_schedule(10, max_beta=float("nan")), "cosine_schedule's max_beta"),
        (lambda: linear_schedule(10, beta_start=0.0), "linear_schedule's beta_start"),
        (lambda: linear_schedule(10, beta_start=-1e-4), "linear_schedule's beta_start"),
        (lambda: linear_schedule(10, beta_start=float("nan")), "linear_schedule's beta_start"),
        (lambda: linear_schedule(10, beta_end=float("inf")), "linear_schedule's beta_end"),
        (lambda: linear_schedule(10, beta_end=1.5), "linear_schedule's beta_end"),
        (lambda: linear_schedule(10, beta_end=None), "linear_schedule's beta_end"),
        (lambda: sigmoid_schedule(10, tau=float("nan")), "sigmoid_schedule's tau"),
        (lambda: sigmoid_schedule(10, tau=-1), "sigmoid_schedule's tau"),
        (lambda: sigmoid_schedule(10, start=float("nan")), "sigmoid_schedule's start"),
        (lambda: sigmoid_schedule(10, end=float("inf")), "sigmoid_schedule's end"),
        (lambda: sigmoid_schedule(10, start=3, end=-3), "sigmoid_schedule's end must be greater"),
        (lambda: sigmoid_schedule(10, max_beta=2), "sigmoid_schedule's max_beta"),
        (lambda: make_schedule(["linear"]), "unknown schedule"),
        (lambda: make_schedule(None), "unknown schedule"),
        (lambda: make_schedule("linear", 10**9), "num_timesteps must be a positive int, at most"),
        (lambda: cosine_schedule(2.5), "num_timesteps must be a positive int"),
        (lambda: cosine_schedule(True), "num_timesteps must be a positive int"),
        (lambda: sigmoid_schedule(-3), "num_timesteps must be a positive int"),
    ],
)
def test_schedule_errors_name_the_argument(call, named):
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    assert named in str(info.value), str(info.value)


# ------------------------------------------------------------ metrics name the argument
def _features(n=20, f=3, seed=0):
    return torch.randn(n, f, generator=torch.Generator().manual_seed(seed))


def _poisoned(value: float) -> torch.Tensor:
    x = _features()
    x[3, 1] = value
    return x


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize(
    "call, named",
    [
        (lambda b: frechet_distance_from_features(_poisoned(b), _features(seed=1)), "features1"),
        (lambda b: frechet_distance_from_features(_features(), _poisoned(b)), "features2"),
        (lambda b: kid(_poisoned(b), _features(seed=1)), "features_x"),
        (lambda b: kid(_features(), _poisoned(b)), "features_y"),
        (lambda b: sliced_wasserstein(_poisoned(b)[:, :2], _features()[:, :2]), "x holds"),
        (lambda b: sliced_wasserstein(_features()[:, :2], _poisoned(b)[:, :2]), "y holds"),
        (lambda b: toy_quality(_poisoned(b)[:, :2], "moons"), "samples holds"),
        (
            lambda b: frechet_distance(
                torch.tensor([b, 0.0]), torch.eye(2), torch.zeros(2), torch.eye(2)
            ),
            "mu1",
        ),
        (
            lambda b: frechet_distance(
                torch.zeros(2), torch.eye(2), torch.zeros(2), torch.tensor([[1.0, 0.0], [0.0, b]])
            ),
            "sigma2",
        ),
    ],
    ids=["fd-1", "fd-2", "kid-x", "kid-y", "sw-x", "sw-y", "toy", "fd-mu1", "fd-sigma2"],
)
def test_non_finite_metric_input_is_named(call, named, bad):
    with pytest.raises(ValueError, match=rf"{named}.*NaN/inf"):
        call(bad)


@pytest.mark.parametrize(
    "sigma, named, why",
    [
        (-torch.eye(3), "sigma1", "not positive semi-definite"),
        (torch.diag(torch.tensor([1.0, -0.5, 2.0])), "sigma1", "not positive semi-definite"),
        (
            torch.tensor([[1.0, 0.9, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]),
            "sigma1",
            "not symmetric",
        ),
        (
            torch.tensor([[1.0, 2.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 1.0]]),
            "sigma1",
            "not positive semi-definite",
        ),
    ],
)
@pytest.mark.parametrize("side", [1, 2])
def test_an_invalid_covariance_is_refused_by_name(sigma, named, why, side):
    good, mu = torch.eye(3), torch.zeros(3)
    args = (mu, sigma, mu, good) if side == 1 else (mu, good, mu, sigma)
    with pytest.raises(ValueError, match=f"sigma{side} is {why}"):
        frechet_distance(*args)


def test_valid_covariances_still_give_the_same_distance():
    a, b = _features(200, 4, 0), _features(300, 4, 1) + 0.5
    from diffusion_lib.metrics.frechet import gaussian_stats

    fd = frechet_distance_from_features(a, b)
    assert fd == frechet_distance(*gaussian_stats(a), *gaussian_stats(b)) and fd > 0
    rank_deficient = torch.cat([a[:, :2], a[:, :2]], dim=1)  # singular, eigenvalues ≈ 0
    assert math.isfinite(frechet_distance_from_features(rank_deficient, rank_deficient))


@pytest.mark.parametrize(
    "features",
    [
        torch.zeros(5, 3, dtype=torch.complex64),
        torch.zeros(5, 3, dtype=torch.bool),
        torch.zeros(5, 3, device="meta"),
        [[1.0, 2.0]],
    ],
)
def test_features_of_the_wrong_kind_are_named(features):
    with pytest.raises((TypeError, ValueError), match="features_x"):
        kid(features, _features())


# ------------------------------------------------------------ interval helpers
@pytest.mark.parametrize("z", [0, -1, -2.0, float("nan"), float("inf"), -float("inf")])
def test_a_z_at_or_below_zero_is_named(z):
    with pytest.raises(ValueError, match="z must be a finite number > 0"):
        wilson_interval(3, 10, z)


@pytest.mark.parametrize("level", [0, 1, -0.5, 1.5, 2.0, float("nan"), float("inf")])
@pytest.mark.parametrize(
    "call",
    [
        lambda level: Estimate(1.0, 0.1, 5).interval(level),
        lambda level: Estimate(1.0, 0.1, 5, df=4).half_width(level),
        lambda level: differs(Estimate(1.0, 0.1), Estimate(2.0, 0.1), level),
    ],
    ids=["interval", "half_width", "differs"],
)
def test_a_level_outside_zero_one_is_named(call, level):
    with pytest.raises(ValueError, match=r"level must be in \(0, 1\)"):
        call(level)


@pytest.mark.parametrize("level", ["0.95", None, True, [0.95]])
def test_a_level_that_is_no_number_is_a_type_error(level):
    with pytest.raises(TypeError, match="level must be a number"):
        Estimate(1.0, 0.1).interval(level)


@pytest.mark.parametrize("z", ["2", None, True, [2]])
def test_a_z_that_is_no_number_is_a_type_error(z):
    with pytest.raises(TypeError, match="z must be a number"):
        wilson_interval(3, 10, z)


@pytest.mark.parametrize(
    "successes, n, named",
    [
        (2.5, 10, "successes"),
        (3.0, 10, "successes"),
        (3, 10.0, "n must"),
        (True, 3, "successes"),
        ("3", 10, "successes"),
        (np.float64(3), 10, "successes"),
    ],
)
@pytest.mark.parametrize("call", [wilson_interval, binomial_estimate])
def test_a_count_that_is_no_int_is_named(call, successes, n, named):
    with pytest.raises(TypeError, match=f"{named}"):
        call(successes, n)


def test_integer_counts_of_any_int_type_still_work():
    assert wilson_interval(np.int64(3), 10) == wilson_interval(3, 10)
    assert binomial_estimate(np.int32(3), np.int64(10)) == binomial_estimate(3, 10)


# ------------------------------------------------------------ the diffusers adapter
def _scheduler(a_bar, **config) -> SimpleNamespace:
    return SimpleNamespace(
        alphas_cumprod=torch.as_tensor(a_bar, dtype=torch.float32),
        config={"prediction_type": "epsilon", **config},
    )


A_BAR = torch.cumprod(1 - torch.linspace(1e-3, 0.02, 50), 0)


@pytest.mark.parametrize(
    "scheduler",
    [None, "ddpm", 42, [0.9, 0.8], object(), SimpleNamespace(config="not a mapping")],
    ids=["none", "str", "int", "list", "object", "config-str"],
)
def test_a_scheduler_of_the_wrong_type_is_a_type_error(scheduler):
    with pytest.raises(TypeError, match="scheduler must be a diffusers scheduler"):
        schedule_from_diffusers(scheduler)


def test_a_stand_in_scheduler_needs_no_diffusers():
    schedule = schedule_from_diffusers(_scheduler(A_BAR))
    np.testing.assert_allclose(schedule.alphas_cumprod_f64, A_BAR.double().numpy(), rtol=1e-12)


@pytest.mark.parametrize(
    "a_bar, match",
    [
        (torch.cat([A_BAR[:-1], torch.zeros(1)]), "zero terminal SNR"),
        (torch.cat([A_BAR[:-1], torch.tensor([float("nan")])]), "finite"),
        (A_BAR.reshape(5, 10), "1-D"),
        (torch.tensor([]), "non-empty"),
        (torch.tensor([0.9, 0.95]), "betas it cannot use"),  # ᾱ rises: a negative β
    ],
)
def test_scheduler_values_it_cannot_use_are_named(a_bar, match):
    with pytest.raises(ValueError, match=match):
        schedule_from_diffusers(_scheduler(a_bar))


def test_a_scheduler_without_a_config_is_named():
    with pytest.raises(TypeError, match="has alphas_cumprod but no config mapping"):
        schedule_from_diffusers(SimpleNamespace(alphas_cumprod=A_BAR))


class StandInUNet(nn.Module):
    """What from_diffusers needs of a UNet2DModel: a config and forward(..., class_labels)."""

    def __init__(self, num_class_embeds=None, returns="output"):
        super().__init__()
        self.config = SimpleNamespace(num_class_embeds=num_class_embeds)
        self.scale = nn.Parameter(torch.tensor(0.1))
        self.returns = returns

    def forward(self, x, t, class_labels=None):
        eps = self.scale * x
        return SimpleNamespace(sample=eps) if self.returns == "output" else (eps,)


@pytest.mark.parametrize(
    "unet",
    [None, "unet", 3, lambda x, t: x, torch.zeros(2)],
    ids=["none", "str", "int", "function", "tensor"],
)
def test_a_unet_of_the_wrong_type_is_a_type_error(unet):
    with pytest.raises(TypeError, match="unet must be a diffusers UNet2DModel"):
        from_diffusers(unet, _scheduler(A_BAR))


@pytest.mark.parametrize("null_label", ["3", 3.0, True])
def test_a_null_label_of_the_wrong_type_is_a_type_error(null_label):
    with pytest.raises(TypeError, match="null_label must be an int or None"):
        DiffusersEpsModel(StandInUNet(4), null_label)


def test_a_module_that_is_no_unet_is_not_blamed_on_the_shape():
    model, schedule = from_diffusers(nn.Linear(3, 3), _scheduler(A_BAR))
    with pytest.raises(ValueError, match="the model failed on its first call") as info:
        sample(model, schedule, (2, 3), steps=2, seed=0, progress=False)
    assert "shape` you asked for" not in str(info.value)
    assert "TypeError" in str(info.value)


def test_a_unet_whose_output_has_no_sample_is_named():
    model, schedule = from_diffusers(StandInUNet(returns="tuple"), _scheduler(A_BAR))
    with pytest.raises(ValueError, match=r"\.sample is the ε̂ tensor"):
        sample(model, schedule, (2, 3), steps=2, seed=0, progress=False)


def test_a_class_conditional_unet_without_a_null_label():
    model, schedule = from_diffusers(StandInUNet(num_class_embeds=4), _scheduler(A_BAR))
    kw = dict(steps=2, seed=0, progress=False)
    # without labels: the message says what to pass, not "check the shape"
    with pytest.raises(
        ValueError,
        match=r"class-conditional \(4 class embeddings\): pass "
        r"labels, or from_diffusers\(\.\.\., null_label=K\)",
    ):
        sample(model, schedule, (2, 3), **kw)
    # with labels of its classes it samples (it was called "unconditional" before)
    assert sample(model, schedule, (2, 3), labels=[0, 3], **kw).shape == (2, 3)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\] .*no null label"):
        sample(model, schedule, (2, 3), labels=[0, 4], **kw)
    with pytest.raises(ValueError, match="guidance_scale needs the model's null label"):
        sample(model, schedule, (2, 3), labels=[0, 1], guidance_scale=2.0, **kw)
