"""The fast sampling paths: the CUDA-graph step (run without capture on the CPU),
chunked/threaded per-sample noise, and what they must leave unchanged.

The CPU tests prove the static-buffer step computes exactly what the eager loop
computes; capture itself only records the same kernels. The tests marked
``cuda`` run wherever a GPU is present (``benchmarks/cuda_check.sh``).
"""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
from conftest import ClassOracle

from diffusion_lib.device import exact_fp32
from diffusion_lib.exact.oracle import GaussianOracle
from diffusion_lib.pretrained import load_pretrained
from diffusion_lib.sampling import sample, sample_progressive
from diffusion_lib.sampling.graph import StepGraph
from diffusion_lib.sampling.noise import NOISE_BLOCK, SampleNoise
from diffusion_lib.schedule import cosine_schedule, linear_schedule
from diffusion_lib.speed import AutocastModel

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CONFIGS = [
    dict(sampler="ddpm", steps=25),
    dict(sampler="ddpm", steps=25, variance="beta", x0_mode="dynamic"),
    dict(sampler="ddpm", steps=1),
    dict(sampler="ddim", steps=20),
    dict(sampler="ddim", steps=20, eta=0.6, x0_mode="none", spacing="trailing"),
    dict(sampler="ddim", steps=12, labels=[0, 1, 2, 1, 0], guidance_scale=3.0),
    dict(sampler="ddpm", steps=12, labels=2, guidance_scale=2.0, cfg_mode="two_pass"),
]


@pytest.fixture(scope="module")
def oracle():
    schedule = cosine_schedule(1000)
    return ClassOracle(schedule), schedule


@pytest.mark.parametrize("kw", CONFIGS, ids=lambda kw: "-".join(f"{v}" for v in kw.values()))
def test_graph_step_is_bit_identical_to_eager_loop(oracle, kw):
    model, schedule = oracle
    eager = sample(model, schedule, (5, 1, 4, 4), seed=3, progress=False, **kw)
    graphed = sample(model, schedule, (5, 1, 4, 4), seed=3, progress=False, cuda_graph=True, **kw)
    assert torch.equal(eager, graphed)


def test_graph_step_on_the_shipped_unet_is_bit_identical():
    model, schedule = load_pretrained("digits", device="cpu")
    kw = dict(sampler="ddpm", steps=8, labels=[3, 10, 5], seed=0, progress=False)
    assert torch.equal(
        sample(model, schedule, (3, 1, 8, 8), **kw),
        sample(model, schedule, (3, 1, 8, 8), cuda_graph=True, **kw),
    )


def test_graph_progressive_steps_are_copies_with_the_eager_values(oracle):
    model, schedule = oracle
    kw = dict(sampler="ddpm", steps=6, seed=1, progress=False, labels=1, guidance_scale=2.0)
    eager = list(sample_progressive(model, schedule, (4, 1, 4, 4), **kw))
    seen = []
    graphed = list(
        sample_progressive(
            model, schedule, (4, 1, 4, 4), cuda_graph=True, callback=seen.append, **kw
        )
    )
    assert [s.t for s in graphed] == [s.t for s in eager] and len(seen) == 6
    for a, b in zip(eager, graphed, strict=True):
        for name in ("x_t", "x0", "eps", "x_prev"):
            assert torch.equal(getattr(a, name), getattr(b, name)), name
    # kept steps are not overwritten by later ones
    assert not torch.equal(graphed[0].x_t, graphed[1].x_t)
    assert torch.equal(graphed[0].x_prev, graphed[1].x_t)


def test_graph_step_is_right_not_just_repeatable():
    # the exact Gaussian oracle: DDIM-50 through the graph step keeps the data mean
    schedule = linear_schedule(1000)
    model = GaussianOracle(schedule, mean=0.3, std=0.2)
    x = sample(
        model,
        schedule,
        (4000, 1),
        sampler="ddim",
        steps=50,
        x0_mode="none",
        seed=0,
        progress=False,
        cuda_graph=True,
    )
    assert abs(x.mean().item() - 0.3) < 0.01


