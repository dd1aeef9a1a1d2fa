"""``mredit fit`` with the SmartEdit configs, as a user runs them, on tiny synthetic shards; checkpoint round trip."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mredit.models.smartedit.module import FROZEN_PREFIXES, SmartEditModule
from mredit.synth.generate import write_synth_shards

REPO = Path(__file__).resolve().parents[2]
MREDIT = [sys.executable, "-m", "mredit"]


@pytest.fixture(scope="module")
def reward_run(tmp_path_factory) -> Path:
    """Two optimizer steps of configs/smartedit_reward_tiny.yaml (plus one validation pass; the tiny LLM trains
    whole, ``mllm.llm_training: full``); returns last.ckpt."""
    root = tmp_path_factory.mktemp("smartedit_run")
    write_synth_shards(root / "train", "train", 8, with_rewards=True, seed=0)
    write_synth_shards(root / "val", "test", 4, with_rewards=True, seed=1)
    args = [
        "fit",
        "--config",
        str(REPO / "configs" / "smartedit_reward_tiny.yaml"),
        "--seed_everything=3",  # the module's init_seed follows it; the data seed differs (hparams must not clash)
        "--trainer.max_steps=2",
        "--trainer.val_check_interval=2",
        "--trainer.limit_val_batches=1",
        f"--trainer.default_root_dir={root}",
        f"--trainer.logger.init_args.save_dir={root}",
        f"--data.init_args.train_shards={root / 'train'}",
        f"--data.init_args.val_shards={root / 'val'}",
        "--data.init_args.batch_size=2",
        "--data.init_args.shuffle_buffer=0",
        "--data.init_args.seed=1",
    ]
    result = subprocess.run([*MREDIT, *args], cwd=REPO, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoints = sorted(root.rglob("last.ckpt"))
    assert checkpoints, result.stderr[-2000:]
    return checkpoints[0]


def test_fit_reward_tiny_writes_a_slim_checkpoint_with_the_conditioner(reward_run):
    checkpoint = torch.load(reward_run, map_location="cpu", weights_only=False)
    assert checkpoint["global_step"] == 2
    assert checkpoint["reward_conditioner"]["class_path"].endswith("OfficialRewardConditioner")
    assert checkpoint["hyper_parameters"]["mllm"]["llm_training"] == "full"
    keys = list(checkpoint["state_dict"])
    assert any(k.startswith("reward_conditioner.") for k in keys) and any(k.startswith("bim.") for k in keys)
    assert not any(k.startswith(FROZEN_PREFIXES) for k in keys)
    # the fully trained tiny LLM is saved (no LoRA), with its EMA
    llm_keys = {k for k in keys if k.startswith("mllm.llm.")}
    assert "mllm.llm.model.embed_tokens.weight" in llm_keys and not any("lora_" in k for k in llm_keys)
    assert llm_keys <= set(checkpoint["ema"]["shadow"])


def test_checkpoint_round_trip_without_the_callback(reward_run):
    checkpoint = torch.load(reward_run, map_location="cpu", weights_only=False)
    module = SmartEditModule.load_from_checkpoint(reward_run, map_location="cpu")
    assert module.reward_conditioner is not None and module.stage == "smartedit"
    state = module.state_dict()
    for key, value in checkpoint["state_dict"].items():
        assert torch.equal(state[key], value), key
    hparams = {k: v for k, v in checkpoint["hyper_parameters"].items() if not k.startswith("_")}  # LightningCLI's
    assert hparams["init_seed"] == 3 and hparams["edit_residual"]
    fresh = SmartEditModule(**hparams)  # the frozen parts come back from the seeded init
    fresh.configure_model()
    for frozen in ("vision_tower", "projector"):
        pairs = zip(getattr(fresh.mllm, frozen).parameters(), getattr(module.mllm, frozen).parameters())
        assert all(torch.equal(a, b) for a, b in pairs)
    # the trained LLM comes from the checkpoint, not from the seeded init
    trained = module.mllm.llm.model.layers[0].self_attn.q_proj.weight
    assert not torch.equal(fresh.mllm.llm.model.layers[0].self_attn.q_proj.weight, trained)


def test_real_config_fails_fast_naming_the_env_vars():
    env = {k: v for k, v in os.environ.items() if not k.startswith("MREDIT_")}
    result = subprocess.run(  # fast means before any weight is read: it names the variables, not a missing file
        [*MREDIT, "fit", "--config", str(REPO / "configs" / "smartedit.yaml")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,  # seconds on an idle machine; the bound is for loaded CI runners
    )
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("mredit fit: error:")
    for name in ("MREDIT_LLAVA_PATH", "MREDIT_CLIP_VISION_PATH", "MREDIT_SMARTEDIT_SD_PATH"):
        assert name in message


def test_edit_and_export_cli_accept_a_smartedit_checkpoint(reward_run, tmp_path):
    """`mredit edit` and `mredit export` dispatch on the checkpoint's module class, not only InstructPix2Pix."""
    from PIL import Image

    from mredit.cli import main

    Image.new("RGB", (32, 32), (200, 40, 40)).save(tmp_path / "in.png")
    out = tmp_path / "out.png"
    edit = ["edit", "--model", str(reward_run), "--image", str(tmp_path / "in.png"), "--instruction", "make it blue"]
    steps = ["--num_inference_steps", "2", "--resolution", "32"]
    assert main([*edit, *steps, "--scheduler", "euler_a", "--out", str(out)]) == 1  # an x0 model: cannot sample
    assert main([*edit, *steps, "--scheduler", "ddim", "--out", str(out)]) == 0
    ddim = np.asarray(Image.open(out))
    assert ddim.shape == (32, 32, 3)
    assert main([*edit, *steps, "--out", str(out)]) == 0  # the default, auto, picks ddim for an x0 model
    assert np.array_equal(np.asarray(Image.open(out)), ddim)
    # the checkpoint records the 32 px of the config's data: the default resolution, whatever the input's size
    assert torch.load(reward_run, map_location="cpu", weights_only=False)["trained_resolution"] == 32
    Image.new("RGB", (96, 72), (200, 40, 40)).save(tmp_path / "big.png")
    edit_big = [*edit[:3], "--image", str(tmp_path / "big.png"), *edit[5:], "--num_inference_steps", "2"]
    assert main([*edit_big, "--out", str(out), "--quiet", "true"]) == 0
    assert Image.open(out).size == (32, 24)
    assert main([*edit_big, "--out", str(out), "--quiet", "true", "--keep_size", "true"]) == 0
    assert Image.open(out).size == (96, 72)
    assert main(["export", "--ckpt", str(reward_run), "--out", str(tmp_path / "export")]) == 0
    assert (tmp_path / "export" / "unet" / "config.json").is_file()
    assert json.loads((tmp_path / "export" / "smartedit.json").read_text())["resolution"] == 32
