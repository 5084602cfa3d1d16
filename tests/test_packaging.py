"""The project's own wiring: dependency lists in step, the README's commands real."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib
import torch
from torch import nn

from diffusion_lib import ModelAdapter, default_device

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"pytorch": "torch"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ ;\[]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _spec(requirement: str) -> str:
    return requirement.strip()[len(_name(requirement)) :].replace(" ", "")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


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
    wanted = project["dependencies"] + project["optional-dependencies"]["dev"]
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


def test_model_adapter_translates_signature():
    net = nn.Linear(3, 3)
    adapter = ModelAdapter(net, lambda m, x, t, y: m(x) * 0 + t[:, None].float(), null_label=None)
    out = adapter(torch.zeros(2, 3), torch.tensor([4, 5]))
    assert out.tolist() == [[4.0] * 3, [5.0] * 3]
    assert list(adapter.parameters())  # the wrapped module's weights are visible


def test_default_device_is_cpu_here_or_a_real_accelerator():
    dev = default_device()
    if torch.cuda.is_available():
        assert dev.type == "cuda"
    else:
        assert dev.type in {"mps", "cpu"}


def test_readme_quickstart_runs_and_prints_what_it_says(capsys):
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"^```python\n(.*?)```", readme, flags=re.S | re.M).group(1)
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out.split()
    claimed = re.findall(r"# ([0-9.]+) ([0-9.]+):|# ([0-9.]+):", code)
    assert printed[:2] == list(claimed[0][:2]) and printed[2] == claimed[1][2]
