"""The learning-rate schedule of every module: diffusers' ``get_scheduler``, stepped once per optimizer step.

The names are diffusers' (``constant``, ``constant_with_warmup``, ``linear``, ``cosine``,
``cosine_with_restarts``, ``polynomial``); decaying schedules reach their end at
``trainer.estimated_stepping_batches``. Warm-up is diffusers' linear ramp from 0 (the first step has learning
rate 0).
"""

from __future__ import annotations

from typing import Any, Literal

import lightning.pytorch as pl
from diffusers.optimization import get_scheduler
from torch.optim import Optimizer

LRSchedulerName = Literal["constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial"]


def lr_scheduler_config(
    module: pl.LightningModule, optimizer: Optimizer, name: LRSchedulerName, lr_warmup_steps: int
) -> dict[str, Any]:
    """The ``lr_scheduler`` entry of ``configure_optimizers``: ``name`` over the run's optimizer steps."""
    total = max(1, int(module.trainer.estimated_stepping_batches)) if module._trainer is not None else 1
    if name == "constant" and lr_warmup_steps:
        raise ValueError("lr_scheduler 'constant' has no warm-up: use 'constant_with_warmup' or lr_warmup_steps=0")
    scheduler = get_scheduler(name, optimizer, num_warmup_steps=lr_warmup_steps, num_training_steps=total)
    return {"scheduler": scheduler, "interval": "step"}
