"""Inputs and old-format models for the editing tests: a photo-sized JPEG, a checkpoint as written before the
training resolution was recorded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image


def write_photo(path: Path, size: tuple[int, int] = (720, 477)) -> Path:
    """An ordinary photo-sized JPEG: smooth gradients plus noise."""
    width, height = size
    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(0)
    pixels = np.stack([x / width * 255, y / height * 255, (x + y) % 256], -1) + rng.normal(0, 20, (height, width, 3))
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path, quality=90)
    return path


def without_resolution(ckpt: Path, out: Path) -> Path:
    """A copy of a checkpoint as written before the resolution was recorded: no ``trained_resolution`` and no
    datamodule hyperparameters to read it from."""
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=False)
    checkpoint.pop("trained_resolution", None)
    checkpoint.pop("datamodule_hyper_parameters", None)
    torch.save(checkpoint, out)
    return out
