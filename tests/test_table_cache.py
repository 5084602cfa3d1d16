"""The per-seed cache behind the long tables: resume, reuse across tables, never stale."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

import diffusion_lib.bench.cache as table_cache
import diffusion_lib.bench.sweeps as sweeps
import diffusion_lib.bench.tables as tables
from diffusion_lib.bench.cache import TableCache, fingerprint, source_hash
from diffusion_lib.bench.sweeps import SamplerSetting, sampler_grid
from diffusion_lib.bench.tables import table_parser
from diffusion_lib.metrics import DigitsQuality, Estimate, load_classifier
from diffusion_lib.pretrained import load_pretrained

ROOT = Path(__file__).resolve().parents[1]


def test_rows_round_trip_and_survive_a_cut_line(tmp_path):
    cache = TableCache(tmp_path / "c.jsonl")
    key = {"setting": {"sampler": "ddpm", "steps": 3}, "seed": 1}
    assert cache.get(key) is None
    cache.put(key, {"fd": 1.5})
    with cache.path.open("a") as f:
        f.write('{"key": {"seed": 2}, "row"')  # a write cut by a kill
    with pytest.warns(table_cache.CacheWarning, match="skipped 1 unreadable line"):
        assert TableCache(cache.path).get(dict(reversed(list(key.items())))) == {"fd": 1.5}
    with pytest.warns(table_cache.CacheWarning):
        assert cache.get({**key, "seed": 2}) is None
    cache.put({**key, "seed": 3}, {"fd": 3.0})  # a line of its own, not glued to the cut one
    with pytest.warns(table_cache.CacheWarning):
        assert TableCache(cache.path).get({**key, "seed": 3}) == {"fd": 3.0}
    TableCache(None).put(key, {"fd": 2.0})  # stores nothing, raises nothing


def test_rows_from_other_library_sources_are_not_reused(tmp_path, monkeypatch):
    cache = TableCache(tmp_path / "c.jsonl")
    cache.put({"seed": 0}, {"fd": 1.0})
    stored = json.loads(cache.path.read_text())
    assert stored["key"]["source"] == source_hash() and len(source_hash()) == 16
    monkeypatch.setattr(table_cache, "source_hash", lambda: "edited-sources")
    assert cache.get({"seed": 0}) is None


def test_fingerprint_follows_the_weights():
    model, schedule = load_pretrained("digits")
    first = fingerprint(model, schedule)
    assert first == fingerprint(model, schedule)
    assert first != fingerprint(model)
    with torch.no_grad():
        next(model.parameters()).add_(1e-3)
    assert fingerprint(model, schedule) != first
    with pytest.raises(TypeError, match="cannot fingerprint str"):
        fingerprint("digits")


def test_sampler_grid_measures_each_setting_and_seed_once(tmp_path, monkeypatch):
    calls = []

    def fake_sample(model, schedule, shape, **kwargs):
        calls.append((kwargs["steps"], kwargs["seeds"][0], kwargs["labels"] is None))
        return torch.zeros(shape), 1.0

    def fake_quality(x, labels, classifier):
        return DigitsQuality(
            n=len(x),
            fd=float(len(calls)),
            fd_floor=1.0,
            fd_ratio=1.0,
            accuracy=None if labels is None else 1.0,
            diversity=1.0,
            diversity_real=1.0,
            class_histogram=[0] * 10,
        )

    monkeypatch.setattr(sweeps, "_timed_sample", fake_sample)
    monkeypatch.setattr(sweeps, "digits_quality", fake_quality)
    model, schedule = load_pretrained("digits")
    cache = TableCache(tmp_path / "c.jsonl")
    clf = load_classifier()
    setting = [SamplerSetting("ddpm", 4)]
    first = sampler_grid(model, schedule, setting, n=3, seed=[0, 1], cache=cache, classifier=clf)
    assert calls == [(4, 0, False), (4, 3, False)]
    key = json.loads(cache.path.read_text().splitlines()[0])["key"]
    assert key["device"] == "cpu" and key["weights"] == fingerprint(model, schedule, clf)
    more = sampler_grid(model, schedule, setting, n=3, seed=[0, 1, 2], cache=cache, classifier=clf)
    assert calls[2:] == [(4, 6, False)]  # only the new seed is sampled
    assert more[0]["fd_seeds"][:2] == first[0]["fd_seeds"]
    sampler_grid(
        model, schedule, setting, n=3, seed=[0, 1], cache=cache, classifier=clf, conditional=False
    )  # unconditional rows are other measurements
    assert calls[3:] == [(4, 0, True), (4, 3, True)]
    uncond = sampler_grid(
        model, schedule, setting, n=3, seed=[0, 1], cache=cache, classifier=clf, conditional=False
    )
    assert len(calls) == 5 and uncond[0]["accuracy"] is None and "accuracy_se" not in uncond[0]


def test_table_parser_cache_argument():
    parser = table_parser("A table.", n=5)
    assert parser.parse_args([]).cache.path == Path(tables.DEFAULT_CACHE)
    assert parser.parse_args(["--cache", "none"]).cache.path is None


BENCHMARK_TABLES = [
    ("fewer_steps", "fewer_steps"),
    ("fewer_steps", "fewer_steps_cosine"),
    ("guidance", "guidance"),
    ("samplers", "samplers"),
    ("quality", "quality"),
    ("guided_limits", "guided_limits"),
]


@pytest.mark.parametrize(("script", "name"), BENCHMARK_TABLES)
def test_committed_tables_re_render_byte_for_byte_from_their_json(script, name):
    spec = importlib.util.spec_from_file_location(script, ROOT / "benchmarks" / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    payload = tables.read_results(name)
    assert module.render(payload) == (tables.RESULTS_DIR / f"{name}.md").read_text()
    assert "--publish" not in payload["command"] and "--out" not in payload["command"]


def test_only_table_parser_scripts_write_tables_and_only_through_publish_table():
    """Every script of benchmarks/ that writes a table does it through publish_table (atomic,
    runs/tables/ unless --publish); none writes into the package's results itself."""
    writers = set()
    for path in sorted((ROOT / "benchmarks").glob("*.py")):
        text = path.read_text()
        assert "RESULTS_DIR" not in text and "write_results" not in text, path.name
        assert ".write_text(" not in text and ".write_bytes(" not in text, path.name
        if "publish_table(" in text:
            assert "table_parser(" in text, path.name
            writers.add(path.stem)
    assert writers == {script for script, _ in BENCHMARK_TABLES}


