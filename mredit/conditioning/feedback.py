"""Embedding the failure feedback with the backbone's CLIP text encoder, without gradients.

The encoder is frozen in the paper's setting (pretrained SD1.5 CLIP). With ``train_text_encoder`` (the tiny
recipe) it is the live encoder that trains on the instructions: the feedback features then move with it, and the
feedback sends it no gradient.
"""

from __future__ import annotations

import torch
from torch import nn

from mredit.conditioning.base import FeedbackEmbedding, FeedbackFormat

FEEDBACK_SEPARATOR = "; "


@torch.no_grad()
def encode_feedback(
    feedback: list[list[str]],
    tokenizer,
    text_encoder: nn.Module,
    formats: tuple[FeedbackFormat, ...] = ("pooled",),
    max_length: int | None = None,
) -> FeedbackEmbedding:
    """Embed ``feedback`` (B lists of 3 strings, perspective order) in the requested formats.

    ``pooled``: the three texts joined with "; " and encoded once; the pooled (EOS) output, as the
    official code does. ``tokens``: each perspective's text encoded on its own, so no perspective is
    truncated away by the 77-token limit of the joined string.
    """
    device = next(text_encoder.parameters()).device
    max_length = max_length or tokenizer.model_max_length
    pooled = tokens = mask = None

    def run(texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        enc = tokenizer(texts, padding="max_length", max_length=max_length, truncation=True, return_tensors="pt")
        ids, attn = enc.input_ids.to(device), enc.attention_mask.to(device)
        out = text_encoder(ids, return_dict=True)
        return out.last_hidden_state, out.pooler_output, attn.bool()

    if "pooled" in formats:
        _, pooled, _ = run([FEEDBACK_SEPARATOR.join(texts) for texts in feedback])
    if "tokens" in formats:
        flat = [text for texts in feedback for text in texts]
        hidden, _, attn = run(flat)
        batch, per = len(feedback), len(feedback[0]) if feedback else 3
        tokens = hidden.reshape(batch, per, *hidden.shape[1:])
        mask = attn.reshape(batch, per, -1)
    return FeedbackEmbedding(pooled=pooled, tokens=tokens, mask=mask)
