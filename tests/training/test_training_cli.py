"""``mredit fit`` end to end in subprocesses: config errors, DDP over 2 CPU processes, kill-and-resume."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
import torch
from training_helpers import REPO, cli_args, run_mredit


def _cli_error(argv: list[str], capsys) -> tuple[int, str]:
    from mredit.training.lightning_cli import run_lightning_cli

    with pytest.raises(SystemExit) as exit_info:
        run_lightning_cli(argv)
    return exit_info.value.code, capsys.readouterr().err


def test_bad_config_key_is_one_line_naming_the_key(shard_dirs, tmp_path, capsys):
    args = cli_args("ip2p_tiny.yaml", shard_dirs, tmp_path, "--model.init_args.learning_rat=0.1")
    code, err = _cli_error(["fit", *args], capsys)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("mredit fit: error:") and "'learning_rat' is not accepted" in err


def test_missing_pretrained_path_is_one_line(monkeypatch, capsys):
    monkeypatch.delenv("MREDIT_SD15_PATH", raising=False)
    code, err = _cli_error(["fit", "--config", str(REPO / "configs" / "ip2p.yaml")], capsys)
    last = err.strip().splitlines()[-1]  # above it only Lightning's log lines ("Seed set to 42")
    assert code == 1 and last.startswith("mredit fit: error:")
    assert "MREDIT_SD15_PATH is not set" in last and "unet/, vae/, text_encoder/, tokenizer/, scheduler/" in last


@pytest.mark.slow
def test_ddp_two_cpu_ranks_see_disjoint_samples_and_keep_identical_weights(shard_dirs, tmp_path):
    audit = tmp_path / "audit"
    extra = [
        "--trainer.accelerator=cpu",
        "--trainer.devices=2",
        "--trainer.strategy=ddp",
        "--trainer.max_steps=2",
        "--trainer.limit_val_batches=0",
        "--trainer.callbacks+=mredit.callbacks.ddp_audit.DDPAudit",
        f"--trainer.callbacks.out_dir={audit}",
    ]
    run_mredit(["fit", *cli_args("ip2p_reward_tiny.yaml", shard_dirs, tmp_path, *extra)], timeout=240)
    ranks = [json.loads((audit / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world_size"] == 2 and r["global_step"] == 2 for r in ranks)
    keys = [set(r["keys"]) for r in ranks]
    assert len(ranks[0]["keys"]) == len(keys[0]) == 8 and len(keys[1]) == 8
    assert not keys[0] & keys[1]
    assert ranks[0]["parameters"] == ranks[1]["parameters"]


def _wait_for(path, process, timeout=180.0):
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{path} never appeared:\n{process.stderr.read()[-3000:]}")
        time.sleep(0.2)


@pytest.mark.slow
def test_sigkill_then_resume_from_last(shard_dirs, tmp_path):
    base = cli_args(
        "ip2p_reward_tiny.yaml",
        shard_dirs,
        tmp_path,
        "--trainer.limit_val_batches=0",
        "--trainer.callbacks.every_n_train_steps=2",
    )
    command = [sys.executable, "-m", "mredit", "fit", *base, "--trainer.max_steps=100000"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    last = tmp_path / "checkpoints" / "last.ckpt"
    try:
        _wait_for(last, process)
        time.sleep(0.5)  # kill it a little later, possibly in the middle of the next save
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL
    killed_at = torch.load(last, weights_only=False)["global_step"]  # loads: the kill left no torn file
    assert killed_at >= 2
    target = killed_at + 2
    run_mredit(["fit", *base, f"--trainer.max_steps={target}", "--ckpt_path=last"])
    resumed = torch.load(last, weights_only=False)
    assert resumed["global_step"] == target and resumed["ema"]["num_updates"] == target
    assert "reward_conditioner" in resumed


CONFIG_FILES = sorted(path.name for path in (REPO / "configs").glob("*.yaml"))
# the weights every real config names through the environment; placeholders are enough to parse
WEIGHT_VARIABLES = (
    "MREDIT_SD15_PATH",
    "MREDIT_STAGE1_PATH",
    "MREDIT_LLAVA_PATH",
    "MREDIT_CLIP_VISION_PATH",
    "MREDIT_SMARTEDIT_SD_PATH",
)


def test_every_config_file_is_parsed():
    assert len(CONFIG_FILES) == 10 and "ip2p_tiny.yaml" in CONFIG_FILES


@pytest.mark.parametrize("config", CONFIG_FILES)
def test_config_parses(config, monkeypatch, capsys):
    from mredit.training.lightning_cli import run_lightning_cli

    for variable in WEIGHT_VARIABLES:
        monkeypatch.setenv(variable, f"/nonexistent/{variable.lower()}")
    with pytest.raises(SystemExit) as exit_info:
        run_lightning_cli(["fit", "--config", str(REPO / "configs" / config), "--print_config"])
    assert exit_info.value.code in (0, None)
    assert "class_path: mredit.models." in capsys.readouterr().out