def _quality_module():
    spec = importlib.util.spec_from_file_location("quality", ROOT / "benchmarks" / "quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quality_bar_verdicts_need_the_whole_interval():
    verdict = _quality_module().verdict
    assert verdict(1.5, 2.9, (0.96, 1.0)) == "pass"
    assert verdict(1.5, 2.9, None) == "pass"
    assert verdict(2.5, 3.2, (0.96, 1.0)) == "undecided"
    assert verdict(1.5, 2.9, (0.93, 0.99)) == "undecided"
    assert verdict(3.1, 3.5, (0.96, 1.0)) == "FAIL"
    assert verdict(1.5, 2.9, (0.90, 0.94)) == "FAIL"


def test_committed_quality_table_has_intervals_and_its_command():
    payload = tables.read_results("quality")
    assert payload is not None and len(payload["seeds"]) >= 3
    assert {row["model"] for row in payload["rows"]} == {"digits", "digits_cosine", "moons"}
    for row in payload["rows"]:
        assert row["ratio_se"] > 0 and len(row["seeds"]) == len(payload["seeds"])
        k = len(payload["seeds"])  # 95 % Student-t interval over the seeds, k − 1 df
        low, high = Estimate(row["ratio"], row["ratio_se"], k, df=k - 1).interval()
        accuracy = (
            (row["accuracy_low"], row["accuracy_high"])
            if row.get("accuracy_low") is not None
            else None
        )
        assert row["bar"] == _quality_module().verdict(low, high, accuracy)
    assert payload["command"].startswith("python benchmarks/quality.py")


def test_quality_and_samplers_tables_share_their_guided_ddpm_1000_row():
    """One measurement, two tables: the cache must have served the same per-seed values."""
    quality, samplers = tables.read_results("quality"), tables.read_results("samplers")
    (guided,) = [r for r in quality["rows"] if r["model"] == "digits" and r["setting"] == "w = 3"]
    reference = samplers["rows"][0]
    assert (reference["sampler"], reference["steps"], samplers["n"]) == ("ddpm", 1000, quality["n"])
    assert samplers["guidance_scale"] == quality["guidance_scale"]
    shared = [s for s in quality["seeds"] if s in samplers["seeds"]]
    assert len(shared) >= 3
    for key in ("fd", "accuracy", "diversity"):
        by_seed = dict(zip(samplers["seeds"], reference[f"{key}_seeds"], strict=True))
        assert [by_seed[s] for s in shared] == [
            v for s, v in zip(quality["seeds"], guided[f"{key}_seeds"], strict=True) if s in shared
        ]


def test_measure_runs_only_on_a_miss(tmp_path):
    cache, runs = TableCache(tmp_path / "c.jsonl"), []

    def run():
        runs.append(1)
        return {"fd": 3.0}

    assert cache.measure({"seed": 0}, run) == {"fd": 3.0}
    assert cache.measure({"seed": 0}, run) == {"fd": 3.0} and len(runs) == 1
    assert TableCache(None).measure({"seed": 0}, run) == {"fd": 3.0} and len(runs) == 2


def test_publish_table_writes_the_payload_and_its_markdown(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tables, "RESULTS_DIR", tmp_path)
    argv = ["--seeds", "3,4", "--publish"]
    args = table_parser("A table.", n=7).parse_args(argv)
    payload = tables.publish_table(
        "t",
        "benchmarks/t.py",
        argv,
        args,
        lambda p: f"# {p['n']} {p['seeds']} {p['extra']}\n",
        extra="x",
    )
    assert payload["command"] == "python benchmarks/t.py --seeds 3,4"  # not where it went
    assert json.loads((tmp_path / "t.json").read_text()) == payload
    out = capsys.readouterr()
    assert (tmp_path / "t.md").read_text() == "# 7 [3, 4] x\n" == out.out[:-1]
    assert out.err == f"wrote {tmp_path / 't.json'} and {tmp_path / 't.md'}\n"
