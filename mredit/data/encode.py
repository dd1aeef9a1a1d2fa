"""``mredit data encode``: precompute VAE latents and text-encoder states of a shard set (see ``latents.py``).

Training from the result skips the frozen VAE and CLIP text encoder in every step. The images go through the
same deterministic resize + centre crop as training (``PairedTransform`` without random crop); with ``--flip``
the horizontally flipped pair is encoded too, and ``LatentDataModule`` picks one of the two per sample.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from mredit.conditioning.feedback import encode_feedback
from mredit.data.latents import FLIP_PREFIX, LatentShardWriter
from mredit.data.pipeline import SkipCounter, decode_or_skip, iter_raw_samples, resolve_shards
from mredit.data.transforms import PairedTransform, image_to_tensor
from mredit.schema import NO_FAILURE, PERSPECTIVES, EditSample

log = logging.getLogger(__name__)
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def load_encoders(model: str) -> tuple[Any, Any, Any]:
    """(vae, text_encoder, tokenizer) of an export / SD-layout folder or of a module ``.ckpt``; eval mode."""
    path = Path(model)
    if path.is_file():
        from mredit.export.export import load_module_from_checkpoint

        module = load_module_from_checkpoint(path)
        return module.vae.eval(), module.text_encoder.eval(), module.tokenizer
    if not path.is_dir():
        raise FileNotFoundError(f"model not found: {model} (expected a diffusers-layout folder or a .ckpt)")
    import json

    from transformers import CLIPTextModel, CLIPTokenizer

    from mredit.models.components import VAE_CLASSES

    vae_class = json.loads((path / "vae" / "config.json").read_text()).get("_class_name", "AutoencoderKL")
    vae = VAE_CLASSES[vae_class].from_pretrained(path / "vae")
    text_encoder = CLIPTextModel.from_pretrained(path / "text_encoder")
    return vae.eval(), text_encoder.eval(), CLIPTokenizer.from_pretrained(path / "tokenizer")


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
    model: str,
    shards: str | list[str],
    out_dir: str | Path,
    resolution: int = 256,
    flip: bool = False,
    batch_size: int = 8,
    dtype: str = "float16",
    shard_size: int = 1000,
    device: str = "cpu",
) -> dict[str, Any]:
    """Encode every readable sample of ``shards`` into ``out_dir``; returns the manifest (with skip counts)."""
    if dtype not in DTYPES:
        raise ValueError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    urls = resolve_shards(shards)
    vae, text_encoder, tokenizer = load_encoders(model)
    vae.to(device)
    text_encoder.to(device)
    transform = PairedTransform(resolution=resolution)
    counter = SkipCounter()
    provenance = {"model": str(model), "shards": urls, "resolution": resolution, "flip": flip, "dtype": dtype}
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


def run_encode(args: argparse.Namespace) -> int:
    manifest = encode_shards(
        args.model,
        args.shards,
        args.out,
        args.resolution,
        args.flip,
        args.batch_size,
        args.dtype,
        args.shard_size,
        args.device,
    )
    skipped = sum(manifest["provenance"]["skipped"].values())
    print(f"encoded {manifest['num_samples']} samples into {args.out} ({skipped} skipped)")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("encode", help="precompute VAE latents and text-encoder states of shards")
    parser.add_argument("--model", required=True, help="export / SD-layout folder or a module .ckpt")
    parser.add_argument("--shards", required=True, nargs="+", help="shard spec(s): dir, brace pattern or .tar")
    parser.add_argument("--out", required=True, help="output folder for latents-*.tar + manifest.json")
    parser.add_argument("--resolution", type=int, default=256, help="training resolution (default 256)")
    parser.add_argument("--flip", action="store_true", help="also encode the horizontally flipped pair")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float16", help="storage dtype (default fp16)")
    parser.add_argument("--shard-size", type=int, default=1000, help="samples per output shard")
    parser.add_argument("--device", default="cpu", help="e.g. cuda")
    parser.set_defaults(func=run_encode)
