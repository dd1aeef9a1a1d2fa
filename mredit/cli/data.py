"""``mredit data convert|synth|inspect|encode``: make, check and precompute WebDataset shards."""

from __future__ import annotations

import json
import shlex
from typing import Any, Literal

from mredit.cli.parsing import CommandGroup
from mredit.data import convert as conversion
from mredit.data import inspection
from mredit.data.encode import DTYPES
from mredit.data.formats import FORMAT_NAMES
from mredit.models.loading import load_encoders
from mredit.synth.corruptions import FLAW_MODELS
from mredit.synth.edits import CATEGORIES
from mredit.synth.generate import SPLITS, write_synth_shards
from mredit.training.latent_encoding import encode_shards


def convert(
    src_format: Literal[FORMAT_NAMES],
    src: str | list[str],
    out: str,
    shard_size: int = 1000,
    image_format: Literal["png", "jpg", "webp"] = "png",
    rewards: str | None = None,
    seeds: Literal["first", "all"] = "first",
    limit: int | None = None,
    prefix: str = "shard",
) -> None:
    """Convert a dataset (ip2p folder/parquet, MagicBrush, project shards) into shards, joining rewards.

    Examples:

        mredit data convert --src_format ip2p-folder --src clip-filtered-dataset --out shards/ip2p \\
            --seeds first --rewards RewardEdit20K.json
        mredit data convert --src_format ip2p-parquet --src hf/instructpix2pix/data --out shards/ip2p \\
            --image_format jpg
        mredit data convert --src_format magicbrush --src MagicBrush/data/dev-00000-of-00001.parquet \\
            --out shards/mb-dev
        mredit data convert --src_format shards --src shards/synth --rewards annotations.jsonl \\
            --out shards/synth-judged

    Args:
        src_format: The source format.
        src: ip2p root folder, parquet file(s)/folder, or shards (dir with manifest.json, brace pattern, tars);
            several as '[a, b]'.
        out: Output directory for shard-NNNNNN.tar and manifest.json.
        shard_size: Samples per shard.
        image_format: Image encoding in the shards.
        rewards: RewardEdit20K JSON or judge JSONL annotations to join by sample key.
        seeds: ip2p-folder: the first seed per directory or all of them.
        limit: Stop after this many samples.
        prefix: Shard file name prefix.
    """
    options = dict(shard_size=shard_size, image_format=image_format, rewards=rewards, seeds=seeds, limit=limit)
    command = _command_line(["data", "convert"], src_format=src_format, src=src, out=out, **options, prefix=prefix)
    conversion.print_summary(conversion.convert(src_format, src, out, **options, prefix=prefix, command=command), out)


def synth(
    out: str,
    num: int,
    split: Literal[tuple(SPLITS)] = "train",
    resolution: int = 32,
    corrupt_rate: float = 0.5,
    seed: int = 0,
    shard_size: int = 1000,
    categories: list[Literal[CATEGORIES]] | None = None,
    with_rewards: bool = False,
    flaw_model: Literal[tuple(FLAW_MODELS)] = "random",
) -> None:
    """Write synthetic editing triplets (shapes world) as shards.

    Procedurally generated editing triplets with exact answers, as WebDataset shards. Train targets are
    flawed at --corrupt_rate; the test split is clean and balanced over the seven categories (or those of
    --categories). Annotate rewards with 'mredit judge annotate --judge oracle', or embed them with
    --with_rewards true (see docs/synth.md).

    Args:
        out: Output directory for the shards and manifest.json.
        num: Number of samples.
        split: The split: flawed train targets, or a clean balanced test set.
        resolution: Image size in pixels.
        corrupt_rate: Probability of a flawed train target.
        seed: Random seed.
        shard_size: Samples per shard.
        categories: Draw only these kinds of edit (default: all seven), e.g. '[local, remove, add]'.
        with_rewards: Embed the oracle's scores as reward.json.
        flaw_model: How train targets are flawed: 'random' (a direction drawn per sample) or 'systematic' (each
            kind of flaw in one consistent, learnable direction, as in real generated data); docs/synth.md.
    """
    if num < 1:
        raise ValueError(f"--num must be >= 1, got {num}")
    if resolution < 8:
        raise ValueError(f"--resolution must be >= 8, got {resolution}")
    manifest = write_synth_shards(
        out,
        split,
        num,
        resolution=resolution,
        corrupt_rate=corrupt_rate,
        seed=seed,
        shard_size=shard_size,
        with_rewards=with_rewards,
        categories=categories,
        flaw_model=flaw_model,
    )
    summary = {
        "out": out,
        "num_samples": manifest["num_samples"],
        "shards": len(manifest["shards"]),
        "corrupted": manifest["provenance"]["corrupted"],
        "categories": manifest["categories"],
    }
    print(json.dumps(summary))


