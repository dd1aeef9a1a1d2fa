"""The ``official`` reward conditioner: the released Reward-InsPix2Pix modules, with their key names.

Mirrors ``bytedance/Multi-Reward-Editing`` (commit e72d782) exactly, so that importing the released UNet is a
prefix split, not a rename table (see ``mredit.export.official_import``):

- scores ``[B, 3]`` -> sinusoidal PE (256-d each, diffusers ``Timesteps`` semantics) -> ``p`` ``[B, 768]``;
- time path: ``add_embedding(p) + text_linear2(fb)`` is added to the UNet time embedding;
- latent path: after ``conv_in``, ``h0 + proj_out(ca(proj_in(GroupNorm(h0)), [add_embedding2(p), text_linear(fb)]))``
  where ``ca`` is a BERT post-LayerNorm cross-attention layer (queries: the ``h0`` pixels, keys/values: 2 tokens).

``fb`` is the pooled CLIP output of the three failure texts joined with "; ". The official modules start from
PyTorch's default init (nothing zero-initialised): we keep that for fidelity, so a fresh conditioner perturbs the
UNet at step 0 (the ``paper`` variant is the zero-init alternative).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin  # noqa: F401  diffusers' loader looks the base class up here
from torch import nn

from mredit.conditioning.base import FeedbackEmbedding, RewardCondition, RewardConditioner, check_switches, unet_dims

NUM_SCORES = 3


def _largest_divisor_at_most(width: int, limit: int) -> int:
    return max(d for d in range(1, limit + 1) if width % d == 0)


class DealProj(nn.Module):
    """``proj_deal``: GroupNorm + 1x1 ``proj_in`` before the cross-attention, 1x1 ``proj_out`` after it."""

    def __init__(self, channels: int, norm_groups: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(norm_groups, channels, eps=1e-6, affine=True)
        self.proj_in = nn.Conv2d(channels, channels, kernel_size=1)
        self.proj_out = nn.Conv2d(channels, channels, kernel_size=1)


class BertSelfCross(nn.Module):
    """``ca.attention.self``: multi-head scaled dot-product attention from query tokens to key/value tokens."""

    def __init__(self, hidden: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.dropout = nn.Dropout(dropout)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, hidden = x.shape
        return x.view(batch, length, self.num_heads, hidden // self.num_heads).transpose(1, 2)

    def forward(self, queries: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        q, k, v = self._heads(self.query(queries)), self._heads(self.key(context)), self._heads(self.value(context))
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        # dropout on the probabilities drops whole key tokens, as BERT (and the official layer) does
        probs = self.dropout(scores.softmax(dim=-1))
        out = (probs @ v).transpose(1, 2)
        return out.reshape(queries.shape)


class BertResidualOutput(nn.Module):
    """``dense`` + dropout, then post-LayerNorm with the residual (BERT's ``*Output`` blocks)."""

    def __init__(self, hidden: int, dropout: float) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=1e-12)  # noqa: N815 (official key name)
        self.dropout = nn.Dropout(dropout)

    def forward(self, hidden: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(hidden)) + residual)


class BertCrossAttention(nn.Module):
    """``ca.attention``: ``self`` (the attention) and ``output`` (dense + residual + LayerNorm)."""

    def __init__(self, hidden: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.self = BertSelfCross(hidden, num_heads, dropout)
        self.output = BertResidualOutput(hidden, dropout)

    def forward(self, queries: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(queries, context), queries)


class BertIntermediate(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))  # exact erf GELU


