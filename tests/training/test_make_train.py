"""A first training run on a fresh clone: ``make train CONFIG=<tiny config>`` makes the shards its config reads
when they are missing (once), and ``mredit fit`` on a missing default shard folder names the command that makes
it, in its one-line error."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from repo_copy import REPO, copy_repo

from mredit.data.reader import resolve_shards
from mredit.data.recipes import TINY_CONFIG_SHARDS, how_to_make, synth_command

VENV = os.path.dirname(os.path.dirname(sys.executable))  # the suite's venv: nothing is installed
INSTALLED = os.path.join(VENV, ".installed")


def make(repo, *args, timeout=60):
    """``make`` in ``repo`` with the suite's venv, never reinstalling it (``-o``: its stamp counts as up to date)."""
    command = ["make", "--no-print-directory", f"VENV={VENV}", "-o", INSTALLED, *args]
    return subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=timeout)


def synth_lines(output: str) -> list[str]:
    return [line.split("/bin/mredit ", 1)[1] for line in output.splitlines() if "/bin/mredit data synth" in line]


def test_make_synth_and_train_make_each_missing_folder_with_the_recipe(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    dry = make(repo, "-n", "synth")
    assert dry.returncode == 0, dry.stderr
    assert synth_lines(dry.stdout) == [
        f"data synth --out {folder} {opts}" for folder, opts in TINY_CONFIG_SHARDS.items()
    ]
    for config, folders in {
        "ip2p_tiny": ["data/synth/train", "data/synth/val"],
        "ip2p_reward_tiny": ["data/synth_reward/train", "data/synth_reward/val"],
        "smartedit_tiny": ["data/synth/train", "data/synth/val"],
        "smartedit_reward_tiny": ["data/synth_reward/train", "data/synth_reward/val"],
    }.items():
        dry = make(repo, "-n", "train", f"CONFIG={config}")
        assert dry.returncode == 0, dry.stderr
        assert [line.split()[3] for line in synth_lines(dry.stdout)] == folders, config
        assert dry.stdout.strip().splitlines()[-1].endswith(f"mredit fit --config configs/{config}.yaml")
    (repo / "data" / "synth" / "train").mkdir(parents=True)
    (repo / "data" / "synth" / "train" / "manifest.json").write_text("{}")
    dry = make(repo, "-n", "train", "CONFIG=ip2p_tiny")
    assert [line.split()[3] for line in synth_lines(dry.stdout)] == ["data/synth/val"]  # made once, not each time
    dry = make(repo, "-n", "train", "CONFIG=ip2p")  # a real config reads no synthetic shards
    assert dry.returncode == 0 and synth_lines(dry.stdout) == []


def test_a_missing_default_shard_folder_names_the_command_that_makes_it(tmp_path, monkeypatch, capsys):
    assert synth_command("data/synth_reward/train") == (
        "mredit data synth --out data/synth_reward/train --split train --num 2000 --with_rewards true"
    )
    assert synth_command("./data/synth/val/") is not None and synth_command("/x/data/synth/val") is not None
    assert synth_command("data/mine/train") is None and how_to_make("data/mine/train") == ""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as error:
        resolve_shards("data/synth/train")
    assert str(error.value) == (
        "shard not found: data/synth/train (1 of 1 shards missing); make it with `make synth` (all the tiny "
        "configs' shards) or `mredit data synth --out data/synth/train --split train --num 2000`"
    )
    with pytest.raises(FileNotFoundError) as error:
        resolve_shards("data/other/train")
    assert str(error.value) == "shard not found: data/other/train (1 of 1 shards missing)"  # no guess
    (tmp_path / "data" / "synth" / "val").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"no shards in directory data/synth/val .*--split test --num 64 --seed 1`$"):
        resolve_shards("data/synth/val")

    from mredit.training.lightning_cli import run_lightning_cli

    config = str(REPO / "configs" / "ip2p_reward_tiny.yaml")  # run from tmp_path, where data/ has nothing
    with pytest.raises(SystemExit) as exit_info:
        run_lightning_cli(["fit", "--config", config, f"--trainer.default_root_dir={tmp_path / 'run'}"])
    last = capsys.readouterr().err.strip().splitlines()[-1]  # above it only Lightning's log lines
    assert exit_info.value.code == 1
    assert last == (
        "mredit fit: error: shard not found: data/synth_reward/train (1 of 1 shards missing); make it with "
        "`make synth` (all the tiny configs' shards) or `mredit data synth --out data/synth_reward/train --split "
        "train --num 2000 --with_rewards true`"
    )


@pytest.mark.slow
def test_make_train_on_a_fresh_clone_makes_its_shards_then_trains(tmp_path):
    """The first training command a reader tries, from nothing (about a minute on 2 cores: the shards, then two
    steps)."""
    repo = copy_repo(tmp_path / "repo")
    result = make(repo, "train", "CONFIG=ip2p_tiny", "ARGS=--trainer.max_steps=2", timeout=600)
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-3000:])
    assert (repo / "data" / "synth" / "train" / "manifest.json").is_file()
    assert (repo / "data" / "synth" / "val" / "manifest.json").is_file()
    assert not (repo / "data" / "synth_reward").exists()  # only what the config reads
    checkpoint = torch.load(repo / "runs" / "ip2p_tiny" / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["global_step"] == 2 and checkpoint["trained_resolution"] == 32
    again = make(repo, "-n", "train", "CONFIG=ip2p_tiny")
    assert again.returncode == 0 and synth_lines(again.stdout) == []  # the shards are not made again
