"""The learning-rate schedules are diffusers' ``get_scheduler`` by name, stepped once per optimizer step."""

import math

import lightning.pytorch as pl
import pytest
from models_helpers import loader, make_module, make_trainer


class LearningRates(pl.Callback):
    def __init__(self) -> None:
        self.rates: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.rates.append(trainer.optimizers[0].param_groups[0]["lr"])


def rates(tmp_path, max_steps: int, **module_options) -> list[float]:
    recorder = LearningRates()
    trainer = make_trainer(tmp_path, max_steps=max_steps, callbacks=[recorder])
    trainer.fit(make_module(use_ema=False, **module_options), loader(num_batches=max_steps))
    return recorder.rates


def test_cosine_with_warmup_follows_diffusers(tmp_path):
    warmup, total, lr = 2, 6, 1e-3
    expected = [lr * step / warmup for step in range(warmup)]
    expected += [lr * 0.5 * (1 + math.cos(math.pi * (s - warmup) / (total - warmup))) for s in range(warmup, total)]
    got = rates(tmp_path, total, learning_rate=lr, lr_scheduler="cosine", lr_warmup_steps=warmup)
    assert got == pytest.approx(expected)


def test_constant_with_warmup_ramps_then_holds(tmp_path):
    got = rates(tmp_path, 4, learning_rate=1e-3, lr_scheduler="constant_with_warmup", lr_warmup_steps=2)
    assert got == pytest.approx([0.0, 5e-4, 1e-3, 1e-3])


def test_constant_with_a_warmup_is_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match="constant_with_warmup"):
        rates(tmp_path, 2, lr_scheduler="constant", lr_warmup_steps=2)