class BertCrossLayer(nn.Module):
    """``ca``: the official ``BertLayerNoMemory_Cross`` (post-LN cross-attention + FFN of width ``hidden``)."""

    def __init__(self, hidden: int, num_heads: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.attention = BertCrossAttention(hidden, num_heads, dropout)
        self.hidden_intermediate = BertIntermediate(hidden)
        self.output = BertResidualOutput(hidden, dropout)

    def forward(self, queries: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        attended = self.attention(queries, context)
        return self.output(self.hidden_intermediate(attended), attended)


class OfficialRewardConditioner(RewardConditioner):
    """The released conditioner. SD1.5 sizes: ``time_embed_dim=1280``, ``latent_channels=320``, ``text_dim=768``.

    Switches drop whole inputs or injection points (the official model has all on); the modules a switch
    disables are not built, so their keys are absent. ``null_condition=True`` adds a learned null time term
    and null key/value tokens used for samples where ``drop_mask`` is True (reward dropout / reward guidance).
    """

    feedback_format = "pooled"

    @register_to_config
    def __init__(
        self,
        time_embed_dim: int = 1280,
        latent_channels: int = 320,
        text_dim: int = 768,
        score_embed_dim: int = 256,
        flip_sin_to_cos: bool = True,
        freq_shift: float = 0.0,
        num_heads: int = 8,
        norm_groups: int = 32,
        attention_dropout: float = 0.1,
        use_scores: bool = True,
        use_feedback: bool = True,
        time_path: bool = True,
        latent_path: bool = True,
        null_condition: bool = False,
    ) -> None:
        super().__init__()
        check_switches("OfficialRewardConditioner", use_scores, use_feedback, time_path, latent_path)
        if latent_channels % num_heads or latent_channels % norm_groups:
            raise ValueError(
                f"OfficialRewardConditioner: latent_channels={latent_channels} must be divisible by "
                f"num_heads={num_heads} and norm_groups={norm_groups}"
            )
        pe_dim = NUM_SCORES * score_embed_dim
        if use_scores:
            self.add_time_proj = Timesteps(score_embed_dim, flip_sin_to_cos, freq_shift)
            if time_path:
                self.add_embedding = TimestepEmbedding(pe_dim, time_embed_dim)
            if latent_path:
                self.add_embedding2 = TimestepEmbedding(pe_dim, latent_channels)
        if use_feedback:
            if latent_path:
                self.text_linear = nn.Linear(text_dim, latent_channels)
            if time_path:
                self.text_linear2 = nn.Linear(text_dim, time_embed_dim)
        if latent_path:
            self.proj_deal = DealProj(latent_channels, norm_groups)
            self.ca = BertCrossLayer(latent_channels, num_heads, attention_dropout)
        if null_condition:
            num_tokens = int(use_scores) + int(use_feedback)
            self.null_time_emb = nn.Parameter(torch.zeros(time_embed_dim)) if time_path else None
            self.null_tokens = nn.Parameter(torch.zeros(num_tokens, latent_channels)) if latent_path else None

    @classmethod
    def for_unet(
        cls,
        unet_config: Mapping[str, Any],
        text_dim: int,
        use_scores: bool = True,
        use_feedback: bool = True,
        time_path: bool = True,
        latent_path: bool = True,
        null_condition: bool = False,
        **options: Any,
    ) -> OfficialRewardConditioner:
        """Derive the sizes from a UNet config; 8 heads and 32 norm groups when the width allows.

        For tiny widths the largest divisor of ``block_out_channels[0]`` not above 8 (heads) or 32 (groups)
        is used, e.g. 5 heads of 4 and 20 groups for width 20.
        """
        dims = unet_dims(unet_config)
        options.setdefault("num_heads", _largest_divisor_at_most(dims["latent_channels"], 8))
        options.setdefault("norm_groups", _largest_divisor_at_most(dims["latent_channels"], 32))
        return cls(
            **dims,
            text_dim=int(text_dim),
            use_scores=use_scores,
            use_feedback=use_feedback,
            time_path=time_path,
            latent_path=latent_path,
            null_condition=null_condition,
            **options,
        )

    def score_embedding(self, scores: torch.Tensor) -> torch.Tensor:
        """``[B, 3]`` -> ``[B, 3 * score_embed_dim]``: PE computed in fp32, cast to the weights' dtype."""
        pe = self.add_time_proj(scores.float().flatten())
        return pe.reshape(scores.shape[0], -1).to(self.dtype)

    def forward(
        self, scores: torch.Tensor, feedback: FeedbackEmbedding, drop_mask: torch.Tensor | None = None
    ) -> RewardCondition:
        cfg = self.config
        if scores.dim() != 2 or scores.shape[1] != NUM_SCORES:
            raise ValueError(f"OfficialRewardConditioner: scores must be [B, {NUM_SCORES}], got {tuple(scores.shape)}")
        fb = None
        if cfg.use_feedback:
            if feedback is None or feedback.pooled is None:
                raise ValueError("OfficialRewardConditioner needs the pooled feedback embedding (feedback.pooled)")
            fb = feedback.pooled.to(self.dtype)
        pe = self.score_embedding(scores) if cfg.use_scores else None
        if drop_mask is not None and not cfg.null_condition and bool(drop_mask.any()):
            raise ValueError("OfficialRewardConditioner: drop_mask given but the conditioner has no null_condition")

        time_emb = None
        if cfg.time_path:
            terms = [self.add_embedding(pe)] if pe is not None else []
            terms += [self.text_linear2(fb)] if fb is not None else []
            time_emb = terms[0] if len(terms) == 1 else terms[0] + terms[1]
            if drop_mask is not None and cfg.null_condition:
                time_emb = torch.where(drop_mask[:, None].to(time_emb.device), self.null_time_emb, time_emb)

        latent = None
        if cfg.latent_path:
            tokens = [self.add_embedding2(pe)] if pe is not None else []
            tokens += [self.text_linear(fb)] if fb is not None else []
            context = torch.stack(tokens, dim=1)  # [B, 2, C]: score token first, text token second
            if drop_mask is not None and cfg.null_condition:
                context = torch.where(drop_mask[:, None, None].to(context.device), self.null_tokens, context)
            latent = self._latent_term(context)
        return RewardCondition(time_emb=time_emb, latent=latent)

    def _latent_term(self, context: torch.Tensor):
        def residual(h0: torch.Tensor) -> torch.Tensor:
            if h0.shape[0] != context.shape[0]:
                raise ValueError(f"reward condition latent has batch {context.shape[0]}, the UNet input {h0.shape[0]}")
            batch, channels, height, width = h0.shape
            g = self.proj_deal.proj_in(self.proj_deal.norm(h0.to(self.dtype)))
            queries = g.permute(0, 2, 3, 1).reshape(batch, height * width, channels)
            out = self.ca(queries, context)
            out = out.reshape(batch, height, width, channels).permute(0, 3, 1, 2)
            return self.proj_deal.proj_out(out)

        return residual
