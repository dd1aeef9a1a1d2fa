from __future__ import annotations

import types

import pytest
import torch
from tiny_model import tiny_parts

from mredit.conditioning.official import OfficialRewardConditioner
from mredit.inference.pipeline import RewardEditPipeline, build_scheduler


def as_module(parts, conditioner=None) -> types.SimpleNamespace:
    """The attributes ``export_module`` / ``RewardEditPipeline.from_module`` read from a training module."""
    return types.SimpleNamespace(
        unet=parts.unet.eval(),
        vae=parts.vae.eval(),
        text_encoder=parts.text_encoder.eval(),
        tokenizer=parts.tokenizer,
        noise_scheduler=parts.scheduler,
        reward_conditioner=conditioner,
    )


def reward_pipeline(vae: str = "kl", null_condition: bool = False, scheduler: str = "euler_a") -> RewardEditPipeline:
    torch.manual_seed(0)
    parts = tiny_parts(vae)
    conditioner = OfficialRewardConditioner.for_unet(
        parts.unet.config, parts.text_encoder.config.hidden_size, null_condition=null_condition
    ).eval()
    if null_condition:
        with torch.no_grad():
            conditioner.null_time_emb.normal_()
            conditioner.null_tokens.normal_()
    return RewardEditPipeline(
        parts.unet.eval(),
        parts.vae.eval(),
        parts.text_encoder.eval(),
        parts.tokenizer,
        build_scheduler(scheduler, dict(parts.scheduler.config)),
        conditioner,
    )


@pytest.fixture
def pipe() -> RewardEditPipeline:
    return reward_pipeline()
