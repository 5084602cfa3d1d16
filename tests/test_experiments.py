"""The shared experiment helpers behind notebooks 04/05 and benchmarks/."""

from __future__ import annotations

import pytest
import torch

from diffusion_lib.bench.sweeps import (
    SamplerSetting,
    guidance_sweep,
    paired_difference,
    sampler_grid,
)
from diffusion_lib.bench.tables import markdown_table, read_results
from diffusion_lib.metrics import DigitsQuality, over_seeds
from diffusion_lib.pretrained import load_pretrained


@pytest.fixture(scope="module")
def digits():
    return load_pretrained("digits")


def test_setting_names_and_kwargs():
    assert SamplerSetting("ddim", 50, eta=0.5).name == "DDIM η=0.5"
    assert SamplerSetting("ddpm", 10, variance="beta").name == "DDPM σ²=β"
    assert SamplerSetting("naive_strided", 25).kwargs() == {"sampler": "naive_strided", "steps": 25}
    assert SamplerSetting("ddim", 5, eta=1.0).kwargs()["eta"] == 1.0


def test_sampler_grid_rows(digits):
    model, schedule = digits
    rows = sampler_grid(model, schedule, [SamplerSetting("ddim", 3)], n=20)
    (row,) = rows
    assert row["name"] == "DDIM η=0" and row["steps"] == 3 and row["n"] == 20
    assert row["seconds"] > 0 and row["fd"] > 0 and row["fd_floor"] > 0
    assert 0.0 <= row["accuracy"] <= 1.0


def test_several_seeds_average_each_column_and_keep_the_values(digits):
    model, schedule = digits
    settings = [SamplerSetting("ddim", 2), SamplerSetting("ddpm", 2)]
    one = [sampler_grid(model, schedule, settings, n=20, seed=s) for s in (4, 5)]
    (a, b) = sampler_grid(model, schedule, settings, n=20, seed=[4, 5])
    assert a["seeds"] == [4, 5] and "seed" not in a
    assert a["fd_seeds"] == [one[0][0]["fd"], one[1][0]["fd"]]
    assert a["fd"] == sum(a["fd_seeds"]) / 2 and a["fd_se"] == over_seeds(a["fd_seeds"]).se
    assert a["fd_df"] == 1 and a["accuracy_df"] == 1  # k − 1: Student-t intervals
    assert a["fd_floor"] == one[0][0]["fd_floor"]  # depends on n and the classes only
    diff = paired_difference(b, a)
    assert (
        diff.value
        == (b["fd_seeds"][0] - a["fd_seeds"][0] + b["fd_seeds"][1] - a["fd_seeds"][1]) / 2
        and diff.n == 2
        and diff.df == 1
    )
    with pytest.raises(ValueError, match="same >= 2 seeds"):
        paired_difference(b, one[0][0])
    with pytest.raises(ValueError, match="distinct ints"):
        sampler_grid(model, schedule, settings, n=20, seed=[1, 1])


def test_seeds_draw_disjoint_noise(digits, monkeypatch):
    import diffusion_lib.bench.sweeps as sweeps

    seen = []

    def fake(model, schedule, shape, **kwargs):
        seen.append(kwargs["seeds"])
        return torch.zeros(shape), 1.0

    monkeypatch.setattr(sweeps, "_timed_sample", fake)
    monkeypatch.setattr(
        sweeps,
        "digits_quality",
        lambda *a, **k: DigitsQuality(
            n=3,
            fd=1.0,
            fd_floor=1.0,
            fd_ratio=1.0,
            accuracy=1.0,
            diversity=1.0,
            diversity_real=1.0,
            class_histogram=[0] * 10,
        ),
    )
    model, schedule = digits
    sampler_grid(model, schedule, [SamplerSetting("ddim", 2)], n=3, seed=[0, 1, 2])
    assert seen == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]  # seed s: s·n … s·n + n − 1


def test_guidance_sweep_rows_and_grids(digits):
    model, schedule = digits
    rows, grids = guidance_sweep(model, schedule, [0.0, 2.0], n=20, sampler="ddim", steps=3)
    assert [r["w"] for r in rows] == [0.0, 2.0]
    assert set(grids) == {0.0, 2.0} and grids[2.0].shape == (20, 1, 8, 8)
    assert all(0.0 <= r["saturated"] <= 1.0 for r in rows)


def test_markdown_table_formats_and_marks_missing():
    md = markdown_table([{"a": 1.234, "b": None}], [("a", "A", ".1f"), ("b", "B", ".0%")])
    assert md.splitlines() == ["| A | B |", "|---|---|", "| 1.2 | – |"]


def test_committed_tables_exist_and_cover_the_grid():
    fewer = read_results("fewer_steps")
    assert fewer is not None
    steps = {(r["sampler"], r["steps"]) for r in fewer["rows"]}
    for s in (10, 25, 50, 100, 250):
        assert {("naive_strided", s), ("ddpm", s), ("ddim", s)} <= steps
    assert ("ddpm", 1000) in steps
    guidance = read_results("guidance")
    assert guidance is not None
    # A sampler x w grid: every sampler is swept over the same guidance scales.
    by_sampler: dict[str, list[float]] = {}
    for r in guidance["rows"]:
        by_sampler.setdefault(r["sampler_label"], []).append(r["w"])
    assert len(by_sampler) >= 2, by_sampler.keys()
    assert any("recommended" in label for label in by_sampler)
    for label, ws in by_sampler.items():
        assert ws == [0.0, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0], label
    assert read_results("no_such_table") is None


def test_table_parser_and_provenance():
    from diffusion_lib.bench.tables import provenance, table_parser

    parser = table_parser("A table.\n\nMore.", n=7)
    args = parser.parse_args(["--seeds", "4,5"])
    assert (args.n, args.seeds, args.threads) == (7, [4, 5], 1)
    assert parser.parse_args([]).seeds == [0, 1, 2]
    for bad in ("3", "a,b"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--seeds", bad])
    command, env = provenance("benchmarks/x.py", ["--n", "5"], 2)
    assert command == "python benchmarks/x.py --n 5" and "2 threads" in env and "git " in env
