"""Offline jobs over a shard set as Lightning ``predict``: ``mredit data encode`` and ``mredit edit --shards``.

A job is a LightningModule whose ``predict_step`` takes a batch that is a list of ``EditSample``s, and a
prediction writer that stores each batch's results as they come and says what it wrote (``report()``).
``predict_on_shards`` runs the pair with a Trainer built from the four settings each such command exposes, under
Lightning's names: ``accelerator``, ``devices`` (processes per node), ``num_nodes`` and ``strategy``. The defaults
run one process on one device. ``devices > 1`` on one machine starts the other processes with Lightning's own
launcher (it runs the same command line again); under ``torchrun`` or SLURM's ``srun`` the processes are started
outside and Lightning reads the ranks from the environment (``devices`` = processes per node, ``num_nodes`` = nodes).

Each rank reads its own shards, ``rank::world_size`` as in training (``EditStream``), so the ranks' outputs are
disjoint and together hold every readable sample once; a rank without a shard writes nothing, so give at least as
many shards as processes. At the end each rank's report (its writer's ``report()`` and its skipped samples) is
gathered on global rank 0, which the caller uses for the one summary (the latent manifest, the printed counts).
"""

from __future__ import annotations

import logging
import random
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch.utils.data import DataLoader

from mredit.data.reader import ShardSpec, SkipCounter, resolve_shards
from mredit.data.stream import EditStream
from mredit.schema import EditSample

# Lightning's start-up chatter (accelerators found, tips) is not the command's output; the ranks' set-up lines
# ("Initializing distributed ...") are kept when there are several processes
LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric")


class ReportingWriter(Protocol):
    """A prediction writer (a Lightning callback) that can say what this rank wrote, as JSON-able values."""

    def report(self) -> dict[str, Any]: ...


def _sample(sample: EditSample, rng: random.Random) -> EditSample:
    return sample


class ShardSamples(pl.LightningDataModule):
    """The predict loader of ``predict_on_shards``: this rank's samples of ``shards``, in shard order, as lists of
    ``batch_size`` ``EditSample``s; unreadable samples are skipped and counted in ``counter``."""

    def __init__(self, shards: ShardSpec, batch_size: int = 1, num_workers: int = 0) -> None:
        super().__init__()
        if batch_size < 1 or num_workers < 0:
            raise ValueError(f"batch_size must be >= 1 and num_workers >= 0, got {batch_size} and {num_workers}")
        self.shards = resolve_shards(shards)  # a missing shard fails here, with one line, before any process starts
        self.batch_size, self.num_workers = batch_size, num_workers
        self.counter = SkipCounter()

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        return batch  # decoded samples (PIL images): the job moves what it computes from them to its device

    def predict_dataloader(self) -> DataLoader:
        trainer = self.trainer
        rank, world_size = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        stream = EditStream(self.shards, _sample, rank=rank, world_size=world_size, counter=self.counter)
        return DataLoader(stream, batch_size=self.batch_size, num_workers=self.num_workers, collate_fn=list)


def gather_on_rank_zero(report: dict[str, Any], trainer: pl.Trainer) -> list[dict[str, Any]] | None:
    """Every rank's ``report``, in rank order, on global rank 0 (None on the others); all ranks must call it."""
    if trainer.world_size == 1 or not torch.distributed.is_initialized():
        return [report]
    reports: list[Any] = [None] * trainer.world_size
    torch.distributed.all_gather_object(reports, report)
    return reports if trainer.is_global_zero else None


class _GatherReports(pl.Callback):
    """After the writer has closed its files (``on_predict_epoch_end``): each rank's report, gathered on rank 0."""

    def __init__(self, writer: ReportingWriter, counter: SkipCounter) -> None:
        self.writer, self.counter = writer, counter
        self.reports: list[dict[str, Any]] | None = None

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        report = {"rank": trainer.global_rank, **self.writer.report(), "skipped": self.counter.counts()}
        self.reports = gather_on_rank_zero(report, trainer)


@contextmanager
def _quiet_lightning(several_processes: bool) -> Iterator[None]:
    levels = {name: logging.getLogger(name).level for name in LIGHTNING_LOGGERS}
    try:
        if not several_processes:
            for name in LIGHTNING_LOGGERS:
                logging.getLogger(name).setLevel(logging.WARNING)
        with warnings.catch_warnings():
            # num_workers is the command's choice; a stream of samples has no indices to infer; Lightning's own
            # use of a torch API that torch deprecated
            for message in ("does not have many workers", "Couldn't infer the batch indices", "isinstance\\(treespec"):
                warnings.filterwarnings("ignore", message=f".*{message}")
            yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def predict_on_shards(
    job: pl.LightningModule,
    writer: ReportingWriter,
    shards: ShardSpec,
    batch_size: int = 1,
    num_workers: int = 0,
    accelerator: str = "auto",
    devices: int = 1,
    num_nodes: int = 1,
    strategy: str = "auto",
) -> list[dict[str, Any]] | None:
    """Run ``job`` over ``shards`` with Lightning ``predict``, ``writer`` storing its results (see the module
    docstring). Returns, on global rank 0, every rank's report in rank order (``{"rank", **writer.report(),
    "skipped": {reason: count}}``); None on the other ranks."""
    if devices < 1 or num_nodes < 1:
        raise ValueError(f"devices and num_nodes must be >= 1, got {devices} and {num_nodes}")
    data = ShardSamples(shards, batch_size, num_workers)
    gather = _GatherReports(writer, data.counter)
    processes = dict(accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy=strategy)
    with _quiet_lightning(devices * num_nodes > 1):
        try:
            trainer = pl.Trainer(
                **processes,
                logger=False,
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
                use_distributed_sampler=False,  # EditStream splits the shards by rank itself
                callbacks=[writer, gather],  # in this order: the writer closes its files before the reports
            )
        except MisconfigurationException as e:  # no such accelerator here, devices it does not have...
            settings = ", ".join(f"{name}={value!r}" for name, value in processes.items())
            raise ValueError(f"{settings}: {e}") from e
        trainer.predict(job, datamodule=data, return_predictions=False)
    return gather.reports if trainer.is_global_zero else None
