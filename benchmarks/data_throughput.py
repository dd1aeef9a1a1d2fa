"""Data loading throughput: decoded + transformed samples/s on one core, with and without JPEG draft decoding.

The paper's training setting: 512 px JPEG pairs, random-cropped to 256 px. The script writes its own JPEG shards
into a temporary directory, then streams them through the same ``EditStream`` + ``PairedTransform`` +
``edit_sample_to_item`` path ``EditDataModule`` uses (in the main process, one torch thread), and prints samples/s.

    python benchmarks/data_throughput.py --num-samples 400 --size 512 --resolution 256
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from mredit.data.datamodule import edit_sample_to_item
from mredit.data.pipeline import EditStream, resolve_shards
from mredit.data.shards import ShardSetWriter
from mredit.data.transforms import PairedTransform
from mredit.schema import EditSample, Reward


def photo_like(rng: np.random.Generator, size: int) -> Image.Image:
    """Smooth colour fields plus shapes and mild noise: compresses and decodes like a photo, unlike pure noise."""
    coarse = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x, y = (int(v) for v in rng.integers(0, size, 2))
        r = int(rng.integers(size // 16, size // 4))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    noisy = np.asarray(image, dtype=np.int16) + rng.integers(-4, 5, (size, size, 3))
    return Image.fromarray(noisy.clip(0, 255).astype(np.uint8))


def write_jpeg_shards(out: Path, num_samples: int, size: int) -> list[str]:
    rng = np.random.default_rng(0)
    reward = Reward.from_lists([4, 5, 3], ["None", "None", "slightly blurry"])
    with ShardSetWriter(out, shard_size=100, image_format="jpg") as writer:
        for i in range(num_samples):
            source = photo_like(rng, size)
            writer.write(EditSample(f"b{i:06d}", source, photo_like(rng, size), "make the sky pink", reward))
    return resolve_shards(str(out))


def samples_per_second(shards: list[str], resolution: int, draft: bool, repeats: int) -> tuple[float, float]:
    """(samples per CPU second of this process, samples per wall second), best epoch of ``repeats``.

    CPU time is the per-core figure that survives a shared machine; wall time is what a quiet core would give.
    """
    transform = PairedTransform(resolution, random_crop=True, random_flip=True)
    stream = EditStream(
        shards,
        partial(_item, transform),
        shuffle_shards=True,
        shuffle_size=64,
        seed=0,
        draft_size=(resolution, resolution) if draft else None,
    )
    best_cpu = best_wall = 0.0
    for epoch in range(repeats):
        stream.set_epoch(epoch)
        cpu_start, wall_start, count = time.process_time(), time.perf_counter(), 0
        for _ in stream:
            count += 1
        best_cpu = max(best_cpu, count / (time.process_time() - cpu_start))
        best_wall = max(best_wall, count / (time.perf_counter() - wall_start))
    return best_cpu, best_wall


def _item(transform: PairedTransform, sample: EditSample, rng: random.Random) -> dict:
    return edit_sample_to_item(sample, transform, rng)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-samples", type=int, default=400)
    parser.add_argument("--size", type=int, default=512, help="side of the stored JPEGs")
    parser.add_argument("--resolution", type=int, default=256, help="training crop side")
    parser.add_argument("--repeats", type=int, default=3, help="epochs per setting; the best is reported")
    args = parser.parse_args()
    torch.set_num_threads(1)  # per-core figures: one process, one thread

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        shards = write_jpeg_shards(Path(tmp), args.num_samples, args.size)
        megabytes = sum(Path(s).stat().st_size for s in shards) / 1e6
        seconds = time.perf_counter() - start
        print(f"wrote {args.num_samples} {args.size}px JPEG pairs ({megabytes:.1f} MB) in {seconds:.1f}s")
        print(f"decode + paired crop/flip to {args.resolution}px + tensors (1 thread), best of {args.repeats} epochs:")
        for draft in (False, True):
            per_cpu_second, per_wall_second = samples_per_second(shards, args.resolution, draft, args.repeats)
            label = "draft decoding" if draft else "full decoding "
            cpu_ms, wall = 1000 / per_cpu_second, per_wall_second
            print(f"  {label}: {per_cpu_second:6.1f} samples/s per core ({cpu_ms:.2f} CPU ms/sample), {wall:6.1f} wall")


if __name__ == "__main__":
    main()
