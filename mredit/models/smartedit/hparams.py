"""``SmartEditModule``'s hyperparameters: its typed part configs as plain dicts (what checkpoints, ``hparams.yaml``
and ``smartedit.json`` hold) and back, and the flat names of checkpoints written before the configs were split.

A part config may arrive as an instance, as ``None`` (the defaults) or as a dict: a checkpoint's hyperparameters
go back into ``__init__`` as dicts, and LightningCLI's form of a ``LoraConfig`` is ``{class_path, init_args}``.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any, TypeVar

from peft import LoraConfig

from mredit.models.smartedit.bim import BIMConfig
from mredit.models.smartedit.loading import PretrainedWeights
from mredit.models.smartedit.mllm import MLLMConfig, smartedit_lora
from mredit.models.smartedit.qformer import QFormerConfig

PART_CONFIGS: dict[str, type] = {
    "pretrained": PretrainedWeights,
    "mllm": MLLMConfig,
    "lora": LoraConfig,
    "qformer": QFormerConfig,
    "bim": BIMConfig,
}
# LoRA fields always written out, so that a checkpoint's hyperparameters read the same whatever peft's defaults are
LORA_FIELDS = ("r", "lora_alpha", "lora_dropout", "target_modules", "bias", "task_type")

# flat hyperparameters of SmartEditModule before the split -> (part, field), or the setting's new name
LEGACY_NAMES: dict[str, tuple[str, str] | str] = {
    "llava_path": ("pretrained", "llava_path"),
    "vision_path": ("pretrained", "vision_path"),
    "diffusion_path": ("pretrained", "diffusion_path"),
    "llm_dtype": ("pretrained", "llm_dtype"),
    "num_img_tokens": ("mllm", "num_img_tokens"),
    "vision_select_layer": ("mllm", "vision_select_layer"),
    "max_instruction_tokens": ("mllm", "max_instruction_tokens"),
    "system_prompt": ("mllm", "system_prompt"),
    "answer_text": ("mllm", "answer_text"),
    "lora_r": ("lora", "r"),
    "lora_alpha": ("lora", "lora_alpha"),
    "lora_dropout": ("lora", "lora_dropout"),
    "lora_targets": ("lora", "target_modules"),
    "num_queries": ("qformer", "num_queries"),
    "qformer_layers": ("qformer", "num_layers"),
    "qformer_heads": ("qformer", "num_heads"),
    "qformer_intermediate": ("qformer", "intermediate_size"),
    "qformer_cross_frequency": ("qformer", "cross_attention_frequency"),
    "bim_depth": ("bim", "depth"),
    "bim_heads": ("bim", "num_heads"),
    "bim_mlp_dim": ("bim", "mlp_dim"),
    "bim_downsample": ("bim", "downsample"),
    "bim_text_scale": ("bim", "text_scale"),
    "cond_dropout": "conditioning_dropout",
    "warmup_steps": "lr_warmup_steps",
    "inference_steps": "num_inference_steps",
    "text_guidance": "text_guidance_scale",
    "image_guidance": "image_guidance_scale",
}
ConfigT = TypeVar("ConfigT")


def upgrade_legacy_hparams(hparams: Mapping[str, Any]) -> dict[str, Any]:
    """Hyperparameters with the names of before the split (``qformer_layers``, ``lora_r``, ``cond_dropout``,
    ``inference_steps``, ...) in the current schema: grouped settings go into their part's dict (``{"qformer":
    {"num_layers": 6, ...}}``, on top of a part given alongside them), renamed ones take their new name (over a value
    given under the new name); every other key passes through, so ``SmartEditModule(**upgrade_legacy_hparams(old))``
    builds the old model."""
    upgraded = {name: value for name, value in hparams.items() if name not in LEGACY_NAMES}
    overrides: dict[str, dict[str, Any]] = {}
    for name, value in hparams.items():
        target = LEGACY_NAMES.get(name)
        if isinstance(target, str):
            upgraded[target] = value
        elif target is not None:
            part, field = target
            overrides.setdefault(part, {})[field] = list(value) if field == "target_modules" else value
    for part, fields in overrides.items():
        upgraded[part] = {**config_dict(to_config(PART_CONFIGS[part], upgraded.get(part))), **fields}
    return upgraded


def to_config(cls: type[ConfigT], value: Any) -> ConfigT:
    """A part config from an instance, ``None`` (the defaults; SmartEdit's LoRA for ``LoraConfig``) or a dict of
    fields (plain, or LightningCLI's ``{class_path, init_args}``)."""
    if isinstance(value, cls):
        return value
    if value is None:
        return smartedit_lora() if cls is LoraConfig else cls()
    if isinstance(value, Mapping):
        return cls(**(value.get("init_args", {}) if "class_path" in value else value))
    raise TypeError(f"expected a {cls.__name__}, a dict of its fields or None, got {type(value).__name__}")


def config_dict(config: Any) -> dict[str, Any]:
    """A part config as a plain, JSON-ready dict: every field of the mredit configs; for a ``LoraConfig`` the
    ``LORA_FIELDS`` and any other field that differs from peft's default. ``None`` -> ``{}``."""
    if config is None:
        return {}
    if isinstance(config, Mapping):
        return dict(config.get("init_args", {}) if "class_path" in config else config)
    if isinstance(config, LoraConfig):
        default = LoraConfig()
        return {
            name: _plain(getattr(config, name))
            for name in (f.name for f in dataclasses.fields(LoraConfig) if f.init)
            if name in LORA_FIELDS or _plain(getattr(config, name)) != _plain(getattr(default, name))
        }
    return {name: _plain(value) for name, value in dataclasses.asdict(config).items()}


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    return value
