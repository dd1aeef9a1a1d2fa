"""``EncodedLatentWriter``: the prediction writer of ``mredit data encode`` (``mredit.training.latent_encoding``).

Each rank writes the records of its predict batches (``(tensors, info)`` per sample, ``mredit.data.encode``) to its
own latent shards in ``out_dir``, as each batch finishes: ``latents-000000.tar, ...`` when one process runs,
``latents-rank0003-000000.tar, ...`` for rank 3 of several. It writes no ``manifest.json``: the job writes one for
the shards of all ranks (``report()`` lists this rank's).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import BasePredictionWriter

from mredit.data.latents import LatentShardWriter


def rank_prefix(rank: int, world_size: int) -> str:
    """The shard name prefix of one rank: ``latents`` for a single process, ``latents-rank0003`` for rank 3."""
    return "latents" if world_size == 1 else f"latents-rank{rank:04d}"


class EncodedLatentWriter(BasePredictionWriter):
    def __init__(self, out_dir: str | Path, shard_size: int = 1000) -> None:
        super().__init__(write_interval="batch")
        if shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {shard_size}")
        self.out_dir, self.shard_size = Path(out_dir), shard_size
        self._writer: LatentShardWriter | None = None
        self.shards: list[dict[str, Any]] = []

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        prefix = rank_prefix(trainer.global_rank, trainer.world_size)
        self._writer = LatentShardWriter(self.out_dir, self.shard_size, prefix=prefix, write_manifest=False)

    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: list[tuple[dict[str, Any], dict[str, Any]]],
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        for tensors, info in prediction:
            self._writer.write(tensors, info)

    def on_predict_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_predict_epoch_end(trainer, pl_module)
        if self._writer is not None:
            self.shards = self._writer.close()["shards"]
            self._writer = None

    def report(self) -> dict[str, Any]:
        """This rank's shards (``{"path", "num_samples"}``, paths relative to ``out_dir``) and sample count."""
        return {"shards": self.shards, "written": sum(shard["num_samples"] for shard in self.shards)}
