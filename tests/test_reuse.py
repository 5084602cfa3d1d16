"""Reusing a committed table's per-seed values (diffusion_lib/bench/reuse.py): a stored row
is reused only when its first stored seed, measured again, agrees; else it is measured again."""

from __future__ import annotations

import copy

import pytest

from diffusion_lib.bench.reuse import CommittedSeeds
from diffusion_lib.bench.sweeps import SamplerSetting, guidance_sweep, sampler_grid
from diffusion_lib.metrics import load_classifier
from diffusion_lib.pretrained import load_pretrained

SETTING = SamplerSetting("ddim", 3, spacing="trailing")
N = 20


@pytest.fixture(scope="module")
def digits():
    model, schedule = load_pretrained("digits")
    return model, schedule, load_classifier()


def _grid(digits, settings, reuse=None):
    model, schedule, classifier = digits
    return sampler_grid(
        model, schedule, settings, n=N, seed=[0, 1], classifier=classifier, reuse=reuse
    )


def test_a_stored_row_is_reused_after_its_first_seed_agrees(digits):
    (row,) = _grid(digits, [SETTING])
    (again,) = _grid(digits, [SETTING], CommittedSeeds([row], N))
    assert again["reused_seeds"] == [1]
    for key in ("fd", "accuracy", "diversity"):
        assert again[f"{key}_seeds"] == row[f"{key}_seeds"]


def test_a_row_whose_first_seed_disagrees_is_measured_again(digits, capsys):
    (row,) = _grid(digits, [SETTING])
    edited = copy.deepcopy(row)
    edited["fd_seeds"] = [row["fd_seeds"][0] + 1.0, 123.0]  # as if other code made it
    reuse = CommittedSeeds([edited], N)
    (again,) = _grid(digits, [SETTING], reuse)
    assert "reused_seeds" not in again
    assert again["fd_seeds"] == row["fd_seeds"]  # both seeds measured again
    assert len(reuse.mismatches) == 1 and "seed 0 fd" in reuse.mismatches[0]
    assert "measuring every seed of this row again" in capsys.readouterr().err


def test_other_settings_n_or_a_new_non_default_field_are_not_matched(digits):
    (row,) = _grid(digits, [SETTING])
    old = {k: v for k, v in row.items() if not k.startswith("s_")}  # a row from before EDM
    reuse = CommittedSeeds([old], N)
    assert reuse.lookup({"sampler": "ddim", "steps": 3, "name": row["name"]}, 1) is not None
    assert reuse.lookup({"sampler": "ddim", "steps": 3, "s_churn": 0.0}, 1) is not None
    assert reuse.lookup({"sampler": "ddim", "steps": 3, "s_churn": 5.0}, 1) is None
    assert reuse.lookup({"sampler": "ddim", "steps": 4}, 1) is None
    assert reuse.lookup({"sampler": "ddim", "steps": 3}, 7) is None  # a seed not stored
    assert CommittedSeeds([old], N + 1).lookup({"sampler": "ddim"}, 1) is None
    assert (
        CommittedSeeds.from_payload({"rows": [old], "guidance_scale": 3.0}, N, guidance_scale=2.0)
        is None
    )


def test_a_guidance_sweep_reuses_by_w(digits):
    model, schedule, classifier = digits
    kwargs = dict(n=N, seed=[0, 1], classifier=classifier, sampler="ddim", steps=3)
    rows, _ = guidance_sweep(model, schedule, [1.0, 2.0], **kwargs)
    again, grids = guidance_sweep(model, schedule, [2.0], reuse=CommittedSeeds(rows, N), **kwargs)
    assert again[0]["reused_seeds"] == [1] and again[0]["fd_seeds"] == rows[1]["fd_seeds"]
    assert set(grids) == {2.0}