@pytest.mark.parametrize("graph", [False, True], ids=["eager", "graph"])
@pytest.mark.parametrize("kw", CONFIGS[:6], ids=lambda kw: "-".join(f"{v}" for v in kw.values()))
def test_no_step_reads_a_tensor_back_to_the_host(graph, kw):
    # Meta tensors have shapes but no data: any .item(), int(t), bool(t) or .cpu() raises.
    # The same reads are host-device synchronisations on a GPU (and break CUDA-graph
    # capture), so every step running here on "meta" means none happens in the loop.
    model, schedule = load_pretrained("digits", device="cpu")
    meta = copy.deepcopy(model).to("meta")
    kw = {**kw, "labels": [0, 1, 2, 1, 0]} if "labels" in kw or graph else kw
    steps = sample_progressive(
        meta,
        schedule,
        (5, 1, 8, 8),
        seed=0,
        progress=False,
        device="meta",
        cuda_graph=graph,
        _copy_steps=False,
        **kw,
    )
    n = kw["steps"]
    done = list(itertools.islice(steps, n))  # all steps; the final NaN check is not a step
    steps.close()
    assert len(done) == n and done[-1].x_prev.device.type == "meta"


def test_naive_strided_refuses_the_graph(oracle):
    model, schedule = oracle
    with pytest.raises(ValueError, match="'ddpm' and 'ddim'"):
        sample(model, schedule, (2, 1, 4, 4), sampler="naive_strided", steps=10, cuda_graph=True)


def test_step_graph_bad_use():
    with pytest.raises(ValueError, match="CUDA device"):
        StepGraph(lambda x, i, z: (x, x, x), torch.zeros(2, 3), 1, False, capture=True)
    g = StepGraph(lambda x, i, z: (x + 1, x, x), torch.zeros(2, 3), 1, uses_noise=False)
    with pytest.raises(ValueError, match="uses_noise=False"):
        g.step(torch.zeros(2, 3))


def test_step_graph_advances_its_buffers():
    seen = []

    def step(x, i, z):
        seen.append(i.clone())
        return x + z, x, z

    g = StepGraph(step, torch.zeros(2, 1), first_index=2, uses_noise=True)
    for k in range(3):
        g.step(torch.full((2, 1), float(k + 1)))
    assert g.x.flatten().tolist() == [6.0, 6.0]
    assert [int(i[0]) for i in seen] == [2, 1, 0] and g.index.tolist() == [-1, -1]


# ------------------------------------------------------------------- noise
@pytest.mark.parametrize("shape", [(1, 8, 8), (2,), (3, 5)])
def test_chunked_threaded_noise_equals_the_block_stream(shape):
    seeds = [11, 3, 900, 5, 6, 7, 8]
    ref = SampleNoise(seeds, shape, chunk=NOISE_BLOCK, workers=0)
    fast = SampleNoise(seeds, shape, chunk=4 * NOISE_BLOCK, workers=3)
    assert torch.equal(ref.initial(), fast.initial())
    for _ in range(5 * NOISE_BLOCK + 7):  # across several chunks
        assert torch.equal(ref.next(), fast.next())
    fast.close()


def test_automatic_chunk_respects_total_and_memory():
    assert SampleNoise([0], (2,), total=20).chunk == 2 * NOISE_BLOCK
    assert SampleNoise([0], (2,)).chunk == 16 * NOISE_BLOCK
    big = SampleNoise(list(range(64)), (3, 256, 256))  # 50 MB per block: one block
    assert big.chunk == NOISE_BLOCK


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(chunk=24), "multiple of NOISE_BLOCK"),
        (dict(chunk=0), "multiple of NOISE_BLOCK"),
        (dict(workers=-1), "workers must be an int >= 0"),
        (dict(workers=1.5), "workers must be an int >= 0"),
    ],
)
def test_noise_bad_settings(kw, match):
    with pytest.raises(ValueError, match=match):
        SampleNoise([0, 1], (2,), **kw)