def inspect(shards: str | list[str], out: str | None = None, num: int = 8) -> None:
    """Count, score histograms, contact sheet and bad samples of a set of shards.

    Prints the sample count, reward coverage, a score histogram per perspective and the bad samples with
    their reasons. With --out, also writes histograms.png, contact_sheet.png (source | target | instruction
    and scores of the first --num samples) and summary.json (everything printed, with all bad samples).

    Example:

        mredit data inspect --shards shards/ip2p --out reports/ip2p --num 8

    Args:
        shards: A directory with manifest.json, brace pattern(s) or tar files; several as '[a, b]'.
        out: Where to write the PNGs and summary.json (default: write nothing, only print).
        num: Samples on the contact sheet.
    """
    inspection.print_summary(inspection.inspect_shards(shards, out, num))


def encode(
    model: str,
    shards: str | list[str],
    out: str,
    resolution: int = 256,
    flip: bool = False,
    batch_size: int = 8,
    dtype: Literal[tuple(DTYPES)] = "float16",
    shard_size: int = 1000,
    num_workers: int = 0,
    accelerator: str = "auto",
    devices: int = 1,
    num_nodes: int = 1,
    strategy: str = "auto",
) -> None:
    """Precompute VAE latents and text-encoder states of shards.

    Training from the result skips the frozen VAE and CLIP text encoder in every step. The images go
    through the same deterministic resize + centre crop as training; with --flip true the horizontally
    flipped pair is encoded too, and LatentDataModule picks one of the two per sample.

    Runs as Lightning predict: --devices N starts N processes, each encoding the samples of its own shards
    (shards rank::N) into its own latents-rank<r>-*.tar; under torchrun or SLURM (srun) --devices and
    --num_nodes say how the processes were started (docs/distributed.md). One manifest.json lists them all.

    Examples:

        mredit data encode --model exports/ip2p --shards data/train --out data/train_latents --flip true
        mredit data encode --model exports/ip2p --shards data/train --out data/train_latents --devices 8

    Args:
        model: Export / SD-layout folder or a module .ckpt, whose VAE and text encoder are used.
        shards: Shard spec: dir, brace pattern or .tar; several as '[a, b]'.
        out: Output folder for latents-*.tar + manifest.json.
        resolution: Training resolution.
        flip: Also encode the horizontally flipped pair.
        batch_size: Samples per encoder batch.
        dtype: Storage dtype of the tensors.
        shard_size: Samples per output shard.
        num_workers: DataLoader processes decoding the images, per process.
        accelerator: cpu, gpu, ... (Lightning's; auto: a GPU when there is one).
        devices: Processes (devices) per node.
        num_nodes: Nodes (torchrun or SLURM starts the processes of each).
        strategy: Lightning's strategy (auto: ddp when there are several processes).
    """
    manifest = encode_shards(
        load_encoders(model),
        shards,
        out,
        resolution=resolution,
        flip=flip,
        batch_size=batch_size,
        dtype=dtype,
        shard_size=shard_size,
        model=model,
        num_workers=num_workers,
        accelerator=accelerator,
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
    )
    if manifest is None:  # not global rank 0, which speaks for all ranks
        return
    skipped = sum(manifest["provenance"]["skipped"].values())
    print(f"encoded {manifest['num_samples']} samples into {out} ({skipped} skipped)")


COMMANDS = CommandGroup(
    "Make, check and precompute WebDataset shards.",
    {"convert": convert, "synth": synth, "inspect": inspect, "encode": encode},
)


def _command_line(words: list[str], **options: Any) -> str:
    """The ``mredit`` command line giving ``options`` (None ones left out), for a manifest's provenance."""
    parts = ["mredit", *words]
    for name, value in options.items():
        if value is not None:
            parts += [f"--{name}", value if isinstance(value, str) else json.dumps(value)]
    return shlex.join(parts)
