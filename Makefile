# Alliance–outcome research compendium. `make` (or `make help`) lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
KERNEL := alliance-outcome

# Reproducibility: one BLAS thread, fixed hash seed, no wall clock in outputs.
export OMP_NUM_THREADS := 1
export OPENBLAS_NUM_THREADS := 1
export MKL_NUM_THREADS := 1
export PYTHONHASHSEED := 0
# Bytecode caches: with PYTHONDONTWRITEBYTECODE set (some machines set it), every process
# compiled the helpers again (0.5 s each) and pytest re-rewrote every test module (4-5 s per
# worker). __pycache__ is ignored by git and removed by make clean.
unexport PYTHONDONTWRITEBYTECODE

# Inputs of `make all` (override on the command line for your own study).
DATA   ?= data/raw/demo/sessions.csv
CONFIG ?= data/raw/demo/study.yml
OUT    ?= runs/demo

.PHONY: FORCE help setup lock data scenarios all report refresh check-determinism test test-fast unit nbtest lint lab clean browser-test app

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[1m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(BIN)/activate: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --user --name $(KERNEL) --display-name "Python (alliance-outcome)" >/dev/null
	touch $@

setup: $(BIN)/activate ## Create .venv from the lock, install helpers (-e .), register the Jupyter kernel

lock: ## Recompile requirements.lock from requirements.in (needs pip-tools)
	$(BIN)/pip install --quiet pip-tools
	$(BIN)/pip-compile --quiet --strip-extras --no-header --no-emit-index-url --no-emit-find-links --output-file requirements.lock requirements.in

data: $(BIN)/activate ## Regenerate the simulated demo study in data/raw/demo/ (byte-identical)
	$(PY) -m helpers simulate --out data/raw/demo

SCENARIOS_OUT ?= runs/scenarios-data

scenarios: $(BIN)/activate ## Write the simulated study shapes (scenario matrix) to runs/scenarios-data/<name>/
	$(PY) -m helpers scenarios --out $(SCENARIOS_OUT)

# ---- make all: the runner re-runs only the notebooks that are out of date (their notebook, the
# helpers, the data, the config, an earlier step's results or the parameters changed), JOBS at a
# time: 01 first, then each notebook once the steps it reads (its metadata says which) are done;
# their kernels are forked from one process with the imports done (helpers.warm_kernels)
SEED      ?= 2026
JOBS      ?= $(shell nproc 2>/dev/null || echo 1)
SRC       := $(wildcard src/helpers/*.py src/helpers/*.yml) pyproject.toml
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
FIRST     := $(OUT)/notebooks/01_clean.ipynb
PARAMS    ?=
RUN_NB     = $(PY) -m helpers run-notebooks --data $(DATA) --config $(CONFIG) --out $(OUT) --seed $(SEED) $(foreach p,$(PARAMS),--set $(p))

all: $(OUT)/report/index.html ## Run the notebooks on DATA/CONFIG into OUT, JOBS at a time (default: demo study → runs/demo)
	@echo "done: $(OUT) (report: $(OUT)/report/index.html)"

# quiet recipes: each notebook prints its own "[step/total] name  time" line; the manifest is
# rewritten only when it changes, so an up-to-date run does not render the report again
$(OUT)/manifest.json: $(DATA) $(CONFIG) FORCE | $(BIN)/activate
	@$(RUN_NB) --stale --jobs $(JOBS) --only $(basename $(notdir $(NOTEBOOKS)))

$(FIRST): notebooks/01_clean.ipynb $(SRC) $(DATA) $(CONFIG) | $(BIN)/activate
	@$(RUN_NB) --only 01_clean

$(OUT)/report/index.html: $(OUT)/manifest.json
	@$(PY) -m helpers report --out $(OUT) >/dev/null

$(DATA) $(CONFIG):
	@echo "error: '$@' does not exist: set DATA=path/to/export and CONFIG=path/to/study.yml" >&2; exit 2

FORCE:

report: $(OUT)/report/index.html ## Render OUT's executed notebooks to HTML with an index page

refresh: $(BIN)/activate ## Re-execute the committed notebooks in place on the demo study (updates reference outputs)
	@for nb in $(NOTEBOOKS); do \
		echo "refreshing $$nb"; \
		$(BIN)/jupyter nbconvert --to notebook --execute --inplace "$$nb" || exit 1; \
		$(PY) -c "from helpers.notebook_files import strip_execution_metadata as s, strip_widget_state_file as w; s('$$nb'); w('$$nb')"; \
	done

check-determinism: $(BIN)/activate ## Run the suite twice and check results and figures are byte-identical
	rm -rf runs/determinism-a runs/determinism-b
	$(MAKE) --no-print-directory all OUT=runs/determinism-a
	$(MAKE) --no-print-directory all OUT=runs/determinism-b
	$(PY) -m helpers compare-runs runs/determinism-a runs/determinism-b

test: unit nbtest ## Unit tests plus notebook regression tests (nbval)

test-fast: $(BIN)/activate ## Unit tests without the slow ones and the scenario suite (the edit-test loop)
	$(BIN)/pytest -q -p no:cacheprovider -n 2 -m "not scenarios and not browser and not slow" tests

browser-test: $(BIN)/activate ## The explorers in JupyterLab and Voila, driven by headless Chromium (skipped without one)
	$(BIN)/pytest -q -ra -s -p no:cacheprovider -m browser tests/test_browser.py

unit: $(BIN)/activate ## Unit tests (two processes), then the scenario suite and the browser test
	$(BIN)/pytest -q -p no:cacheprovider -n 2 -m "not scenarios and not browser" tests
	$(BIN)/pytest -q -ra -p no:cacheprovider -m "scenarios or browser" tests

nbtest: $(BIN)/activate ## Notebook regression tests only
	$(BIN)/pytest -q -p no:cacheprovider --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg notebooks

lint: $(BIN)/activate ## ruff over src, tests, bench and notebooks
	$(BIN)/ruff check src tests bench notebooks
	$(BIN)/ruff format --check src tests bench

lab: $(BIN)/activate ## Open JupyterLab on notebooks/
	$(BIN)/jupyter lab notebooks/

APP_PORT ?= 8866
APP_NB   := $(OUT)/app/08_explore_interactively.ipynb
APP_TRUTH = $(if $(wildcard $(dir $(DATA))truth.json),$(abspath $(dir $(DATA))truth.json),)

app: $(OUT)/notebooks/01_clean.ipynb ## Serve the explorers of notebook 08 on OUT's data with Voila (127.0.0.1, with a token)
	@mkdir -p $(OUT)/app
	@$(PY) -m papermill --prepare-only --log-level ERROR notebooks/08_explore_interactively.ipynb $(APP_NB) \
		-p PROCESSED_DIR $(abspath $(OUT))/processed -p TRUTH_PATH "$(APP_TRUTH)"
	$(BIN)/voila $(APP_NB) --Voila.ip=127.0.0.1 --port=$(APP_PORT) --token

clean: ## Remove generated outputs (never data/raw/)
	find data/processed -mindepth 1 ! -name .gitkeep -delete
	rm -rf results/ figures/ runs/ report/ .pytest_cache
	find . -name __pycache__ -type d -prune -not -path './$(VENV)/*' -exec rm -rf {} +
