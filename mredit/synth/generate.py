"""Generating synthetic editing triplets: ``generate_samples`` (Python) and ``write_synth_shards`` (shards).

Sample ``i`` of a split depends only on (seed, split, i), so the same seed gives byte-identical shards
whatever the shard size. The test split is clean and cycles through the seven categories; the train split
draws categories uniformly and flaws targets per ``CorruptionConfig`` (``flaw_model``: ``random`` or
``systematic`` flaws, see ``mredit.synth.corruptions``). ``categories`` restricts both splits to
some of the seven (a curriculum, or a diagnostic of one kind of edit).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
from PIL import Image

from mredit.data.shards import ShardSetWriter
from mredit.schema import EditSample
from mredit.synth.corruptions import CorruptionConfig, EditContext, apply_corruption, sample_corruptions
from mredit.synth.edits import CATEGORIES, MIN_GLOBAL_CHANGE, WHOLE_IMAGE_CATEGORIES, instruction_for, sample_edit
from mredit.synth.oracle import OracleJudge
from mredit.synth.scene import pick, random_scene, to_uint8

SPLITS: dict[str, int] = {"train": 0, "test": 1}
SHARD_MTIME = 0  # fixed, so that the same seed gives byte-identical shards
MIN_OBJECT_CHANGE = 0.15  # mean colour change an object edit must make inside its mask
# zlib level of the shards' PNGs: lossless at any level, and 1 encodes 32 px images about 1.5x faster than
# PIL's default 6 for about 10% more bytes
PNG_COMPRESS_LEVEL = 1


def _changes_enough(ctx: EditContext) -> bool:
    diff = np.abs(ctx.answer - ctx.source).max(-1)
    if ctx.edit.category in WHOLE_IMAGE_CATEGORIES:
        return float(diff.mean()) >= MIN_GLOBAL_CHANGE
    inside = ctx.mask > 0.5
    return inside.sum() >= 3 and float(diff[inside].mean()) >= MIN_OBJECT_CHANGE


def draw_edit(rng: np.random.Generator, category: str, resolution: int) -> EditContext:
    """A random scene and a visible edit of ``category`` on it, with its exact renderings."""
    for _ in range(100):
        num_objects = int(rng.integers(1, 4 if category == "add" else 5))
        scene = random_scene(rng, resolution, num_objects)
        edit = sample_edit(scene, category, rng)
        if edit is not None:
            ctx = EditContext.build(scene, edit)
            if _changes_enough(ctx):
                return ctx
    raise RuntimeError(f"could not draw a visible {category} edit at {resolution} px")


def check_categories(categories: Sequence[str] | None) -> tuple[str, ...]:
    """``categories`` as a tuple in the canonical order; None means all seven."""
    if categories is None:
        return CATEGORIES
    unknown = sorted(set(categories) - set(CATEGORIES))
    if unknown or not categories:
        raise ValueError(f"categories must be some of {', '.join(CATEGORIES)}, got {list(categories)}")
    return tuple(c for c in CATEGORIES if c in categories)


def make_sample(
    index: int,
    split: str = "train",
    resolution: int = 32,
    corruption: CorruptionConfig | None = None,
    seed: int = 0,
    oracle: OracleJudge | None = None,
    categories: Sequence[str] | None = None,
) -> EditSample:
    """Sample ``index`` of a split: scene, edit, instruction, (flawed) target; rewards when ``oracle`` is given."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if resolution < 8:
        raise ValueError(f"resolution must be >= 8, got {resolution}")
    allowed = check_categories(categories)
    rng = np.random.default_rng([seed, SPLITS[split], index])
    category = allowed[index % len(allowed)] if split == "test" else pick(rng, allowed)
    ctx = draw_edit(rng, category, resolution)
    instruction = instruction_for(ctx.scene, ctx.edit, rng)
    config = corruption or CorruptionConfig()
    flaws = [] if split == "test" else sample_corruptions(ctx, config, rng)
    target = ctx.answer
    for flaw in flaws:
        target = apply_corruption(target, flaw, ctx)
    source_image, target_image = Image.fromarray(to_uint8(ctx.source)), Image.fromarray(to_uint8(target))
    meta = {
        "dataset": "synth",
        "category": category,
        "scene": ctx.scene.to_dict(),
        "edit": ctx.edit.to_dict(),
        "corruptions": [f.to_dict() for f in flaws],
        "split": split,
        "index": index,
        "seed": seed,
    }
    reward = None
    if oracle is not None:
        reward = oracle.score(source_image, instruction, target_image, meta).to_reward(oracle.fingerprint)
    return EditSample(f"{split}_{index:06d}", source_image, target_image, instruction, reward, meta)


def generate_samples(
    num: int,
    split: str = "train",
    resolution: int = 32,
    corrupt_rate: float = 0.5,
    seed: int = 0,
    corruption: CorruptionConfig | None = None,
    with_rewards: bool = False,
    start: int = 0,
    categories: Sequence[str] | None = None,
    flaw_model: str = "random",
) -> Iterator[EditSample]:
    """Samples ``start .. start+num-1`` of a split. ``corruption`` overrides ``corrupt_rate`` and ``flaw_model``
    when given; the test split is always clean. ``with_rewards`` embeds the oracle's scores. ``categories``: a
    subset of the seven (default all)."""
    if num < 0:
        raise ValueError(f"num must be >= 0, got {num}")
    config = corruption or CorruptionConfig(rate=corrupt_rate, flaw_model=flaw_model)
    oracle = OracleJudge(resolution=resolution) if with_rewards else None
    for index in range(start, start + num):
        yield make_sample(index, split, resolution, config, seed, oracle, categories)


def write_synth_shards(
    out_dir: str | os.PathLike,
    split: str,
    num: int,
    resolution: int = 32,
    corrupt_rate: float = 0.5,
    seed: int = 0,
    shard_size: int = 1000,
    with_rewards: bool = False,
    corruption: CorruptionConfig | None = None,
    categories: Sequence[str] | None = None,
    flaw_model: str = "random",
) -> dict[str, Any]:
    """Write ``num`` samples as ``<out_dir>/<split>-000000.tar, ...`` plus ``manifest.json``; returns the manifest."""
    config = corruption or CorruptionConfig(rate=corrupt_rate, flaw_model=flaw_model)
    rate = 0.0 if split == "test" else config.rate
    provenance = {
        "source": "synth",
        "split": split,
        "resolution": resolution,
        "seed": seed,
        "corrupt_rate": rate,
        "flaw_model": config.flaw_model if split == "train" else None,
        "corruption": asdict(config) if split == "train" else None,
        "with_rewards": with_rewards,
        "categories": list(check_categories(categories)),
    }
    kinds: Counter = Counter()
    corrupted = 0
    writer = ShardSetWriter(
        out_dir,
        prefix=split,
        shard_size=shard_size,
        provenance=provenance,
        mtime=SHARD_MTIME,
        compress_level=PNG_COMPRESS_LEVEL,
    )
    with writer:
        for sample in generate_samples(
            num, split, resolution, seed=seed, corruption=config, with_rewards=with_rewards, categories=categories
        ):
            flaws = sample.meta["corruptions"]
            corrupted += bool(flaws)
            kinds.update(f"{f['perspective']}/{f['kind']}" for f in flaws)
            writer.write(sample)
        writer.provenance["corrupted"] = corrupted
        writer.provenance["corruption_kinds"] = dict(sorted(kinds.items()))
        return writer.close()
