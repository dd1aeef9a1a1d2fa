"""The resolution a module was trained at: recorded when fitting, saved in its checkpoints, and from there in its
exports; editing defaults to it (``mredit.pipelines.sizing.choose_resolution``).

``trained_resolution`` is the ``resolution`` of the datamodule the module was last fitted with (the side of the
square training crops; ``LatentDataModule`` reads it from its manifest), or None when unknown. A checkpoint written
before it was recorded yields the ``resolution`` of the datamodule hyperparameters Lightning saved with it.
"""

from __future__ import annotations

from typing import Any

CHECKPOINT_KEY = "trained_resolution"
# Lightning's key for the datamodule's ``save_hyperparameters`` in a checkpoint
DATAMODULE_HPARAMS_KEY = "datamodule_hyper_parameters"


def _side(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) and value >= 1 else None


def checkpoint_resolution(checkpoint: dict[str, Any]) -> int | None:
    """The training resolution a checkpoint records, or that its saved datamodule hyperparameters name."""
    recorded = _side(checkpoint.get(CHECKPOINT_KEY))
    if recorded is not None:
        return recorded
    datamodule = checkpoint.get(DATAMODULE_HPARAMS_KEY)
    return _side(datamodule.get("resolution")) if isinstance(datamodule, dict) else None


class TrainedResolutionMixin:
    """List it before ``LightningModule`` in the bases; its hooks call ``super()``."""

    trained_resolution: int | None = None

    def on_fit_start(self) -> None:
        super().on_fit_start()
        datamodule = getattr(self.trainer, "datamodule", None)
        resolution = _side(getattr(datamodule, "resolution", None))
        if resolution is not None:  # after a resume, the checkpoint's value is replaced by this run's
            self.trained_resolution = resolution

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.trained_resolution is not None:
            checkpoint[CHECKPOINT_KEY] = self.trained_resolution

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        self.trained_resolution = checkpoint_resolution(checkpoint)
