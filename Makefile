# jina5: every target sets up what it needs from nothing.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test lint ablate train evaluate clean

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

test: setup
	$(BIN)/ruff check jina5 tests experiments
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check jina5 tests experiments
	$(BIN)/ruff format --check jina5 tests experiments

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
