"""The training resolution: recorded when fitting, saved and restored with checkpoints, read back from older ones,
and the default of Lightning ``predict``."""

from __future__ import annotations

import json
import logging
import types

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader

from mredit.data.datamodule import EditDataModule
from mredit.data.latents import LatentDataModule
from mredit.models.resolution import TrainedResolutionMixin, checkpoint_resolution


class Tiny(TrainedResolutionMixin, pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(1, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Data(pl.LightningDataModule):
    def __init__(self, resolution: int) -> None:
        super().__init__()
        self.resolution = resolution

    def train_dataloader(self) -> DataLoader:
        return DataLoader(torch.ones(2, 1), batch_size=1)


def _fit(module, resolution, path, ckpt_path=None):
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=1 if ckpt_path is None else 2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=Data(resolution), ckpt_path=ckpt_path)
    trainer.save_checkpoint(path)


def test_fit_records_the_datamodule_resolution_and_a_checkpoint_restores_it(tmp_path):
    module = Tiny()
    assert module.trained_resolution is None
    _fit(module, 24, tmp_path / "a.ckpt")
    assert module.trained_resolution == 24
    assert torch.load(tmp_path / "a.ckpt", weights_only=False)["trained_resolution"] == 24
    assert Tiny.load_from_checkpoint(tmp_path / "a.ckpt").trained_resolution == 24
    resumed = Tiny()  # resumed at another resolution: this run's is recorded
    _fit(resumed, 48, tmp_path / "b.ckpt", ckpt_path=tmp_path / "a.ckpt")
    assert Tiny.load_from_checkpoint(tmp_path / "b.ckpt").trained_resolution == 48


def test_older_checkpoints_name_it_in_their_datamodule_hyperparameters():
    assert checkpoint_resolution({"trained_resolution": 32}) == 32
    assert checkpoint_resolution({"datamodule_hyper_parameters": {"resolution": 16, "batch_size": 4}}) == 16
    assert checkpoint_resolution({"datamodule_hyper_parameters": {"batch_size": 4}}) is None
    assert checkpoint_resolution({}) is None


def test_latent_shards_name_the_resolution_they_were_encoded_at(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"provenance": {"resolution": 64}}))
    assert LatentDataModule(train_shards=str(tmp_path)).resolution == 64
    assert LatentDataModule(train_shards=str(tmp_path / "elsewhere")).resolution is None


def test_predict_defaults_to_the_trained_resolution(caplog):
    def side(trained, **options):
        datamodule = EditDataModule(predict_shards="unused", resolution=32, **options)
        datamodule.trainer = types.SimpleNamespace(lightning_module=types.SimpleNamespace(trained_resolution=trained))
        return datamodule._predict_side()

    with caplog.at_level(logging.WARNING, logger="mredit.data.datamodule"):
        assert side(16) == 16  # not data.resolution
        assert side(16, predict_resolution=24) == 24
        assert not caplog.records
        assert side(16, predict_resolution=40) == 40
        assert "40 is more than 2x the 16 px" in caplog.records[-1].getMessage()
        assert side(None) == 32  # an older checkpoint: data.resolution, with a note naming it
        assert "predicting at data.resolution, 32 px" in caplog.records[-1].getMessage()
