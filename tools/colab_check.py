"""The notebooks as a Colab learner runs them: from a built wheel, each alone in an empty folder.

    python tools/colab_check.py                  # every notebooks/NN_*.ipynb (part of make test)
    python tools/colab_check.py 04_fewer_steps   # only these (names or stems)

1. builds the wheel (``pip wheel --no-deps .``) into build/colab/dist;
2. makes a clean virtual environment, build/colab/venv, with what Colab's CPU runtime has
   that the notebooks need (``torch==$TORCH_PIN``, ``ipywidgets==7.7.1``, the package's other
   dependencies and those of the extras the notebooks use, ``notebooks.NOTEBOOK_EXTRAS``)
   plus the test runner (pytest, nbval, ipykernel); it is kept between runs while its
   requirements are unchanged (a stamp file), and never sees the checkout;
3. puts a stub ``google.colab`` on the kernel's path (imported at start-up, as in Colab), so
   each notebook's setup cell takes its Colab branch and pip-installs the package itself,
   with those extras:
   ``DIFFUSION_LIB_SOURCE`` points it at the built wheel, ``PIP_NO_INDEX=1`` forbids
   downloads (nothing may be fetched at run time);
4. for each notebook: uninstalls diffusion_lib, copies the notebook alone into an empty
   temporary folder, runs ``pytest --nbval-lax`` on it there, checks that the package came
   in as a normal (not editable) install, and reports the wall time;
5. checks the setup cell's failure path: a source pip cannot install shows pip's error in
   one block, then the import's ModuleNotFoundError and its line, whose comment says what to
   do; never a CalledProcessError.

The times go to build/colab/times.txt. ``make test`` runs this after pytest.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import notebooks as nbtools  # noqa: E402

WORK = ROOT / "build" / "colab"
VENV = WORK / "venv"
DIST = WORK / "dist"
STUB = WORK / "stub"
# Colab's CPU runtime pins ipywidgets 7.7.1; the runner is all we add.
COLAB_PINS = ["ipywidgets==7.7.1"]
RUNNER = ["pytest>=7.4", "nbval>=0.11", "ipykernel>=6.25"]
STUB_COLAB = '"""Stand-in for Colab\'s google.colab (tools/colab_check.py): only its presence."""\n'
# Colab imports google.colab when its kernel starts; sitecustomize does the same here.
STUB_SITECUSTOMIZE = "import google.colab  # noqa: F401  (tools/colab_check.py)\n"


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], check=True, **kwargs)


def venv_python() -> Path:
    return VENV / "bin" / "python"


def core_requirements() -> list[str]:
    """``torch==$TORCH_PIN`` (the Makefile's CPU build), then pyproject.toml's dependencies."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return [f"torch=={os.environ.get('TORCH_PIN', '2.13.0')}", *deps]


def requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    extra_deps = [r for name in nbtools.NOTEBOOK_EXTRAS for r in extras[name]]
    torch_pin, *deps = core_requirements()
    return [torch_pin, *COLAB_PINS, *deps, *extra_deps, *RUNNER]


def ensure_venv(base_python: str, venv: Path = VENV, reqs: list[str] | None = None) -> None:
    """``venv`` (build/colab/venv) with ``reqs`` (``requirements()``, the pinned torch first);
    rebuilt only when they change."""
    reqs = requirements() if reqs is None else reqs
    key = hashlib.sha256(json.dumps([base_python, reqs]).encode()).hexdigest()
    stamp = venv / ".colab-check-stamp"
    python = venv / "bin" / "python"
    if stamp.is_file() and stamp.read_text() == key and python.exists():
        return
    shutil.rmtree(venv, ignore_errors=True)
    start = time.perf_counter()
    run([base_python, "-m", "venv", venv])
    # torch first, alone: the pinned CPU build (as in `make setup`), never a CUDA one
    run([python, "-m", "pip", "install", "--quiet", reqs[0]])
    run([python, "-m", "pip", "install", "--quiet", *reqs])
    stamp.write_text(key)
    print(f"colab check: made {venv} in {time.perf_counter() - start:.0f} s")


def build_wheel(dist: Path = DIST) -> Path:
    shutil.rmtree(dist, ignore_errors=True)
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", dist, ROOT])
    (wheel,) = dist.glob("diffusion_lib-*.whl")
    return wheel


def write_stub() -> None:
    shutil.rmtree(STUB, ignore_errors=True)
    (STUB / "google" / "colab").mkdir(parents=True)  # google: a namespace package
    (STUB / "google" / "colab" / "__init__.py").write_text(STUB_COLAB)
    (STUB / "sitecustomize.py").write_text(STUB_SITECUSTOMIZE)


def wheel_with_extras(wheel: Path) -> str:
    """The pip requirement the setup cell installs: the wheel with the notebooks' extras."""
    return f"{wheel}[{','.join(nbtools.NOTEBOOK_EXTRAS)}]"


