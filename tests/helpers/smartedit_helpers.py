"""Tiny SmartEdit sizes and a batch of the DataModule's contract, shared by this area's tests."""

from __future__ import annotations

import torch

from mredit.models.smartedit.bim import BIMConfig
from mredit.models.smartedit.mllm import MLLMConfig
from mredit.models.smartedit.module import SmartEditModule
from mredit.models.smartedit.qformer import QFormerConfig

TINY_SIZES = dict(
    tiny=True,
    init_seed=0,
    mllm=MLLMConfig(num_img_tokens=4, system_prompt="The assistant edits images.", answer_text="Here it is."),
    qformer=QFormerConfig(num_queries=8, num_layers=2, num_heads=4, intermediate_size=64),
    bim=BIMConfig(num_heads=4, mlp_dim=64),
    num_inference_steps=2,
)


def tiny_module(**overrides) -> SmartEditModule:
    """A tiny SmartEditModule with its parts built (what Lightning's ``configure_model`` call does)."""
    module = SmartEditModule(**{**TINY_SIZES, **overrides})
    module.configure_model()
    return module


def make_batch(batch_size: int = 2, with_rewards: bool = True) -> dict:
    generator = torch.Generator().manual_seed(0)
    return {
        "key": [f"k{i}" for i in range(batch_size)],
        "source": torch.rand(batch_size, 3, 32, 32, generator=generator) * 2 - 1,
        "target": torch.rand(batch_size, 3, 32, 32, generator=generator) * 2 - 1,
        "instruction": ["make the square red", "remove the blue circle"][:batch_size],
        "scores": torch.tensor([[5.0, 4.0, 3.0], [1.0, 2.0, 0.0]])[:batch_size],
        "feedback": [["None", "the background changed", "None"], ["wrong colour", "None", "blurry"]][:batch_size],
        "reward_mask": torch.tensor([with_rewards] * batch_size),
        "meta": [{} for _ in range(batch_size)],
    }
