"""SmartEdit's Bidirectional Interaction Module (BIM).

A two-way transformer (Segment Anything's mask-decoder maths) between the Q-Former output ``f`` ``[B, Q, C_q]``
and the CLIP patch features ``v`` ``[B, N, C_v]`` of the source image. It returns

- ``f_final = f + text_scale * text_head(f')``: the refined cross-attention condition ``[B, Q, C_q]``;
- ``v_sp = spatial_head(upsample(v'))``: ``[B, C_unet, h, w]``, added to the UNet ``conv_in`` output.

Both heads are zero-initialised, so a freshly built BIM is an exact no-op and stage 2b starts at the stage-2a model.
Nothing here hard-codes SmartEdit's sizes: the patch grid is inferred from ``N`` (square) and the spatial output is
resized to whatever latent size the caller asks for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class BIMConfig:
    """The two-way transformer of the BIM (SmartEdit's sizes by default); its width is the vision tower's.

    Args:
        depth: two-way blocks.
        num_heads: attention heads (they must divide the vision width / ``downsample``).
        mlp_dim: width of the token MLP.
        downsample: the cross-attentions' inner width is the vision width / ``downsample``.
        text_scale: weight of the refined text residual: ``f_final = f + text_scale * text_head(f')``.
    """

    depth: int = 2
    num_heads: int = 8
    mlp_dim: int = 2048
    downsample: int = 2
    text_scale: float = 0.5


class RandomFourierPositions(nn.Module):
    """2-D positional encoding with a fixed random Gaussian projection (a buffer: saved, never trained)."""

    def __init__(self, num_feats: int, scale: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("gaussian_matrix", scale * torch.randn(2, num_feats))

    def forward(self, height: int, width: int) -> torch.Tensor:
        """``[H * W, 2 * num_feats]`` encodings of the grid cell centres, row-major."""
        device, dtype = self.gaussian_matrix.device, self.gaussian_matrix.dtype
        ys = (torch.arange(height, device=device, dtype=dtype) + 0.5) / height
        xs = (torch.arange(width, device=device, dtype=dtype) + 0.5) / width
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # [H, W, 2] as (x, y)
        coords = (2 * grid - 1) @ self.gaussian_matrix * (2 * math.pi)
        return torch.cat([coords.sin(), coords.cos()], dim=-1).reshape(height * width, -1)


class DownsampledAttention(nn.Module):
    """Multi-head attention whose inner width is ``dim // downsample`` (SAM's cheaper cross-attention)."""

    def __init__(self, dim: int, num_heads: int, downsample: int = 1) -> None:
        super().__init__()
        inner = dim // downsample
        if inner % num_heads:
            raise ValueError(f"attention inner width {inner} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.q_proj, self.k_proj, self.v_proj = nn.Linear(dim, inner), nn.Linear(dim, inner), nn.Linear(dim, inner)
        self.out_proj = nn.Linear(inner, dim)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        def heads(x: torch.Tensor) -> torch.Tensor:
            return x.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(self.q_proj(q)), heads(self.k_proj(k)), heads(self.v_proj(v)))
        return self.out_proj(out.transpose(1, 2).flatten(2))


class TwoWayBlock(nn.Module):
    """Token self-attention, token->image attention, token MLP, image->token attention; post-norm."""

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, downsample: int, skip_first_pe: bool) -> None:
        super().__init__()
        self.skip_first_pe = skip_first_pe
        self.self_attn = DownsampledAttention(dim, num_heads)
        self.token_to_image = DownsampledAttention(dim, num_heads, downsample)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.ReLU(), nn.Linear(mlp_dim, dim))
        self.image_to_token = DownsampledAttention(dim, num_heads, downsample)
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(4))

    def forward(
        self, tokens: torch.Tensor, image: torch.Tensor, token_pe: torch.Tensor, image_pe: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.skip_first_pe:  # SAM's first layer: no positional term and no residual
            tokens = self.self_attn(tokens, tokens, tokens)
        else:
            q = tokens + token_pe
            tokens = tokens + self.self_attn(q, q, tokens)
        tokens = self.norms[0](tokens)
        tokens = self.norms[1](tokens + self.token_to_image(tokens + token_pe, image + image_pe, image))
        tokens = self.norms[2](tokens + self.mlp(tokens))
        image = self.norms[3](image + self.image_to_token(image + image_pe, tokens + token_pe, tokens))
        return tokens, image


class BidirectionalInteractionModule(nn.Module):
    """BIM: refines the Q-Former condition with the image and produces a spatial residual for the UNet input.

    Args:
        text_dim: Q-Former width (= the UNet ``cross_attention_dim``; 768 for SD1.5).
        image_dim: CLIP vision width (1024 for ViT-L/14); also the transformer width.
        unet_channels: ``block_out_channels[0]`` of the UNet (the ``conv_in`` output channels).
        config: the two-way transformer's sizes and the text residual's weight (``BIMConfig``).
    """

    def __init__(self, text_dim: int, image_dim: int, unet_channels: int, config: BIMConfig = BIMConfig()) -> None:
        super().__init__()
        if image_dim % 2:
            raise ValueError(f"BIM width {image_dim} must be even for the sin/cos positional encoding")
        heads, downsample = config.num_heads, config.downsample
        self.text_scale = config.text_scale
        self.modulate_head = nn.Linear(text_dim, image_dim)
        self.positions = RandomFourierPositions(image_dim // 2)
        self.blocks = nn.ModuleList(
            TwoWayBlock(image_dim, heads, config.mlp_dim, downsample, skip_first_pe=i == 0) for i in range(config.depth)
        )
        self.final_attn = DownsampledAttention(image_dim, heads, downsample)
        self.final_norm = nn.LayerNorm(image_dim)
        self.text_head = nn.Linear(image_dim, text_dim)
        self.spatial_head = nn.Conv2d(image_dim, unet_channels, kernel_size=1)
        for head in (self.text_head, self.spatial_head):
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    def forward(
        self, text: torch.Tensor, image: torch.Tensor, latent_size: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``text`` ``[B, Q, text_dim]``, ``image`` ``[B, N, image_dim]`` with N a square grid.

        Returns ``(f_final [B, Q, text_dim], v_sp [B, unet_channels, *latent_size])``.
        """
        side = math.isqrt(image.shape[1])
        if side * side != image.shape[1]:
            raise ValueError(f"BIM expects a square patch grid, got {image.shape[1]} patches")
        tokens = token_pe = self.modulate_head(text)  # the projected tokens double as their positional term
        image_pe = self.positions(side, side).to(image.dtype).unsqueeze(0)
        img = image
        for block in self.blocks:
            tokens, img = block(tokens, img, token_pe, image_pe)
        tokens = self.final_norm(tokens + self.final_attn(tokens + token_pe, img + image_pe, img))
        f_final = text + self.text_scale * self.text_head(tokens)
        grid = img.transpose(1, 2).reshape(img.shape[0], -1, side, side)
        grid = F.interpolate(grid, size=tuple(latent_size), mode="bilinear", align_corners=False)
        return f_final, self.spatial_head(grid)
