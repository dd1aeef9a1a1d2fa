"""``TrainingMonitor``: progress for a parent process, and the final (and chosen intermediate) checkpoints at
known paths.

The demo and the experiment runner start ``mredit fit`` runs with this callback and read ``progress.json`` for
their progress bars; any other caller can use it the same way::

    --trainer.callbacks+='{"class_path": "mredit.callbacks.training_monitor.TrainingMonitor",
                           "init_args": {"progress_path": "run/progress.json", "checkpoint_path": "run/final.ckpt"}}'
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import lightning.pytorch as pl


def step_checkpoint(final: str | os.PathLike, step: int) -> Path:
    """Where ``TrainingMonitor(checkpoint_path=final, save_at_steps=[..., step, ...])`` saves the model at
    ``step``: ``step<N>.ckpt`` beside ``final``."""
    return Path(final).with_name(f"step{step}.ckpt")


class TrainingMonitor(pl.Callback):
    """Writes ``{"step", "max_steps", "loss"}`` to a JSON file for the parent's progress bars, saves the final
    checkpoint to a known path when training ends and, at each of ``save_at_steps``, ``step<N>.ckpt`` beside it.

    Args:
        progress_path: the JSON file rewritten (atomically) every ``every_n_steps`` steps and at the end.
        checkpoint_path: where the final checkpoint is saved when training ends.
        every_n_steps: how often the progress file is rewritten.
        save_at_steps: global steps at which ``step<N>.ckpt`` is also saved (a learning curve).
    """

    def __init__(
        self, progress_path: str, checkpoint_path: str, every_n_steps: int = 5, save_at_steps: list[int] | None = None
    ) -> None:
        self.progress_path, self.checkpoint_path, self.every_n_steps = progress_path, checkpoint_path, every_n_steps
        self.save_at_steps, self._saved = set(save_at_steps or []), set()

    def _write(self, trainer: pl.Trainer, loss: float | None) -> None:
        tmp = f"{self.progress_path}.tmp"
        with open(tmp, "w") as f:
            json.dump({"step": trainer.global_step, "max_steps": trainer.max_steps, "loss": loss}, f)
        os.replace(tmp, self.progress_path)  # atomic: the parent never reads half a file

    def _save_step(self, trainer: pl.Trainer) -> None:
        step = trainer.global_step
        if step in self.save_at_steps and step not in self._saved:  # once, even with gradient accumulation
            trainer.save_checkpoint(str(step_checkpoint(self.checkpoint_path, step)))
            self._saved.add(step)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # a run resumed from a checkpoint taken at one of the steps, killed before it saved step<N>.ckpt
        if not step_checkpoint(self.checkpoint_path, trainer.global_step).exists():
            self._save_step(trainer)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx):
        self._save_step(trainer)
        step = trainer.global_step
        if step % self.every_n_steps == 0 and trainer.is_global_zero:
            loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
            self._write(trainer, float(loss) if loss is not None else None)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trainer.save_checkpoint(self.checkpoint_path)
        if trainer.is_global_zero:
            self._write(trainer, None)
