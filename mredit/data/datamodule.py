"""``EditDataModule``: stream train/val/test/predict shards into batches of the project's batch contract.

Batch contract (every model, loss and predict loop builds against exactly this)::

    {
        "key": list[str],                  # B sample keys
        "source": ByteTensor [B, 3, H, W],   # RGB 0..255, H = W = resolution
        "target": ByteTensor [B, 3, H, W],   # RGB 0..255, aligned pixel for pixel with "source"
        "instruction": list[str],          # B instructions
        "scores": FloatTensor [B, 3],      # judge scores 0..5 in mredit.schema.PERSPECTIVES order; 0 where no reward
        "feedback": list[list[str]],       # B lists of 3 failure texts, same order; "None" where no reward
        "reward_mask": BoolTensor [B],     # True where the sample has a reward
        "meta": list[dict],                # the sample's meta.json, {} if none
    }

``edit_sample_to_item`` builds one sample's dict (unbatched tensors) and ``collate_edit_samples`` stacks them, so
inference code can build the same batches from ``EditSample``s without a DataModule. Images stay uint8 until the
model reads them (``mredit.data.transforms.pixels_to_float``, on the device): the loader then converts, copies
between worker processes and moves to the GPU a quarter of the bytes of float32, and the in-memory sample cache
holds four times as many samples. Models also accept float images in [-1, 1].
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import random
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from mredit.data.reader import SkipCounter, resolve_shards
from mredit.data.stream import EditStream
from mredit.data.transforms import PairedTransform, image_to_pixels
from mredit.schema import NO_FAILURE, PERSPECTIVES, EditSample

log = logging.getLogger(__name__)

ShardSpec = str | list[str] | None
SPLITS = ("train", "val", "test", "predict")


def edit_sample_to_item(
    sample: EditSample, transform: PairedTransform | None = None, rng: random.Random | None = None
) -> dict[str, Any]:
    """One sample's entry of the batch contract (tensors without the batch dimension).

    Without ``transform`` the images are converted as they are (source and target must have the same size).
    """
    source, target = sample.source, sample.target
    if transform is not None:
        source, target = transform(source, target, sample.instruction, rng)
    elif source.size != target.size:
        raise ValueError(f"sample '{sample.key}': source {source.size} and target {target.size} differ in size")
    reward = sample.reward
    return {
        "key": sample.key,
        "source": image_to_pixels(source),
        "target": image_to_pixels(target),
        "instruction": sample.instruction,
        "scores": torch.tensor(reward.scores if reward else [0.0] * len(PERSPECTIVES), dtype=torch.float32),
        "feedback": list(reward.feedbacks) if reward else [NO_FAILURE] * len(PERSPECTIVES),
        "reward_mask": reward is not None,
        "meta": dict(sample.meta),
    }


def collate_edit_samples(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack per-sample dicts from ``edit_sample_to_item`` into a batch (see the module docstring)."""
    if not items:
        raise ValueError("cannot collate an empty list of samples")
    return {
        "key": [item["key"] for item in items],
        "source": torch.stack([item["source"] for item in items]),
        "target": torch.stack([item["target"] for item in items]),
        "instruction": [item["instruction"] for item in items],
        "scores": torch.stack([item["scores"] for item in items]),
        "feedback": [list(item["feedback"]) for item in items],
        "reward_mask": torch.tensor([bool(item["reward_mask"]) for item in items], dtype=torch.bool),
        "meta": [item["meta"] for item in items],
    }


def _transform_item(transform: PairedTransform, sample: EditSample, rng: random.Random) -> dict[str, Any]:
    return edit_sample_to_item(sample, transform, rng)


