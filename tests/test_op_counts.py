"""The sampler's hot path, counted: the aten operators of one eager DDPM and DDIM step.

A step of the shipped 8×8 UNet on a GPU is bound by kernel launches, so every operator the
sampler adds to a step costs time there (docs/speed.md). These tests pin the sampler's
own operators per step (a model that returns a cached zero tensor adds none) to exact
numbers: counted, not timed, so they are deterministic on any machine.
"""

from __future__ import annotations

import pytest

from diffusion_lib.bench.opcount import DDIM, DDPM, FreeModel, library_steps, step_ops
from diffusion_lib.schedule import linear_schedule

PINNED = {"ddpm": 19, "ddim": 16}
"""Operators of one steady eager step (bench's settings: DDPM σ² = β with x̂0 clipped over
1,000 steps; DDIM-50 with the defaults), the model's excluded. Before the coefficient table,
the cheaper finite check and the precomputed σ they were 36 and 31."""

SETTINGS = {"ddpm": DDPM, "ddim": DDIM}
HOW_TO_UPDATE = (
    "If the change is intended (the samples must stay bit-identical on the CPU unless it is "
    "meant to move them), set PINNED[{name!r}] = {got} in tests/test_op_counts.py and say why; "
    "`python -m diffusion_lib bench` reports these counts for every loop."
)


def sampler_ops(name: str):
    schedule = linear_schedule(1000)
    return step_ops(library_steps(FreeModel(), schedule, (2, 1, 4, 4), **SETTINGS[name]))


@pytest.mark.parametrize("name", PINNED)
def test_one_eager_step_dispatches_the_pinned_number_of_operators(name):
    ops = sampler_ops(name)
    got = sum(ops.values())
    assert got == PINNED[name], (
        f"one eager {name} step now dispatches {got} aten operators of its own, pinned at "
        f"{PINNED[name]} ({dict(sorted(ops.items()))}). " + HOW_TO_UPDATE.format(name=name, got=got)
    )


def test_the_count_is_deterministic_and_reads_the_host_once():
    first, second = sampler_ops("ddpm"), sampler_ops("ddpm")
    assert first == second
    # one host read per step on a CPU: the finite check (none on an accelerator)
    assert first["_local_scalar_dense"] == 1


def test_a_model_adds_its_own_operators_and_nothing_else():
    class OneOp(FreeModel):
        def __call__(self, x_t, t, labels=None):
            return x_t * 0  # one operator

    schedule = linear_schedule(1000)
    ops = step_ops(library_steps(OneOp(), schedule, (2, 1, 4, 4), **DDPM))
    assert sum(ops.values()) == PINNED["ddpm"] + 1
