"""Tiny random editing components shared by the inference and export tests."""

from __future__ import annotations

import types

import torch
from diffusers import AutoencoderKL

from mredit.conditioning.official import OfficialRewardConditioner
from mredit.models.components import Components, build_tiny_components
from mredit.pipelines.reward_edit import RewardEditPipeline, build_scheduler

TINY_KL = dict(
    block_out_channels=[8, 16],
    down_block_types=["DownEncoderBlock2D"] * 2,
    up_block_types=["UpDecoderBlock2D"] * 2,
    latent_channels=4,
    layers_per_block=1,
    norm_num_groups=8,
)


def tiny_parts(vae: str = "kl", **unet_overrides) -> Components:
    """``vae="kl"``: a tiny random AutoencoderKL (factor 2, 4 latent channels); ``"pixel"``: PixelShuffle."""
    if vae == "pixel":
        return build_tiny_components(unet_config=unet_overrides or None)
    parts = build_tiny_components(unet_config={"in_channels": 8, "out_channels": 4, **unet_overrides})
    parts.vae = AutoencoderKL(**TINY_KL)
    return parts


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
