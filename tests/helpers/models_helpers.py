"""Fixtures for the model tests: the smallest real modules and contract batches built in memory."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset

from mredit.models.ip2p import InstructPix2PixModule

RESOLUTION = 16
SMALLEST_UNET = {"block_out_channels": [8, 16], "norm_num_groups": 4, "attention_head_dim": 4}
SMALLEST_TEXT = {"hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2}


def make_module(**kwargs) -> InstructPix2PixModule:
    torch.manual_seed(0)
    options = {"unet_config": SMALLEST_UNET, "text_encoder_config": SMALLEST_TEXT, "learning_rate": 1e-3, **kwargs}
    return InstructPix2PixModule(**options)


def make_batch(batch_size: int = 4, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    source = torch.rand(batch_size, 3, RESOLUTION, RESOLUTION, generator=g) * 2 - 1
    return {
        "key": [f"s{seed}-{i}" for i in range(batch_size)],
        "source": source,
        "target": -source,
        "instruction": ["invert the colours"] * batch_size,
        "scores": torch.randint(0, 6, (batch_size, 3), generator=g).float(),
        "feedback": [["None", "the sky changed", "None"]] * batch_size,
        "reward_mask": torch.ones(batch_size, dtype=torch.bool),
        "meta": [{} for _ in range(batch_size)],
    }


class BatchDataset(Dataset):
    """Each item is already a whole contract batch (DataLoader with batch_size=None)."""

    def __init__(self, num_batches: int = 4, batch_size: int = 4) -> None:
        self.batches = [make_batch(batch_size, seed=i) for i in range(num_batches)]

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> dict:
        return self.batches[index]


def loader(num_batches: int = 4, batch_size: int = 4) -> DataLoader:
    return DataLoader(BatchDataset(num_batches, batch_size), batch_size=None)


def make_trainer(tmp_path, max_steps: int = 2, callbacks=None, **kwargs) -> pl.Trainer:
    options = {
        "accelerator": "cpu",
        "devices": 1,
        "max_steps": max_steps,
        "default_root_dir": tmp_path,
        "logger": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "enable_checkpointing": False,
        "num_sanity_val_steps": 0,
        "callbacks": callbacks or [],
        **kwargs,
    }
    return pl.Trainer(**options)
