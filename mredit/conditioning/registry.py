"""Conditioner variants by name; classes are imported only when built."""

from __future__ import annotations

import importlib
from typing import Any

from mredit.conditioning.base import RewardConditioner

VARIANTS: dict[str, str] = {
    "paper": "mredit.conditioning.paper.PaperRewardConditioner",
    "official": "mredit.conditioning.official.OfficialRewardConditioner",
}


def conditioner_class(variant: str) -> type[RewardConditioner]:
    """A registered variant name, or a dotted class path of a ``RewardConditioner`` subclass."""
    class_path = VARIANTS.get(variant, variant)
    module_name, _, class_name = class_path.rpartition(".")
    if not module_name:
        raise ValueError(f"unknown reward conditioner variant {variant!r}: choose one of {sorted(VARIANTS)}")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"reward conditioner variant {variant!r} ({class_path}) cannot be imported: {e}") from e
    if not (isinstance(cls, type) and issubclass(cls, RewardConditioner)):
        raise ValueError(f"{class_path} is not a RewardConditioner subclass")
    return cls


def build_conditioner(variant: str, unet_config: Any, text_dim: int, **switches: Any) -> RewardConditioner:
    """``switches``: use_scores, use_feedback, time_path, latent_path, null_condition and variant options."""
    return conditioner_class(variant).for_unet(unet_config, text_dim=text_dim, **switches)
