"""Tiny official-layout folders: a stock UNet's keys plus the 34 extra reward keys, in safetensors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from tiny_model import tiny_parts

from mredit.conditioning.official import OfficialRewardConditioner


def randomize_norms(module: torch.nn.Module) -> None:
    """Default init leaves norm affines at 1/0; random values make the parity tests sensitive to them."""
    for name, param in module.named_parameters():
        if "norm" in name.lower():
            with torch.no_grad():
                param.copy_(torch.randn_like(param) * 0.3 + (1.0 if name.endswith("weight") else 0.0))


def write_official_folder(root: Path) -> Path:
    """A stage-2 pipeline folder in the released layout, with tiny random weights."""
    parts = tiny_parts("kl")
    conditioner = OfficialRewardConditioner.for_unet(parts.unet.config, text_dim=parts.text_encoder.config.hidden_size)
    randomize_norms(conditioner)
    state = {**parts.unet.state_dict(), **conditioner.state_dict()}
    (root / "unet").mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(root / "unet" / "diffusion_pytorch_model.safetensors"))
    config = {"_class_name": "UNet2DConditionModel", **{k: v for k, v in parts.unet.config.items() if k[0] != "_"}}
    (root / "unet" / "config.json").write_text(json.dumps(config))
    parts.vae.save_pretrained(root / "vae")
    parts.text_encoder.save_pretrained(root / "text_encoder")
    parts.tokenizer.save_pretrained(root / "tokenizer")
    parts.scheduler.save_pretrained(root / "scheduler")
    return root


@pytest.fixture
def official_folder(tmp_path: Path) -> Path:
    return write_official_folder(tmp_path / "stage2_reward_instruct_pix2pix")