# ------------------------------------------------------- labels, autocast
def test_unet_checks_cpu_labels_in_forward():
    model, _ = load_pretrained("digits", device="cpu")
    with pytest.raises(ValueError, match="null label"):
        model(torch.zeros(2, 1, 8, 8), torch.tensor([1, 2]), torch.tensor([3, 11]))


def test_sampler_checks_labels_once_before_the_device():
    model, schedule = load_pretrained("digits", device="cpu")
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\]"):
        sample(model, schedule, (2, 1, 8, 8), labels=[1, 12], steps=2, cuda_graph=True)


def test_autocast_graph_step_matches_autocast_eager():
    model, schedule = load_pretrained("digits", device="cpu")
    fast = AutocastModel(model, "bf16", device_type="cpu")
    kw = dict(sampler="ddim", steps=5, labels=[1, 2], guidance_scale=2.0, seed=0, progress=False)
    assert torch.equal(
        sample(fast, schedule, (2, 1, 8, 8), **kw),
        sample(fast, schedule, (2, 1, 8, 8), cuda_graph=True, **kw),
    )


def test_graph_loop_names_the_step_of_a_nan():
    schedule = linear_schedule(50)

    def broken(x, t, labels=None):
        return x * float("nan")

    with pytest.raises(FloatingPointError, match=r"NaN/inf at step 0 of 5 \(t = 49\)"):
        sample(broken, schedule, (2, 3), steps=5, cuda_graph=True, progress=False)


# ------------------------------------------------------------------- CUDA
@cuda
@pytest.mark.parametrize("kw", CONFIGS[:6], ids=lambda kw: "-".join(f"{v}" for v in kw.values()))
def test_cuda_graph_matches_eager_on_cuda(kw):
    model, schedule = load_pretrained("digits", device="cuda")
    shape = (5, 1, 8, 8)
    eager = sample(model, schedule, shape, seed=3, progress=False, **kw)
    graphed = sample(model, schedule, shape, seed=3, progress=False, cuda_graph=True, **kw)
    # the graph replays the kernels eager mode launched: equal up to nondeterministic reductions
    assert (eager - graphed).abs().max().item() < 1e-4


def test_exact_fp32_turns_tf32_off_and_restores_it_even_after_an_error():
    before = (
        torch.backends.cudnn.allow_tf32,
        torch.backends.cuda.matmul.allow_tf32,
        torch.get_float32_matmul_precision(),
    )
    torch.backends.cudnn.allow_tf32 = True
    try:
        with pytest.raises(KeyError), exact_fp32():
            assert not torch.backends.cudnn.allow_tf32
            assert not torch.backends.cuda.matmul.allow_tf32
            assert torch.get_float32_matmul_precision() == "highest"
            raise KeyError("inside")
        assert torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32 = before[0]
        torch.backends.cuda.matmul.allow_tf32 = before[1]
        torch.set_float32_matmul_precision(before[2])


@cuda
def test_cuda_identities_of_notebooks_04_and_05_hold_in_exact_fp32():
    # on an H100 both failed atol 1e-4 with torch's default TF32 convolutions (2026-11-27)
    model, schedule = load_pretrained("digits", device="cuda")
    shape, labels = (10, 1, 8, 8), torch.arange(10)
    x_T = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    with exact_fp32():
        ddim = sample(
            model,
            schedule,
            shape,
            sampler="ddim",
            eta=1.0,
            steps=25,
            x_T=x_T,
            labels=labels,
            seed=2,
            progress=False,
        )
        ddpm = sample(
            model, schedule, shape, steps=25, x_T=x_T, labels=labels, seed=2, progress=False
        )
        two, one = (
            sample(
                model,
                schedule,
                (100, 1, 8, 8),
                labels=torch.arange(100) % 10,
                guidance_scale=3.0,
                cfg_mode=mode,
                seed=0,
                sampler="ddim",
                steps=25,
                progress=False,
            )
            for mode in ("two_pass", "batched")
        )
    assert (ddim - ddpm).abs().max().item() < 1e-4
    assert (two - one).abs().max().item() < 1e-4


