"""Helpers for the training tests: tiny reward-annotated shards and the smallest CLI command lines."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from mredit.data.shards import ShardSetWriter
from mredit.schema import EditSample, Reward

REPO = Path(__file__).resolve().parents[2]
RESOLUTION = 16

# the smallest model that is still the real classes: overrides on top of the tiny config
SMALLEST_MODEL = [
    "--model.init_args.unet_config={block_out_channels: [8, 16], norm_num_groups: 4, attention_head_dim: 4}",
    "--model.init_args.text_encoder_config={hidden_size: 16, intermediate_size: 16, num_hidden_layers: 1, "
    "num_attention_heads: 2}",
]


def sample(index: int) -> EditSample:
    rng = np.random.default_rng(index)
    source = rng.integers(0, 256, (RESOLUTION, RESOLUTION, 3), dtype=np.uint8)
    target = 255 - source
    reward = Reward.from_lists([index % 6, 5, 4], ["None", "None", "slightly blurry"])
    return EditSample(
        key=f"k{index:04d}",
        source=Image.fromarray(source),
        target=Image.fromarray(target),
        instruction="invert the colours",
        reward=reward,
    )


def write_split_shards(root: Path) -> dict[str, Path]:
    dirs = {}
    for split, num, shard_size in (("train", 32, 8), ("val", 4, 4)):
        with ShardSetWriter(root / split, prefix=split, shard_size=shard_size) as writer:
            for i in range(num):
                writer.write(sample(i if split == "train" else 1000 + i))
        dirs[split] = root / split
    return dirs


def cli_args(config: str, shard_dirs: dict[str, Path], root: Path, *extra: str) -> list[str]:
    """A ``mredit fit`` command line on the tiny config, shrunk to seconds."""
    return [
        "--config",
        str(REPO / "configs" / config),
        f"--data.init_args.train_shards={shard_dirs['train']}",
        f"--data.init_args.val_shards={shard_dirs['val']}",
        f"--data.init_args.resolution={RESOLUTION}",
        "--data.init_args.batch_size=4",
        "--data.init_args.shuffle_buffer=0",
        f"--trainer.default_root_dir={root}",
        f"--trainer.logger.init_args.save_dir={root}",
        "--trainer.enable_progress_bar=false",
        *SMALLEST_MODEL,
        *extra,
    ]


def run_mredit(args: list[str], timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mredit", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(f"mredit {' '.join(args[:1])} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result
