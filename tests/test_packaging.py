"""The project's own wiring: dependency lists in step, the core installs alone, the README's
commands real."""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import colab_check  # noqa: E402

nbtools = colab_check.nbtools  # tools/notebooks.py
CONDA_NAMES = {"pytorch": "torch"}
CORE = {"torch", "numpy", "tqdm"}  # what `import diffusion_lib` and sample() need


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ ;\[]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _spec(requirement: str) -> str:
    return requirement.strip()[len(_name(requirement)) :].replace(" ", "")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _extra(name: str) -> list[str]:
    """An extra's requirements, a ``diffusion_lib[a,b]`` self-reference replaced by a's and b's."""
    out = []
    for requirement in _pyproject()["project"]["optional-dependencies"][name]:
        if _name(requirement) == "diffusion-lib":
            for inner in re.search(r"\[(.*)\]", requirement).group(1).split(","):
                out += _extra(inner.strip())
        else:
            out.append(requirement)
    return out


def _conda_deps() -> dict[str, str]:
    deps: dict[str, str] = {}
    in_deps = False
    for line in (ROOT / "environment.yml").read_text().splitlines():
        if line.startswith("dependencies:"):
            in_deps = True
            continue
        m = re.match(r"^  - ([A-Za-z0-9_.\-]+)(.*)$", line)
        if in_deps and m:
            deps[CONDA_NAMES.get(m.group(1), m.group(1)).lower()] = m.group(2).replace(" ", "")
    return deps


def test_environment_yml_matches_pyproject():
    project = _pyproject()["project"]
    wanted = project["dependencies"] + _extra("dev")
    conda = _conda_deps()
    for requirement in wanted:
        name = _name(requirement)
        assert name in conda, f"{name} is in pyproject.toml but not in environment.yml"
        assert conda[name] == _spec(requirement), f"{name}: versions differ"
    extra = set(conda) - {_name(r) for r in wanted} - {"python", "pip"}
    assert not extra, f"environment.yml has packages pyproject.toml lacks: {extra}"
    text = (ROOT / "environment.yml").read_text()
    assert "conda-forge" in text and "defaults" not in text
    assert "-e ." in text


def test_core_is_torch_numpy_tqdm_and_dev_has_every_extra():
    project = _pyproject()["project"]
    assert {_name(r) for r in project["dependencies"]} == CORE
    extras = project["optional-dependencies"]
    assert {"lessons", "metrics", "cli"} <= set(extras)
    dev = {_name(r) for r in _extra("dev")}
    for name in set(extras) - {"dev"}:
        assert {_name(r) for r in extras[name]} <= dev, f"dev lacks [{name}]"
    # the notebooks' setup cell and the Colab check install extras that exist
    assert set(nbtools.NOTEBOOK_EXTRAS) <= set(extras) - {"dev"}
    assert f', "[{",".join(nbtools.NOTEBOOK_EXTRAS)}]"\n' in nbtools.setup_cell()


def test_the_wheel_alone_imports_and_samples_in_a_clean_venv(tmp_path):
    """``pip install diffusion_lib`` (no extras) in a venv that has only the core: the package
    imports and samples; none of the extras' packages is there; an extra's module says which
    extra to install. The venv (build/core-wheel/venv: the Makefile's CPU torch, numpy, tqdm)
    is kept between runs, as the Colab check keeps its own; the wheel is built each time."""
    work = ROOT / "build" / "core-wheel"
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(work / ".lock", "w") as lock:  # two test runs at once share the venv
        fcntl.flock(lock, fcntl.LOCK_EX)
        venv = work / "venv"
        colab_check.ensure_venv(sys.executable, venv, colab_check.core_requirements())
        wheel = colab_check.build_wheel(tmp_path / "dist")
        python = str(venv / "bin" / "python")
        pip = [python, "-m", "pip", "--disable-pip-version-check", "-q"]
        subprocess.run([*pip, "uninstall", "--yes", "diffusion_lib"], capture_output=True)
        # --no-index: the wheel's own dependencies must already be here (the core only)
        subprocess.run([*pip, "install", "--no-index", str(wheel)], check=True)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        done = subprocess.run([python, "-c", CORE_ONLY_SCRIPT], cwd=tmp_path, capture_output=True,
                              text=True, env={**env, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stdout + done.stderr
    print(f"core-only wheel check: {time.perf_counter() - start:.1f} s")


CORE_ONLY_SCRIPT = """
import importlib
import importlib.util
import sys

for name in ("matplotlib", "ipywidgets", "sklearn", "PIL", "safetensors"):
    assert importlib.util.find_spec(name) is None, f"{name} is in the core-only venv"
import torch
from torch import nn

import diffusion_lib

assert diffusion_lib.__file__.startswith(sys.prefix), diffusion_lib.__file__  # the wheel's


class Zero(nn.Module):
    def forward(self, x, t, labels=None):
        return torch.zeros_like(x)


schedule = diffusion_lib.linear_schedule(100)
x = diffusion_lib.sample(Zero(), schedule, (2, 3), steps=5, seed=0, progress=False)
assert x.shape == (2, 3) and bool(torch.isfinite(x).all()), x
extras = {"diffusion_lib.lessons.plots": "lessons", "diffusion_lib.images": "cli",
          "diffusion_lib.pretrained": "cli", "diffusion_lib.generate": "cli"}
for module, extra in extras.items():
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as err:
        assert f'pip install "diffusion_lib[{extra}]"' in str(err), err
    else:
        raise AssertionError(f"{module} imported without its extra")
from diffusion_lib.data import load_digits_split
try:
    load_digits_split()
except ModuleNotFoundError as err:
    assert "diffusion_lib[metrics]" in str(err), err
print("ok")
"""


def test_torch_is_only_a_lower_bound():
    deps = _pyproject()["project"]["dependencies"]
    torch_req = next(d for d in deps if _name(d) == "torch")
    assert torch_req.replace(" ", "").startswith("torch>=") and "<" not in torch_req


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    commands = re.findall(r"^```(?:bash|sh)\n(.*?)```", readme, flags=re.S | re.M)
    test_cmd = next(c.strip() for c in commands if c.strip() == "make test")
    lab_cmd = next(c.strip() for c in commands if c.strip() == "make lab")
    assert test_cmd in ci.splitlines()
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^test:", makefile, re.M) and re.search(r"^lab:", makefile, re.M)
    assert lab_cmd == "make lab"
    assert "ruff check" in makefile


def test_readme_quickstart_runs_and_prints_what_it_says(capsys):
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"^```python\n(.*?)```", readme, flags=re.S | re.M).group(1)
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out.split()
    claimed = re.findall(r"# ([0-9.]+) ([0-9.]+):|# ([0-9.]+):", code)
    assert printed[:2] == list(claimed[0][:2]) and printed[2] == claimed[1][2]
