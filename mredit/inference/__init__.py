"""Inference: the reward-conditioned editing pipeline, input sizing, Lightning prediction and ``mredit edit``."""

from mredit.inference.pipeline import BEST_SCORES, NO_FAILURE, RewardEditPipeline

__all__ = ["BEST_SCORES", "NO_FAILURE", "RewardEditPipeline"]
