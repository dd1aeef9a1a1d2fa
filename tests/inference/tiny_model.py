"""Tiny random editing components shared by the inference and export tests."""

from __future__ import annotations

from diffusers import AutoencoderKL

from mredit.models.components import Components, build_tiny_components

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
