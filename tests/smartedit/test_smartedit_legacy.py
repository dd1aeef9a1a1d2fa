"""Checkpoints written before the part configs (flat ``qformer_layers``, ``lora_r``, ``cond_dropout``, ...) still
load: ``load_from_checkpoint`` (LightningCLI's and plain Python's hyperparameters) and ``load_module_from_checkpoint``
build the same model and record its settings under the current names."""

from __future__ import annotations

import lightning
import pytest
import torch

from mredit.conditioning.registry import build_conditioner
from mredit.models.loading import load_module_from_checkpoint
from mredit.models.reward_mixin import conditioner_spec
from mredit.models.smartedit.bim import BIMConfig
from mredit.models.smartedit.hparams import LEGACY_NAMES, upgrade_legacy_hparams
from mredit.models.smartedit.mllm import MLLMConfig
from mredit.models.smartedit.module import SmartEditModule
from mredit.models.smartedit.qformer import QFormerConfig

# ``hyper_parameters`` of a checkpoint that ``mredit fit --config configs/smartedit_reward_tiny.yaml
# --seed_everything=3`` wrote before the part configs, verbatim (the run's checkpoint is 17 MB: too large to keep)
LEGACY_CLI_HPARAMS = {
    "_class_path": "mredit.models.smartedit.module.SmartEditModule",
    "stage": "smartedit",
    "tiny": True,
    "llava_path": "$MREDIT_LLAVA_PATH",
    "vision_path": "$MREDIT_CLIP_VISION_PATH",
    "diffusion_path": "$MREDIT_SMARTEDIT_SD_PATH",
    "init_from": None,
    "num_img_tokens": 4,
    "num_queries": 8,
    "qformer_layers": 2,
    "qformer_heads": 4,
    "qformer_intermediate": 64,
    "qformer_cross_frequency": 2,
    "bim_depth": 2,
    "bim_heads": 4,
    "bim_mlp_dim": 64,
    "bim_downsample": 2,
    "bim_text_scale": 0.5,
    "vision_select_layer": -2,
    "lora_r": 8,
    "lora_alpha": 16,
    "lora_dropout": 0.05,
    "lora_targets": ["q_proj", "v_proj"],
    "max_instruction_tokens": 96,
    "system_prompt": "The assistant edits images.",
    "answer_text": "Here it is.",
    "cond_dropout": 0.05,
    "llm_loss_weight": 1.0,
    "diffusion_loss_weight": 1.0,
    "align_loss_weight": 1.0,
    "learning_rate": 0.001,
    "weight_decay": 0.0,
    "warmup_steps": 10,
    "llm_dtype": "float32",
    "gradient_checkpointing": False,
    "ema_decay": 0.999,
    "scheduler_config": {"prediction_type": "sample"},
    "edit_residual": True,
    "init_seed": 3,
    "inference_steps": 10,
    "text_guidance": 7.5,
    "image_guidance": 1.5,
    "_instantiator": "lightning.pytorch.cli.instantiate_module",
}
LEGACY_PYTHON_HPARAMS = {k: v for k, v in LEGACY_CLI_HPARAMS.items() if not k.startswith("_")}
EXPECTED = {
    "pretrained": {
        "llava_path": "$MREDIT_LLAVA_PATH",
        "vision_path": "$MREDIT_CLIP_VISION_PATH",
        "diffusion_path": "$MREDIT_SMARTEDIT_SD_PATH",
        "llm_dtype": "float32",
    },
    "mllm": {
        "num_img_tokens": 4,
        "vision_select_layer": -2,
        "max_instruction_tokens": 96,
        "system_prompt": "The assistant edits images.",
        "answer_text": "Here it is.",
        "llm_training": "lora",  # the option came later: every older checkpoint trained a LoRA
    },
    "lora": {
        "r": 8,
        "lora_alpha": 16,
        "lora_dropout": 0.05,
        "target_modules": ["q_proj", "v_proj"],
        "bias": "none",
        "task_type": "CAUSAL_LM",
    },
    "qformer": {
        "num_queries": 8,
        "num_layers": 2,
        "num_heads": 4,
        "intermediate_size": 64,
        "cross_attention_frequency": 2,
    },
    "bim": {"depth": 2, "num_heads": 4, "mlp_dim": 64, "downsample": 2, "text_scale": 0.5},
    "conditioning_dropout": 0.05,
    "lr_warmup_steps": 10,
    "num_inference_steps": 10,
    "text_guidance_scale": 7.5,
    "image_guidance_scale": 1.5,
}


