"""``mredit data encode`` as Lightning ``predict``: precomputed-latent shards from one or many processes.

``LatentEncoder`` holds the frozen VAE and text encoder (Lightning places them on each rank's device) and encodes
a batch of samples with ``mredit.data.encode``; ``EncodedLatentWriter`` writes each rank's own shards;
``encode_shards`` runs the two over a shard set (``mredit.training.offline``) and writes one ``manifest.json``
for the shards of all ranks.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

from mredit.callbacks.encoded_latent_writer import EncodedLatentWriter
from mredit.data.encode import check_encode_options, encode_samples
from mredit.data.latents import latent_manifest
from mredit.data.reader import SKIP_REASONS, ShardSpec, resolve_shards
from mredit.data.shards import MANIFEST_NAME
from mredit.data.transforms import PairedTransform
from mredit.schema import EditSample
from mredit.training.offline import predict_on_shards

log = logging.getLogger(__name__)


class LatentEncoder(pl.LightningModule):
    """``predict_step``: a batch of samples -> their latent records (``mredit.data.encode.encode_samples``)."""

    def __init__(self, encoders: tuple[Any, Any, Any], resolution: int, flip: bool, dtype: str) -> None:
        super().__init__()
        self.vae, self.text_encoder, self.tokenizer = encoders  # registered modules: moved to the rank's device
        self.transform = PairedTransform(resolution=resolution)
        self.flip, self.storage_dtype = flip, dtype  # (LightningModule.dtype is the weights')

    def predict_step(self, batch: list[EditSample], batch_idx: int) -> list[tuple[dict, dict]]:
        encoders = (self.vae, self.text_encoder, self.tokenizer)
        return encode_samples(batch, encoders, self.transform, self.flip, self.storage_dtype)


def encode_shards(
    encoders: tuple[Any, Any, Any],
    shards: ShardSpec,
    out_dir: str | Path,
    resolution: int = 256,
    flip: bool = False,
    batch_size: int = 8,
    dtype: str = "float16",
    shard_size: int = 1000,
    model: str | None = None,
    num_workers: int = 0,
    accelerator: str = "auto",
    devices: int = 1,
    num_nodes: int = 1,
    strategy: str = "auto",
) -> dict[str, Any] | None:
    """Encode every readable sample of ``shards`` into ``out_dir``; returns the manifest (with skip counts) on
    global rank 0, None on the other ranks.

    ``encoders`` is ``(vae, text_encoder, tokenizer)``, loaded already (``mredit.models.loading.load_encoders``);
    ``model`` names where they came from, for the manifest's provenance. ``accelerator``, ``devices``,
    ``num_nodes``, ``strategy``: Lightning's, see ``mredit.training.offline``; each rank writes its own shards.
    """
    check_encode_options(dtype, batch_size)
    urls = resolve_shards(shards)
    job = LatentEncoder(encoders, resolution, flip, dtype)
    writer = EncodedLatentWriter(out_dir, shard_size)
    processes = dict(accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy=strategy)
    reports = predict_on_shards(job, writer, urls, batch_size, num_workers, **processes)
    if reports is None:
        return None
    skipped = {reason: sum(report["skipped"][reason] for report in reports) for reason in SKIP_REASONS}
    provenance = {
        "model": None if model is None else str(model),
        "shards": urls,
        "resolution": resolution,
        "flip": flip,
        "dtype": dtype,
        "skipped": skipped,
    }
    manifest = latent_manifest([shard for report in reports for shard in report["shards"]], provenance)
    (Path(out_dir) / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2))
    if sum(skipped.values()):
        log.warning("skipped %d unreadable samples: %s", sum(skipped.values()), skipped)
    return manifest
