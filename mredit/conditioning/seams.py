"""How a ``RewardCondition`` reaches a stock diffusers ``UNet2DConditionModel`` without forking it.

Public PyTorch seams, forward hooks that live only for the duration of one UNet call:

- a hook on ``unet.time_embedding`` adds ``condition.time_emb`` to its output. For SD1.5 (no class
  embedding, no ``time_embed_act``) this is exactly the official ``emb = TE(t) + u_T + v_T``, and the
  result is the ``temb`` that every ResnetBlock2D of the down, mid and up blocks consumes;
- a hook on ``unet.conv_in`` replaces its output ``h0`` with ``h0 + condition.latent(h0)``: the latent
  reward encoder sits right after the input convolution, before the first skip connection;
- ``conv_in_residual`` adds a given feature map to the same ``conv_in`` output (SmartEdit's BIM feature).

The UNet's module tree, config and state-dict keys stay untouched, so a baseline and a reward model share
one UNet class and a UNet exported from either loads in stock diffusers. Outside the context the UNet is a
plain UNet again.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from mredit.conditioning.base import RewardCondition


def _check_batch(name: str, tensor: torch.Tensor, expected: int) -> None:
    if tensor.shape[0] != expected:
        raise ValueError(f"reward condition {name} has batch {tensor.shape[0]}, the UNet input has {expected}")


@contextmanager
def reward_conditioning(unet: nn.Module, condition: RewardCondition | None) -> Iterator[None]:
    """Within the block, every forward of ``unet`` is conditioned on ``condition`` (None: no-op)."""
    if condition is None or (condition.time_emb is None and condition.latent is None):
        yield
        return
    handles = []
    if condition.time_emb is not None:
        time_emb = condition.time_emb

        def add_time(_module: nn.Module, _inputs: tuple, emb: torch.Tensor) -> torch.Tensor:
            _check_batch("time_emb", time_emb, emb.shape[0])
            return emb + time_emb.to(emb.dtype)

        handles.append(unet.time_embedding.register_forward_hook(add_time))
    if condition.latent is not None:
        latent_fn = condition.latent

        def add_latent(_module: nn.Module, _inputs: tuple, h0: torch.Tensor) -> torch.Tensor:
            return h0 + latent_fn(h0).to(h0.dtype)

        handles.append(unet.conv_in.register_forward_hook(add_latent))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def conv_in_residual(unet: nn.Module, residual: torch.Tensor | None) -> Iterator[None]:
    """Within the block, ``residual`` ``[B, C, H, W]`` is added to ``unet.conv_in``'s output (SmartEdit's BIM
    feature v_sp); None: no-op. Entered before ``reward_conditioning``, its hook runs first:
    ``h = conv_in(x) + residual``, then ``h + reward_latent(h)``."""
    if residual is None:
        yield
        return

    def add(_module: nn.Module, _inputs: tuple, h0: torch.Tensor) -> torch.Tensor:
        if residual.shape != h0.shape:
            raise ValueError(f"conv_in residual {tuple(residual.shape)} does not match conv_in {tuple(h0.shape)}")
        return h0 + residual.to(h0.dtype)

    handle = unet.conv_in.register_forward_hook(add)
    try:
        yield
    finally:
        handle.remove()
