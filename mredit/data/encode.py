"""What ``mredit data encode`` computes per sample: VAE latents and text-encoder states (see ``latents.py``).

Training from the result skips the frozen VAE and CLIP text encoder in every step. The images go through the
same deterministic resize + centre crop as training (``PairedTransform`` without random crop); with ``--flip``
the horizontally flipped pair is encoded too, and ``LatentDataModule`` picks one of the two per sample. The job
over a shard set (Lightning ``predict``, one or many processes) is ``mredit.training.latent_encoding``.
"""

from __future__ import annotations

from typing import Any

import torch

from mredit.conditioning.feedback import encode_feedback
from mredit.data.latents import FLIP_PREFIX
from mredit.data.transforms import PairedTransform, image_to_pixels, pixels_to_float
from mredit.schema import NO_FAILURE, PERSPECTIVES, EditSample

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@torch.no_grad()
def encode_batch(samples: list[EditSample], vae, text_encoder, tokenizer, transform, flip: bool) -> list[dict]:
    """Per sample: the tensors of the latent format (see ``mredit.data.latents``)."""
    device = next(text_encoder.parameters()).device
    pairs = [transform(s.source, s.target, s.instruction) for s in samples]
    # stacked as uint8, converted on the device: a quarter of the bytes cross to it
    source = pixels_to_float(torch.stack([image_to_pixels(p[0]) for p in pairs]).to(device)).to(vae.dtype)
    target = pixels_to_float(torch.stack([image_to_pixels(p[1]) for p in pairs]).to(device)).to(vae.dtype)
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


def latent_info(sample: EditSample) -> dict[str, Any]:
    """The ``<n>.json`` member of a latent sample: key, instruction, feedback, scores, reward mask, meta."""
    reward = sample.reward
    return {
        "key": sample.key,
        "instruction": sample.instruction,
        "feedback": list(reward.feedbacks) if reward else [NO_FAILURE] * len(PERSPECTIVES),
        "scores": list(reward.scores) if reward else [0.0] * len(PERSPECTIVES),
        "reward_mask": reward is not None,
        "meta": sample.meta,
    }


def check_encode_options(dtype: str, batch_size: int) -> None:
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")


def encode_samples(
    samples: list[EditSample], encoders: tuple[Any, Any, Any], transform: PairedTransform, flip: bool, dtype: str
) -> list[tuple[dict[str, torch.Tensor], dict[str, Any]]]:
    """Per sample, what a ``LatentShardWriter`` stores: its tensors (floats at ``dtype``) and its ``latent_info``.

    ``encoders`` is ``(vae, text_encoder, tokenizer)`` (``mredit.models.loading.load_encoders``), on the device
    the batch is to be encoded on."""
    vae, text_encoder, tokenizer = encoders
    records = []
    for sample, tensors in zip(samples, encode_batch(samples, vae, text_encoder, tokenizer, transform, flip)):
        floats = {k: v.to(DTYPES[dtype]) if v.is_floating_point() else v for k, v in tensors.items()}
        records.append((floats, latent_info(sample)))
    return records
