# csu-lab: two commands do all the set-up.
#   make figures   the main job: every figure on the embedded benchmark (quick profile, CPU)
#   make test      the test suite's everyday tier (everything but the heavy `slow` cases; the
#                  browser tests included): ~10 min here
#   make test-slow the heavy cases (notebook executions, subprocess kills, torchrun, real layouts)
#   make test-all  both (= pytest); CI (.ci/run) runs make test, then make test-slow
#   make gallery   the README's gallery (docs/gallery/) from the figures of `make figures`
#   make study     the decisive study (studies/decisive_uneven.yaml, decisive_uniform.yaml, decisive_sgd.yaml):
#                  trains what is missing (resumable), summaries into docs/results/decisive/
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

.PHONY: figures test test-slow test-all venv lab gallery study clean-runs help

help:
	@echo "make figures   run the main job (all figures, $(PROFILE) profile) -> figures/"
	@echo "make test      run the test suite (everyday tier, browser tests included; ~10 min)"
	@echo "make test-slow run the heavy tests (notebooks, kills, torchrun, real layouts; ~26 min)"
	@echo "make test-all  run both (what CI runs)"
	@echo "make lab       open JupyterLab on notebooks/"
	@echo "make gallery   copy reference PNGs of figures/ (after make figures) into docs/gallery/, each < 300 kB"
	@echo "make study     run the decisive study (Adam: 350 runs, then SGD: 45 runs; resumable) -> docs/results/decisive/;"
	@echo "               an estimate at ~28 s per run on 2 workers: ~80 min for the Adam part, ~11 min for SGD"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[notebooks,dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (csu-lab)" >/dev/null
	@touch $(STAMP)

venv: $(STAMP)

figures: $(STAMP)
	$(VENV)/bin/csu figures --profile $(PROFILE)

# the tiers split by the `slow` marker; the browser tests (marked slow and browser) belong to
# make test. PYTEST_ARGS passes more options, e.g. make test PYTEST_ARGS="-x -k explorer"
test: $(STAMP)
	$(PY) -m pytest -m "not slow or browser" $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(PY) -m pytest -m "slow and not browser" $(PYTEST_ARGS)

test-all: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

gallery: $(STAMP)
	$(VENV)/bin/csu gallery --fig-dir figures --out docs/gallery

# the decisive study (docs/results.md, "Decisive study"): notebooks/decisive.ipynb once per study file;
# `csu figures --only` cannot pass the study file, so papermill runs it directly, with this venv's
# kernel first on JUPYTER_PATH. Each part resumes where it stopped; the executed copies go to runs/executed/.
STUDIES := decisive_uneven decisive_uniform decisive_sgd

study: $(STAMP)
	@mkdir -p runs/executed
	@for s in $(STUDIES); do \
	  echo "[make study] studies/$$s.yaml -> runs/$$s/, docs/results/decisive/$${s}_*.csv, figures/decisive_$$s.png"; \
	  JUPYTER_PATH=$(CURDIR)/$(VENV)/share/jupyter $(VENV)/bin/papermill --log-output notebooks/decisive.ipynb \
	    runs/executed/decisive_$$s.ipynb -p study studies/$$s.yaml || exit 1; \
	done

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

clean-runs:
	rm -rf runs
