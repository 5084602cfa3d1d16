"""Per-sample seeds: sample i depends only on its own seed."""

from __future__ import annotations

import pytest
import torch
from conftest import ClassOracle

from diffusion_lib.exact.oracle import GaussianOracle
from diffusion_lib.sampling import sample
from diffusion_lib.sampling.noise import NOISE_BLOCK, SampleNoise, resolve_seeds
from diffusion_lib.schedule import linear_schedule


def test_stream_is_independent_of_batch_composition():
    alone = SampleNoise([7], (3,))
    batch = SampleNoise([1, 7, 9], (3,))
    assert torch.equal(alone.initial()[0], batch.initial()[1])
    for _ in range(2 * NOISE_BLOCK + 3):  # across block boundaries
        assert torch.equal(alone.next()[0], batch.next()[1])


def test_stream_matches_its_documented_definition():
    noise = SampleNoise([5], (2,))
    g = torch.Generator().manual_seed(5)
    assert torch.equal(noise.initial()[0], torch.randn(2, generator=g))
    block = torch.randn((NOISE_BLOCK, 2), generator=g)
    for k in range(NOISE_BLOCK):
        assert torch.equal(noise.next()[0], block[k])


def test_resolve_seeds():
    assert resolve_seeds(3, seed=10) == [10, 11, 12]
    assert resolve_seeds(2, seeds=[4, 2]) == [4, 2]
    torch.manual_seed(0)
    a = resolve_seeds(2)
    torch.manual_seed(0)
    assert resolve_seeds(2) == a


@pytest.mark.parametrize("sampler, steps", [("ddpm", 30), ("ddim", 10), ("naive_strided", 10)])
def test_batch_size_independence(sampler, steps):
    schedule = linear_schedule(1000)
    model = ClassOracle(schedule)
    kw = dict(sampler=sampler, steps=steps, progress=False)
    if sampler == "ddim":
        kw["eta"] = 0.5
    shape = (1, 2, 2)
    full = sample(model, schedule, (8, *shape), seed=100, labels=[i % 3 for i in range(8)], **kw)
    one = sample(model, schedule, (1, *shape), seeds=[105], labels=[5 % 3], **kw)
    three = sample(model, schedule, (3, *shape), seeds=[103, 104, 105], labels=[0, 1, 2], **kw)
    assert torch.equal(full[5], one[0])
    assert torch.equal(full[3:6], three)


def test_chapter_seeding_only_fixes_x_T():
    # The chapter seeds a generator for x_T and then draws every step's z from the global RNG.
    # Same seed, two runs: different samples. Ours: identical.
    schedule = linear_schedule(1000)
    model = GaussianOracle(schedule, 0.0, 0.5)
    gen = torch.Generator().manual_seed(0)
    x_T = torch.randn(4, 2, generator=gen)
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(x_T, torch.randn(4, 2, generator=gen))  # x_T is reproducible...
    a = sample(
        model,
        schedule,
        (4, 2),
        steps=20,
        x_T=x_T,
        seeds=torch.randint(0, 99, (4,)).tolist(),
        progress=False,
    )
    b = sample(
        model,
        schedule,
        (4, 2),
        steps=20,
        x_T=x_T,
        seeds=torch.randint(100, 199, (4,)).tolist(),
        progress=False,
    )
    assert not torch.equal(a, b)  # ...but the samples are not
    c = sample(model, schedule, (4, 2), steps=20, seed=0, progress=False)
    d = sample(model, schedule, (4, 2), steps=20, seed=0, progress=False)
    assert torch.equal(c, d)
