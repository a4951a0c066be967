# unirg: `make rl` runs the embedded default recipe on a CPU; `make test` runs the tests.
# Both run `setup` first, which creates .venv with the CPU install profile (fast when already done).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RECIPE ?= demo
ARGS ?=
PYTEST_ARGS ?=
STAMP := $(VENV)/.unirg-installed

export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup rl test lint clean bench

setup: $(STAMP)

# torch is installed first and alone so pip takes the CPU build pinned in pyproject.toml;
# resolving it together with the rest lets pip pick the newest CUDA build instead.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

rl: setup
	$(BIN)/python -m unirg rl --recipe $(RECIPE) $(ARGS)

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check unirg rewards tests examples

bench: setup
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf runs .pytest_cache .ruff_cache .hypothesis build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
