"""What every multi-reward conditioner produces and consumes.

A conditioner turns the rewards of a batch (scores ``[B, 3]`` plus the embedded failure feedback) into a
``RewardCondition``: a term added to the UNet time embedding (so every ResNet block sees it) and/or a
function of the ``conv_in`` feature map whose output is added to it (the latent reward encoder). How the two
reach a stock diffusers UNet is in ``seams.py``; how feedback text is embedded is in ``feedback.py``.

Conditioners are plain ``nn.Module``s (diffusers ``ModelMixin`` + ``ConfigMixin``, so ``save_pretrained`` /
``from_pretrained`` work) and never import Lightning.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from diffusers.configuration_utils import ConfigMixin
from diffusers.models.modeling_utils import ModelMixin

FeedbackFormat = Literal["pooled", "tokens"]


@dataclass
class FeedbackEmbedding:
    """Failure feedback embedded by the backbone's text encoder (without gradients; see ``feedback.py``).

    ``pooled``: ``[B, D]`` pooled output of the three texts joined with "; " (the official code's input).
    ``tokens``: ``[B, 3, L, D]`` last hidden states of each perspective's text encoded on its own, with
    ``mask`` ``[B, 3, L]`` (True for real tokens).
    """

    pooled: torch.Tensor | None = None
    tokens: torch.Tensor | None = None
    mask: torch.Tensor | None = None

    def to(self, *args, **kwargs) -> FeedbackEmbedding:
        move = lambda t: None if t is None else t.to(*args, **kwargs)  # noqa: E731
        mask = None if self.mask is None else self.mask.to(device=move(self.tokens).device)
        return FeedbackEmbedding(move(self.pooled), move(self.tokens), mask)

    def repeat(self, times: int) -> FeedbackEmbedding:
        """Tile along the batch (classifier-free guidance branches, ``num_images_per_prompt``)."""
        rep = lambda t: None if t is None else t.repeat(times, *([1] * (t.dim() - 1)))  # noqa: E731
        return FeedbackEmbedding(rep(self.pooled), rep(self.tokens), rep(self.mask))

    def repeat_interleave(self, times: int) -> FeedbackEmbedding:
        rep = lambda t: None if t is None else t.repeat_interleave(times, dim=0)  # noqa: E731
        return FeedbackEmbedding(rep(self.pooled), rep(self.tokens), rep(self.mask))


@dataclass
class RewardCondition:
    """The per-call output of a conditioner.

    ``time_emb``: ``[B, time_embed_dim]`` added to the UNet time embedding, or None.
    ``latent``: maps the ``conv_in`` output ``h0 [B, C, H, W]`` to a residual of the same shape, or None.
    """

    time_emb: torch.Tensor | None = None
    latent: Callable[[torch.Tensor], torch.Tensor] | None = None


def unet_dims(unet_config: Any) -> dict[str, Any]:
    """The sizes a conditioner takes from a diffusers UNet config (dict or FrozenDict), so every variant builds
    on any UNet width: the time-embedding width, the ``conv_in`` output channels, the sinusoid convention."""
    config = dict(unet_config)
    first = int(config["block_out_channels"][0])
    return {
        "time_embed_dim": int(config.get("time_embedding_dim") or first * 4),
        "latent_channels": first,
        "flip_sin_to_cos": bool(config.get("flip_sin_to_cos", True)),
        "freq_shift": float(config.get("freq_shift", 0)),
    }


def check_switches(name: str, use_scores: bool, use_feedback: bool, time_path: bool, latent_path: bool) -> None:
    """An ablation must keep at least one reward input and one injection path."""
    if not (use_scores or use_feedback):
        raise ValueError(f"{name}: use_scores and use_feedback cannot both be False")
    if not (time_path or latent_path):
        raise ValueError(f"{name}: time_path and latent_path cannot both be False")


class RewardConditioner(ModelMixin, ConfigMixin):
    """Base class: subclasses define ``feedback_format`` and ``forward``.

    ``forward(scores, feedback, drop_mask=None)``: ``scores`` ``[B, 3]`` in 0..5 (perspective order of
    ``mredit.schema.PERSPECTIVES``), ``feedback`` a ``FeedbackEmbedding`` in ``feedback_format``,
    ``drop_mask`` ``[B]`` bool: samples whose reward is replaced by the learned null condition (reward
    dropout in training, the unconditional branch of reward guidance at inference).
    """

    feedback_format: FeedbackFormat = "pooled"
