"""``mredit judge annotate``: score every triplet of a shard set and append one record per sample.

A producer streams raw samples (``mredit.data.reader``: a shard that cannot be read is skipped and counted in the
summary's ``skipped``); each pending sample is decoded (a corrupt one becomes an ``invalid`` record naming the
problem) and judged under a semaphore of ``concurrency`` in-flight requests; records are appended by
the single event-loop thread as results arrive. A fatal judge error (no quota, bad key) stops the run: in-flight
requests are cancelled and nothing is written for them, so a re-run resumes exactly there.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from PIL import Image
from tqdm import tqdm

from mredit.data.reader import ShardSpec, SkipCounter, iter_raw_samples, resolve_shards
from mredit.judge.base import Judge, Judgement, JudgeRequest, JudgeResult
from mredit.judge.cost import Price, estimate
from mredit.judge.records import (
    RETRIED_ON_RESUME,
    RecordWriter,
    done_ids,
    final_view,
    make_record,
    read_records,
    record_id,
)
from mredit.judge.retry import FatalJudgeError
from mredit.schema import SOURCE_PREFIX, TARGET_PREFIX, Reward, SampleError, decode_sample, find_image_member

RECORDS_NAME = "annotations.jsonl"


async def run_requests(
    requests: Iterable[JudgeRequest | JudgeResult],
    judge: Judge,
    writer: RecordWriter,
    concurrency: int,
    record_extras: dict[str, dict[str, Any]] | None = None,
) -> tuple[Counter, float]:
    """Judge each request (a ready ``JudgeResult`` is written as is) and append its record, plus
    ``record_extras[key]`` when given. Returns the status counts and the summed cost of this run."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    fingerprint = judge.fingerprint
    counts: Counter = Counter()
    cost = [0.0]
    slots = asyncio.Semaphore(concurrency)
    fatal: list[BaseException] = []
    tasks: set[asyncio.Task] = set()

    progress = tqdm(desc="judging", unit="sample", disable=None, dynamic_ncols=True)  # off when not a terminal

    def write(result: JudgeResult) -> None:
        writer.append({**make_record(result, fingerprint), **(record_extras or {}).get(result.key, {})})
        counts[result.status] += 1
        cost[0] += result.cost_usd
        progress.update()

    async def one(request: JudgeRequest) -> None:
        try:
            write(await judge.judge(request))
        except FatalJudgeError as e:
            fatal.append(e)
        except Exception as e:  # a judge bug must not lose the sample: record it (retried on the next run)
            write(JudgeResult(request.key, "error", error=f"judge crashed: {type(e).__name__}: {e}"[:300]))
        finally:
            slots.release()

    try:
        for item in requests:
            if isinstance(item, JudgeResult):
                write(item)
                continue
            await slots.acquire()
            if fatal:
                slots.release()
                break
            task = asyncio.create_task(one(item))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        while tasks and not fatal:
            await asyncio.wait(set(tasks), return_when=asyncio.FIRST_COMPLETED)
    finally:
        progress.close()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await judge.aclose()
    if fatal:
        done = sum(counts.values())
        raise RuntimeError(f"{fatal[0]} ({done} records written this run; fix it and re-run to resume)")
    return counts, cost[0]


def pending_requests(
    raw_samples: Iterable[dict[str, Any]], fingerprint: dict[str, Any], skip: set[str], stats: Counter
) -> Iterable[JudgeRequest | JudgeResult]:
    """Decode the samples that have no terminal record yet; a corrupt sample becomes an ``invalid`` result."""
    seen: set[str] = set()
    for raw in raw_samples:
        key = str(raw["__key__"])
        rid = record_id(key, fingerprint)
        stats["inputs"] += 1
        if rid in seen:
            stats["duplicate_keys"] += 1
            continue
        seen.add(rid)
        if rid in skip:
            stats["skipped_done"] += 1
            continue
        try:
            sample = decode_sample(raw)
        except SampleError as e:
            yield JudgeResult(key=key, status="invalid", error=f"bad sample: {e}")
            continue
        yield JudgeRequest(
            key=key, source=sample.source, instruction=sample.instruction, edited=sample.target, meta=sample.meta
        )


def _limited(samples: Iterable[dict[str, Any]], limit: int | None) -> Iterable[dict[str, Any]]:
    for i, sample in enumerate(samples):
        if limit is not None and i >= limit:
            return
        yield sample


