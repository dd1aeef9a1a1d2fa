"""Validation previews: a grid of rows ``source | edit at rewards (5,5,5) | target``.

Made from the first validation batch on rank 0 with the module's ``edit_tensors`` (the shared sampling
pipeline; the module's EMA weights are swapped in during validation),
at most once every ``every_n_steps`` optimizer steps. Saved as ``<log_dir>/previews/step_<6-digit step>.png``
and sent to a W&B or TensorBoard logger when one is configured.
"""

from __future__ import annotations

import os
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from PIL import Image

from mredit.data.transforms import pixels_to_float


def to_uint8_grid(columns: list[torch.Tensor]) -> torch.Tensor:
    """Columns of ``[B, 3, H, W]`` images in [-1, 1] -> one ``[H*B, W*len(columns), 3]`` uint8 image."""
    rows = torch.cat([torch.cat(list(images), dim=-1) for images in zip(*columns)], dim=-2)
    return ((rows.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).cpu()


class ValidationImageGrid(pl.Callback):
    """Args:
    every_n_steps: at most one grid per this many optimizer steps.
    num_images: rows of the grid.
    num_inference_steps: DDIM steps of the previews.
    text_guidance_scale, image_guidance_scale: 1.0 (the default) samples without guidance, showing what the
        network itself learned (guidance ruins the outputs of small models early in training).
    """

    def __init__(
        self,
        every_n_steps: int = 500,
        num_images: int = 4,
        num_inference_steps: int = 10,
        text_guidance_scale: float = 1.0,
        image_guidance_scale: float = 1.0,
    ) -> None:
        if every_n_steps < 1 or num_images < 1 or num_inference_steps < 1:
            raise ValueError("ValidationImageGrid: every_n_steps, num_images and num_inference_steps must be >= 1")
        self.every_n_steps, self.num_images, self.num_inference_steps = every_n_steps, num_images, num_inference_steps
        self.text_guidance_scale, self.image_guidance_scale = text_guidance_scale, image_guidance_scale
        self.last_step: int | None = None
        self.last_path: str | None = None

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: dict[str, Any],
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        step = trainer.global_step
        due = self.last_step is None or step - self.last_step >= self.every_n_steps
        if batch_idx != 0 or trainer.sanity_checking or not trainer.is_global_zero or not due or "source" not in batch:
            return
        self.last_step = step
        n = min(self.num_images, batch["source"].shape[0])
        source, target = pixels_to_float(batch["source"][:n]), pixels_to_float(batch["target"][:n])
        edits = pl_module.edit_tensors(
            source,
            batch["instruction"][:n],
            scheduler="ddim",
            num_inference_steps=self.num_inference_steps,
            text_guidance_scale=self.text_guidance_scale,
            image_guidance_scale=self.image_guidance_scale,
        )
        grid = to_uint8_grid([source.float().cpu(), edits.cpu(), target.float().cpu()])
        self.last_path = self._save(trainer, grid, step)
        caption = " / ".join(batch["instruction"][:n])
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image("val/edits", [grid.numpy()], step=step, caption=[caption])
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image("val/edits", grid.numpy(), step, dataformats="HWC")

    def _save(self, trainer: pl.Trainer, grid: torch.Tensor, step: int) -> str:
        folder = os.path.join(trainer.log_dir or trainer.default_root_dir, "previews")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"step_{step:06d}.png")
        Image.fromarray(grid.numpy()).save(path)
        return path
