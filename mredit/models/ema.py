"""Exponential moving average of named parameters, kept outside the module tree.

The shadow weights are plain fp32 tensors rather than buffers, so DDP does not broadcast them on every
forward and the LightningModule's ``state_dict`` stays the raw weights; the module saves the EMA under
``checkpoint["ema"]``. Parameters that appear later (a conditioner attached after construction) join with
their current value.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn


class ExponentialMovingAverage:
    """``shadow = d * shadow + (1 - d) * param`` with ``d = min(decay, (1 + n) / (10 + n))`` when warming up."""

    def __init__(self, decay: float = 0.9999, warmup: bool = True) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay, self.warmup = decay, warmup
        self.shadow: dict[str, torch.Tensor] = {}
        self.num_updates = 0
        self.backup: dict[str, torch.Tensor] | None = None

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    def track(self, named_params: Iterable[tuple[str, nn.Parameter]]) -> None:
        """Start tracking parameters not seen before (initialised from their current value)."""
        for name, param in named_params:
            if name not in self.shadow:
                self.shadow[name] = param.detach().float().clone()

    @torch.no_grad()
    def update(self, named_params: Iterable[tuple[str, nn.Parameter]]) -> None:
        decay = self.current_decay()
        shadows, values = [], []
        for name, param in named_params:
            shadow = self.shadow.get(name)
            if shadow is None:
                self.shadow[name] = param.detach().float().clone()
                continue
            if shadow.device != param.device:
                shadow = self.shadow[name] = shadow.to(param.device)
            shadows.append(shadow)
            values.append(param.detach().float())
        if shadows:  # one multi-tensor lerp (the same arithmetic as a lerp_ per tensor) instead of hundreds of calls
            torch._foreach_lerp_(shadows, values, 1.0 - decay)
        self.num_updates += 1

    @contextmanager
    def swapped_in(self, named_params: Iterable[tuple[str, nn.Parameter]]) -> Iterator[None]:
        """Copy the EMA weights into the parameters; restore the raw weights on exit."""
        params = dict(named_params)
        with torch.no_grad():
            self.backup = {name: p.detach().clone() for name, p in params.items() if name in self.shadow}
            for name in self.backup:
                params[name].copy_(self.shadow[name].to(params[name].device, params[name].dtype))
        try:
            yield
        finally:
            with torch.no_grad():
                for name, value in self.backup.items():
                    params[name].copy_(value)
            self.backup = None

    def state_dict(self) -> dict:
        return {
            "decay": self.decay,
            "warmup": self.warmup,
            "num_updates": self.num_updates,
            "shadow": {k: v.detach().cpu() for k, v in self.shadow.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        self.num_updates = int(state["num_updates"])
        self.shadow = {k: v.float().clone() for k, v in state["shadow"].items()}


class EMAMixin:
    """EMA of a LightningModule's trainable parameters: updated after every optimizer step, swapped in for
    validation and by ``ema_weights()`` (export), saved under ``checkpoint["ema"]``.

    Call ``configure_ema(decay, warmup, enabled)`` in ``__init__``; list the mixin before ``LightningModule``.
    """

    ema: ExponentialMovingAverage | None

    def configure_ema(self, decay: float = 0.9999, warmup: bool = True, enabled: bool = True) -> None:
        self.ema = ExponentialMovingAverage(decay, warmup) if enabled else None

    def trainable_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(name, p) for name, p in self.named_parameters() if p.requires_grad]

    @contextmanager
    def ema_weights(self) -> Iterator[None]:
        """Within the block the trainable modules hold their EMA weights (no-op without EMA)."""
        if self.ema is None or self.ema.backup is not None:  # disabled, or already swapped in
            yield
            return
        named = self.trainable_named_parameters()
        self.ema.track(named)
        with self.ema.swapped_in(named):
            yield

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        if self.ema is not None:
            self.ema.update(self.trainable_named_parameters())

    # validation (also the sanity check) runs on the EMA weights
    def on_validation_epoch_start(self) -> None:
        super().on_validation_epoch_start()
        if self.ema is not None and self.ema.backup is None:
            self._ema_context = self.ema_weights()
            self._ema_context.__enter__()

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        context = getattr(self, "_ema_context", None)
        if context is not None:
            self._ema_context = None
            context.__exit__(None, None, None)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.ema is None:
            return
        checkpoint["ema"] = self.ema.state_dict()
        if self.ema.backup is not None:  # saved while the EMA is swapped in: store the raw weights as state_dict
            for name, value in self.ema.backup.items():
                checkpoint["state_dict"][name] = value.detach().cpu()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        if self.ema is not None and "ema" in checkpoint:
            self.ema.load_state_dict(checkpoint["ema"])
