"""Multi-reward conditioning: plain nn.Modules that attach to a diffusers UNet through public seams."""

from mredit.conditioning.base import FeedbackEmbedding, RewardCondition, RewardConditioner
from mredit.conditioning.feedback import encode_feedback
from mredit.conditioning.seams import reward_conditioning

__all__ = ["FeedbackEmbedding", "RewardCondition", "RewardConditioner", "encode_feedback", "reward_conditioning"]
