"""The committed results tables: one copy, shipped in the package, readable from a wheel.

Notebooks 04-06 read ``diffusion_lib/results/*.json`` through ``diffusion_lib.bench.sweeps``
(``read_results``, ``RESULTS_DIR``), so they work from an installed wheel in an empty folder
(Colab). That folder is the only copy: every writer (``python -m diffusion_lib bench``,
``benchmarks/*.py --publish``) writes there and docs/measured.md and docs/speed.md link there.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import tomllib

from diffusion_lib.bench.tables import RESULTS_DIR, read_results

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_TABLES = ["cpu", "fewer_steps", "guidance", "samplers", "guided_limits"]


def test_results_live_in_the_package():
    assert RESULTS_DIR == ROOT / "diffusion_lib" / "results"
    for name in NOTEBOOK_TABLES:
        assert read_results(name) is not None, name
    assert list(RESULTS_DIR.glob("cuda-*.json")), "notebook 06 shows the GPU table"


def test_every_results_file_is_package_data():
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["diffusion_lib"]
    for path in RESULTS_DIR.iterdir():
        rel = path.relative_to(ROOT / "diffusion_lib").as_posix()
        assert any(fnmatch.fnmatch(rel, pattern) for pattern in package_data), rel


def test_no_second_copy_of_a_results_table():
    """A table kept twice drifts; benchmarks/results was the old place."""
    assert not (ROOT / "benchmarks" / "results").exists()
    names = {p.name for p in RESULTS_DIR.iterdir()}
    # runs/: where benchmarks/*.py write a table unless told --publish (git-ignored)
    skip = {".git", ".venv", "build", "dist", "diffusion_lib", "node_modules", "runs"}
    for path in ROOT.rglob("*"):
        if skip.intersection(path.relative_to(ROOT).parts) or not path.is_file():
            continue
        assert path.name not in names or path.suffix not in {".json", ".md"}, path


def test_notebooks_read_no_path_relative_to_the_repository():
    for py in sorted((ROOT / "notebooks" / "py").glob("[0-9][0-9]_*.py")):
        text = py.read_text()
        assert not re.search(r"""Path\(\s*["']\.\.""", text), py.name
        assert "../" not in re.sub(r"(?m)^#.*$", "", text), py.name


def test_docs_measured_quotes_the_committed_tables():
    """Every interval docs/measured.md quotes is one a committed table prints, or a paired
    difference of two of its rows, computed here the way the tables compute theirs."""
    from diffusion_lib.bench.sweeps import paired_difference

    text = (ROOT / "docs" / "measured.md").read_text()
    tables = "".join((RESULTS_DIR / f"{n}.md").read_text() for n in NOTEBOOK_TABLES)
    rows = read_results("samplers")["rows"]

    def row(name: str, steps: int) -> dict:
        (found,) = [r for r in rows if r["name"] == name and r["steps"] == steps]
        return found

    ref, beta50 = row("DDPM σ²=β̃", 1000), row("DDPM σ²=β", 50)
    paired = [
        paired_difference(beta50, ref, "diversity"),
        paired_difference(row("DDPM σ²=β̃", 50), ref, "diversity"),
        paired_difference(row("DDPM σ²=β", 25), ref, "diversity"),
        paired_difference(row("DDPM σ²=β", 10), ref, "diversity"),
        paired_difference(row("DDPM σ²=β̃", 50), beta50),
        paired_difference(row("DDIM η=0", 50), beta50),
        paired_difference(row("DDPM σ²=β", 25), beta50),
    ]

    def rounds_to(quoted: str, value: float) -> bool:
        places = len(quoted.partition(".")[2])
        return abs(float(quoted.replace("−", "-")) - value) <= 0.5 * 10**-places + 1e-12

    def is_paired(q: str) -> bool:
        mean, half = q.split(" ± ")
        return any(rounds_to(mean, d.value) and rounds_to(half, d.half_width()) for d in paired)

    quoted = re.findall(r"[−+]?\d+(?:\.\d+)? ± \d+(?:\.\d+)?", text)
    assert len(quoted) >= 20
    for q in quoted:
        assert q.lstrip("+") in tables or q in tables or is_paired(q), q
