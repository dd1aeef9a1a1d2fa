"""How a ``RewardCondition`` reaches a stock diffusers ``UNet2DConditionModel`` without forking it.

Public PyTorch seams: two forward hooks, registered once per UNet (at its first conditioned call), that read
what the context managers below put in a slot on the hooked module for the duration of the block:

- the hook on ``unet.time_embedding`` adds ``condition.time_emb`` to its output. For SD1.5 (no class
  embedding, no ``time_embed_act``) this is exactly the official ``emb = TE(t) + u_T + v_T``, and the
  result is the ``temb`` that every ResnetBlock2D of the down, mid and up blocks consumes;
- the hook on ``unet.conv_in`` turns its output ``h0`` into ``h = h0 + residual`` (``conv_in_residual``:
  SmartEdit's BIM feature), then ``h + condition.latent(h)``: the latent reward encoder sits right after the
  input convolution, before the first skip connection.

The UNet's module tree, config and state-dict keys stay untouched, so a baseline and a reward model share
one UNet class and a UNet exported from either loads in stock diffusers. Outside the blocks the slots are
empty and the hooks return the output unchanged.

Why persistent hooks rather than hooks added and removed per call: ``torch.compile`` (dynamo) does not guard
on a module's forward hooks, so a graph traced without them is replayed when they are added later and one
traced with them when they are removed (silently wrong outputs). Fixed hooks are traced into every graph, and
dynamo guards on the slots they read like on any module attribute: different rewards reuse one graph, no
reward is one more. Both context managers register the hooks, so any UNet call made inside them (and every
call of the training step and the pipelines is) happens after the hooks exist.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from mredit.conditioning.base import RewardCondition

# slots on the hooked submodules (plain attributes, so not in the state dict); None: nothing to add
TIME_EMB_SLOT = "_reward_time_emb"
LATENT_SLOT = "_reward_latent"
RESIDUAL_SLOT = "_conv_in_residual"
_HOOKED = "_reward_hooks_registered"


def _check_batch(name: str, tensor: torch.Tensor, expected: int) -> None:
    if tensor.shape[0] != expected:
        raise ValueError(f"reward condition {name} has batch {tensor.shape[0]}, the UNet input has {expected}")


def _add_time(module: nn.Module, _inputs: tuple, emb: torch.Tensor) -> torch.Tensor | None:
    time_emb = getattr(module, TIME_EMB_SLOT)
    if time_emb is None:
        return None
    _check_batch("time_emb", time_emb, emb.shape[0])
    return emb + time_emb.to(emb.dtype)


def _add_to_conv_in(module: nn.Module, _inputs: tuple, h0: torch.Tensor) -> torch.Tensor | None:
    residual, latent_fn = getattr(module, RESIDUAL_SLOT), getattr(module, LATENT_SLOT)
    if residual is None and latent_fn is None:
        return None
    if residual is not None:
        if residual.shape != h0.shape:
            raise ValueError(f"conv_in residual {tuple(residual.shape)} does not match conv_in {tuple(h0.shape)}")
        h0 = h0 + residual.to(h0.dtype)
    if latent_fn is not None:
        h0 = h0 + latent_fn(h0).to(h0.dtype)
    return h0


def register_hooks(unet: nn.Module) -> None:
    """Register the two hooks once (idempotent; a replaced ``conv_in`` or ``time_embedding`` gets its own)."""
    hooked: list[tuple[nn.Module, Callable, tuple[str, ...]]] = [
        (unet.time_embedding, _add_time, (TIME_EMB_SLOT,)),
        (unet.conv_in, _add_to_conv_in, (RESIDUAL_SLOT, LATENT_SLOT)),
    ]
    for module, hook, slots in hooked:
        if module.__dict__.get(_HOOKED):
            continue
        for slot in slots:
            setattr(module, slot, None)
        module.register_forward_hook(hook)
        module.__dict__[_HOOKED] = True


@contextmanager
def _filled(module: nn.Module, slot: str, value: Any) -> Iterator[None]:
    previous = getattr(module, slot)
    setattr(module, slot, value)
    try:
        yield
    finally:
        setattr(module, slot, previous)


@contextmanager
def reward_conditioning(unet: nn.Module, condition: RewardCondition | None) -> Iterator[None]:
    """Within the block, every forward of ``unet`` is conditioned on ``condition`` (None: no-op)."""
    register_hooks(unet)
    time_emb = None if condition is None else condition.time_emb
    latent = None if condition is None else condition.latent
    with _filled(unet.time_embedding, TIME_EMB_SLOT, time_emb), _filled(unet.conv_in, LATENT_SLOT, latent):
        yield


@contextmanager
def conv_in_residual(unet: nn.Module, residual: torch.Tensor | None) -> Iterator[None]:
    """Within the block, ``residual`` ``[B, C, H, W]`` is added to ``unet.conv_in``'s output (SmartEdit's BIM
    feature v_sp); None: no-op. The reward's latent term sees the sum: ``h = conv_in(x) + residual``, then
    ``h + reward_latent(h)``, whichever of the two blocks is entered first."""
    register_hooks(unet)
    with _filled(unet.conv_in, RESIDUAL_SLOT, residual):
        yield
