"""Notebook hygiene: twins in sync, Colab headers from the one URL, the expected set.

nbval executes the notebooks themselves (``make test`` passes ``--nbval-lax notebooks``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import notebooks as nbtools  # noqa: E402


def test_every_pair_agrees_and_headers_are_current():
    assert nbtools.check() == []


def test_headers_come_from_pyproject_url():
    url = nbtools.repository_url()
    assert url.startswith("https://github.com/")
    for py in nbtools.twins():
        text = py.read_text()
        assert nbtools.colab_url(py.with_suffix(".ipynb").name) in text
        assert f"git+{url}" in text
    readme = (ROOT / "README.md").read_text()
    slug = url.split("github.com/")[1]
    assert "colab-badge.svg" in readme and slug in readme


def test_notebooks_committed_with_outputs_and_no_widget_state():
    for py in nbtools.twins():
        nb = json.loads(py.with_suffix(".ipynb").read_text())
        assert "widgets" not in nb["metadata"], py.name
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert all(c.get("execution_count") for c in code), f"{py.name}: not fully executed"
        assert any(
            "image/png" in o.get("data", {}) for c in code for o in c.get("outputs", [])
        ), f"{py.name}: no plot in the committed outputs"
        assert not any(o.get("output_type") == "error" for c in code for o in c["outputs"])


def test_each_notebook_has_objectives_exercises_and_summary():
    for py in nbtools.twins():
        text = py.read_text()
        for heading in ["**After this notebook you can**", "## Exercises", "## Summary"]:
            assert heading in text, f"{py.name} lacks {heading!r}"
        assert 'jupyter={"source_hidden": true}' in text, f"{py.name}: no hidden solution cell"
        assert "default_device()" in text, f"{py.name}: does not pick CUDA when present"