def annotate(
    shards: ShardSpec,
    out_dir: str | Path,
    judge: Judge,
    concurrency: int = 16,
    limit: int | None = None,
    retry_failed: bool = False,
    fsync_interval: float = 0.5,
) -> dict[str, Any]:
    """Annotate ``shards`` into ``out_dir/annotations.jsonl``; returns a summary (counts, cost, time, and
    ``skipped``: unreadable shards by reason, see ``mredit.data.reader.SKIP_REASONS``)."""
    paths = resolve_shards(shards)
    counter = SkipCounter()
    out_path = Path(out_dir) / RECORDS_NAME
    started = time.perf_counter()
    stats: Counter = Counter()
    with RecordWriter(out_path, fsync_interval) as writer:
        records, unreadable = read_records(out_path)
        retry = ("error", "refused", "invalid") if retry_failed else RETRIED_ON_RESUME
        skip = done_ids(records, retry)
        raws = _limited(iter_raw_samples(paths, counter), limit)
        requests = pending_requests(raws, judge.fingerprint, skip, stats)
        counts, cost = asyncio.run(run_requests(requests, judge, writer, concurrency))
    records, _ = read_records(out_path)
    view = final_view(records)
    return {
        "records": str(out_path),
        "inputs": stats["inputs"],
        "skipped_done": stats["skipped_done"],
        "duplicate_keys": stats["duplicate_keys"],
        "unreadable_lines": unreadable,
        "skipped": counter.nonzero(),
        "this_run": dict(counts),
        "final": dict(Counter(r["status"] for r in view.values())),
        "cost_usd_this_run": round(cost, 6),
        "seconds": round(time.perf_counter() - started, 3),
    }


def dry_run(
    shards: ShardSpec,
    model: str,
    detail: str,
    max_side: int,
    mode: str = "combined",
    limit: int | None = None,
    price: Price | None = None,
) -> dict[str, Any]:
    """Estimate tokens and cost from image headers and instructions only (no API call, no image decode)."""
    sizes, instructions, bad = [], [], 0
    urls, counter = resolve_shards(shards), SkipCounter()
    for raw in _limited(iter_raw_samples(urls, counter), limit):
        try:
            pair = tuple(
                Image.open(io.BytesIO(raw[find_image_member(raw, prefix)])).size
                for prefix in (SOURCE_PREFIX, TARGET_PREFIX)
            )
            instructions.append(raw["txt"].decode("utf-8"))
        except (SampleError, KeyError, OSError, UnicodeDecodeError):
            bad += 1
            continue
        sizes.append(pair)
    result = estimate(sizes, instructions, model, detail, max_side, mode, price)
    result["unreadable_samples"] = bad
    result["skipped"] = counter.nonzero()
    return result


def export_rewards(records_path: str | Path, out_file: str | Path, fmt: str = "rewardedit") -> dict[str, Any]:
    """Write ``ok`` judgements as RewardEdit JSON (``{key: [{Score, Negative Prompt} x3]}``) or reward.json
    objects (``{key: {following: {score, feedback}, ..., judge: fingerprint}}``); keys sorted, deterministic."""
    if fmt not in ("rewardedit", "reward-json"):
        raise ValueError(f"unknown export format {fmt!r}; expected rewardedit or reward-json")
    if not Path(records_path).is_file():
        raise FileNotFoundError(f"records file not found: {records_path}")
    records, unreadable = read_records(records_path)
    latest: dict[str, dict[str, Any]] = {}
    statuses: Counter = Counter()
    for record in final_view(records).values():
        statuses[record["status"]] += 1
        if record["status"] == "ok":
            latest[record["key"]] = record  # several fingerprints: the last judged wins
    out: dict[str, Any] = {}
    for key in sorted(latest):
        reward: Reward = Judgement.from_dict(latest[key]["judgement"]).to_reward(latest[key]["fingerprint"])
        out[key] = reward.to_rewardedit() if fmt == "rewardedit" else reward.to_dict()
    Path(out_file).parent.mkdir(parents=True, exist_ok=True)
    Path(out_file).write_text(json.dumps(out, indent=1, ensure_ascii=False))
    return {"exported": len(out), "statuses": dict(statuses), "unreadable_lines": unreadable, "out": str(out_file)}
