"""``mredit edit --shards`` as Lightning ``predict``: edit the samples of a shard set in one or many processes.

``ShardEditor`` edits each sample's source by its instruction (or one given instruction) with an opened
``EditingModel``, exactly as ``EditingModel.edit`` does for one image (its own generator seeded with the options'
seed, so an edit does not depend on which rank made it or what came before); ``EditedImageWriter`` writes
``<out_dir>/<key>.png``. ``edit_shards`` runs the two over the shards (``mredit.training.offline``): with several
processes each rank edits the samples of its own shards.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from torch import nn
from tqdm.auto import tqdm

from mredit.callbacks.edited_image_writer import EditedImageWriter
from mredit.data.reader import ShardSpec, count_samples
from mredit.editing.service import EditingModel, EditOptions
from mredit.schema import EditSample
from mredit.training.offline import predict_on_shards

# tqdm's bar with the rate always in images per second (its default turns slow rates into seconds per image)
IMAGES_BAR = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_noinv_fmt}{postfix}]"


def images_bar(total: int | None, quiet: bool, desc: str = "editing") -> tqdm:
    """A progress bar over images, with images/s, on stderr."""
    return tqdm(total=total, desc=desc, unit="img", disable=quiet, file=sys.stderr, bar_format=IMAGES_BAR)


class ShardEditor(pl.LightningModule):
    """``predict_step``: a batch of samples -> ``{"key": [...], "images": [PIL]}`` (what ``EditedImageWriter``
    writes). ``instruction``: replaces each sample's own. ``progress``: a bar over the images on global rank 0
    (its own images; ``total`` when it is the only process)."""

    def __init__(
        self,
        model: EditingModel,
        options: EditOptions,
        instruction: str | None = None,
        progress: bool = False,
        total: int | None = None,
    ) -> None:
        super().__init__()
        self.editing, self.options, self.instruction = model, options, instruction
        self.parts = nn.ModuleList(model.torch_modules)  # registered, so that Lightning moves them to the device
        self.progress, self.total = progress, total
        self._bar: tqdm | None = None

    def on_predict_start(self) -> None:
        if self.progress and self.trainer.is_global_zero:
            world_size = self.trainer.world_size
            desc = "editing" if world_size == 1 else f"editing (rank 0 of {world_size})"
            self._bar = images_bar(self.total if world_size == 1 else None, quiet=False, desc=desc)

    def predict_step(self, batch: list[EditSample], batch_idx: int) -> dict[str, Any]:
        images = []
        for sample in batch:
            images.append(self.editing.edit(sample.source, self.instruction or sample.instruction, self.options))
            if self._bar is not None:
                self._bar.update()
        return {"key": [sample.key for sample in batch], "images": images}

    def on_predict_end(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def edit_shards(
    model: EditingModel,
    options: EditOptions,
    shards: ShardSpec,
    out_dir: str | Path,
    instruction: str | None = None,
    quiet: bool = False,
    accelerator: str = "auto",
    devices: int = 1,
    num_nodes: int = 1,
    strategy: str = "auto",
) -> list[dict[str, Any]] | None:
    """Edit every readable sample of ``shards`` into ``<out_dir>/<key>.png``. Returns, on global rank 0, each
    rank's report (``{"rank", "written", "skipped": {reason: count}}``), None on the other ranks.
    ``accelerator``, ``devices``, ``num_nodes``, ``strategy``: Lightning's (``mredit.training.offline``)."""
    job = ShardEditor(model, options, instruction, progress=not quiet, total=count_samples(shards))
    writer = EditedImageWriter(str(out_dir))
    processes = dict(accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy=strategy)
    return predict_on_shards(job, writer, shards, batch_size=1, **processes)
