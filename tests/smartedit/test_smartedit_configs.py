"""Every configs/smartedit*.yaml parses (``mredit fit --print_config``) and gives a SmartEditModule in the current
schema, without weights: ``__init__`` only checks the paths; the parts are built in ``configure_model``."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import yaml
from jsonargparse import ArgumentParser

from mredit.models.smartedit.hparams import LEGACY_NAMES
from mredit.models.smartedit.module import SmartEditModule
from mredit.training.lightning_cli import run_lightning_cli

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted(path.stem for path in (REPO / "configs").glob("smartedit*.yaml"))
ENV_VARS = ("MREDIT_LLAVA_PATH", "MREDIT_CLIP_VISION_PATH", "MREDIT_SMARTEDIT_SD_PATH")


def _printed_config(name: str, capsys, *overrides: str) -> dict:
    with pytest.raises(SystemExit) as stop:
        run_lightning_cli(["fit", "--config", str(REPO / "configs" / f"{name}.yaml"), *overrides, "--print_config"])
    assert stop.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


def _module(model_config: dict) -> SmartEditModule:
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(pl.LightningModule, "model")
    return parser.instantiate_classes(parser.parse_object({"model": model_config})).model


def test_all_six_smartedit_configs_are_covered():
    assert CONFIGS == [
        "smartedit",
        "smartedit_reward",
        "smartedit_reward_tiny",
        "smartedit_stage1",
        "smartedit_stage2a",
        "smartedit_tiny",
    ]


@pytest.mark.parametrize("name", CONFIGS)
def test_config_parses_into_the_current_schema(name, capsys, monkeypatch):
    for variable in ENV_VARS:
        monkeypatch.setenv(variable, f"/nonexistent/{variable.lower()}")
    model = _printed_config(name, capsys)["model"]
    init_args = model["init_args"]
    assert model["class_path"] == "mredit.models.smartedit.module.SmartEditModule"
    assert not set(init_args) & set(LEGACY_NAMES), "flat names of before the part configs"
    assert {"pretrained", "mllm", "lora", "qformer", "bim", "lr_warmup_steps", "num_inference_steps"} <= set(init_args)
    assert init_args["lora"]["init_args"]["lora_alpha"] == 16  # SmartEdit's LoRA spelled out, not peft's defaults
    module = _module(model)
    assert isinstance(module, SmartEditModule) and not module.is_built  # no weights read
    assert module.lora_config.r == 8 and sorted(module.lora_config.target_modules) == ["q_proj", "v_proj"]
    # the tiny random LLM trains whole (it has no language for a LoRA to adapt); the real ones keep SmartEdit's LoRA
    assert module.mllm_config.llm_training == ("full" if module.hparams.tiny else "lora")
    if not module.hparams.tiny:  # the real configs: LLaMA in bf16, weights from the environment variables
        assert module.pretrained_weights.llm_dtype == "bfloat16"
        assert module.hparams.pretrained["llava_path"] == "$MREDIT_LLAVA_PATH"


def test_part_settings_from_the_command_line(capsys):
    overrides = (
        "--model.init_args.lora.r=16",
        "--model.init_args.qformer.num_layers=3",
        "--model.init_args.bim.depth=1",
        "--model.init_args.mllm.num_img_tokens=2",
        "--model.init_args.conditioning_dropout=0.1",
        "--model.init_args.mllm.llm_training=lora",
        "--model.init_args.tiny_tokenizer=synth_words",
    )
    module = _module(_printed_config("smartedit_tiny", capsys, *overrides)["model"])
    assert module.lora_config.r == 16 and module.lora_config.lora_alpha == 16  # the rest of the config's LoRA
    assert module.qformer_config.num_layers == 3 and module.qformer_config.num_queries == 8
    assert module.bim_config.depth == 1 and module.mllm_config.num_img_tokens == 2
    assert module.mllm_config.llm_training == "lora" and module.mllm_config.max_instruction_tokens == 96
    assert module.hparams.tiny_tokenizer == "synth_words"
    assert module.hparams.conditioning_dropout == 0.1 and module.hparams.lora["r"] == 16


def test_unknown_llm_training_is_a_parse_error(capsys):
    with pytest.raises(SystemExit) as stop:
        run_lightning_cli(
            [
                "fit",
                "--config",
                str(REPO / "configs" / "smartedit_tiny.yaml"),
                "--model.init_args.mllm.llm_training=frozen",
                "--print_config",
            ]
        )
    assert stop.value.code not in (0, None)
    assert "llm_training" in capsys.readouterr().err
