"""Fixtures for the judge tests: the local OpenAI-compatible server, tiny shards, a fast-retrying judge."""

from __future__ import annotations

import pytest
from fake_server import FakeJudgeServer
from judge_helpers import API_KEY, FAST_RETRY

from mredit.judge.openai_judge import OpenAIJudge


@pytest.fixture
def fake_server():
    server = FakeJudgeServer(api_key=API_KEY, timeout_sleep=0.6).start()
    yield server
    server.stop()


@pytest.fixture
def make_judge(fake_server):
    def make(**options) -> OpenAIJudge:
        defaults = dict(
            provider="openai",
            model="gpt-4o",
            base_url=fake_server.base_url,
            api_key=API_KEY,
            timeout=0.3,
            retry=FAST_RETRY,
        )
        return OpenAIJudge(**{**defaults, **options})

    return make
