"""The paper's multi-reward condition (Fig. 5, "MRC module"), built as reward tokens c_R.

For each perspective p (following, preserving, quality):

- a score token: MLP(PE(s_p)), PE the UNet's own sinusoidal timestep embedding applied to the raw score;
- a feedback token: the perspective's failure text encoded on its own by the text encoder
  (``feedback_format = "tokens"``), mean-pooled over its real tokens, then projected;

plus a learned type embedding E_type per (perspective, modality), giving up to 6 tokens c_R ``[B, n, d]``.

Two injection paths, each with a zero-initialised output projection so that attaching the conditioner to a
trained model changes nothing at step 0 (the gradients of those projections are still non-zero):

- time path: Linear(mean of c_R) added to the time embedding (reaches every ResNet block);
- latent path: the pixels of the ``conv_in`` feature map (GroupNorm + 1x1 projection) attend to c_R in a
  small cross-attention; the output is projected back (1x1) and added to the feature map.

Ablation switches: ``use_scores``, ``use_feedback`` (which tokens exist), ``time_path``, ``latent_path``.
With ``null_condition`` a learned set of tokens replaces c_R where ``drop_mask`` is True (reward dropout).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import register_to_config
from diffusers.models.embeddings import get_timestep_embedding
from diffusers.models.modeling_utils import ModelMixin  # noqa: F401  diffusers' loader looks the base class up here
from torch import nn

from mredit.conditioning.base import FeedbackEmbedding, RewardCondition, RewardConditioner, check_switches, unet_dims

NUM_PERSPECTIVES = 3


def _group_count(channels: int, preferred: int = 32) -> int:
    return math.gcd(channels, preferred)


class PaperRewardConditioner(RewardConditioner):
    feedback_format = "tokens"

    @register_to_config
    def __init__(
        self,
        time_embed_dim: int,
        latent_channels: int,
        text_dim: int,
        token_dim: int | None = None,
        score_embed_dim: int = 256,
        num_heads: int | None = None,
        flip_sin_to_cos: bool = True,
        freq_shift: float = 0.0,
        use_scores: bool = True,
        use_feedback: bool = True,
        time_path: bool = True,
        latent_path: bool = True,
        null_condition: bool = False,
    ) -> None:
        super().__init__()
        check_switches("PaperRewardConditioner", use_scores, use_feedback, time_path, latent_path)
        dim = token_dim or latent_channels
        heads = num_heads or max(1, dim // 64)
        if dim % heads:
            raise ValueError(f"PaperRewardConditioner: token_dim {dim} not divisible by num_heads {heads}")
        self.num_heads = heads
        modalities = int(use_scores) + int(use_feedback)
        self.num_tokens = NUM_PERSPECTIVES * modalities
        if use_scores:
            self.score_mlp = nn.Sequential(nn.Linear(score_embed_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        if use_feedback:
            self.feedback_proj = nn.Linear(text_dim, dim)
        self.type_embedding = nn.Parameter(torch.randn(self.num_tokens, dim) * 0.02)
        self.token_norm = nn.LayerNorm(dim)
        if null_condition:
            self.null_tokens = nn.Parameter(torch.randn(self.num_tokens, dim) * 0.02)
        if time_path:
            self.time_proj = nn.Linear(dim, time_embed_dim)
            nn.init.zeros_(self.time_proj.weight)
            nn.init.zeros_(self.time_proj.bias)
        if latent_path:
            self.latent_norm = nn.GroupNorm(_group_count(latent_channels), latent_channels, eps=1e-6)
            self.latent_proj_in = nn.Conv2d(latent_channels, dim, kernel_size=1)
            self.to_q = nn.Linear(dim, dim)
            self.to_k = nn.Linear(dim, dim)
            self.to_v = nn.Linear(dim, dim)
            self.latent_proj_out = nn.Conv2d(dim, latent_channels, kernel_size=1)
            nn.init.zeros_(self.latent_proj_out.weight)
            nn.init.zeros_(self.latent_proj_out.bias)

    @classmethod
    def for_unet(
        cls,
        unet_config: Any,
        text_dim: int,
        use_scores: bool = True,
        use_feedback: bool = True,
        time_path: bool = True,
        latent_path: bool = True,
        null_condition: bool = False,
        **options: Any,
    ) -> PaperRewardConditioner:
        return cls(
            **unet_dims(unet_config),
            text_dim=text_dim,
            use_scores=use_scores,
            use_feedback=use_feedback,
            time_path=time_path,
            latent_path=latent_path,
            null_condition=null_condition,
            **options,
        )

    def reward_tokens(
        self, scores: torch.Tensor, feedback: FeedbackEmbedding, drop_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """c_R ``[B, num_tokens, token_dim]``: score tokens then feedback tokens, plus E_type."""
        cfg, parts = self.config, []
        dtype = self.type_embedding.dtype
        if cfg.use_scores:
            pe = get_timestep_embedding(
                scores.reshape(-1).float(),
                cfg.score_embed_dim,
                flip_sin_to_cos=cfg.flip_sin_to_cos,
                downscale_freq_shift=cfg.freq_shift,
            )
            parts.append(self.score_mlp(pe.to(dtype)).reshape(scores.shape[0], NUM_PERSPECTIVES, -1))
        if cfg.use_feedback:
            if feedback.tokens is None or feedback.mask is None:
                raise ValueError("PaperRewardConditioner needs feedback tokens and mask (feedback_format='tokens')")
            mask = feedback.mask.to(dtype).unsqueeze(-1)  # [B, 3, L, 1]
            pooled = (feedback.tokens.to(dtype) * mask).sum(2) / mask.sum(2).clamp(min=1.0)
            parts.append(self.feedback_proj(pooled))
        tokens = torch.cat(parts, dim=1) + self.type_embedding
        if drop_mask is not None:
            if not cfg.null_condition:
                raise ValueError("drop_mask given but the conditioner was built without null_condition")
            tokens = torch.where(drop_mask.view(-1, 1, 1), self.null_tokens.unsqueeze(0).to(tokens.dtype), tokens)
        return self.token_norm(tokens)

    def attend(self, h0: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """The latent reward encoder: pixels of ``h0`` attend to the reward tokens; returns the residual."""
        batch, _, height, width = h0.shape
        query = self.latent_proj_in(self.latent_norm(h0.to(tokens.dtype))).flatten(2).transpose(1, 2)
        split = lambda x: x.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)  # noqa: E731
        out = F.scaled_dot_product_attention(
            split(self.to_q(query)), split(self.to_k(tokens)), split(self.to_v(tokens))
        )
        out = out.transpose(1, 2).flatten(2).transpose(1, 2).reshape(batch, -1, height, width)
        return self.latent_proj_out(out)

    def forward(
        self, scores: torch.Tensor, feedback: FeedbackEmbedding, drop_mask: torch.Tensor | None = None
    ) -> RewardCondition:
        tokens = self.reward_tokens(scores, feedback, drop_mask)
        time_emb = self.time_proj(tokens.mean(dim=1)) if self.config.time_path else None
        latent = (lambda h0: self.attend(h0, tokens)) if self.config.latent_path else None
        return RewardCondition(time_emb=time_emb, latent=latent)