class EditLoader(DataLoader):
    """A DataLoader over an ``EditStream`` that tells the stream its epoch, can cap the batches per epoch, and
    resumes mid-epoch.

    The epoch is set on the dataset before the workers are started (so do not use ``persistent_workers``).
    ``max_batches`` is the ``with_epoch`` of the WebDataset recipe, applied to the loader, not the dataset, so
    the steps per epoch do not depend on ``num_workers``.

    Resume: Lightning saves ``state_dict()`` (``position_fn()``: the epoch of the next training batch and how
    many of that epoch's batches the model has already taken) in every checkpoint and hands it to
    ``load_state_dict`` on ``--ckpt_path``. The next iteration then re-reads that epoch from its start (same seed,
    same order) and drops the batches already trained on, so the run continues with the batch it would have seen
    next.
    """

    def __init__(
        self,
        dataset: EditStream,
        *,
        max_batches: int | None = None,
        epoch_fn: Callable[[], int] | None = None,
        position_fn: Callable[[], tuple[int, int]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(dataset, **kwargs)
        self.max_batches, self.epoch_fn, self.position_fn = max_batches, epoch_fn, position_fn
        self._iterations = 0
        self._resume_at: dict[str, int] | None = None

    def _epoch(self) -> int:
        return self.epoch_fn() if self.epoch_fn is not None else self._iterations

    def state_dict(self) -> dict[str, int]:
        epoch, batches = self.position_fn() if self.position_fn is not None else (self._epoch(), 0)
        return {"epoch": epoch, "batches": batches}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume_at = {"epoch": int(state["epoch"]), "batches": int(state["batches"])}

    def __iter__(self) -> Iterator[Any]:
        # the first iteration after a restore reads the saved epoch: Lightning creates that iterator before it
        # moves its own epoch counter past an epoch the checkpoint finished
        resume, self._resume_at = self._resume_at, None
        epoch = resume["epoch"] if resume is not None else self._epoch()
        skip = resume["batches"] if resume is not None else 0
        self.dataset.set_epoch(epoch)
        self._iterations += 1
        if skip:
            log.info("resuming epoch %d: skipping the %d batches already trained on", epoch, skip)
        batches = super().__iter__()
        if not skip and self.max_batches is None:
            return batches
        return itertools.islice(batches, skip, self.max_batches)

    def __len__(self) -> int:
        if self.max_batches is not None and self.dataset.resampled:
            return self.max_batches
        return super().__len__()  # raises TypeError: a plain stream has no length


def _rank_and_world_size() -> tuple[int, int]:
    """Fallback when no trainer is attached: torch.distributed if initialised, else RANK/WORLD_SIZE, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


class EditDataModule(pl.LightningDataModule):
    """Stream editing triplets from WebDataset shards (see the module docstring for the batch contract).

    Args:
        train_shards, val_shards, test_shards, predict_shards: a brace pattern, a tar path, a directory with
            ``manifest.json``, a ``pipe:`` command / URL, or a list of these.
        batch_size: samples per batch per rank.
        num_workers: DataLoader worker processes per rank.
        resolution: the side of the square crops.
        predict_resolution: the side of the predict crops; None: the resolution the model was trained at (its
            checkpoint records it), else ``resolution``, with a one-line note. More than twice the trained
            resolution warns.
        random_crop, random_flip: training augmentations (val/test/predict always center-crop, never flip);
            the flip is never applied when the instruction mentions left or right.
        shuffle_buffer: training sample shuffle buffer per worker (0 disables shuffling, shards are still shuffled).
        resampled: draw training shards with replacement (infinite stream; requires ``samples_per_epoch``).
        samples_per_epoch: training samples per epoch over all ranks; caps the epoch at
            ``samples_per_epoch // (world_size * batch_size)`` batches per rank.
        val_samples: cap on validation samples per epoch over all ranks (``None``: every sample once).
        draft_decode: decode JPEGs at a reduced scale when the resolution allows it (much faster; the crops are
            the same regions, resampled from a smaller decode).
        cache_samples: keep up to this many decoded training samples in memory after the first epoch and shuffle
            them in later epochs instead of reading the shards again (0: off). For small datasets read in-process
            (``num_workers=0``; worker processes restart every epoch): the tiny configs. A rank whose slice holds
            more samples warns and streams as usual. Crops and flips still differ per epoch.
        seed: shard order, shuffle buffer, crops and flips are deterministic given the seed.

    Skipped samples are counted per split (``skipped``); ``mredit.callbacks.skipped_samples.SkippedSamplesLogger``
    logs them as metrics (``mredit fit`` adds it to the trainer).
    """

    def __init__(
        self,
        train_shards: ShardSpec = None,
        val_shards: ShardSpec = None,
        test_shards: ShardSpec = None,
        predict_shards: ShardSpec = None,
        batch_size: int = 4,
        num_workers: int = 2,
        resolution: int = 256,
        predict_resolution: int | None = None,
        random_crop: bool = True,
        random_flip: bool = True,
        shuffle_buffer: int = 1000,
        resampled: bool = False,
        samples_per_epoch: int | None = None,
        val_samples: int | None = None,
        draft_decode: bool = True,
        cache_samples: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if batch_size < 1 or num_workers < 0 or resolution < 1 or shuffle_buffer < 0:
            raise ValueError("batch_size and resolution must be >= 1, num_workers and shuffle_buffer >= 0")
        if predict_resolution is not None and predict_resolution < 1:
            raise ValueError(f"predict_resolution must be >= 1, got {predict_resolution}")
        if cache_samples < 0:
            raise ValueError(f"cache_samples must be >= 0, got {cache_samples}")
        if cache_samples and num_workers:
            raise ValueError(
                f"cache_samples={cache_samples} needs num_workers=0 (worker processes restart every epoch and would"
                f" drop the cache), got num_workers={num_workers}: set data.cache_samples=0 to decode in workers"
            )
        if resampled and not samples_per_epoch:
            raise ValueError("resampled=True needs samples_per_epoch (a resampled stream is infinite)")
        self.save_hyperparameters()
        self.specs: dict[str, ShardSpec] = dict(zip(SPLITS, (train_shards, val_shards, test_shards, predict_shards)))
        self.batch_size, self.num_workers, self.resolution = batch_size, num_workers, resolution
        self.predict_resolution = predict_resolution
        self.random_crop, self.random_flip, self.shuffle_buffer = random_crop, random_flip, shuffle_buffer
        self.resampled, self.samples_per_epoch, self.val_samples = resampled, samples_per_epoch, val_samples
        self.draft_decode, self.cache_samples, self.seed = draft_decode, cache_samples, seed
        self.shards: dict[str, list[str]] = {}
        self.skip_counters: dict[str, SkipCounter] = {}

    # -- setup: resolve every shard list up front so a bad path fails here, not inside a worker
    def setup(self, stage: str | None = None) -> None:
        needed = {
            "fit": ("train", "val"),
            "validate": ("val",),
            "test": ("test",),
            "predict": ("predict",),
            None: SPLITS,
        }.get(stage, SPLITS)
        if stage == "fit" and self.specs["train"] is None:
            raise ValueError("EditDataModule: train_shards is required to fit")
        for split in needed:
            spec = self.specs[split]
            if spec is None:
                if stage not in (None, "fit"):
                    raise ValueError(f"EditDataModule: {split}_shards is required to {stage}")
                continue
            self.shards[split] = resolve_shards(spec)
            self.skip_counters.setdefault(split, SkipCounter())
        self._warn_uneven_split()

    def _warn_uneven_split(self) -> None:
        """Unequal shard counts per rank mean unequal batch counts, which can hang DDP collectives."""
        _, world_size = self.rank_info()
        for split, shards in self.shards.items():
            if world_size > 1 and len(shards) % world_size and not (split == "train" and self.resampled):
                log.warning(
                    "%s: %d shards do not divide evenly over %d ranks; ranks get unequal sample counts (use"
                    " resampled=True with samples_per_epoch for training, val_samples for validation, or re-shard)",
                    split,
                    len(shards),
                    world_size,
                )

    def rank_info(self) -> tuple[int, int]:
        """(global rank, world size): from the trainer when attached (right after Lightning's DDP setup)."""
        if self.trainer is not None:
            return self.trainer.global_rank, self.trainer.world_size
        return _rank_and_world_size()

    @property
    def skipped(self) -> dict[str, dict[str, int]]:
        """Skipped samples of this rank so far, per split and reason (all reasons always present)."""
        return {split: counter.counts() for split, counter in self.skip_counters.items()}

    def _epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def _next_training_batch(self) -> tuple[int, int]:
        """(epoch, batches of it already trained on) of the next training batch. A batch counts once its step has
        run, so a checkpoint saved at ``on_train_batch_end`` counts its own batch, as Lightning does when it
        resumes from one; after an epoch's last batch the next one is the first of the next epoch."""
        progress = self.trainer.fit_loop.epoch_loop.batch_progress
        if progress.is_last_batch:
            return self._epoch() + 1, 0
        return self._epoch(), progress.current.processed

    def _loader(self, split: str) -> EditLoader:
        if split not in self.shards:
            if self.specs[split] is None:
                raise ValueError(f"EditDataModule: no {split}_shards given")
            self.setup({"train": "fit", "val": "validate"}.get(split, split))
        training = split == "train"
        rank, world_size = self.rank_info()
        resolution = self._predict_side() if split == "predict" else self.resolution
        transform = PairedTransform(
            resolution, random_crop=training and self.random_crop, random_flip=training and self.random_flip
        )
        stream = EditStream(
            self.shards[split],
            partial(_transform_item, transform),
            rank=rank,
            world_size=world_size,
            shuffle_shards=training,
            shuffle_size=self.shuffle_buffer if training else 0,
            resampled=training and self.resampled,
            seed=self.seed,
            draft_size=(resolution, resolution) if self.draft_decode else None,
            counter=self.skip_counters[split],
            cache_samples=self.cache_samples if training else 0,
        )
        cap = {"train": self.samples_per_epoch, "val": self.val_samples}.get(split)
        max_batches = max(1, cap // (world_size * self.batch_size)) if training and cap else None
        if split == "val" and cap:
            max_batches = max(1, math.ceil(cap / (world_size * self.batch_size)))
        return EditLoader(
            stream,
            max_batches=max_batches,
            epoch_fn=self._epoch if self.trainer is not None else None,
            position_fn=self._next_training_batch if training and self.trainer is not None else None,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            collate_fn=collate_edit_samples,
            pin_memory=torch.cuda.is_available(),
        )

    def _predict_side(self) -> int:
        """``predict_resolution``, else the model's ``trained_resolution`` (restored from the checkpoint before
        Lightning asks for the predict loader), else ``resolution`` with a note."""
        module = self.trainer.lightning_module if self.trainer is not None else None
        trained = getattr(module, "trained_resolution", None)
        if self.predict_resolution is not None:
            if trained is not None and self.predict_resolution > 2 * trained:
                log.warning(
                    "data.predict_resolution %d is more than 2x the %d px the model was trained at: sampling is much"
                    " slower and the model has not seen that scale",
                    self.predict_resolution,
                    trained,
                )
            return self.predict_resolution
        if trained is not None:
            return trained
        if module is not None:
            log.warning(
                "the model does not record the resolution it was trained at (made before it was recorded): "
                "predicting at data.resolution, %d px; data.predict_resolution chooses",
                self.resolution,
            )
        return self.resolution

    def train_dataloader(self) -> EditLoader:
        return self._loader("train")

    def val_dataloader(self) -> EditLoader | list:
        return self._loader("val") if self.specs["val"] is not None else []

    def test_dataloader(self) -> EditLoader:
        return self._loader("test")

    def predict_dataloader(self) -> EditLoader:
        return self._loader("predict")

    def teardown(self, stage: str | None = None) -> None:
        for split, counts in self.skipped.items():
            if sum(counts.values()):
                log.warning("%s: skipped samples by reason: %s", split, {k: v for k, v in counts.items() if v})
