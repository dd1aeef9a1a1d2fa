"""``mredit data synth``: write synthetic editing shards (see docs/synth.md)."""

from __future__ import annotations

import argparse
import json

from mredit.synth.edits import CATEGORIES
from mredit.synth.generate import SPLITS, write_synth_shards


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "synth",
        help="write synthetic editing triplets (shapes world) as shards",
        description="Write procedurally generated editing triplets with exact answers as WebDataset shards. "
        "Train targets are flawed at --corrupt-rate; the test split is clean and balanced over the seven "
        "categories (or those of --categories). "
        "Annotate rewards with 'mredit judge annotate --judge oracle', or embed them with --with-rewards.",
    )
    parser.add_argument("--out", required=True, help="output directory for the shards and manifest.json")
    parser.add_argument("--split", choices=tuple(SPLITS), default="train")
    parser.add_argument("--num", type=int, required=True, help="number of samples")
    parser.add_argument("--resolution", type=int, default=32, help="image size in pixels (default 32)")
    parser.add_argument(
        "--corrupt-rate", type=float, default=0.5, help="probability of a flawed train target (default 0.5)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shard-size", type=int, default=1000, help="samples per shard (default 1000)")
    parser.add_argument(
        "--categories",
        nargs="+",
        choices=CATEGORIES,
        help="draw only these kinds of edit (default: all seven), e.g. --categories local remove add",
    )
    parser.add_argument("--with-rewards", action="store_true", help="embed the oracle's scores as reward.json")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.num < 1:
        raise ValueError(f"--num must be >= 1, got {args.num}")
    if args.resolution < 8:
        raise ValueError(f"--resolution must be >= 8, got {args.resolution}")
    manifest = write_synth_shards(
        args.out,
        args.split,
        args.num,
        resolution=args.resolution,
        corrupt_rate=args.corrupt_rate,
        seed=args.seed,
        shard_size=args.shard_size,
        with_rewards=args.with_rewards,
        categories=args.categories,
    )
    summary = {
        "out": args.out,
        "num_samples": manifest["num_samples"],
        "shards": len(manifest["shards"]),
        "corrupted": manifest["provenance"]["corrupted"],
        "categories": manifest["categories"],
    }
    print(json.dumps(summary))
    return 0