def test_upgrade_maps_every_flat_name():
    upgraded = upgrade_legacy_hparams(LEGACY_CLI_HPARAMS)
    assert not set(upgraded) & set(LEGACY_NAMES)
    assert {k: upgraded[k] for k in EXPECTED} == EXPECTED
    unchanged = {k: v for k, v in LEGACY_CLI_HPARAMS.items() if k not in LEGACY_NAMES}
    assert {k: upgraded[k] for k in unchanged} == unchanged  # _class_path, stage, init_seed, ... pass through


def test_upgrade_merges_into_a_part_given_alongside():
    upgraded = upgrade_legacy_hparams({"qformer": QFormerConfig(num_heads=4), "qformer_layers": 3, "lora_r": 4})
    assert upgraded["qformer"] == {**EXPECTED["qformer"], "num_queries": 77, "intermediate_size": 3072, "num_layers": 3}
    assert upgraded["lora"] == {**EXPECTED["lora"], "r": 4}  # the other fields: SmartEdit's LoRA, not peft's


def test_flat_names_as_init_arguments_build_the_same_module():
    legacy = SmartEditModule(**LEGACY_PYTHON_HPARAMS)
    current = SmartEditModule(**upgrade_legacy_hparams(LEGACY_PYTHON_HPARAMS))
    assert dict(legacy.hparams) == dict(current.hparams)
    assert {k: legacy.hparams[k] for k in EXPECTED} == EXPECTED
    assert legacy.qformer_config == QFormerConfig(8, 2, 4, 64, 2) and legacy.bim_config == BIMConfig(
        num_heads=4, mlp_dim=64
    )
    assert legacy.mllm_config == MLLMConfig(4, -2, 96, "The assistant edits images.", "Here it is.")


@pytest.fixture(scope="module")
def legacy_checkpoint_state() -> dict:
    """A trained-looking state: the parts of the legacy settings, a reward conditioner, moved trainables."""
    torch.manual_seed(0)
    module = SmartEditModule(**upgrade_legacy_hparams(LEGACY_PYTHON_HPARAMS))
    module.configure_model()
    conditioner = build_conditioner(
        "official", unet_config=module.unet.config, text_dim=module.text_encoder.config.hidden_size
    )
    module.attach_reward_conditioner(conditioner)
    with torch.no_grad():
        for param in module.parameters():
            if param.requires_grad:
                param.add_(torch.randn_like(param) * 0.01)
    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)  # slim: without the frozen parts, as training writes it
    return checkpoint


@pytest.mark.parametrize("hparams", [LEGACY_CLI_HPARAMS, LEGACY_PYTHON_HPARAMS], ids=["lightning_cli", "python"])
def test_old_checkpoint_loads(hparams, legacy_checkpoint_state, tmp_path):
    path = tmp_path / "old.ckpt"
    torch.save(
        {
            **legacy_checkpoint_state,
            "pytorch-lightning_version": lightning.__version__,
            "hyper_parameters": hparams,
            "hparams_name": "kwargs",
        },
        path,
    )
    modules = [SmartEditModule.load_from_checkpoint(path, map_location="cpu")]
    if "_class_path" in hparams:  # how `mredit edit`/`export` load a checkpoint of a LightningCLI run
        modules.append(load_module_from_checkpoint(path))
    for module in modules:
        assert isinstance(module, SmartEditModule) and module.reward_conditioner is not None
        assert {k: module.hparams[k] for k in EXPECTED} == EXPECTED and not set(module.hparams) & set(LEGACY_NAMES)
        assert module.hparams.init_seed == 3
        state = module.state_dict()
        for key, value in legacy_checkpoint_state["state_dict"].items():
            assert torch.equal(state[key], value), key
        spec = conditioner_spec(module.reward_conditioner, module.reward_dropout)
        assert spec == legacy_checkpoint_state["reward_conditioner"]
