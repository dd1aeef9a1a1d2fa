"""Building SmartEdit's pretrained parts: LLaVA-1.1 (LLM, tokenizer, linear projector), the CLIP vision tower and the
diffusers-layout InstructPix2Pix/InstructDiffusion components; tiny random ones for CPU runs.

Paths may name environment variables (``$MREDIT_LLAVA_PATH``); every path is checked before any weight is read, so
a run without weights fails within seconds with one message naming every variable still to set.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from transformers import AutoTokenizer, CLIPVisionModel, LlamaForCausalLM

from mredit.models.components import Components, build_tiny_components, load_pretrained_components
from mredit.models.smartedit.tiny import (
    tiny_llm,
    tiny_llm_tokenizer,
    tiny_projector,
    tiny_vision_tower,
)

PATH_HELP = {
    "llava_path": "a local LLaVA-1.1 (LLaVA-7B-v1 / LLaVA-13B-v1, merged from the deltas) Hugging Face folder",
    "vision_path": "CLIP ViT-L/14 @ 224 (openai/clip-vit-large-patch14), a folder or hub id",
    "diffusion_path": "a diffusers InstructPix2Pix-layout folder (unet/ vae/ text_encoder/ tokenizer/ scheduler/), "
    "e.g. timbrooks/instruct-pix2pix or the converted InstructDiffusion checkpoint",
}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class PretrainedWeights:
    """Where SmartEdit's pretrained parts come from (ignored by ``tiny`` models). ``$VARS`` and ``~`` are expanded;
    every path is checked, without reading any weight, when the module is created.

    Args:
        llava_path: a local LLaVA-1.1 Hugging Face folder (LLaVA-7B-v1 / LLaVA-13B-v1, merged from the deltas).
        vision_path: CLIP ViT-L/14 @ 224 (openai/clip-vit-large-patch14), a folder or hub id.
        diffusion_path: a diffusers InstructPix2Pix-layout folder (unet/ vae/ text_encoder/ tokenizer/ scheduler/).
        llm_dtype: dtype of the LLaMA weights (SmartEdit runs it in bf16; the LoRA weights stay fp32).
    """

    llava_path: str = "$MREDIT_LLAVA_PATH"
    vision_path: str = "$MREDIT_CLIP_VISION_PATH"
    diffusion_path: str = "$MREDIT_SMARTEDIT_SD_PATH"
    llm_dtype: Literal["float32", "bfloat16", "float16"] = "float32"

    def resolve(self) -> PretrainedWeights:
        """A copy with the paths expanded; one ``FileNotFoundError`` names every unset variable or empty path."""
        paths = resolve_paths({f.name: getattr(self, f.name) for f in fields(self) if f.name in PATH_HELP})
        return replace(self, **paths)


@dataclass
class MLLMParts:
    llm: LlamaForCausalLM
    vision_tower: CLIPVisionModel
    projector: nn.Linear
    tokenizer: object


def resolve_paths(paths: dict[str, str | None]) -> dict[str, str]:
    """Expand ``$VARS``/``~``; raise one ``FileNotFoundError`` naming every unset variable or empty path."""
    resolved, problems = {}, []
    for name, raw in paths.items():
        value = os.path.expanduser(os.path.expandvars(raw or "")).strip()
        if "$" in value:
            variable = value[value.index("$") :].lstrip("${").split("/")[0].rstrip("}")
            problems.append(f"{variable} ({name}: {PATH_HELP[name]})")
        elif not value:
            problems.append(f"{name} is empty ({PATH_HELP[name]})")
        resolved[name] = value
    if problems:
        raise FileNotFoundError(
            "SmartEdit needs pretrained weights; set " + "; ".join(problems) + " - or train configs/smartedit_tiny.yaml"
        )
    return resolved


def load_llava_projector(path: str, vision_dim: int, llm_dim: int) -> nn.Linear:
    """LLaVA-1.1's ``mm_projector`` (one Linear), read from the checkpoint shards of a local LLaVA folder."""
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"LLaVA path {path} is not a local folder (the mm_projector is read from its shards)")
    weights: dict[str, torch.Tensor] = {}
    for shard in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        if shard.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(shard), framework="pt") as f:
                weights.update({k: f.get_tensor(k) for k in f.keys() if "mm_projector." in k})
        else:
            state = torch.load(shard, map_location="cpu", weights_only=True)
            weights.update({k: v for k, v in state.items() if "mm_projector." in k})
    weight = next((v for k, v in weights.items() if k.endswith("mm_projector.weight")), None)
    bias = next((v for k, v in weights.items() if k.endswith("mm_projector.bias")), None)
    if weight is None or bias is None:
        raise FileNotFoundError(f"no mm_projector.weight/bias in the checkpoint shards of {path} (is it LLaVA-1.1?)")
    if tuple(weight.shape) != (llm_dim, vision_dim):
        raise ValueError(f"mm_projector in {path} is {tuple(weight.shape)}, expected ({llm_dim}, {vision_dim})")
    projector = nn.Linear(vision_dim, llm_dim)
    projector.load_state_dict({"weight": weight.float(), "bias": bias.float()})
    return projector


def load_mllm_parts(llava_path: str, vision_path: str, llm_dtype: str = "bfloat16") -> MLLMParts:
    llm = LlamaForCausalLM.from_pretrained(llava_path, dtype=DTYPES[llm_dtype])
    vision_tower = CLIPVisionModel.from_pretrained(vision_path)
    tokenizer = AutoTokenizer.from_pretrained(llava_path)
    projector = load_llava_projector(llava_path, vision_tower.config.hidden_size, llm.config.hidden_size)
    return MLLMParts(llm, vision_tower, projector, tokenizer)


def tiny_mllm_parts(seed: int = 0, words: Sequence[str] = ()) -> MLLMParts:
    """Seeded without touching the global RNG: a checkpoint (which leaves the frozen parts out) reloads exactly.
    Each of ``words`` is one token of the LLM tokenizer (none: one token per byte)."""
    tokenizer = tiny_llm_tokenizer(words)
    with torch.random.fork_rng():
        return MLLMParts(tiny_llm(len(tokenizer), seed), tiny_vision_tower(seed=seed), tiny_projector(seed), tokenizer)


def expand_conv_in(unet, in_channels: int) -> None:
    """Give a 4-channel SD UNet the InstructPix2Pix input: extra ``conv_in`` channels zero-initialised."""
    old = unet.conv_in
    if old.in_channels == in_channels:
        return
    if old.in_channels > in_channels:
        raise ValueError(f"the UNet already takes {old.in_channels} input channels, more than {in_channels}")
    new = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding)
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, : old.in_channels] = old.weight
        new.bias.copy_(old.bias)
    unet.conv_in = new.to(old.weight.device, old.weight.dtype)
    unet.register_to_config(in_channels=in_channels)


def diffusion_components(
    diffusion_path: str | None,
    seed: int = 0,
    scheduler_config: dict[str, Any] | None = None,
    tokenizer_words: Sequence[str] = (),
) -> Components:
    """Pretrained components (UNet converted to 8 input channels if needed), or tiny ones when ``None``, whose
    CLIP tokenizer keeps each of ``tokenizer_words`` whole; ``scheduler_config`` overrides the scheduler's config
    keys (both cases)."""
    if diffusion_path is None:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return build_tiny_components(scheduler_config=scheduler_config, tokenizer_words=tokenizer_words)
    components = load_pretrained_components(diffusion_path, scheduler_config)
    expand_conv_in(components.unet, 2 * components.vae.config.latent_channels)
    return components
