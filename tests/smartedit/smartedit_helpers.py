"""Tiny SmartEdit sizes and a batch of the DataModule's contract, shared by this area's tests."""

from __future__ import annotations

import torch

TINY_SIZES = dict(
    tiny=True,
    init_seed=0,
    num_img_tokens=4,
    num_queries=8,
    qformer_layers=2,
    qformer_heads=4,
    qformer_intermediate=64,
    bim_heads=4,
    bim_mlp_dim=64,
    inference_steps=2,
    system_prompt="The assistant edits images.",
    answer_text="Here it is.",
)


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
