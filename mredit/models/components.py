"""The diffusers-layout components of an editing model: from a pretrained folder / hub id, or tiny config dicts.

A pretrained source is a Stable Diffusion 1.5-layout folder (or hub id) with ``unet/``, ``vae/``,
``text_encoder/``, ``tokenizer/`` and ``scheduler/``. Tiny components are built from config dicts with random
weights (the seed is set by the caller, e.g. LightningCLI's ``seed_everything``), with an offline
``CLIPTokenizer`` (``tiny_tokenizer.py``: character level, or the given words as single tokens) and, by default,
the invertible ``PixelShuffleAutoencoder``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from torch import nn
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from mredit.models.pixel_autoencoder import PixelShuffleAutoencoder
from mredit.models.tiny_tokenizer import build_tiny_tokenizer

SUBFOLDERS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
VAE_CLASSES: dict[str, type] = {"AutoencoderKL": AutoencoderKL, "PixelShuffleAutoencoder": PixelShuffleAutoencoder}

# the defaults of the tiny CPU model (about 1.7M UNet parameters; see docs/training.md)
TINY_UNET: dict[str, Any] = {
    "sample_size": 16,
    "block_out_channels": [32, 64],
    "layers_per_block": 1,
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "cross_attention_dim": 32,
    "attention_head_dim": 8,
    "norm_num_groups": 8,
}
TINY_TEXT_ENCODER: dict[str, Any] = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 77,
}
TINY_VAE: dict[str, Any] = {"_class_name": "PixelShuffleAutoencoder", "factor": 2}
TINY_SCHEDULER: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_schedule": "squaredcos_cap_v2",
    "prediction_type": "v_prediction",
}


@dataclass
class Components:
    unet: UNet2DConditionModel
    vae: nn.Module
    text_encoder: CLIPTextModel
    tokenizer: CLIPTokenizer
    scheduler: DDPMScheduler


def tiny_text_encoder_config(tokenizer: CLIPTokenizer, overrides: dict[str, Any] | None = None) -> CLIPTextConfig:
    values = {**TINY_TEXT_ENCODER, **(overrides or {})}
    values.update(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    values["max_position_embeddings"] = max(values["max_position_embeddings"], tokenizer.model_max_length)
    return CLIPTextConfig(**values)


def build_tiny_components(
    unet_config: dict[str, Any] | None = None,
    text_encoder_config: dict[str, Any] | None = None,
    vae_config: dict[str, Any] | None = None,
    scheduler_config: dict[str, Any] | None = None,
    tokenizer_max_length: int = 77,
    tokenizer_words: Sequence[str] = (),
) -> Components:
    """Randomly initialised components; the dicts override the ``TINY_*`` defaults key by key; each of
    ``tokenizer_words`` is one token of the tokenizer (none: character level).

    The UNet gets ``in_channels = 2 * latent_channels`` (InstructPix2Pix layout) and ``out_channels =
    latent_channels`` unless the dict says otherwise; ``cross_attention_dim`` follows the text encoder width.
    """
    tokenizer = build_tiny_tokenizer(tokenizer_max_length, tokenizer_words)
    text_encoder = CLIPTextModel(tiny_text_encoder_config(tokenizer, text_encoder_config))
    vae_values = dict(vae_config or {})
    vae_class_name = vae_values.pop("_class_name", TINY_VAE["_class_name"])
    if vae_class_name == TINY_VAE["_class_name"]:  # the defaults belong to the pixel autoencoder only
        vae_values = {k: v for k, v in {**TINY_VAE, **vae_values}.items() if k != "_class_name"}
    if vae_class_name not in VAE_CLASSES:
        raise ValueError(f"vae_config._class_name must be one of {sorted(VAE_CLASSES)}, got {vae_class_name!r}")
    vae = VAE_CLASSES[vae_class_name](**vae_values)
    latent_channels = vae.config.latent_channels
    unet_values = {
        **TINY_UNET,
        "in_channels": 2 * latent_channels,
        "out_channels": latent_channels,
        "cross_attention_dim": text_encoder.config.hidden_size,
        **(unet_config or {}),
    }
    unet = UNet2DConditionModel(**unet_values)
    scheduler = DDPMScheduler(**{**TINY_SCHEDULER, **(scheduler_config or {})})
    return Components(unet, vae, text_encoder, tokenizer, scheduler)


def _listing() -> str:
    return ", ".join(s + "/" for s in SUBFOLDERS)


def resolve_pretrained_path(path: str) -> str:
    """Expand ``$VAR`` / ``~``; a local folder must hold every component subfolder; else treat as a hub id."""
    expanded = os.path.expanduser(os.path.expandvars(path)).strip()
    if "$" in expanded:
        name = expanded[expanded.index("$") :].strip("${}").split("/")[0].strip("{}")
        raise FileNotFoundError(
            f"environment variable {name} is not set: point it at a diffusers Stable Diffusion folder with {_listing()}"
        )
    if not expanded:
        raise FileNotFoundError(f"empty pretrained path: expected a folder with {_listing()}")
    local = Path(expanded)
    looks_local = local.is_absolute() or expanded.startswith(".") or local.exists() or expanded.count("/") != 1
    if looks_local:
        if not local.is_dir():
            raise FileNotFoundError(f"pretrained path {expanded} does not exist: expected a folder with {_listing()}")
        missing = [s for s in SUBFOLDERS if not (local / s).is_dir()]
        if missing:
            raise FileNotFoundError(
                f"pretrained path {expanded} lacks {', '.join(m + '/' for m in missing)}: expected a diffusers "
                f"folder with {_listing()}"
            )
    return expanded


def load_pretrained_components(path: str, scheduler_overrides: dict[str, Any] | None = None) -> Components:
    """Load every component of a diffusers SD-layout folder or hub id (see ``resolve_pretrained_path``)."""
    source = resolve_pretrained_path(path)
    vae_config = AutoencoderKL.load_config(source, subfolder="vae")
    vae_class = VAE_CLASSES.get(vae_config.get("_class_name", "AutoencoderKL"), AutoencoderKL)
    scheduler_config = {**DDPMScheduler.load_config(source, subfolder="scheduler"), **(scheduler_overrides or {})}
    return Components(
        unet=UNet2DConditionModel.from_pretrained(source, subfolder="unet"),
        vae=vae_class.from_pretrained(source, subfolder="vae"),
        text_encoder=CLIPTextModel.from_pretrained(source, subfolder="text_encoder"),
        tokenizer=CLIPTokenizer.from_pretrained(source, subfolder="tokenizer"),
        scheduler=DDPMScheduler.from_config(scheduler_config),
    )
