"""Fixtures for the judge tests: the local OpenAI-compatible server, tiny shards, a fast-retrying judge."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
import webdataset as wds
from PIL import Image

from mredit.data.shards import ShardSetWriter
from mredit.judge.openai_judge import OpenAIJudge
from mredit.judge.retry import RetryPolicy
from mredit.schema import EditSample

sys.path.insert(0, str(Path(__file__).parent))
from fake_server import FakeJudgeServer  # noqa: E402

API_KEY = "sk-test-SECRET-0123456789"
FAST_RETRY = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05)


def tiny_image(rng: random.Random, size: int = 16) -> Image.Image:
    return Image.frombytes("RGB", (size, size), bytes(rng.randrange(256) for _ in range(size * size * 3)))


def write_shards(out_dir: Path, instructions: list[str], categories: list[str] | None = None, seed: int = 0) -> Path:
    rng = random.Random(seed)
    with ShardSetWriter(out_dir, shard_size=4) as writer:
        for i, instruction in enumerate(instructions):
            meta = {"category": categories[i]} if categories else {}
            writer.write(EditSample(f"s{i:03d}", tiny_image(rng), tiny_image(rng), instruction, meta=meta))
    return out_dir


def write_corrupt_tar(path: Path, key: str = "broken") -> Path:
    with wds.TarWriter(str(path)) as writer:
        writer.write({"__key__": key, "src.png": b"not a png", "tgt.png": b"nor this", "txt": b"make it red"})
    return path


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
