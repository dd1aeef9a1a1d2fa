"""Lightning prediction: ``predict_batch`` (called by the modules' ``predict_step``) and a writer callback.

``mredit predict --config ... --ckpt_path X.ckpt`` runs the module's ``predict_step`` over the predict shards;
``EditedImageWriter`` writes each edited image to ``<output_dir>/<key>.png``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from mredit.inference.pipeline import AUTO_SCHEDULER, RewardEditPipeline


def predict_batch(
    module,
    batch: dict[str, Any],
    scheduler: str = AUTO_SCHEDULER,
    num_inference_steps: int = 30,
    text_guidance_scale: float = 7.5,
    image_guidance_scale: float = 1.5,
    reward_guidance_scale: float = 1.0,
    scores: tuple[float, float, float] | None = None,
    feedback: list[str] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Edit ``batch["source"]`` by ``batch["instruction"]`` at the given rewards (default: the best).

    Runs with the module's current weights (its ``predict_step`` swaps the EMA weights in). The generator is
    seeded with ``seed`` per batch, so a batch's result does not depend on the batches before it.
    Returns ``{"key": [...], "images": [PIL images]}``.
    """
    pipe = RewardEditPipeline.from_module(module, scheduler=scheduler)
    generator = torch.Generator(device=module.device).manual_seed(seed)
    images = pipe(
        batch["source"],
        batch["instruction"],
        scores=scores,
        feedback=feedback,
        num_inference_steps=num_inference_steps,
        text_guidance_scale=text_guidance_scale,
        image_guidance_scale=image_guidance_scale,
        reward_guidance_scale=reward_guidance_scale,
        generator=generator,
    )
    return {"key": list(batch["key"]), "images": images}


def image_filename(key: str) -> str:
    """A flat, safe file name for a sample key (keys may contain path separators)."""
    safe = key.replace("\\", "/").strip("/").replace("/", "__")
    if not safe or safe in (".", ".."):
        raise ValueError(f"sample key {key!r} cannot be used as a file name")
    return f"{safe}.png"


class EditedImageWriter(BasePredictionWriter):
    """Writes the images of ``predict_batch`` to ``<output_dir>/<key>.png`` as each batch finishes."""

    def __init__(self, output_dir: str) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)

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
