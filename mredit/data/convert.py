"""``mredit data convert``: turn a source dataset (or existing shards) into project shards, optionally with rewards.

Examples::

    mredit data convert --from ip2p-folder --src clip-filtered-dataset --out shards/ip2p --seeds first \\
        --rewards RewardEdit20K.json
    mredit data convert --from ip2p-parquet --src hf/instructpix2pix/data --out shards/ip2p --image-format jpg
    mredit data convert --from magicbrush --src MagicBrush/data/dev-00000-of-00001.parquet --out shards/mb-dev
    mredit data convert --from shards --src shards/synth --rewards annotations.jsonl --out shards/synth-judged
"""

from __future__ import annotations

import argparse
import itertools
import logging
import shlex
import sys
from pathlib import Path
from typing import Any

from mredit.data.formats import FORMAT_NAMES, BadRecord, reader_for
from mredit.data.rewards import RewardJoiner, load_rewards
from mredit.data.shards import MANIFEST_NAME, ShardSetWriter, read_manifest

log = logging.getLogger(__name__)
SHOWN_KEYS = 5  # how many keys of each problem list are printed; the manifest has all of them


def convert(
    fmt: str,
    src: list[str],
    out: str | Path,
    shard_size: int = 1000,
    image_format: str = "png",
    rewards: str | None = None,
    seeds: str = "first",
    limit: int | None = None,
    prefix: str = "shard",
    command: str | None = None,
) -> dict[str, Any]:
    """Convert ``src`` (in format ``fmt``) into shards under ``out``; return the manifest written there."""
    out = Path(out)
    resolved_src = [str(Path(s).resolve()) if Path(s).exists() else s for s in src]
    if (out / MANIFEST_NAME).exists() and any(Path(s).resolve() == out.resolve() for s in src if Path(s).exists()):
        raise ValueError(f"--out {out} is the same as the source; write the converted shards elsewhere")
    joiner = RewardJoiner(load_rewards(rewards)) if rewards else None
    records = reader_for(fmt)(src, seeds=seeds)
    bad: list[dict[str, str]] = []
    provenance: dict[str, Any] = {
        "command": command or "mredit data convert",
        "source": {"format": fmt, "src": resolved_src, **({"seeds": seeds} if fmt == "ip2p-folder" else {})},
    }
    first = next(records, None)  # opens the source: a missing path fails here, before anything is written
    try:
        with ShardSetWriter(out, prefix=prefix, shard_size=shard_size, image_format=image_format) as writer:
            for record in itertools.chain([first] if first is not None else [], records):
                if isinstance(record, BadRecord):
                    log.warning("skipping source record '%s': %s", record.key, record.reason)
                    bad.append({"key": record.key, "reason": record.reason})
                    continue
                sample = joiner.join(record) if joiner else record
                try:
                    writer.write(sample)
                except ValueError as e:  # a duplicate key: report, do not stop
                    bad.append({"key": sample.key, "reason": str(e)})
                if limit is not None and writer.num_samples >= limit:
                    break
            provenance["skipped_source_records"] = {"count": len(bad), "records": bad}
            if joiner is not None:
                provenance["rewards"] = joiner.report()
            writer.provenance.update(provenance)
    except BaseException:
        (out / MANIFEST_NAME).unlink(missing_ok=True)  # no manifest: the partial output is not a shard set
        raise
    manifest = read_manifest(out)
    if manifest["num_samples"] == 0:
        (out / MANIFEST_NAME).unlink()
        hint = f" (first problem: {bad[0]['key']}: {bad[0]['reason']})" if bad else ""
        raise ValueError(f"no usable samples in {', '.join(src)}: {len(bad)} records skipped{hint}")
    return manifest


def _print_summary(manifest: dict[str, Any], out: str) -> None:
    coverage = manifest["reward_coverage"]
    print(
        f"wrote {manifest['num_samples']} samples in {len(manifest['shards'])} shards to {out} "
        f"({coverage['with_reward']} with rewards, {coverage['fraction']:.1%})"
    )
    provenance = manifest["provenance"]
    skipped = provenance["skipped_source_records"]
    if skipped["count"]:
        _print_keys(f"skipped {skipped['count']} unusable source records", [r["key"] for r in skipped["records"]])
    report = provenance.get("rewards")
    if report:
        source = f"{report['file']} ({report['format']}, {report['records']} records)"
        print(f"rewards: {report['joined']} joined from {source}")
        if report["statuses"] and set(report["statuses"]) != {"ok"}:
            print(f"  judge record statuses: {report['statuses']} (only 'ok' is joined)")
        if report["invalid_records"]:
            _print_keys(f"  {len(report['invalid_records'])} malformed reward records", report["invalid_records"])
        if report["unmatched_reward_keys"]:
            _print_keys(
                f"  {len(report['unmatched_reward_keys'])} reward keys match no sample", report["unmatched_reward_keys"]
            )
        if report["samples_without_reward"]:
            _print_keys(
                f"  {len(report['samples_without_reward'])} samples have no reward", report["samples_without_reward"]
            )
        print(f"  full lists in {Path(out) / MANIFEST_NAME} (provenance.rewards)")


def _print_keys(title: str, keys: list[str]) -> None:
    more = f", ... (+{len(keys) - SHOWN_KEYS})" if len(keys) > SHOWN_KEYS else ""
    print(f"{title}: {', '.join(map(str, keys[:SHOWN_KEYS]))}{more}")


def _run(args: argparse.Namespace) -> int:
    manifest = convert(
        args.fmt,
        args.src,
        args.out,
        shard_size=args.shard_size,
        image_format=args.image_format,
        rewards=args.rewards,
        seeds=args.seeds,
        limit=args.limit,
        prefix=args.prefix,
        command=shlex.join(["mredit", "data", "convert", *_argv_after("convert")]),
    )
    _print_summary(manifest, args.out)
    return 0


def _argv_after(word: str) -> list[str]:
    argv = sys.argv[1:]
    return argv[argv.index(word) + 1 :] if word in argv else argv


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert a dataset (ip2p folder/parquet, MagicBrush, project shards) into shards, joining rewards",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--from", dest="fmt", required=True, choices=FORMAT_NAMES, help="the source format")
    parser.add_argument(
        "--src",
        nargs="+",
        required=True,
        help="ip2p root folder, parquet file(s)/folder, or shards (dir with manifest.json, brace pattern, tars)",
    )
    parser.add_argument("--out", required=True, help="output directory for shard-NNNNNN.tar and manifest.json")
    parser.add_argument("--shard-size", type=int, default=1000, help="samples per shard (default 1000)")
    parser.add_argument("--image-format", choices=("png", "jpg", "webp"), default="png", help="image encoding")
    parser.add_argument("--rewards", help="RewardEdit20K JSON or judge JSONL annotations to join by sample key")
    parser.add_argument(
        "--seeds", choices=("first", "all"), default="first", help="ip2p-folder: first seed per directory or all"
    )
    parser.add_argument("--limit", type=int, help="stop after this many samples")
    parser.add_argument("--prefix", default="shard", help="shard file name prefix (default 'shard')")
    parser.set_defaults(func=_run)
