# mredit: run `make help` for the targets.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
CONFIG ?= ip2p_tiny
ARGS ?=
TORCH_CPU_VERSION ?= 2.13.0
PYTEST_ARGS ?=

.PHONY: help install test lint format synth train demo clean

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

synth: install ## the synthetic shards the tiny configs read (data/synth and data/synth_reward)
	$(VENV)/bin/mredit data synth --out data/synth/train --split train --num 2000
	$(VENV)/bin/mredit data synth --out data/synth/val --split test --num 64 --seed 1
	$(VENV)/bin/mredit data synth --out data/synth_reward/train --split train --num 2000 --with_rewards true
	$(VENV)/bin/mredit data synth --out data/synth_reward/val --split test --num 64 --seed 1 --with_rewards true

train: install ## train: make train CONFIG=<name> [ARGS="--trainer.max_steps=10"]
	$(VENV)/bin/mredit fit --config configs/$(CONFIG).yaml $(ARGS)

demo: install ## the whole method on the synthetic world, CPU only (see README)
	$(VENV)/bin/python -m mredit.lab.demo $(ARGS)

clean: ## remove caches and run outputs (keeps .venv)
	rm -rf .pytest_cache .ruff_cache lightning_logs reports/demo runs
