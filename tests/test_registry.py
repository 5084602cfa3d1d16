"""The sampler table: one entry per sampler, every list derived from it, options refused
where they do not apply, and a new sampler added by one entry plus one function."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from diffusion_lib import sample
from diffusion_lib.exact.oracle import GaussianOracle
from diffusion_lib.sampling import SAMPLERS, SamplerSpec, StepOutput, predict_x0_from_eps
from diffusion_lib.sampling.registry import (
    OPTIONS,
    SAMPLER_TABLE,
    Sampler,
    SamplerKind,
    register,
    sampler_kind,
    unregister,
)
from diffusion_lib.sampling.samplers import RECOMMENDED, respaced_plan
from diffusion_lib.schedule import linear_schedule

SCHEDULE = linear_schedule(100)
ORACLE = GaussianOracle(SCHEDULE, 0.2, 0.5)
# a valid value other than the default, for every option
OTHER = dict(
    spacing="leading",
    variance="beta",
    eta=0.5,
    x0_mode="none",
    rederive_eps=False,
    final_alpha="first",
    sigma_schedule="uniform",
    s_churn=5.0,
    s_tmin=0.1,
    s_tmax=50.0,
    s_noise=1.003,
)


def test_the_names_come_from_the_table():
    assert SAMPLERS == tuple(SAMPLER_TABLE)
    assert set(Sampler.__args__) == set(SAMPLER_TABLE)  # the Literal for type checkers agrees
    assert set(OTHER) == set(OPTIONS)
    for kind in SAMPLER_TABLE.values():
        assert kind.options <= set(OPTIONS) and kind.summary


REFUSED = [
    (name, option)
    for name, kind in SAMPLER_TABLE.items()
    for option in OPTIONS
    if option not in kind.options
]


@pytest.mark.parametrize(("sampler", "option"), REFUSED)
def test_an_option_that_does_not_apply_is_refused(sampler, option):
    users = [n for n, k in SAMPLER_TABLE.items() if option in k.options]
    message = f"{option} does not apply to sampler='{sampler}'; it applies to"
    with pytest.raises(ValueError, match=message) as caught:
        sample(
            ORACLE,
            SCHEDULE,
            (2, 3),
            sampler=sampler,
            steps=5,
            progress=False,
            **{option: OTHER[option]},
        )
    assert all(repr(u) in str(caught.value) for u in users)
    with pytest.raises(ValueError, match=message):
        SamplerSpec(sampler, 5, **{option: OTHER[option]})


def test_the_reviewed_silent_cases_are_refused():
    # each of these used to pass silently, with output identical to the call without it
    cases = [
        ("ddim", "variance", "beta"),
        ("heun", "variance", "beta"),
        ("naive_strided", "variance", "beta"),
        ("ddpm", "final_alpha", "first"),
        ("ddpm", "sigma_schedule", "uniform"),
        ("ddpm", "rederive_eps", False),
        ("ddpm", "s_churn", 1),
        ("heun", "s_churn", 1.0),
        ("ddim", "s_noise", 1.007),
    ]
    for sampler, option, value in cases:
        with pytest.raises(ValueError, match=f"{option} does not apply"):
            sample(
                ORACLE,
                SCHEDULE,
                (2, 3),
                sampler=sampler,
                steps=5,
                progress=False,
                **{option: value},
            )


def test_an_option_that_applies_is_taken_and_the_spec_runs_the_same():
    for name, kind in SAMPLER_TABLE.items():
        options = {o: OTHER[o] for o in kind.options if not (o == "x0_mode" and name == "ddpm")}
        spec = SamplerSpec(name, 6, **options)
        assert set(spec.kwargs()) == {"sampler", "steps", *kind.options}
        by_spec = sample(ORACLE, SCHEDULE, (3, 2), seed=1, progress=False, **spec.kwargs())
        by_hand = sample(
            ORACLE, SCHEDULE, (3, 2), sampler=name, steps=6, seed=1, progress=False, **options
        )
        assert torch.equal(by_spec, by_hand), name


def test_one_set_of_defaults():
    from diffusion_lib.bench.sweeps import SamplerSetting
    from diffusion_lib.generate import GenerateConfig

    spec = SamplerSpec()
    config = GenerateConfig(n=1)
    assert config.spec == spec
    assert SamplerSetting() == SamplerSetting(**{f: getattr(spec, f) for f in spec.options()})
    assert SamplerSetting().kwargs() == spec.kwargs()
    # sample() without options runs the default spec
    assert torch.equal(
        sample(ORACLE, SCHEDULE, (2, 2), seed=0, progress=False),
        sample(ORACLE, SCHEDULE, (2, 2), seed=0, progress=False, **spec.kwargs()),
    )
    assert RECOMMENDED.kwargs() == {
        "sampler": "ddpm",
        "steps": 50,
        "spacing": "trailing",
        "variance": "beta",
        "x0_mode": "clip",
    }


def test_cli_refuses_a_flag_that_does_not_apply(capsys, tmp_path):
    from diffusion_lib.cli import main

    out = tmp_path / "run"
    code = main(
        [
            "generate",
            "--model",
            "digits",
            "-n",
            "2",
            "--sampler",
            "ddim",
            "--variance",
            "beta",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert "variance does not apply to sampler='ddim'; it applies to 'ddpm'" in err
    assert not out.exists()


# ------------------------------------------------------------------ a sampler added by one entry
def _ddim_by_hand(sched, x: Tensor, i, eps: Tensor, z, spec) -> StepOutput:
    """DDIM η = 0 written out: x_prev = √ᾱ_prev x̂0 + √(1 − ᾱ_prev) ε̂ (no clipping)."""
    x0 = predict_x0_from_eps(sched, x, i, eps)
    a_prev = float(sched.alphas_cumprod_prev[i])  # ᾱ_{−1} = 1
    x_prev = a_prev**0.5 * x0 + (1 - a_prev) ** 0.5 * eps
    return StepOutput(x_prev, x0, eps, x_prev, torch.zeros(()))


@pytest.fixture
def toy():
    kind = register(
        SamplerKind(
            "toy_ddim",
            "DDIM η = 0 by hand (a test's sampler)",
            respaced_plan,
            frozenset({"spacing"}),
            step=_ddim_by_hand,
        )
    )
    yield kind
    unregister(kind.name)


def test_a_toy_sampler_is_one_entry_and_one_function(toy):
    import diffusion_lib.sampling

    assert "toy_ddim" in diffusion_lib.sampling.SAMPLERS and sampler_kind("toy_ddim") is toy
    x = sample(
        ORACLE,
        SCHEDULE,
        (64, 2),
        sampler="toy_ddim",
        steps=10,
        spacing="leading",
        seed=3,
        progress=False,
    )
    ddim = sample(
        ORACLE,
        SCHEDULE,
        (64, 2),
        sampler="ddim",
        steps=10,
        spacing="leading",
        x0_mode="none",
        seed=3,
        progress=False,
    )
    torch.testing.assert_close(x, ddim, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="variance does not apply to sampler='toy_ddim'"):
        sample(ORACLE, SCHEDULE, (2, 2), sampler="toy_ddim", variance="beta", progress=False)
    with pytest.raises(ValueError, match="cuda_graph=True supports sampler='ddpm' and 'ddim'"):
        sample(ORACLE, SCHEDULE, (2, 2), sampler="toy_ddim", cuda_graph=True, progress=False)
    assert "toy_ddim: DDIM η = 0 by hand" in " ".join(_generate_help().split())


def _generate_help() -> str:
    from diffusion_lib.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return sub.choices["generate"].format_help()


def test_a_sampler_needs_exactly_one_way_to_move():
    with pytest.raises(ValueError, match="exactly one of step= and walk="):
        SamplerKind("broken", "no step", respaced_plan, frozenset())
    with pytest.raises(ValueError, match="unknown options"):
        SamplerKind(
            "broken", "bad option", respaced_plan, frozenset({"temperature"}), step=_ddim_by_hand
        )
    with pytest.raises(ValueError, match="already registered"):
        register(SAMPLER_TABLE["ddpm"])
