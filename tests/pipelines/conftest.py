from __future__ import annotations

import pytest
from tiny_model import reward_pipeline

from mredit.pipelines.reward_edit import RewardEditPipeline


@pytest.fixture
def pipe() -> RewardEditPipeline:
    return reward_pipeline()
