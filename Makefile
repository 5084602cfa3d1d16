# Two commands (see README.md):
#   make lab    set up .venv and open the notebooks in JupyterLab
#   make test   set up .venv and run every test (ruff, pytest, notebooks)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# A torch that installs quickly on a CPU-only machine; used only when the
# environment has no torch yet (Colab and CUDA machines keep their own).
TORCH_PIN ?= 2.13.0

.PHONY: setup lab test lint notebooks clean chromium bench cuda-wheels colab-check

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "torch==$(TORCH_PIN)"
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $(PY) -m pip install --quiet -e ".[dev]"
	touch $@

# tools/lab.sh adds --allow-root as root and --no-browser without a display (tests/test_lab.py).
lab: setup
	VENV=$(VENV) sh tools/lab.sh

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The browser test (tests/browser/, docs/browser-test.md) drives Debian's chromium through
# Playwright, which never downloads a browser. As root this installs chromium; anyone else
# is told how and the test command stops here. `make lab` does not need it.
chromium:
	@if [ -n "$$CHROMIUM_PATH" ] || command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium for the browser test (apt-get)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else \
		echo "ERROR: the browser test needs chromium. Install it (Debian/Ubuntu:" \
			"sudo apt-get install -y chromium) or set CHROMIUM_PATH, then run make test again." >&2; \
		exit 1; \
	fi

# One OpenMP thread for the test run: on a shared 2-core VM, two torch threads were seen to
# stall (the same 25-step sampling call took 1.6 s, then 58 s) while one thread stays steady.
# The notebooks themselves keep torch's default when you run them (make lab).
# The notebooks run once under nbval, as in Colab (tools/colab_check.py): from the built wheel,
# non-editable, in a clean venv (build/colab/venv, kept while its requirements hold) with
# ipywidgets 7.7.1, each alone in an empty folder; the browser test runs them once more in
# JupyterLab with ipywidgets 8.
test: lint chromium
	OMP_NUM_THREADS=1 $(PY) -m pytest tests
	OMP_NUM_THREADS=1 TORCH_PIN=$(TORCH_PIN) $(PY) tools/colab_check.py --python $(PYTHON)

# Only the Colab-like notebook check (NB=04_fewer_steps for one notebook).
colab-check: setup
	OMP_NUM_THREADS=1 TORCH_PIN=$(TORCH_PIN) $(PY) tools/colab_check.py --python $(PYTHON) $(NB)

# Re-execute every notebook from its py:percent twin (notebooks/py/) and store the outputs (fixed seeds).
notebooks: setup
	$(PY) tools/notebooks.py header
	$(PY) tools/notebooks.py build

# The speed table for this machine: diffusion_lib/results/cpu.{md,json} (one thread, see there).
bench: setup
	OMP_NUM_THREADS=1 $(PY) -m diffusion_lib bench --threads 1 --steps 64:100,1024:10 \
		--repeats 5 --generation-steps 10

# Wheels the lent GPU machine lacks (its Python is 3.12), for benchmarks/cuda_check.sh:
# ipywidgets and jupytext for the notebooks, diffusers and its dependencies for the bench's
# peer rows. numpy and Pillow are dropped again: the image has both (matplotlib needs them)
# and they are most of the download, while the tree travels to the machine in 64 MiB.
cuda-wheels: setup
	$(PY) -m pip download --quiet -d .whl --only-binary=:all: --python-version 3.12 \
		--platform manylinux2014_x86_64 --implementation cp ipywidgets jupytext "diffusers>=0.30"
	rm -f .whl/numpy-*.whl .whl/[Pp]illow-*.whl

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
