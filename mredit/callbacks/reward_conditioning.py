"""The callback that turns a baseline editing module into a multi-reward-conditioned one.

It builds the conditioner in ``setup`` (before optimizers, DDP wrapping and checkpoint restore) from the
module's UNet config and text-encoder width, and attaches it. Callbacks' ``setup`` runs before Lightning's
``configure_model``, so it calls the module's ``configure_model()`` first (idempotent by Lightning's contract): a
module that builds its parts there (SmartEdit) has its UNet then; for one that builds them in ``__init__``
(InstructPix2Pix) the inherited hook does nothing. The same config without this callback is the
no-reward baseline. Nothing here is backbone-specific: any module with the ``RewardConditionedMixin``,
``unet`` and ``text_encoder`` works.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl

from mredit.conditioning.registry import build_conditioner
from mredit.models.reward_mixin import conditioner_spec


class RewardConditioning(pl.Callback):
    """Args:
    variant: ``"official"`` (the released model's modules), ``"paper"`` (reward tokens with E_type) or a
        dotted ``RewardConditioner`` class path.
    use_scores, use_feedback: which reward inputs the conditioner sees (ablations).
    time_path, latent_path: which injection points it uses (ablations).
    reward_dropout: probability of replacing a sample's rewards by the learned null condition in training.
    options: extra constructor options of the variant (e.g. ``token_dim`` for ``paper``); keyword
        arguments are merged into it.
    """

    def __init__(
        self,
        variant: str = "official",
        use_scores: bool = True,
        use_feedback: bool = True,
        time_path: bool = True,
        latent_path: bool = True,
        reward_dropout: float = 0.0,
        options: dict[str, Any] | None = None,
        **variant_options: Any,
    ) -> None:
        if not 0.0 <= reward_dropout < 1.0:
            raise ValueError(f"RewardConditioning: reward_dropout must be in [0, 1), got {reward_dropout}")
        self.variant = variant
        self.switches = {
            "use_scores": use_scores,
            "use_feedback": use_feedback,
            "time_path": time_path,
            "latent_path": latent_path,
            "null_condition": reward_dropout > 0,
        }
        self.options = {**(options or {}), **variant_options}
        self.reward_dropout = reward_dropout

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if not hasattr(pl_module, "attach_reward_conditioner"):
            raise ValueError(f"{type(pl_module).__name__} has no RewardConditionedMixin: cannot attach a conditioner")
        pl_module.configure_model()  # the UNet must exist to size the conditioner
        conditioner = build_conditioner(
            self.variant,
            unet_config=pl_module.unet.config,
            text_dim=pl_module.text_encoder.config.hidden_size,
            **self.switches,
            **self.options,
        )
        if pl_module.has_conditioner(conditioner_spec(conditioner, self.reward_dropout)):
            return  # already attached (e.g. restored by load_from_checkpoint): keep its trained weights
        pl_module.attach_reward_conditioner(conditioner, reward_dropout=self.reward_dropout)
