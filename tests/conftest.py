"""Suite-wide settings: offline, quiet, deterministic."""

import os

# No test may reach the network: hubs are offline, wandb writes locally, no telemetry.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One intra-op thread: CI has 2 cores and several tests run subprocesses (DDP ranks, CLIs) side by side;
# oversubscribed OpenMP threads made the suite an order of magnitude slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.pop("OPENAI_API_KEY", None)
os.environ.pop("WANDB_API_KEY", None)

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
