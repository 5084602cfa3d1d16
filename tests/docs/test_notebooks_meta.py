"""Notebook hygiene: twins in sync, Colab headers from the one URL, the expected set.

nbval executes the notebooks themselves, from a built wheel in a Colab-like environment
(``tools/colab_check.py``, run by ``make test``).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import notebooks as nbtools  # noqa: E402


def test_every_pair_agrees_and_headers_are_current():
    assert nbtools.check() == []


def test_headers_come_from_pyproject_url():
    """Badge and install line follow pyproject.toml's [project.urls] Repository, the one place."""
    url = nbtools.repository_url()
    assert url.startswith("https://github.com/")
    for py in nbtools.twins():
        name = py.with_suffix(".ipynb").name
        assert nbtools.header_problems(py) == [], py.name
        for text in (py.read_text(), py.with_suffix(".ipynb").read_text()):
            assert nbtools.colab_url(name) in text, name
            assert f'REPOSITORY = \\"{url}\\"' in text or f'REPOSITORY = "{url}"' in text, name
            assert 'f"diffusion_lib @ git+{REPOSITORY}"' in text.replace('\\"', '"'), name
            assert text.count("github.com/") == text.count(url.split("//")[1]), name
    readme = (ROOT / "README.md").read_text()
    slug = url.split("github.com/")[1]
    assert "colab-badge.svg" in readme and slug in readme
    assert nbtools.colab_url("01_noise_schedules.ipynb") in readme


def test_header_regeneration_follows_a_new_url(monkeypatch):
    """Moving the repository: edit pyproject.toml, run `make notebooks`; nothing else to edit."""
    monkeypatch.setattr(nbtools, "repository_url", lambda: "https://github.com/someone/fork")
    py = nbtools.twins()[0]
    text = nbtools.with_generated_parts(py.read_text(), py.with_suffix(".ipynb").name)
    assert "diffusion-lib/diffusion-sampling" not in text
    assert 'REPOSITORY = "https://github.com/someone/fork"' in text
    assert "colab.research.google.com/github/someone/fork/blob/main/notebooks/01_" in text


def test_setup_cell_comes_right_after_title_and_objectives():
    for py in nbtools.twins():
        nb = json.loads(py.with_suffix(".ipynb").read_text())
        title, setup = nb["cells"][0], nb["cells"][1]
        assert title["cell_type"] == "markdown" and "".join(title["source"]).startswith("# ")
        assert "**After this notebook you can**" in "".join(title["source"]), py.name
        assert "Run time:" in "".join(title["source"]), py.name
        assert setup["cell_type"] == "code" and "import diffusion_lib" in "".join(setup["source"])
        assert not any(o.get("output_type") == "error" for o in setup["outputs"]), py.name


def test_notebooks_committed_with_outputs_and_no_widget_state():
    for py in nbtools.twins():
        nb = json.loads(py.with_suffix(".ipynb").read_text())
        assert "widgets" not in nb["metadata"], py.name
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert all(c.get("execution_count") for c in code), f"{py.name}: not fully executed"
        assert any("image/png" in o.get("data", {}) for c in code for o in c.get("outputs", [])), (
            f"{py.name}: no plot in the committed outputs"
        )
        assert not any(o.get("output_type") == "error" for c in code for o in c["outputs"])


def test_each_notebook_has_objectives_exercises_and_summary():
    for py in nbtools.twins():
        text = py.read_text()
        for heading in ["**After this notebook you can**", "## Exercises", "## Summary"]:
            assert heading in text, f"{py.name} lacks {heading!r}"
        assert 'jupyter={"source_hidden": true}' in text, f"{py.name}: no hidden solution cell"
        assert "default_device()" in text, f"{py.name}: does not pick CUDA when present"


def test_make_test_runs_the_notebooks_once_under_nbval_in_the_colab_check():
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^test:.*\n((?:\t.*\n)+)", makefile, re.M).group(1)
    assert "tools/colab_check.py" in recipe
    assert "--nbval" not in recipe and " notebooks" not in recipe
