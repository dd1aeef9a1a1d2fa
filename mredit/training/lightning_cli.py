"""The LightningCLI behind ``mredit fit|validate|test|predict --config configs/<name>.yaml``.

Model and data are in subclass mode (``model.class_path`` / ``data.class_path``), so SmartEdit or another
DataModule need no new entry point. On top of stock LightningCLI:

- local checkpoints are written atomically (``AtomicCheckpointIO``), so a kill never corrupts ``last.ckpt``,
  by default to ``<trainer.default_root_dir>/checkpoints`` so ``--ckpt_path last`` finds them in a new run;
- the resolved config is logged to the experiment logger (secrets scrubbed) as well as saved to the log dir;
- ``SkippedSamplesLogger`` is added when the trainer has none, so skipped samples are logged as metrics;
- a bad config (unknown key, wrong type) and a user error (bad value, missing file, non-finite loss) end the
  run with one ``mredit <cmd>: error:`` line; set ``MREDIT_DEBUG=1`` for the traceback of the latter.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

import lightning.pytorch as pl
from jsonargparse import ArgumentError
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.plugins.io import TorchCheckpointIO

from mredit.callbacks.skipped_samples import SkippedSamplesLogger
from mredit.training.checkpoint_io import AtomicCheckpointIO
from mredit.training.errors import USER_ERRORS, condense_parse_error, root_message
from mredit.training.loggers import scrub_secrets


class LoggedSaveConfigCallback(SaveConfigCallback):
    """Saves ``config.yaml`` to the log dir and sends the resolved config to the logger (rank 0 only)."""

    def save_config(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if trainer.logger is None:
            return
        config = scrub_secrets(self.config.as_dict())
        config.pop("config", None)  # the paths of the YAML files, not settings
        for logger in trainer.loggers:
            logger.log_hyperparams({"config": config})


class MreditCLI(LightningCLI):
    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # leave a user-chosen CheckpointIO alone
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        # a fixed folder (not the logger's version_N) so that a new run's `--ckpt_path last` finds the old one
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.dirpath is None:
                callback.dirpath = os.path.realpath(os.path.join(trainer.default_root_dir, "checkpoints"))
        # the datamodule's skipped-sample counts as metrics, unless the config already has the callback
        if not any(isinstance(callback, SkippedSamplesLogger) for callback in trainer.callbacks):
            trainer.callbacks.append(SkippedSamplesLogger())
        return trainer


def run_lightning_cli(argv: list[str]) -> MreditCLI | None:
    """Run one LightningCLI command; ``argv`` starts with the subcommand (``fit``, ``validate``, ...)."""
    command = argv[0] if argv else "fit"
    # ``mredit`` passes argv explicitly while sys.argv keeps the full command line for DDP's re-launch
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    try:
        return MreditCLI(
            pl.LightningModule,
            pl.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_callback=LoggedSaveConfigCallback,
            save_config_kwargs={"overwrite": True},
            args=argv,
            auto_configure_optimizers=False,
            parser_kwargs={"exit_on_error": False},
        )
    except ArgumentError as e:  # a bad config: one line instead of the usage text plus a nested report
        print(f"mredit {command}: error: {condense_parse_error(str(e))}", file=sys.stderr)
        sys.exit(2)
    except USER_ERRORS as e:
        if os.environ.get("MREDIT_DEBUG"):
            raise
        print(f"mredit {command}: error: {root_message(e)}", file=sys.stderr)
        sys.exit(1)
