"""The training plumbing on its own: atomic checkpoint writes, the W&B offline default, secret scrubbing and
the validation image grid."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from models_helpers import loader, make_module, make_trainer
from PIL import Image

from mredit.callbacks.image_grid import ValidationImageGrid
from mredit.callbacks.training_monitor import TrainingMonitor
from mredit.training.checkpoint_io import AtomicCheckpointIO
from mredit.training.loggers import WandbLogger, scrub_secrets


def test_a_failed_save_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    io, path = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    io.save_checkpoint({"global_step": 1, "w": torch.ones(3)}, path)

    def torn_save(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt  # stands in for the process dying mid-write

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"global_step": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=False)["global_step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_wandb_is_offline_without_an_api_key(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert WandbLogger(save_dir=str(tmp_path))._offline is True
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert WandbLogger(save_dir=str(tmp_path))._offline is False
    assert WandbLogger(save_dir=str(tmp_path), offline=True)._offline is True


def test_secrets_are_scrubbed_from_the_logged_config():
    config = {"model": {"api_key": "sk-1", "lr": 1e-3}, "judge": [{"openai_token": "t", "n": 2}]}
    assert scrub_secrets(config) == {
        "model": {"api_key": "<redacted>", "lr": 1e-3},
        "judge": [{"openai_token": "<redacted>", "n": 2}],
    }


def test_validation_image_grid(tmp_path):
    grid = ValidationImageGrid(every_n_steps=1, num_images=2, num_inference_steps=2)
    trainer = make_trainer(tmp_path, callbacks=[grid], limit_val_batches=1)
    trainer.validate(make_module(), loader(1))
    image = np.asarray(Image.open(grid.last_path))
    assert image.shape == (2 * 16, 3 * 16, 3)  # rows: samples; columns: source | edit | target
    assert image[:, 32:].std() > 0 and not np.array_equal(image[:, :16], image[:, 16:32])


def test_training_monitor_saves_the_requested_steps(tmp_path):
    final = tmp_path / "final.ckpt"
    monitor = TrainingMonitor(str(tmp_path / "progress.json"), str(final), save_at_steps=[1, 2])
    make_trainer(tmp_path, max_steps=3, callbacks=[monitor]).fit(make_module(), loader(4))
    assert sorted(p.name for p in tmp_path.glob("*.ckpt")) == ["final.ckpt", "step1.ckpt", "step2.ckpt"]
    assert json.loads((tmp_path / "progress.json").read_text())["step"] == 3


def test_training_monitor_saves_a_missed_step_on_resume(tmp_path):
    """Killed after ModelCheckpoint saved step 2 but before step2.ckpt was written: the resumed run writes it."""
    final = tmp_path / "final.ckpt"
    first = make_trainer(tmp_path, max_steps=2)
    first.fit(make_module(), loader(4))
    last = tmp_path / "last.ckpt"
    first.save_checkpoint(last)
    monitor = TrainingMonitor(str(tmp_path / "progress.json"), str(final), save_at_steps=[2])
    make_trainer(tmp_path, max_steps=3, callbacks=[monitor]).fit(make_module(), loader(4), ckpt_path=last)
    assert torch.load(tmp_path / "step2.ckpt", weights_only=False)["global_step"] == 2
    assert torch.load(final, weights_only=False)["global_step"] == 3
