"""A tiny InstructPix2PixModule with the official conditioner, trained two steps and checkpointed."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from mredit.callbacks.reward_conditioning import RewardConditioning
from mredit.data.datamodule import collate_edit_samples
from mredit.models.ip2p import InstructPix2PixModule


def edit_items(count: int = 4, size: int = 16) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    return [
        {
            "key": f"synth/{index:03d}",
            "source": torch.rand(3, size, size, generator=g) * 2 - 1,
            "target": torch.rand(3, size, size, generator=g) * 2 - 1,
            "instruction": "make the square red",
            "scores": torch.tensor([5.0, float(index % 5), 3.0]),
            "feedback": ["None", "the background changed", "None"],
            "reward_mask": True,
            "meta": {},
        }
        for index in range(count)
    ]


def loader(items: list[dict], batch_size: int = 2) -> DataLoader:
    return DataLoader(items, batch_size=batch_size, collate_fn=collate_edit_samples)


def trainer(**kwargs) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )


class ItemsDataModule(pl.LightningDataModule):
    """``items`` as a datamodule with the ``resolution`` a module records when it is fitted on it."""

    def __init__(self, items: list[dict], resolution: int) -> None:
        super().__init__()
        self.items, self.resolution = items, resolution

    def train_dataloader(self) -> DataLoader:
        return loader(self.items)


def train_checkpoint(path: Path, resolution: int | None = None) -> InstructPix2PixModule:
    """Two steps on ``edit_items()``; with ``resolution``, through a datamodule of that resolution (16 px items),
    so the checkpoint records it as the training resolution."""
    pl.seed_everything(0, verbose=False)
    module = InstructPix2PixModule(ema_decay=0.5, ema_warmup=False, learning_rate=1e-3)
    fit = trainer(max_steps=2, callbacks=[RewardConditioning(variant="official")])
    if resolution is None:
        fit.fit(module, loader(edit_items()))
    else:
        fit.fit(module, datamodule=ItemsDataModule(edit_items(size=resolution), resolution))
    fit.save_checkpoint(path)
    return module
