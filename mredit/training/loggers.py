"""Loggers: Weights & Biases that goes offline by itself when no API key is set."""

from __future__ import annotations

import os
from typing import Any

from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger

SECRET_MARKERS = ("api_key", "apikey", "token", "secret", "password")


class WandbLogger(LightningWandbLogger):
    """Lightning's ``WandbLogger``; ``offline=None`` (default) means offline unless ``WANDB_API_KEY`` is set,
    so runs without credentials still log locally (``wandb sync`` uploads them later)."""

    def __init__(self, project: str = "mredit", offline: bool | None = None, **kwargs: Any) -> None:
        if offline is None:
            offline = not os.environ.get("WANDB_API_KEY")
        super().__init__(project=project, offline=offline, **kwargs)


def scrub_secrets(value: Any) -> Any:
    """A copy of a nested config with every value under a secret-looking key replaced."""
    if isinstance(value, dict):
        return {
            k: "<redacted>" if any(m in str(k).lower() for m in SECRET_MARKERS) else scrub_secrets(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(scrub_secrets(v) for v in value)
    return value
