"""``EditedImageWriter``: the prediction writer of ``mredit predict``.

``mredit predict --config ... --ckpt_path X.ckpt`` runs the module's ``predict_step`` over the predict shards
(``{"key": [...], "images": [PIL]}`` per batch); this callback writes each image to ``<output_dir>/<key>.png``.
``mredit edit --shards`` writes its edits through it too (``mredit.editing.shard_editing``). Under DDP each rank
writes the images of its own samples; the file names are the keys, so no two ranks write the same file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import BasePredictionWriter


def image_filename(key: str) -> str:
    """A flat, safe file name for a sample key (keys may contain path separators)."""
    safe = key.replace("\\", "/").strip("/").replace("/", "__")
    if not safe or safe in (".", ".."):
        raise ValueError(f"sample key {key!r} cannot be used as a file name")
    return f"{safe}.png"


class EditedImageWriter(BasePredictionWriter):
    """Writes the images of ``predict_step`` to ``<output_dir>/<key>.png`` as each batch finishes."""

    def __init__(self, output_dir: str) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.written = 0

    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: dict[str, Any],
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        for key, image in zip(prediction["key"], prediction["images"], strict=True):
            image.save(self.output_dir / image_filename(key))
            self.written += 1

    def report(self) -> dict[str, Any]:
        """How many images this rank wrote (``mredit.training.offline``)."""
        return {"written": self.written}
