"""``python -m diffusion_lib bench``: its baseline is the chapter's loop, its table is whole."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from diffusion_lib.bench.chapter_loop import chapter_ddpm_sample
from diffusion_lib.bench.speed import BenchConfig, markdown, run_bench
from diffusion_lib.cli import main
from diffusion_lib.exact.oracle import GaussianOracle
from diffusion_lib.sampling import sample
from diffusion_lib.sampling.noise import SampleNoise
from diffusion_lib.schedule import linear_schedule


def test_chapter_baseline_computes_the_libraries_ddpm_with_beta_variance(monkeypatch):
    # Feed the chapter's loop the noise our per-sample streams would use: with σ² = β
    # and x̂0 clipped it must land where sample(variance="beta") lands.
    chapter = chapter_ddpm_sample
    schedule = linear_schedule(60)
    model = GaussianOracle(schedule, mean=0.4, std=0.3)
    shape, seeds = (6, 2), [4, 8, 15, 16, 23, 42]
    stream = SampleNoise(seeds, shape[1:])
    x_T = stream.initial()
    zs = [stream.next() for _ in range(schedule.num_steps - 1)]
    monkeypatch.setattr(torch, "randn", lambda *a, **k: x_T.clone())
    monkeypatch.setattr(torch, "randn_like", lambda x: zs.pop(0))
    ours_by_chapter = chapter(model, schedule, shape, "cpu")
    monkeypatch.undo()
    assert zs == []
    ours = sample(
        model,
        schedule,
        shape,
        sampler="ddpm",
        variance="beta",
        x0_mode="clip",
        seeds=seeds,
        progress=False,
    )
    assert (ours - ours_by_chapter).abs().max().item() < 1e-5


@pytest.fixture(scope="module")
def tiny_payload():
    cfg = BenchConfig(
        batch_sizes=(4,),
        steps=3,
        repeats=2,
        compile=False,
        generation_sizes=(6, 12),
        generation_steps=2,
        generation_batch=4,
        threads=1,
        device="cpu",
    )
    return run_bench(cfg, log=lambda line: None)


def test_bench_measures_every_variant_and_the_ratios(tiny_payload):
    (batch,) = tiny_payload["batches"]
    names = [r["variant"] for r in batch["rows"]]
    assert names[:4] == ["forward", "chapter", "eager", "graph"]
    assert {"bf16", "channels-last", "cfg two-pass", "cfg batched", "ddim-50"} <= set(names)
    rows = {r["variant"]: r for r in batch["rows"]}
    assert all(len(r["all_seconds"]) == 2 and r["seconds"] > 0 for r in rows.values())
    assert rows["graph"]["max_abs_diff_vs_eager"] == 0.0  # same math on the CPU
    assert 0 < rows["bf16"]["max_abs_diff_vs_eager"] < 0.5
    assert rows["channels-last"]["max_abs_diff_vs_eager"] < 1e-3
    d = batch["derived"]
    seconds = {name: row["seconds"] for name, row in rows.items()}
    assert d["loop_overhead"] == pytest.approx(seconds["eager"] / seconds["forward"])
    assert d["ddpm1000_seconds"] == pytest.approx(rows["eager"]["seconds"] * 1000 / 3)
    assert d["ddim50_speedup"] == pytest.approx(d["ddpm1000_seconds"] / rows["ddim-50"]["seconds"])
    gen = tiny_payload["generation"]
    assert [g["n"] for g in gen] == [6, 12] and [g["files"] for g in gen] == [6, 12]
    assert all(g["peak_rss_mib"] > 50 and g["images_per_s"] > 0 for g in gen)
    json.dumps(tiny_payload)  # the payload is written as JSON


def test_bench_markdown_states_scaling_and_targets(tiny_payload):
    md = markdown(tiny_payload, "python -m diffusion_lib bench --steps 3")
    assert "measured over 3 steps × 333.333" in md
    assert "loop overhead" in md and "target ≤ 1.03" in md
    assert "DDIM-50 vs DDPM-1000" in md and "peak memory 12 vs 6 images" in md
    assert "| graph |" in md and "without capture" in md


def test_bench_times_the_peers_and_counts_the_operators_of_a_step(tiny_payload):
    from test_op_counts import PINNED

    (batch,) = tiny_payload["batches"]
    rows = {r["variant"]: r for r in batch["rows"]}
    md = markdown(tiny_payload, "python -m diffusion_lib bench --steps 3")
    notes = " ".join(batch["peer_notes"])  # one line per peer package that does not import
    assert all(f"- {why}" in md for why in batch["peer_notes"])
    if importlib.util.find_spec("diffusers") is None:
        assert "`import diffusers` failed" in notes and "pip install" in notes
    else:
        peers = {v["peer"]: v for v in batch["peers"]}
        assert set(peers) >= {
            "diffusers DDPM",
            "diffusers DPM-Solver++(2M)-50",
            "diffusers DDIM-50",
        }
        ddpm = peers["diffusers DDPM"]
        assert (ddpm["library"], ddpm["steps"]) == ("eager", 3)  # the eager row's steps
        assert rows["diffusers DDIM-50"]["per_1000_steps"] is None  # a whole 50-step run
        for v in peers.values():
            assert v["ratio"] == pytest.approx(
                rows[v["library"]]["seconds"] / rows[v["peer"]]["seconds"]
            )
        assert "### Against the peers" in md and "| eager | diffusers DDPM | 3 |" in md
    if importlib.util.find_spec("k_diffusion") is None:
        assert "`import k_diffusion` failed" in notes and "- k-diffusion peer not measured" in md
    loops = {r["loop"]: r for r in batch["loop_cost"]}
    assert {"eager", "graph", "ddim-50", "dpmpp_2m-50"} <= set(loops)
    assert (loops["eager"]["steps"], loops["ddim-50"]["steps"]) == (1000, 50)
    assert all(r["ms_per_step"] > 0 for r in loops.values())
    counts = {r["step"]: r for r in batch["op_counts"]["rows"]}
    assert counts["eager"]["ops_sampler"] == PINNED["ddpm"]
    assert counts["ddim-50"]["ops_sampler"] == PINNED["ddim"]
    assert counts["eager"]["ops"] == counts["forward"]["ops"] + PINNED["ddpm"]
    assert "### The loop's own cost" in md and "### Operators per step" in md


@pytest.mark.parametrize(
    "args, message",
    [
        (["--batch-sizes", "0"], "integers >= 1"),
        (["--batch-sizes", "a,b"], "comma-separated integers"),
        (["--repeats", "0"], "--repeats must be >= 1"),
        (["--steps", "1001"], "between 1 and 1000"),
        (["--steps", "64:x"], "batch:count pairs"),
        (["--steps", "64:10", "--batch-sizes", "64,8"], "no count for batch sizes [8]"),
        (["--threads", "0"], "--threads must be an int >= 1"),
    ],
)
def test_bench_cli_bad_arguments(args, message, capsys):
    assert main(["bench", "--no-write", "--generation-sizes", "0", *args]) == 2
    assert message in capsys.readouterr().err


def test_committed_tables_are_rendered_from_their_json():
    from diffusion_lib.bench.speed import render
    from diffusion_lib.bench.tables import RESULTS_DIR

    names = [
        p.stem for p in RESULTS_DIR.glob("*.json") if p.stem == "cpu" or p.stem.startswith("cuda-")
    ]
    assert "cpu" in names  # the deliverable
    for name in names:
        assert (RESULTS_DIR / f"{name}.md").read_text() == render(name), name


def test_bench_cli_writes_json_and_markdown_where_asked(tmp_path, capsys):
    args = [
        "bench",
        "--steps",
        "2",
        "--batch-sizes",
        "2",
        "--repeats",
        "1",
        "--no-compile",
        "--generation-sizes",
        "0",
        "--threads",
        "1",
        "--device",
        "cpu",
        "--out",
        str(tmp_path),
    ]
    assert main(args) == 0
    payload = json.loads((tmp_path / "cpu.json").read_text())
    assert payload["command"] == "python -m diffusion_lib " + " ".join(args)
    assert (tmp_path / "cpu.md").read_text() == markdown(payload, payload["command"])
    assert "## Batch 2: 2 of the 1,000 DDPM steps" in capsys.readouterr().out