@cuda
def test_cuda_loop_never_synchronises_after_the_first_step():
    model, schedule = load_pretrained("digits", device="cuda")
    for graph in (False, True):
        steps = sample_progressive(
            model,
            schedule,
            (64, 1, 8, 8),
            sampler="ddpm",
            steps=40,
            seed=0,
            progress=False,
            cuda_graph=graph,
            labels=3,
            guidance_scale=3.0,
            _copy_steps=False,
        )
        next(steps)
        torch.cuda.set_sync_debug_mode("error")
        try:
            for _ in range(30):
                next(steps)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        steps.close()


@cuda
def test_cuda_and_cpu_start_from_the_same_noise():
    cpu = SampleNoise([1, 2, 3], (1, 8, 8), "cpu")
    gpu = SampleNoise([1, 2, 3], (1, 8, 8), "cuda")
    assert torch.equal(cpu.initial(), gpu.initial().cpu())
    for _ in range(40):
        assert torch.equal(cpu.next(), gpu.next().cpu())
    gpu.close()


@cuda
def test_cuda_bf16_and_compile_with_graph_stay_close():
    from diffusion_lib.speed import compile_model

    model, schedule = load_pretrained("digits", device="cuda")
    shape = (16, 1, 8, 8)
    kw = dict(sampler="ddim", steps=20, seed=0, progress=False)
    ref = sample(model, schedule, shape, **kw)
    fast = AutocastModel(model, "bf16", check_finite=False)
    bf16 = sample(fast, schedule, shape, cuda_graph=True, **kw)
    assert (bf16 - ref).abs().mean().item() < 0.05
    compiled, status = compile_model(
        model, (torch.zeros(shape, device="cuda"), torch.zeros(16, dtype=torch.long, device="cuda"))
    )
    if status == "compiled":
        out = sample(compiled, schedule, shape, cuda_graph=True, **kw)
        assert (out - ref).abs().max().item() < 1e-2


def test_generate_cli_cuda_graph_changes_no_image(tmp_path):
    from diffusion_lib.cli import main
    from diffusion_lib.generate import file_name

    common = [
        "generate",
        "--model",
        "digits",
        "-n",
        "7",
        "--steps",
        "4",
        "--labels",
        "0-9",
        "--guidance",
        "2",
        "--no-progress",
        "--threads",
        "1",
    ]
    assert main([*common, "--batch-size", "3", "--out", str(tmp_path / "a")]) == 0
    assert main([*common, "--batch-size", "5", "--cuda-graph", "--out", str(tmp_path / "b")]) == 0
    for k in range(7):
        name = file_name(k, 7)
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_generate_bf16_is_a_recorded_setting_and_old_runs_still_resume(tmp_path):
    import json

    from diffusion_lib.cli import main
    from diffusion_lib.generate import file_name

    common = [
        "generate",
        "--model",
        "digits",
        "-n",
        "4",
        "--steps",
        "4",
        "--labels",
        "3",
        "--no-progress",
        "--threads",
        "1",
    ]
    assert main([*common, "--precision", "bf16", "--out", str(tmp_path / "bf16")]) == 0
    assert json.loads((tmp_path / "bf16" / "run.json").read_text())["precision"] == "bf16"
    assert main([*common, "--out", str(tmp_path / "bf16")]) == 2  # fp32 into a bf16 run

    # a run.json written before `precision` existed means fp32: it resumes
    old = tmp_path / "old"
    assert main([*common, "--indices", "0:2", "--out", str(old)]) == 0
    settings = json.loads((old / "run.json").read_text())
    del settings["precision"]
    (old / "run.json").write_text(json.dumps(settings))
    assert main([*common, "--out", str(old)]) == 0
    assert all((old / file_name(k, 4)).exists() for k in range(4))


def test_deterministic_samplers_start_no_noise_workers():
    idle = SampleNoise([0, 1], (2,), "meta", total=0, workers=3)
    assert idle.workers == 0 and idle._pool is None
    idle.initial()
    assert idle.next().shape == (2, 2)  # still works, drawn on demand
    busy = SampleNoise([0, 1], (2,), "meta", total=40, workers=3)
    assert busy.workers == 2
    busy.close()
