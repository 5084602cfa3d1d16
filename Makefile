# Two commands (see README.md):
#   make lab    set up .venv and open the notebooks in JupyterLab
#   make test   set up .venv and run every test (ruff, pytest, notebooks)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# A torch that installs quickly on a CPU-only machine; used only when the
# environment has no torch yet (Colab and CUDA machines keep their own).
TORCH_PIN ?= 2.13.0

.PHONY: setup lab test lint notebooks clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "torch==$(TORCH_PIN)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

lab: setup
	$(VENV)/bin/jupyter lab notebooks/

lint: setup
	$(VENV)/bin/ruff check .

test: lint
	$(PY) -m pytest --nbval-lax tests notebooks

# Re-execute every notebook from its .py twin and store the outputs (fixed seeds).
notebooks: setup
	$(PY) tools/notebooks.py header
	$(PY) tools/notebooks.py build

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
