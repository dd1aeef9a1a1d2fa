"""EditDataModule: the batch contract, setup-time errors, rank splitting, resampled epochs, skip metrics."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import webdataset as wds

from mredit.callbacks.skipped_samples import SkippedSamplesLogger
from mredit.data.datamodule import EditDataModule, collate_edit_samples, edit_sample_to_item
from mredit.data.transforms import pixels_to_float
from mredit.schema import PERSPECTIVES, encode_sample


def _datamodule(shards, **kwargs) -> EditDataModule:
    options = dict(batch_size=4, num_workers=0, resolution=16, shuffle_buffer=8, seed=3)
    options.update(kwargs)
    return EditDataModule(train_shards=shards, val_shards=shards, **options)


def test_batch_contract(shard_dir: Path) -> None:
    dm = _datamodule(str(shard_dir))
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"key", "source", "target", "instruction", "scores", "feedback", "reward_mask", "meta"}
    assert batch["source"].shape == batch["target"].shape == (4, 3, 16, 16)
    assert batch["source"].dtype == batch["target"].dtype == torch.uint8  # models convert on the device
    assert batch["source"].is_contiguous() and batch["source"].float().std() > 0
    assert batch["scores"].shape == (4, len(PERSPECTIVES)) and batch["reward_mask"].dtype == torch.bool
    assert len(batch["key"]) == len(batch["instruction"]) == len(batch["meta"]) == 4
    for scores, feedback, has_reward, meta in zip(
        batch["scores"], batch["feedback"], batch["reward_mask"], batch["meta"]
    ):
        assert len(feedback) == 3 and "index" in meta
        if has_reward:
            assert scores[1] == 5.0 and feedback[2] == "blurry"
        else:
            assert scores.tolist() == [0.0, 0.0, 0.0] and feedback == ["None"] * 3


def test_sample_helpers_for_inference(make_sample) -> None:
    items = [edit_sample_to_item(make_sample(i, with_reward=i == 0)) for i in range(2)]
    batch = collate_edit_samples(items)
    assert batch["source"].shape == (2, 3, 24, 24) and batch["reward_mask"].tolist() == [True, False]


def test_validation_sees_every_sample_once_in_order(shard_dir: Path) -> None:
    dm = _datamodule(str(shard_dir))
    dm.setup("validate")
    keys = [k for batch in dm.val_dataloader() for k in batch["key"]]
    assert keys == [f"s{i:04d}" for i in range(24)]


def test_deterministic_given_seed(shard_dir: Path) -> None:
    def first_epoch(seed: int):
        dm = _datamodule(str(shard_dir), seed=seed)
        dm.setup("fit")
        return [(b["key"], b["source"]) for b in dm.train_dataloader()]

    a, b = first_epoch(1), first_epoch(1)
    assert [k for k, _ in a] == [k for k, _ in b]
    assert all(torch.equal(x, y) for (_, x), (_, y) in zip(a, b))
    assert [k for k, _ in a] != [k for k, _ in first_epoch(2)]


def test_ranks_from_environment_partition_the_data(shard_dir: Path, monkeypatch) -> None:
    seen = []
    for rank in range(2):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        dm = _datamodule(str(shard_dir), num_workers=2)
        dm.setup("fit")
        seen += [k for batch in dm.train_dataloader() for k in batch["key"]]
    assert sorted(seen) == [f"s{i:04d}" for i in range(24)]


def test_resampled_epoch_length(shard_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    dm = _datamodule(str(shard_dir), resampled=True, samples_per_epoch=80)
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert len(loader) == 10 and len(list(loader)) == 10  # 80 samples / (2 ranks x 4)


def test_setup_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing-000000.tar"):
        _datamodule(str(tmp_path / "missing-{000000..000003}.tar")).setup("fit")
    with pytest.raises(ValueError, match="empty shard list"):
        _datamodule([]).setup("fit")
    with pytest.raises(ValueError, match="train_shards is required"):
        EditDataModule().setup("fit")
    with pytest.raises(ValueError, match="samples_per_epoch"):
        EditDataModule(train_shards="x.tar", resampled=True)
    with pytest.raises(ValueError, match="cache_samples=8 needs num_workers=0 .* set data.cache_samples=0"):
        EditDataModule(train_shards="x.tar", cache_samples=8, num_workers=2)


def test_cached_training_batches_cover_every_sample_each_epoch(shard_dir: Path) -> None:
    dm = _datamodule(str(shard_dir), num_workers=0, cache_samples=100, random_flip=False)
    dm.setup("fit")
    loader = dm.train_dataloader()
    epochs = []
    for epoch in range(3):
        loader.dataset.set_epoch(epoch)
        epochs.append([key for batch in loader for key in batch["key"]])
        assert sorted(epochs[-1]) == [f"s{i:04d}" for i in range(24)]
    assert loader.dataset._cache is not None and epochs[1] != epochs[2]


class _TinyModel(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Conv2d(3, 3, 1)

    def _loss(self, batch):  # the batch's images are uint8: a model converts them on its device
        return torch.nn.functional.mse_loss(
            self.layer(pixels_to_float(batch["source"])), pixels_to_float(batch["target"])
        )

    def training_step(self, batch, batch_idx):
        return self._loss(batch)

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self._loss(batch))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _bad_shard(tmp_path: Path, make_sample) -> Path:
    bad = tmp_path / "bad.tar"
    with wds.TarWriter(str(bad)) as writer:
        writer.write({**encode_sample(make_sample(100)), "tgt.png": b"broken"})
        writer.write(encode_sample(make_sample(101)))
    return bad


def test_trainer_with_the_callback_logs_skipped_samples(tmp_path: Path, shard_dir: Path, make_sample) -> None:
    dm = _datamodule([str(_bad_shard(tmp_path, make_sample)), str(shard_dir)])
    trainer = pl.Trainer(
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=[SkippedSamplesLogger()],
    )
    trainer.fit(_TinyModel(), datamodule=dm)
    assert trainer.callback_metrics["data/skipped_train"] == 2  # one corrupt sample per epoch
    assert trainer.callback_metrics["data/skipped_train/unreadable_image"] == 2
    assert trainer.callback_metrics["data/skipped_val"] == 3  # cumulative: the sanity check read it too
    assert dm.skipped["train"]["unreadable_image"] == 2
    assert sum(isinstance(c, SkippedSamplesLogger) for c in trainer.callbacks) == 1  # the datamodule adds none


def test_cli_fit_logs_skipped_samples(tmp_path: Path, shard_dir: Path, make_sample) -> None:
    from mredit.training.lightning_cli import MreditCLI

    shards = f"[{_bad_shard(tmp_path, make_sample)}, {shard_dir}]"
    options = ["--data.batch_size=4", "--data.num_workers=0", "--data.resolution=16", "--data.shuffle_buffer=8"]
    trainer_options = ["--trainer.max_epochs=1", "--trainer.logger=false", "--trainer.enable_checkpointing=false"]
    cli = MreditCLI(
        _TinyModel,
        EditDataModule,
        args=["fit", f"--data.train_shards={shards}", *options, *trainer_options, "--trainer.enable_progress_bar=false"]
        + [f"--trainer.default_root_dir={tmp_path}"],
        save_config_callback=None,
    )
    assert cli.trainer.callback_metrics["data/skipped_train"] == 1
    assert cli.trainer.callback_metrics["data/skipped_train/unreadable_image"] == 1
    assert sum(isinstance(c, SkippedSamplesLogger) for c in cli.trainer.callbacks) == 1  # added by MreditCLI


def test_epochs_through_workers_reshuffle_and_cover(shard_dir: Path) -> None:
    dm = _datamodule(str(shard_dir), num_workers=2)
    dm.setup("fit")
    loader = dm.train_dataloader()
    epochs = [[k for batch in loader for k in batch["key"]] for _ in range(2)]
    assert sorted(epochs[0]) == sorted(epochs[1]) == [f"s{i:04d}" for i in range(24)]
    assert epochs[0] != epochs[1]


def test_init_signature_is_a_lightningcli_schema(shard_dir: Path) -> None:
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(EditDataModule, "data")
    config = parser.parse_args([f"--data.train_shards={shard_dir}", "--data.val_shards=[a.tar,b.tar]"])
    assert config.data.train_shards == str(shard_dir) and config.data.val_shards == ["a.tar", "b.tar"]
    assert config.data.resampled is False and config.data.samples_per_epoch is None


def test_rank_and_epoch_come_from_the_attached_trainer(shard_dir: Path, monkeypatch) -> None:
    from types import SimpleNamespace

    monkeypatch.setenv("RANK", "0")  # the trainer wins over the environment
    monkeypatch.setenv("WORLD_SIZE", "1")
    seen = []
    for rank in range(2):
        dm = _datamodule(str(shard_dir))
        dm.trainer = SimpleNamespace(global_rank=rank, world_size=2, current_epoch=4)
        dm.setup("fit")
        loader = dm.train_dataloader()
        seen += [k for batch in loader for k in batch["key"]]
        assert loader.dataset.epoch == 4 and loader.dataset.rank == rank
    assert sorted(seen) == [f"s{i:04d}" for i in range(24)]


def test_trainer_predict_sees_every_sample(tmp_path: Path, shard_dir: Path) -> None:
    class KeysModel(_TinyModel):
        def predict_step(self, batch, batch_idx):
            return batch["key"]

    dm = EditDataModule(predict_shards=str(shard_dir), batch_size=5, num_workers=0, resolution=16)
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    predictions = trainer.predict(KeysModel(), datamodule=dm)
    assert [k for keys in predictions for k in keys] == [f"s{i:04d}" for i in range(24)]


def test_uneven_rank_split_warns(make_shards, tmp_path: Path, monkeypatch, caplog) -> None:
    shards = make_shards(tmp_path / "odd", num_samples=9, shard_size=3)  # 3 shards over 2 ranks
    monkeypatch.setenv("WORLD_SIZE", "2")
    _datamodule(str(shards)).setup("fit")
    assert "3 shards do not divide evenly over 2 ranks" in caplog.text


class _KeyRecorder(pl.Callback):
    def __init__(self) -> None:
        self.keys: list[list[str]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.keys.append(list(batch["key"]))


def _fit_recording_keys(root: Path, dm: EditDataModule, every: str, ckpt_path: Path | None = None) -> list[list[str]]:
    """10 steps (6 batches per epoch: into the second epoch), a checkpoint every step or every epoch under
    ``root/ckpt``; the keys of each training batch."""
    recorder = _KeyRecorder()
    checkpoints = pl.callbacks.ModelCheckpoint(root / "ckpt", save_top_k=-1, **{f"every_n_{every}": 1})
    trainer = pl.Trainer(
        max_steps=10,
        limit_val_batches=0,
        logger=False,
        callbacks=[recorder, checkpoints],
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
    )
    torch.manual_seed(0)
    trainer.fit(_TinyModel(), datamodule=dm, ckpt_path=ckpt_path)
    return recorder.keys


@pytest.mark.parametrize(
    "options",
    [{}, {"num_workers": 2, "random_flip": True}, {"resampled": True, "samples_per_epoch": 24}],
    ids=["plain", "two-workers", "resampled"],
)
def test_resume_mid_epoch_continues_with_the_next_unseen_batch(tmp_path: Path, shard_dir: Path, options) -> None:
    straight = _fit_recording_keys(tmp_path / "straight", _datamodule(str(shard_dir), **options), "train_steps")
    assert len(straight) == 10 and straight[6:] != straight[:4]  # the second epoch is shuffled anew
    for step in (3, 6, 8):  # mid first epoch, at its end (saved on its last batch), mid second epoch
        (ckpt,) = (tmp_path / "straight" / "ckpt").glob(f"*-step={step}.ckpt")
        assert torch.load(ckpt, weights_only=False)["loops"]["fit_loop"]["state_dict"]["combined_loader"]
        dm = _datamodule(str(shard_dir), **options)
        resumed = _fit_recording_keys(tmp_path / f"from{step}", dm, "train_steps", ckpt)
        assert resumed == straight[step:], f"resumed from step {step}"


def test_resume_from_an_epoch_end_checkpoint_starts_the_next_epoch(tmp_path: Path, shard_dir: Path) -> None:
    straight = _fit_recording_keys(tmp_path / "straight", _datamodule(str(shard_dir)), "epochs")
    (ckpt,) = (tmp_path / "straight" / "ckpt").glob("epoch=0-*.ckpt")
    assert _fit_recording_keys(tmp_path / "resumed", _datamodule(str(shard_dir)), "epochs", ckpt) == straight[6:]
