"""The committed benchmark tables (``diffusion_lib/results/``) and the settings chosen from them.

These guard data, not code: a failure here means a table was re-measured or edited and
what was chosen from it (a preset, a default) no longer follows.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

import diffusion_lib.bench.tables as tables
from diffusion_lib.bench.sweeps import paired_difference
from diffusion_lib.bench.tables import read_results
from diffusion_lib.cli import main
from diffusion_lib.cli.generate import PRESETS
from diffusion_lib.metrics import Estimate


def test_preset_recommended_is_the_measured_best_and_is_recorded(tmp_path):
    # the preset's row of the committed table meets the 15 % target at <= 50 calls with its
    # whole interval (95 % Student-t, k − 1 df), has the lowest ratio of the rows that do, is
    # not less varied than DDPM-1000 beyond the interval (its FD is not bought with low
    # variance), and beats DDIM η = 0 seed by seed beyond the interval (paired t-test, k − 1
    # df); a run that names no sampler gets it
    table = read_results("samplers")
    preset = {
        k: getattr(PRESETS["recommended"], k)
        for k in ("sampler", "steps", "spacing", "eta", "variance")
    }
    (row,) = [r for r in table["rows"] if all(r[k] == v for k, v in preset.items())]
    assert row["meets"] == "yes" and row["nfe"] <= 50
    k = len(table["seeds"])
    ratio = Estimate(row["ratio"], row["ratio_se"], k, df=k - 1)
    assert row["ratio_df"] == k - 1 and ratio.interval()[1] <= table["target"]
    assert row["ratio"] == min(r["ratio"] for r in table["rows"] if r["meets"] == "yes")
    ref = table["rows"][0]
    spread = paired_difference(row, ref, key="diversity")
    assert spread.df == k - 1 and spread.interval()[1] > 0
    (ddim,) = [
        r
        for r in table["rows"]
        if r["sampler"] == "ddim"
        and r["eta"] == 0.0
        and r["spacing"] == "trailing"
        and r["steps"] == 50
    ]
    gain = paired_difference(ddim, row)
    assert gain.df == k - 1 and gain.interval()[0] > 0
    common = [
        "generate",
        "--model",
        "digits",
        "-n",
        "2",
        "--labels",
        "3",
        "--no-progress",
        "--threads",
        "1",
    ]
    assert main([*common, "--preset", "recommended", "--out", str(tmp_path / "p")]) == 0
    run = json.loads((tmp_path / "p" / "run.json").read_text())
    assert {k: run[k] for k in preset} == preset
    assert main([*common, "--out", str(tmp_path / "d")]) == 0  # no preset: the same
    run = json.loads((tmp_path / "d" / "run.json").read_text())
    assert {k: run[k] for k in preset} == preset


ROOT = Path(__file__).resolve().parents[2]
# (script, its arguments, the committed table it writes)
DERIVED = [
    ("fewer_steps", [], "fewer_steps"),
    ("fewer_steps", ["--model", "digits_cosine"], "fewer_steps_cosine"),
    ("samplers", [], "samplers"),
    ("guidance", [], "guidance"),
    ("quality", [], "quality"),
]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("script, args, table", DERIVED, ids=[d[2] for d in DERIVED])
def test_committed_intervals_are_what_the_code_derives_from_the_seeds(
    script, args, table, tmp_path, capsys
):
    # every interval and verdict of a committed table is rebuilt from the per-seed values it
    # stores (95 % Student-t, k − 1 df), and nothing else in it changes
    _script(script).main([*args, "--rederive", "--out", str(tmp_path)])
    capsys.readouterr()
    for suffix in (".json", ".md"):
        committed = (tables.RESULTS_DIR / f"{table}{suffix}").read_text()
        assert (tmp_path / f"{table}{suffix}").read_text() == committed, (
            f"{table}{suffix}: run python benchmarks/{script}.py {' '.join(args)} "
            "--rederive --publish"
        )
    payload = json.loads((tmp_path / f"{table}.json").read_text())
    assert all(row["fd_df"] == len(payload["seeds"]) - 1 for row in payload["rows"] if "fd" in row)


def test_rederive_refuses_a_table_whose_se_is_not_its_seeds(tmp_path, monkeypatch, capsys):
    payload = json.loads((tables.RESULTS_DIR / "fewer_steps.json").read_text())
    payload["rows"][1]["fd_se"] *= 0.5  # an edited interval
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "fewer_steps.json").write_text(json.dumps(payload))
    monkeypatch.setattr(tables, "RESULTS_DIR", tmp_path / "in")
    with pytest.raises(ValueError, match="re-measure"):
        _script("fewer_steps").main(["--rederive", "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out" / "fewer_steps.json").exists()
