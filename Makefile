# mredit: run `make help` for the targets.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
CONFIG ?= ip2p_tiny
ARGS ?=
TORCH_CPU_VERSION ?= 2.13.0
PYTEST_ARGS ?=

.PHONY: help install test lint format synth train demo serve clean gpu-check

help: ## list the targets
	@grep -E '^[a-z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@if ! command -v nvidia-smi >/dev/null 2>&1 && ! $(PY) -c "import torch" >/dev/null 2>&1; then \
		echo "no CUDA device: installing the CPU torch wheel ($(TORCH_CPU_VERSION))"; \
		$(PIP) install -q "torch==$(TORCH_CPU_VERSION)" || $(PIP) install -q torch --index-url https://download.pytorch.org/whl/cpu; \
	fi
	$(PIP) install -q -e ".[dev]"
	@touch $@

install: $(VENV)/.installed ## create .venv (if absent) and install mredit with its dev extras

test: install ## run the test suite
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: install ## ruff check and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install ## apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The shard folders the tiny configs read, each made once (when its manifest.json is missing); the same commands
# as mredit/data/recipes.py, which names them when a folder is missing. Remake: delete the folder first.
SYNTH_DIRS := data/synth/train data/synth/val data/synth_reward/train data/synth_reward/val
# the SYNTH_DIRS the config's data section reads (`*_shards: data/synth...`), made before it trains
CONFIG_SHARDS = $(filter $(SYNTH_DIRS),$(shell grep -oE '_shards: *data/synth[a-z_]*/[a-z]+' configs/$(CONFIG).yaml 2>/dev/null | sed 's/.*: *//'))

data/synth/train/manifest.json: | $(VENV)/.installed
	$(VENV)/bin/mredit data synth --out $(@D) --split train --num 2000
data/synth/val/manifest.json: | $(VENV)/.installed
	$(VENV)/bin/mredit data synth --out $(@D) --split test --num 64 --seed 1
data/synth_reward/train/manifest.json: | $(VENV)/.installed
	$(VENV)/bin/mredit data synth --out $(@D) --split train --num 2000 --with_rewards true
data/synth_reward/val/manifest.json: | $(VENV)/.installed
	$(VENV)/bin/mredit data synth --out $(@D) --split test --num 64 --seed 1 --with_rewards true

synth: install $(addsuffix /manifest.json,$(SYNTH_DIRS)) ## the synthetic shards the tiny configs read (data/synth, data/synth_reward), once

train: install $(addsuffix /manifest.json,$(CONFIG_SHARDS)) ## train: make train CONFIG=<name> [ARGS="--trainer.max_steps=10"] (a tiny config's shards are made first)
	$(VENV)/bin/mredit fit --config configs/$(CONFIG).yaml $(ARGS)

demo: install ## the whole method on the synthetic world, CPU only (see README)
	$(VENV)/bin/python -m mredit.lab.demo $(ARGS)

DEMO_OUT ?= reports/demo
# --threads 1: the demo's 16 px models sample fastest on one CPU thread (in the server on 2 cores: 0.6 s an edit,
# against 1.1-1.8 s on two threads)
serve: install ## after make demo: its reward model beside its baseline in a browser page, http://127.0.0.1:7860 [ARGS="--port 8000"]
	@test -f $(DEMO_OUT)/runs/reward/final.ckpt -a -f $(DEMO_OUT)/runs/baseline/final.ckpt || \
		{ echo "make serve: no demo models in $(DEMO_OUT)/runs: run make demo first (or: mredit serve --model ...)"; exit 1; }
	$(VENV)/bin/mredit serve --model $(DEMO_OUT)/runs/reward/final.ckpt --baseline $(DEMO_OUT)/runs/baseline/final.ckpt \
		--examples $(DEMO_OUT)/data/test --threads 1 $(ARGS)

# A lent GPU machine has no .venv: its python3 holds torch, lightning and transformers; the packages below come from
# the git-ignored .whl/ folder (bring it along), and mredit is installed in place, each only when missing.
GPU_PY = $(if $(wildcard $(PY)),$(PY),python3)
GPU_WHEELS ?= diffusers importlib_metadata simplejpeg
gpu-check: ## first thing on a lent GPU: every GPU figure in <= 8 min to reports/gpu/ [ARGS="--dry-run": CPU, tiny]
	@for m in $(GPU_WHEELS); do $(GPU_PY) -c "import $$m" 2>/dev/null || $(GPU_PY) -m pip install -q --no-deps \
		--no-index .whl/$$m-*.whl || { echo "make gpu-check: $$m is missing and .whl/ has no wheel of it"; exit 1; }; done
	@$(GPU_PY) -P -c "import mredit" 2>/dev/null || $(GPU_PY) -m pip install -q --no-deps --no-build-isolation -e . \
		|| echo "make gpu-check: could not install mredit; running it from this folder (PYTHONPATH)"
	PYTHONPATH=$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH} $(GPU_PY) benchmarks/gpu_check.py $(ARGS)

clean: ## remove caches and run outputs (keeps .venv)
	rm -rf .pytest_cache .ruff_cache lightning_logs reports/demo runs