def kernel_env(source: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(
        PYTHONPATH=str(STUB),
        DIFFUSION_LIB_SOURCE=source,
        PIP_NO_INDEX="1",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"),
        PATH=f"{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}",
    )
    return env


def uninstall() -> None:
    run([venv_python(), "-m", "pip", "uninstall", "--yes", "--quiet", "diffusion_lib"],
        stderr=subprocess.DEVNULL)  # fmt: skip


def installed_location() -> str:
    """pip's record of diffusion_lib in the venv; fails if editable or absent."""
    out = run([venv_python(), "-m", "pip", "show", "diffusion_lib"], capture_output=True,
              text=True).stdout  # fmt: skip
    assert "Editable project location" not in out, out
    location = next(line.split(":", 1)[1].strip() for line in out.splitlines()
                    if line.startswith("Location:"))  # fmt: skip
    assert Path(location).resolve().is_relative_to(VENV.resolve()), location
    return location


def run_notebook(ipynb: Path, wheel: Path) -> float:
    uninstall()
    with tempfile.TemporaryDirectory(prefix="colab-") as tmp:
        shutil.copy2(ipynb, tmp)
        start = time.perf_counter()
        cmd = [venv_python(), "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
               "--nbval-current-env", "--nbval-cell-timeout=900", ipynb.name]  # fmt: skip
        done = subprocess.run(
            [str(c) for c in cmd], cwd=tmp, env=kernel_env(wheel_with_extras(wheel))
        )
        seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"colab check: {ipynb.name} failed (pytest exit {done.returncode})")
    installed_location()
    return seconds


def check_failed_install() -> None:
    """The setup cell without the package: in Colab, a source pip cannot install shows pip's
    reason in one block, then what to do; elsewhere nothing is installed, only what to do."""
    uninstall()
    setup = nbtools.setup_cell().removeprefix("# %%\n")
    extras = ",".join(nbtools.NOTEBOOK_EXTRAS)
    # the traceback shows the import line, whose comment says what to do
    advice = ["ModuleNotFoundError", "make lab` in a clone",
              f"pip install -e '.[{extras}]'"]  # fmt: skip
    pip_failed = ["pip could not install", f".whl[{extras}]", "ERROR"]  # with the extras
    with tempfile.TemporaryDirectory(prefix="colab-") as tmp:
        in_colab = kernel_env(wheel_with_extras(Path(tmp) / "no_such_wheel-0.1-py3-none-any.whl"))
        outside = {**in_colab, "PYTHONPATH": ""}  # no google.colab: a local Jupyter
        cell = Path(tmp) / "setup_cell.py"  # a file, so the traceback shows the line
        cell.write_text(setup)
        for env, wanted, unwanted in [
            (in_colab, [*pip_failed, *advice], ["CalledProcessError"]),
            (outside, advice, ["installing", "pip could not install"]),
        ]:
            done = subprocess.run([str(venv_python()), cell], cwd=tmp, env=env,
                                  capture_output=True, text=True)  # fmt: skip
            out = done.stdout + done.stderr
            wrong = [w for w in wanted if w not in out] + [u for u in unwanted if u in out]
            if done.returncode == 0 or wrong:
                raise SystemExit(f"colab check: setup cell without the package: {wrong}:\n{out}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("names", nargs="*", help="notebook names or stems (default: all)")
    parser.add_argument("--python", default="python3", help="the Python to make the venv from")
    args = parser.parse_args(argv)
    notebooks = [nbtools.notebook_of(p) for p in nbtools.twins()]
    if args.names:
        stems = {Path(n).stem for n in args.names}
        notebooks = [p for p in notebooks if p.stem in stems]
        if len(notebooks) != len(stems):
            raise SystemExit(f"colab check: unknown notebooks in {args.names}")
    WORK.mkdir(parents=True, exist_ok=True)
    total = time.perf_counter()
    ensure_venv(args.python)
    wheel = build_wheel()
    write_stub()
    check_failed_install()
    lines = []
    for ipynb in notebooks:
        seconds = run_notebook(ipynb, wheel)
        lines.append(f"{ipynb.name}: {seconds:.1f} s")
        print(f"colab check: {lines[-1]} (installed from {wheel.name}, ipywidgets 7.7.1)")
    lines.append(f"total (wheel, venv check, failure path, notebooks): "
                 f"{time.perf_counter() - total:.1f} s")  # fmt: skip
    (WORK / "times.txt").write_text("\n".join(lines) + "\n")
    print("colab check: " + lines[-1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
