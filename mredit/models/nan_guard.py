"""What to do when the loss is NaN or infinite: stop with the step named, or skip the batch on every rank."""

from __future__ import annotations

from typing import Literal

import lightning.pytorch as pl
import torch

NonFiniteLossPolicy = Literal["raise", "skip"]


def guard_loss(module: pl.LightningModule, loss: torch.Tensor, policy: NonFiniteLossPolicy) -> torch.Tensor | None:
    """``loss`` if finite everywhere; else raise (``"raise"``) or return None so Lightning skips the batch.

    Under DDP the decision is all-reduced, so a NaN on one rank makes every rank skip (a rank that skipped
    alone would leave the others waiting in the gradient all-reduce).
    """
    finite = bool(torch.isfinite(loss.detach()).all())
    trainer = module._trainer
    step = trainer.global_step if trainer is not None else -1
    if policy == "skip" and trainer is not None and trainer.world_size > 1:
        finite = trainer.strategy.reduce_boolean_decision(finite, all=True)
    if finite:
        return loss
    if policy == "raise":
        raise RuntimeError(f"non-finite training loss ({loss.item()}) at global step {step}: stopping")
    module.log("train/skipped_nonfinite", 1.0, reduce_fx="sum")
    module.print(f"warning: non-finite training loss at global step {step}: batch skipped")
    return None
