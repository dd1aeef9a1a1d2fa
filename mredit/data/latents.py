"""Precomputed-latent shards: what ``mredit data encode`` writes and ``LatentDataModule`` reads.

Each WebDataset sample holds ``<n>.latents.safetensors`` and ``<n>.json`` (key, instruction, feedback texts,
scores, reward mask, meta). The safetensors member has, per variant (``""`` and, when flipping was encoded,
``"flip."`` for the horizontally flipped pair):

- ``source_latents`` ``[C, h, w]``: VAE posterior mode of the source, unscaled (InstructPix2Pix convention);
- ``target_latent_mean`` / ``target_latent_logvar`` ``[C, h, w]``: the target posterior, so training still
  draws a fresh latent sample each step (the module multiplies by the VAE scaling factor);

and, shared by both variants: ``instruction_embeds`` ``[L, D]`` (text-encoder last hidden states),
``feedback_pooled`` ``[D]`` (pooled output of the "; "-joined feedback), ``feedback_tokens`` ``[3, L, D]`` and
``feedback_mask`` ``[3, L]`` (each perspective encoded on its own). Batches carry the keys of the model
contract, so ``InstructPix2PixModule.training_step`` runs neither the VAE nor the text encoder.
A ``manifest.json`` (format ``mredit-latents/1``) lists the shards like the image shard sets.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import webdataset as wds
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from mredit.data.reader import iter_raw_samples, resolve_shards
from mredit.data.shards import MANIFEST_NAME
from mredit.data.stream import shuffle_buffer, split_for
from mredit.data.transforms import mentions_side

log = logging.getLogger(__name__)
LATENT_FORMAT = "mredit-latents/1"
VARIANT_KEYS = ("source_latents", "target_latent_mean", "target_latent_logvar")
SHARED_KEYS = ("instruction_embeds", "feedback_pooled", "feedback_tokens", "feedback_mask")
FLIP_PREFIX = "flip."


def latent_manifest(shards: list[dict[str, Any]], provenance: dict[str, Any]) -> dict[str, Any]:
    """The ``manifest.json`` of a latent shard set: its shards (``{"path", "num_samples"}``) and provenance."""
    return {
        "format": LATENT_FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "num_samples": sum(shard["num_samples"] for shard in shards),
        "shards": shards,
        "provenance": provenance,
    }


class LatentShardWriter:
    """Write encoded samples to ``<out>/<prefix>-000000.tar, ...`` and a manifest on close (context manager).

    ``write_manifest=False``: ``close`` only returns it (one process of several writes its own shards; the
    manifest of them all is written once, by ``mredit.training.latent_encoding``)."""

    def __init__(
        self,
        out_dir: str | os.PathLike,
        shard_size: int = 1000,
        provenance: dict | None = None,
        prefix: str = "latents",
        write_manifest: bool = True,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.shard_size, self.provenance = shard_size, dict(provenance or {})
        self.prefix, self.write_manifest = prefix, write_manifest
        self.shards: list[dict[str, Any]] = []
        self._writer: wds.TarWriter | None = None
        self._count = 0

    def __enter__(self) -> LatentShardWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def write(self, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
        if self._writer is None or self.shards[-1]["num_samples"] >= self.shard_size:
            if self._writer is not None:
                self._writer.close()
            name = f"{self.prefix}-{len(self.shards):06d}.tar"
            # whole-second mtime: no PAX extended header per member (ShardSetWriter says why)
            self._writer = wds.TarWriter(str(self.out_dir / name), mtime=int(time.time()))
            self.shards.append({"path": name, "num_samples": 0})
        payload = save_tensors({k: v.contiguous().cpu() for k, v in tensors.items()})
        # the sample key may contain dots; the member name uses a running index and json keeps the key
        self._writer.write({"__key__": f"{self._count:09d}", "latents.safetensors": payload, "json": info})
        self.shards[-1]["num_samples"] += 1
        self._count += 1

    def close(self) -> dict[str, Any]:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        manifest = latent_manifest(self.shards, self.provenance)
        if self.write_manifest:
            (self.out_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2))
        return manifest


def decode_latent_sample(raw: dict[str, Any], use_flip: bool) -> dict[str, Any]:
    """One raw tar sample -> a batch item; ``use_flip`` picks the flipped variant when it was encoded."""
    tensors = load_tensors(raw["latents.safetensors"])
    info = json.loads(raw["json"])
    prefix = FLIP_PREFIX if use_flip and f"{FLIP_PREFIX}{VARIANT_KEYS[0]}" in tensors else ""
    item = {key: tensors[prefix + key] for key in VARIANT_KEYS}
    item.update({key: tensors[key] for key in SHARED_KEYS if key in tensors})
    item.update(
        key=info["key"],
        instruction=info["instruction"],
        feedback=list(info["feedback"]),
        scores=torch.tensor(info["scores"], dtype=torch.float32),
        reward_mask=bool(info["reward_mask"]),
        meta=dict(info.get("meta", {}), flipped=bool(prefix)),
    )
    return item


def collate_latent_items(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    if not items:
        raise ValueError("cannot collate an empty list of latent samples")
    batch = {key: torch.stack([item[key] for item in items]) for key in VARIANT_KEYS + SHARED_KEYS if key in items[0]}
    if "feedback_mask" in batch:
        batch["feedback_mask"] = batch["feedback_mask"].bool()
    batch.update(
        key=[item["key"] for item in items],
        instruction=[item["instruction"] for item in items],
        feedback=[item["feedback"] for item in items],
        scores=torch.stack([item["scores"] for item in items]),
        reward_mask=torch.tensor([item["reward_mask"] for item in items], dtype=torch.bool),
        meta=[item["meta"] for item in items],
    )
    return batch


class LatentStream(IterableDataset):
    """Streams latent samples; each worker reads its slice of the shards (by rank, then by worker).

    ``flip``: pick the flipped variant with probability 0.5 (never when the instruction says left/right).
    ``shuffle``: buffer size for sample shuffling (0: file order); shard order is shuffled per epoch too.
    """

    def __init__(
        self, shards: list[str], flip: bool, shuffle: int, seed: int, rank: int = 0, world_size: int = 1
    ) -> None:
        self.shards, self.flip, self.shuffle, self.seed = shards, flip, shuffle, seed
        self.rank, self.world_size, self.epoch = rank, world_size, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        rng = random.Random(f"{self.seed}-{self.epoch}-{self.rank}-{worker}")
        shards = list(self.shards)
        if self.shuffle:
            rng.shuffle(shards)
        mine = split_for(shards, self.rank, self.world_size, worker, workers)
        raws = iter_raw_samples(mine)
        if self.shuffle:
            raws = shuffle_buffer(raws, self.shuffle, rng)
        for raw in raws:
            try:
                instruction = json.loads(raw["json"])["instruction"]
                use_flip = self.flip and not mentions_side(instruction) and rng.random() < 0.5
                yield decode_latent_sample(raw, use_flip)
            except (KeyError, ValueError, RuntimeError) as e:  # a corrupt member: skip it, say so
                log.warning("skipping latent sample %s: %s", raw.get("__key__", "?"), e)


class LatentDataModule(pl.LightningDataModule):
    """Args:
    train_shards, val_shards, test_shards: shard specs of ``mredit data encode`` output (dir, brace pattern, list).
    batch_size, num_workers: DataLoader settings.
    flip: use the flipped variants (if encoded) half of the time in training.
    shuffle_buffer: sample shuffle buffer in training (0 disables shuffling).
    seed: base seed of the shuffling and flip draws.
    """

    def __init__(
        self,
        train_shards: str | list[str] | None = None,
        val_shards: str | list[str] | None = None,
        test_shards: str | list[str] | None = None,
        batch_size: int = 4,
        num_workers: int = 0,
        flip: bool = True,
        shuffle_buffer: int = 256,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()

    @property
    def resolution(self) -> int | None:
        """The image side the training latents were encoded at (``mredit data encode --resolution``), as the
        training shards' manifest records it; None when it is not a folder with a manifest."""
        specs = self.hparams.train_shards
        for spec in [specs] if isinstance(specs, str) else list(specs or []):
            try:
                value = json.loads((Path(spec) / MANIFEST_NAME).read_text()).get("provenance", {}).get("resolution")
            except (OSError, ValueError, AttributeError):
                continue
            if isinstance(value, int):
                return value
        return None

    def _loader(self, spec: str | list[str] | None, train: bool) -> DataLoader:
        if spec is None:
            raise ValueError("LatentDataModule: no shards configured for this stage")
        hp = self.hparams
        trainer = self.trainer  # None outside a Trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        stream = LatentStream(
            resolve_shards(spec),
            flip=hp.flip and train,
            shuffle=hp.shuffle_buffer if train else 0,
            seed=hp.seed,
            rank=rank,
            world_size=world,
        )
        if train and trainer is not None:
            stream.set_epoch(trainer.current_epoch)
        return DataLoader(stream, batch_size=hp.batch_size, num_workers=hp.num_workers, collate_fn=collate_latent_items)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.hparams.train_shards, train=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader(self.hparams.val_shards, train=False) if self.hparams.val_shards else []

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.hparams.test_shards, train=False)
