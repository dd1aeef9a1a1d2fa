"""``mredit data convert``: turn a source dataset (or existing shards) into project shards, optionally with rewards.

Examples::

    mredit data convert --src_format ip2p-folder --src clip-filtered-dataset --out shards/ip2p --seeds first \\
        --rewards RewardEdit20K.json
    mredit data convert --src_format ip2p-parquet --src hf/instructpix2pix/data --out shards/ip2p --image_format jpg
    mredit data convert --src_format magicbrush --src MagicBrush/data/dev-00000-of-00001.parquet --out shards/mb-dev
    mredit data convert --src_format shards --src shards/synth --rewards annotations.jsonl --out shards/synth-judged
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path
from typing import Any

from mredit.data.formats import BadRecord, reader_for
from mredit.data.rewards import RewardJoiner, load_rewards
from mredit.data.shards import MANIFEST_NAME, ShardSetWriter, read_manifest

log = logging.getLogger(__name__)
SHOWN_KEYS = 5  # how many keys of each problem list are printed; the manifest has all of them


def convert(
    src_format: str,
    src: str | list[str],
    out: str | Path,
    shard_size: int = 1000,
    image_format: str = "png",
    rewards: str | None = None,
    seeds: str = "first",
    limit: int | None = None,
    prefix: str = "shard",
    command: str | None = None,
) -> dict[str, Any]:
    """Convert ``src`` (in format ``src_format``, one of ``FORMAT_NAMES``) into shards under ``out``; return the
    manifest written there. Unusable source records are skipped and listed in the manifest's provenance."""
    out = Path(out)
    src = [src] if isinstance(src, str) else [str(s) for s in src]
    resolved_src = [str(Path(s).resolve()) if Path(s).exists() else s for s in src]
    if (out / MANIFEST_NAME).exists() and any(Path(s).resolve() == out.resolve() for s in src if Path(s).exists()):
        raise ValueError(f"--out {out} is the same as the source; write the converted shards elsewhere")
    joiner = RewardJoiner(load_rewards(rewards)) if rewards else None
    records = reader_for(src_format)(src, seeds=seeds)
    bad: list[dict[str, str]] = []
    provenance: dict[str, Any] = {
        "command": command or "mredit data convert",
        "source": {
            "format": src_format,
            "src": resolved_src,
            **({"seeds": seeds} if src_format == "ip2p-folder" else {}),
        },
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


def print_summary(manifest: dict[str, Any], out: str | Path) -> None:
    """Print what ``convert`` wrote: counts, skipped source records, the reward join report."""
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
