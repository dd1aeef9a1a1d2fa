"""Multi-reward conditioning for any LightningModule with ``unet``, ``text_encoder`` and ``tokenizer``.

The conditioner is a registered submodule (``reward_conditioner``), so it is in the optimizer, DDP, the
state_dict and the EMA. Its spec (class path, config, reward dropout) goes into the checkpoint, so
``load_from_checkpoint``, ``test --ckpt_path`` and ``predict`` rebuild it without the callback that first
attached it. Without a conditioner the module is the no-reward baseline.
"""

from __future__ import annotations

import importlib
from typing import Any

import torch

from mredit.conditioning.base import FeedbackEmbedding, FeedbackFormat, RewardCondition, RewardConditioner
from mredit.conditioning.feedback import encode_feedback
from mredit.models.token_cache import cached_tokenizer

CHECKPOINT_KEY = "reward_conditioner"


def conditioner_spec(conditioner: RewardConditioner, reward_dropout: float) -> dict[str, Any]:
    config = {k: v for k, v in dict(conditioner.config).items() if not k.startswith("_")}
    cls = type(conditioner)
    return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "config": config, "reward_dropout": reward_dropout}


def build_from_spec(spec: dict[str, Any]) -> RewardConditioner:
    module_name, _, class_name = spec["class_path"].rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as e:
        name = spec["class_path"]
        raise RuntimeError(f"checkpoint names reward conditioner {name}, which cannot be imported: {e}") from e
    return cls.from_config(spec["config"])


def encode_unique_feedback(
    feedback: list[list[str]], tokenizer, text_encoder: torch.nn.Module, formats: tuple[FeedbackFormat, ...]
) -> FeedbackEmbedding:
    """``encode_feedback`` run once per distinct feedback of the batch, its rows then gathered back in batch order.

    Most training samples share their feedback (every perspective "None" for a good edit, a few stock failure
    texts for the others), and the text encoder embeds each row on its own, so the result is the per-sample
    encoding; on the tiny demo model encoding all 96 texts of a batch of 32 was a tenth of the step.
    """
    keys = [tuple(texts) for texts in feedback]
    rows = {key: index for index, key in enumerate(dict.fromkeys(keys))}
    embedded = encode_feedback([list(key) for key in rows], tokenizer, text_encoder, formats)
    if len(rows) == len(keys):
        return embedded
    order = torch.tensor([rows[key] for key in keys])
    gather = lambda t: None if t is None else t.index_select(0, order.to(t.device))  # noqa: E731
    return FeedbackEmbedding(gather(embedded.pooled), gather(embedded.tokens), gather(embedded.mask))


class RewardConditionedMixin:
    """List it before ``LightningModule`` in the bases; call ``init_reward_conditioning()`` in ``__init__``."""

    reward_conditioner: RewardConditioner | None
    reward_dropout: float

    def init_reward_conditioning(self) -> None:
        self.reward_conditioner = None
        self.reward_dropout = 0.0

    def attach_reward_conditioner(self, conditioner: RewardConditioner, reward_dropout: float = 0.0) -> None:
        if not 0.0 <= reward_dropout < 1.0:
            raise ValueError(f"reward_dropout must be in [0, 1), got {reward_dropout}")
        if reward_dropout > 0 and not getattr(conditioner.config, "null_condition", False):
            raise ValueError("reward_dropout > 0 needs a conditioner built with null_condition=True")
        self.reward_conditioner = conditioner.to(self.device)
        self.reward_dropout = reward_dropout

    def detach_reward_conditioner(self) -> None:
        self.reward_conditioner = None
        self.reward_dropout = 0.0

    def has_conditioner(self, spec: dict[str, Any]) -> bool:
        """True when the attached conditioner has exactly this spec (class, config and reward dropout)."""
        current = self.reward_conditioner
        return current is not None and conditioner_spec(current, self.reward_dropout) == spec

    def compute_reward_condition(
        self,
        scores: torch.Tensor,
        feedback: list[list[str]] | FeedbackEmbedding,
        drop_mask: torch.Tensor | None = None,
    ) -> RewardCondition | None:
        """The conditioner's output for a batch; raw feedback texts are embedded with the backbone's
        text encoder, without gradients (``encode_feedback``, once per distinct feedback of the batch)."""
        conditioner = self.reward_conditioner
        if conditioner is None:
            return None
        if not isinstance(feedback, FeedbackEmbedding):
            formats = (conditioner.feedback_format,)
            feedback = encode_unique_feedback(feedback, cached_tokenizer(self), self.text_encoder, formats)
        dtype = next(conditioner.parameters()).dtype
        scores = scores.to(self.device, torch.float32)
        feedback = feedback.to(device=self.device, dtype=dtype)
        return conditioner(scores, feedback, None if drop_mask is None else drop_mask.to(self.device))

    def reward_drop_mask(self, batch: dict[str, Any], batch_size: int) -> torch.Tensor | None:
        """Samples whose reward is replaced by the null condition: reward dropout, and samples without a reward
        (when the conditioner has a null condition to stand in for the missing reward)."""
        conditioner = self.reward_conditioner
        if conditioner is None or not getattr(conditioner.config, "null_condition", False):
            return None
        mask = torch.zeros(batch_size, dtype=torch.bool, device=self.device)
        if self.training and self.reward_dropout > 0:
            mask |= torch.rand(batch_size, device=self.device) < self.reward_dropout
        if "reward_mask" in batch:
            mask |= ~torch.as_tensor(batch["reward_mask"], dtype=torch.bool, device=self.device)
        return mask

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.reward_conditioner is not None:
            checkpoint[CHECKPOINT_KEY] = conditioner_spec(self.reward_conditioner, self.reward_dropout)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        spec = checkpoint.get(CHECKPOINT_KEY)
        if spec is not None and not self.has_conditioner(spec):
            self.attach_reward_conditioner(build_from_spec(spec), spec.get("reward_dropout", 0.0))
        super().on_load_checkpoint(checkpoint)
