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
        name = nbtools.notebook_of(py).name
        assert nbtools.header_problems(py) == [], py.name
        for text in (py.read_text(), nbtools.notebook_of(py).read_text()):
            assert nbtools.colab_url(name) in text, name
            plain = text.replace('\\"', '"')
            assert f'REPOSITORY, EXTRAS = "{url}"' in plain, name
            assert 'f"diffusion_lib{EXTRAS} @ git+{REPOSITORY}"' in plain, name
            assert text.count("github.com/") == text.count(url.split("//")[1]), name
    readme = (ROOT / "README.md").read_text()
    slug = url.split("github.com/")[1]
    assert "colab-badge.svg" in readme and slug in readme
    assert nbtools.colab_url("01_noise_schedules.ipynb") in readme


def test_header_regeneration_follows_a_new_url(monkeypatch):
    """Moving the repository: edit pyproject.toml, run `make notebooks`; nothing else to edit."""
    monkeypatch.setattr(nbtools, "repository_url", lambda: "https://github.com/someone/fork")
    py = nbtools.twins()[0]
    text = nbtools.with_generated_parts(py.read_text(), nbtools.notebook_of(py).name)
    assert "diffusion-lib/diffusion-sampling" not in text
    assert 'REPOSITORY, EXTRAS = "https://github.com/someone/fork"' in text
    assert "colab.research.google.com/github/someone/fork/blob/main/notebooks/01_" in text


def test_setup_cell_comes_right_after_title_and_objectives():
    for py in nbtools.twins():
        nb = json.loads(nbtools.notebook_of(py).read_text())
        title, setup = nb["cells"][0], nb["cells"][1]
        assert title["cell_type"] == "markdown" and "".join(title["source"]).startswith("# ")
        assert "**After this notebook you can**" in "".join(title["source"]), py.name
        assert "Run time:" in "".join(title["source"]), py.name
        assert setup["cell_type"] == "code" and "import diffusion_lib" in "".join(setup["source"])
        assert not any(o.get("output_type") == "error" for o in setup["outputs"]), py.name


def test_notebooks_committed_with_outputs_and_no_widget_state():
    for py in nbtools.twins():
        nb = json.loads(nbtools.notebook_of(py).read_text())
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
        assert "default_device()" in text, f"{py.name}: does not pick CUDA when present"


def test_solutions_are_folded_after_the_summary():
    """Hidden where a learner reads: after the summary (GitHub), a Colab form, a collapsed
    JupyterLab input; still code cells, so nbval runs them and their asserts."""
    import jupytext

    for py in nbtools.twins():
        cells = jupytext.read(py).cells
        headings = [i for i, c in enumerate(cells) if c.cell_type == "markdown"]
        summary = next(i for i in headings if "## Summary" in cells[i].source)
        assert "## Solutions" in cells[summary].source, py.name
        solutions = [i for i, c in enumerate(cells) if c.source.startswith("# @title Solution")]
        assert solutions, f"{py.name}: no solution cells"
        for i in solutions:
            cell = cells[i]
            assert cell.cell_type == "code", (py.name, i)
            assert cell.metadata.get("cellView") == "form", (py.name, cell.source[:60])
            assert cell.metadata.get("jupyter") == {"source_hidden": True}, py.name
            assert "double-click to show" in cell.source.splitlines()[0], py.name
        # only notebook 05's in-body exercise keeps its solution where its check runs it
        early = [i for i in solutions if i < summary]
        assert len(early) == (1 if py.name.startswith("05_") else 0), py.name
        # nothing that is not a solution sits between the summary and the last solution
        # (a closing clean-up cell may follow)
        assert all(i in solutions for i in range(summary + 1, max(solutions) + 1)), py.name
        assert not any(c.source.lstrip().startswith("# Solution") for c in cells), py.name


def test_make_test_runs_the_notebooks_once_under_nbval_in_the_colab_check():
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^test:.*\n((?:\t.*\n)+)", makefile, re.M).group(1)
    assert "tools/colab_check.py" in recipe
    assert "--nbval" not in recipe and " notebooks" not in recipe


def test_code_cells_stay_short():
    """A learner reads short cells: the setup cell is at most 15 non-blank lines, and at most
    three code cells in the whole series are longer."""
    import jupytext

    def lines(source: str) -> int:
        return sum(1 for line in source.splitlines() if line.strip())

    assert lines(nbtools.setup_cell().removeprefix("# %%\n")) <= 15
    long = [
        f"{py.name} cell {i}: {lines(c.source)} lines"
        for py in nbtools.twins()
        for i, c in enumerate(jupytext.read(py).cells)
        if c.cell_type == "code" and lines(c.source) > 15
    ]
    assert len(long) <= 3, long
