from __future__ import annotations

import numpy as np
import pytest

from mredit.synth.corruptions import EditContext
from mredit.synth.edits import CATEGORIES
from mredit.synth.generate import draw_edit


def _draw_contexts(seeds: int, resolution: int = 32) -> list[EditContext]:
    """``seeds`` exact edits of every category."""
    return [
        draw_edit(np.random.default_rng([1234, seed, i]), category, resolution)
        for seed in range(seeds)
        for i, category in enumerate(CATEGORIES)
    ]


def _meta_of(ctx: EditContext) -> dict:
    return {"dataset": "synth", "scene": ctx.scene.to_dict(), "edit": ctx.edit.to_dict()}


@pytest.fixture(scope="session")
def draw_contexts():
    return _draw_contexts


@pytest.fixture(scope="session")
def meta_of():
    return _meta_of


@pytest.fixture(scope="session")
def contexts() -> list[EditContext]:
    return _draw_contexts(4)
