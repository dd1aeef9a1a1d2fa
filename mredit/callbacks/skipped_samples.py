"""``SkippedSamplesLogger``: the skipped-sample counts of the datamodule as metrics, every epoch."""

from __future__ import annotations

import lightning.pytorch as pl

from mredit.data.reader import SKIP_REASONS


class SkippedSamplesLogger(pl.Callback):
    """Log the datamodule's ``skipped`` counts (``{split: {reason: count}}``, e.g. ``EditDataModule.skipped``) as
    ``data/skipped_<split>`` and ``data/skipped_<split>/<reason>``, summed over ranks, at each train/validation
    epoch end. A datamodule without ``skipped`` is ignored. ``mredit fit`` adds one when the trainer has none."""

    def _log(self, trainer: pl.Trainer, pl_module: pl.LightningModule, split: str) -> None:
        datamodule = getattr(trainer, "datamodule", None)
        counts = getattr(datamodule, "skipped", {}).get(split)
        if counts is None:
            return
        pl_module.log(f"data/skipped_{split}", float(sum(counts.values())), sync_dist=True, reduce_fx="sum")
        for reason in SKIP_REASONS:
            pl_module.log(
                f"data/skipped_{split}/{reason}", float(counts.get(reason, 0)), sync_dist=True, reduce_fx="sum"
            )

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._log(trainer, pl_module, "train")

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._log(trainer, pl_module, "val")
