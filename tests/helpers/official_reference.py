"""A from-the-formulas reference of the official reward forward pass (the math in docs/inference.md, "The
``official`` conditioner").

Independent of ``OfficialRewardConditioner`` and of the hook seams: raw tensor ops on the official weight names,
and the UNet side maps the two terms onto a stock UNet in a second way (``class_embed_type="identity"`` so the
time term goes in as ``class_labels``; ``conv_in`` swapped for a convolution that adds the latent term).
"""

from __future__ import annotations

import math

import torch
from diffusers import UNet2DConditionModel
from torch import nn


def score_pe(scores: torch.Tensor, dim: int = 256, flip: bool = True, shift: float = 0.0) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / (half - shift))
    angles = scores.float().reshape(-1, 1) * freqs[None]
    parts = [torch.cos(angles), torch.sin(angles)] if flip else [torch.sin(angles), torch.cos(angles)]
    return torch.cat(parts, dim=-1).reshape(scores.shape[0], -1)


def _linear(w: dict, name: str, x: torch.Tensor) -> torch.Tensor:
    return x @ w[f"{name}.weight"].T + w[f"{name}.bias"]


def _mlp(w: dict, name: str, x: torch.Tensor) -> torch.Tensor:
    return _linear(w, f"{name}.linear_2", torch.nn.functional.silu(_linear(w, f"{name}.linear_1", x)))


def _layer_norm(w: dict, name: str, x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + 1e-12) * w[f"{name}.weight"] + w[f"{name}.bias"]


def time_term(w: dict, scores: torch.Tensor, fb: torch.Tensor) -> torch.Tensor:
    """u_T + v_T (§3.2-3.3)."""
    return _mlp(w, "add_embedding", score_pe(scores)) + _linear(w, "text_linear2", fb)


def latent_term(w: dict, h0: torch.Tensor, scores: torch.Tensor, fb: torch.Tensor, heads: int, groups: int):
    """proj_out(BERT cross-attention(proj_in(GN(h0)), [u_L, v_L])) (§3.4 steps 2-6)."""
    b, c, hh, ww = h0.shape
    x = h0.reshape(b, groups, -1)
    x = (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + 1e-6)
    x = x.reshape(b, c, hh, ww) * w["proj_deal.norm.weight"][:, None, None] + w["proj_deal.norm.bias"][:, None, None]
    g = torch.einsum("oc,bchw->bhwo", w["proj_deal.proj_in.weight"][:, :, 0, 0], x) + w["proj_deal.proj_in.bias"]
    q0 = g.reshape(b, hh * ww, c)
    kv = torch.stack([_mlp(w, "add_embedding2", score_pe(scores)), _linear(w, "text_linear", fb)], dim=1)
    d = c // heads
    q = _linear(w, "ca.attention.self.query", q0).reshape(b, -1, heads, d)
    k = _linear(w, "ca.attention.self.key", kv).reshape(b, -1, heads, d)
    v = _linear(w, "ca.attention.self.value", kv).reshape(b, -1, heads, d)
    attn = torch.softmax(torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(d), dim=-1)
    ctx = torch.einsum("bhqk,bkhd->bqhd", attn, v).reshape(b, -1, c)
    a = _layer_norm(w, "ca.attention.output.LayerNorm", _linear(w, "ca.attention.output.dense", ctx) + q0)
    i = _linear(w, "ca.hidden_intermediate.dense", a)
    i = i * 0.5 * (1 + torch.erf(i / math.sqrt(2)))
    o = _layer_norm(w, "ca.output.LayerNorm", _linear(w, "ca.output.dense", i) + a)
    o = o.reshape(b, hh, ww, c)
    out = torch.einsum("oc,bhwc->bohw", w["proj_deal.proj_out.weight"][:, :, 0, 0], o)
    return out + w["proj_deal.proj_out.bias"][:, None, None]


class _ConvPlusLatent(nn.Conv2d):
    residual = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h0 = super().forward(x)
        return h0 + self.residual(h0)


@torch.no_grad()
def official_forward(unet_state: dict, unet_config: dict, extra: dict, x, t, states, scores, fb, heads, groups):
    """ε̂ of the official model: a stock UNet with an identity class embedding and a latent-adding ``conv_in``."""
    unet = UNet2DConditionModel.from_config({**unet_config, "class_embed_type": "identity"}).eval()
    unet.load_state_dict(unet_state)
    conv = unet.conv_in
    wrapped = _ConvPlusLatent(conv.in_channels, conv.out_channels, conv.kernel_size, padding=conv.padding)
    wrapped.load_state_dict(conv.state_dict())
    wrapped.residual = lambda h0: latent_term(extra, h0, scores, fb, heads, groups)
    unet.conv_in = wrapped
    return unet(x, t, encoder_hidden_states=states, class_labels=time_term(extra, scores, fb)).sample
