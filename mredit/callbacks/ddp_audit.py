"""Evidence that data parallelism is right: which samples each rank trained on, and what weights it ended with.

Each rank writes ``<out_dir>/rank<k>.json`` at the end of fit: the sample keys of its training batches and a
digest of every trainable parameter. Ranks must see disjoint keys and end with identical digests.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import lightning.pytorch as pl


def parameter_digest(module: pl.LightningModule) -> str:
    digest = hashlib.sha256()
    for name, param in module.named_parameters():
        if param.requires_grad:
            digest.update(name.encode())
            digest.update(param.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()


class DDPAudit(pl.Callback):
    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir
        self.keys: list[str] = []

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int):
        self.keys.extend(batch.get("key", []))

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        os.makedirs(self.out_dir, exist_ok=True)
        record = {
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "global_step": trainer.global_step,
            "keys": self.keys,
            "parameters": parameter_digest(pl_module),
        }
        with open(os.path.join(self.out_dir, f"rank{trainer.global_rank}.json"), "w") as f:
            json.dump(record, f)
