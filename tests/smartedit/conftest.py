"""Tiny SmartEdit parts shared by the tests of this area."""

from __future__ import annotations

import pytest
from smartedit_helpers import tiny_module

from mredit.models.smartedit.mllm import LlavaMLLM, MLLMConfig
from mredit.models.smartedit.module import SmartEditModule
from mredit.models.smartedit.tiny import tiny_llm, tiny_llm_tokenizer, tiny_projector, tiny_vision_tower


@pytest.fixture
def tiny_mllm() -> LlavaMLLM:
    tokenizer = tiny_llm_tokenizer()
    parts = tiny_llm(len(tokenizer)), tiny_vision_tower(), tiny_projector(), tokenizer
    return LlavaMLLM(*parts, MLLMConfig(num_img_tokens=4))


@pytest.fixture(scope="module")
def smartedit_module() -> SmartEditModule:
    return tiny_module(stage="smartedit")
