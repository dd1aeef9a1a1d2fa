"""An exactly invertible, parameter-free stand-in for the SD VAE, for tiny CPU models and the demo.

A randomly initialised ``AutoencoderKL`` cannot reconstruct images and no pretrained VAE can be downloaded
offline, so tiny configs "encode" with a pixel unshuffle (``[B, 3, H, W] -> [B, 3 f^2, H/f, W/f]``) and decode
with the inverse shuffle. It exposes the ``AutoencoderKL`` call surface the module and pipelines use:
``encode(x).latent_dist.{sample(), mode(), mean, logvar}``, ``decode(z).sample``, ``config.scaling_factor``,
``config.latent_channels`` and ``config.block_out_channels`` (whose length gives diffusers pipelines the
spatial factor ``2 ** (len - 1)``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import DecoderOutput, DiagonalGaussianDistribution
from diffusers.models.modeling_outputs import AutoencoderKLOutput
from diffusers.models.modeling_utils import ModelMixin

# log-variance of the deterministic posterior: DiagonalGaussianDistribution clamps to [-30, 20]
_DETERMINISTIC_LOGVAR = -30.0


class PixelShuffleAutoencoder(ModelMixin, ConfigMixin):
    """Pixel (un)shuffle by ``factor`` (a power of two); ``latent_channels = in_channels * factor ** 2``."""

    @register_to_config
    def __init__(
        self,
        factor: int = 2,
        in_channels: int = 3,
        scaling_factor: float = 1.0,
        latent_channels: int | None = None,
        block_out_channels: list[int] | None = None,
    ) -> None:
        """``latent_channels`` and ``block_out_channels`` are derived; a saved config's values are checked."""
        super().__init__()
        if factor < 1 or factor & (factor - 1):
            raise ValueError(f"PixelShuffleAutoencoder: factor must be a power of two, got {factor}")
        derived = {
            "latent_channels": in_channels * factor**2,
            "block_out_channels": [in_channels] * (int(math.log2(factor)) + 1),
        }
        given = {"latent_channels": latent_channels, "block_out_channels": block_out_channels}
        for name, value in given.items():
            if value is not None and (list(value) if name == "block_out_channels" else value) != derived[name]:
                raise ValueError(f"PixelShuffleAutoencoder: {name}={value} contradicts factor/in_channels")
        self.register_to_config(**derived)
        # no weights; the buffer gives the model a device and dtype like any other diffusers model
        self.register_buffer("anchor", torch.zeros(1), persistent=True)

    def encode(self, x: torch.Tensor, return_dict: bool = True) -> AutoencoderKLOutput | tuple:
        factor = self.config.factor
        if x.shape[-1] % factor or x.shape[-2] % factor:
            raise ValueError(f"PixelShuffleAutoencoder: image size {tuple(x.shape[-2:])} not divisible by {factor}")
        mean = F.pixel_unshuffle(x, factor)
        params = torch.cat([mean, torch.full_like(mean, _DETERMINISTIC_LOGVAR)], dim=1)
        dist = DiagonalGaussianDistribution(params, deterministic=True)
        return AutoencoderKLOutput(latent_dist=dist) if return_dict else (dist,)

    def decode(self, z: torch.Tensor, return_dict: bool = True, generator=None) -> DecoderOutput | tuple:
        image = F.pixel_shuffle(z, self.config.factor)
        return DecoderOutput(sample=image) if return_dict else (image,)

    def forward(self, sample: torch.Tensor, sample_posterior: bool = False, return_dict: bool = True):
        latents = self.encode(sample).latent_dist.mode()
        return self.decode(latents, return_dict=return_dict)
