# csu-lab: two commands do all the set-up.
#   make figures   the main job: every figure on the embedded benchmark (quick profile, CPU)
#   make test      the test suite
#   make gallery   the README's gallery (docs/gallery/) from the figures of `make figures`
# Both create the project virtual environment (.venv) on first use and reinstall only when
# pyproject.toml changes.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PROFILE ?= quick

# Generated data, the feature cache and run records stay inside the repository (git-ignored).
export CSU_DATA_DIR  ?= $(CURDIR)/data
export CSU_CACHE_DIR ?= $(CURDIR)/cache
export PYTHONUNBUFFERED := 1

.PHONY: figures test venv lab gallery clean-runs help

help:
	@echo "make figures   run the main job (all figures, $(PROFILE) profile) -> figures/"
	@echo "make test      run the test suite"
	@echo "make lab       open JupyterLab on notebooks/"
	@echo "make gallery   copy reference PNGs of figures/ (after make figures) into docs/gallery/, each < 300 kB"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[notebooks,dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (csu-lab)" >/dev/null
	@touch $(STAMP)

venv: $(STAMP)

figures: $(STAMP)
	$(VENV)/bin/csu figures --profile $(PROFILE)

test: $(STAMP)
	$(PY) -m pytest

gallery: $(STAMP)
	$(VENV)/bin/csu gallery --fig-dir figures --out docs/gallery

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

clean-runs:
	rm -rf runs
