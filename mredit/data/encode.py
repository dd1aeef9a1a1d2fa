"""``mredit data encode``: precompute VAE latents and text-encoder states of a shard set (see ``latents.py``).

Training from the result skips the frozen VAE and CLIP text encoder in every step. The images go through the
same deterministic resize + centre crop as training (``PairedTransform`` without random crop); with ``--flip``
the horizontally flipped pair is encoded too, and ``LatentDataModule`` picks one of the two per sample.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from mredit.conditioning.feedback import encode_feedback
from mredit.data.latents import FLIP_PREFIX, LatentShardWriter
from mredit.data.reader import SkipCounter, decode_or_skip, iter_raw_samples, resolve_shards
from mredit.data.transforms import PairedTransform, image_to_tensor
from mredit.schema import NO_FAILURE, PERSPECTIVES, EditSample

log = logging.getLogger(__name__)
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _batches(samples: Iterator[EditSample], size: int) -> Iterator[list[EditSample]]:
    batch: list[EditSample] = []
    for sample in samples:
        batch.append(sample)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@torch.no_grad()
def encode_batch(samples: list[EditSample], vae, text_encoder, tokenizer, transform, flip: bool) -> list[dict]:
    """Per sample: the tensors of the latent format (see ``mredit.data.latents``)."""
    device = next(text_encoder.parameters()).device
    pairs = [transform(s.source, s.target, s.instruction) for s in samples]
    source = torch.stack([image_to_tensor(p[0]) for p in pairs]).to(device, vae.dtype)
    target = torch.stack([image_to_tensor(p[1]) for p in pairs]).to(device, vae.dtype)
    variants = {"": (source, target)}
    if flip:
        variants[FLIP_PREFIX] = (source.flip(-1), target.flip(-1))
    out: dict[str, torch.Tensor] = {}
    for prefix, (src, tgt) in variants.items():
        posterior = vae.encode(tgt).latent_dist
        out[f"{prefix}source_latents"] = vae.encode(src).latent_dist.mode()
        out[f"{prefix}target_latent_mean"], out[f"{prefix}target_latent_logvar"] = posterior.mean, posterior.logvar
    ids = tokenizer(
        [s.instruction for s in samples],
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids
    out["instruction_embeds"] = text_encoder(ids.to(device)).last_hidden_state
    feedback = [list(s.reward.feedbacks) if s.reward else [NO_FAILURE] * len(PERSPECTIVES) for s in samples]
    embedded = encode_feedback(feedback, tokenizer, text_encoder, formats=("pooled", "tokens"))
    out.update(feedback_pooled=embedded.pooled, feedback_tokens=embedded.tokens, feedback_mask=embedded.mask)
    return [{key: value[index] for key, value in out.items()} for index in range(len(samples))]


def encode_shards(
    encoders: tuple[Any, Any, Any],
    shards: str | list[str],
    out_dir: str | Path,
    resolution: int = 256,
    flip: bool = False,
    batch_size: int = 8,
    dtype: str = "float16",
    shard_size: int = 1000,
    device: str = "cpu",
    model: str | None = None,
) -> dict[str, Any]:
    """Encode every readable sample of ``shards`` into ``out_dir``; returns the manifest (with skip counts).

    ``encoders`` is ``(vae, text_encoder, tokenizer)``, loaded already (``mredit.models.loading.load_encoders``);
    they are moved to ``device``. ``model`` names where they came from, for the manifest's provenance.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    urls = resolve_shards(shards)
    vae, text_encoder, tokenizer = encoders
    vae.to(device)
    text_encoder.to(device)
    transform = PairedTransform(resolution=resolution)
    counter = SkipCounter()
    provenance = {
        "model": None if model is None else str(model),
        "shards": urls,
        "resolution": resolution,
        "flip": flip,
        "dtype": dtype,
    }
    with LatentShardWriter(out_dir, shard_size=shard_size, provenance=provenance) as writer:
        for batch in _batches(decode_or_skip(iter_raw_samples(urls, counter), counter), batch_size):
            for sample, tensors in zip(batch, encode_batch(batch, vae, text_encoder, tokenizer, transform, flip)):
                reward = sample.reward
                info = {
                    "key": sample.key,
                    "instruction": sample.instruction,
                    "feedback": list(reward.feedbacks) if reward else [NO_FAILURE] * len(PERSPECTIVES),
                    "scores": list(reward.scores) if reward else [0.0] * len(PERSPECTIVES),
                    "reward_mask": reward is not None,
                    "meta": sample.meta,
                }
                floats = {k: v.to(DTYPES[dtype]) if v.is_floating_point() else v for k, v in tensors.items()}
                writer.write(floats, info)
        writer.provenance["skipped"] = counter.counts()
    manifest = writer.close()
    if counter.total:
        log.warning("skipped %d unreadable samples: %s", counter.total, counter.counts())
    return manifest
