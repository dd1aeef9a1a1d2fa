"""Shared helpers of the judge tests (a module with a unique name: `conftest` is ambiguous across test folders)."""

from __future__ import annotations

import random
from pathlib import Path

import webdataset as wds
from PIL import Image

from mredit.data.shards import ShardSetWriter
from mredit.judge.retry import RetryPolicy
from mredit.schema import EditSample

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


def write_truncated_tar(path: Path, shard: Path, size: int = 300) -> Path:
    """The first ``size`` bytes of ``shard`` (300: inside the first 512-byte header, so no sample can be read)."""
    path.write_bytes(shard.read_bytes()[:size])
    return path


def write_corrupt_tar(path: Path, key: str = "broken") -> Path:
    with wds.TarWriter(str(path)) as writer:
        writer.write({"__key__": key, "src.png": b"not a png", "tgt.png": b"nor this", "txt": b"make it red"})
    return path
