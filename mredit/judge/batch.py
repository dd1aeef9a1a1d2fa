"""Annotation through the OpenAI Batch API: ``submit``, ``status``, ``collect`` (or ``run`` for all three).

Pending samples (no terminal record in ``annotations.jsonl`` and not already in a batch) become Batch-API JSONL
files cut at ``max_requests`` lines or ``max_bytes`` (API limits: 50,000 requests, 200 MB); each line's
``custom_id`` is the record's idempotency id. ``DIR/batch_state.json`` is rewritten atomically after every step
(chunk planned, file uploaded, batch created, polled, collected), so any step can be re-run after a crash.
Output lines arrive in arbitrary order and are joined on ``custom_id``; lines of the error file and non-200
responses become ``error`` records (re-submitted next time); keys missing from both files get no record and
are re-submitted too. Records are the same as in sync mode, with the batch discount in ``cost_usd``.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from mredit.data.reader import ShardSpec, SkipCounter, iter_raw_samples, resolve_shards
from mredit.judge.annotate import RECORDS_NAME, pending_requests
from mredit.judge.base import JudgeRequest, JudgeResult
from mredit.judge.openai_judge import OpenAIJudge
from mredit.judge.records import RecordWriter, done_ids, make_record, read_records, record_id

STATE_NAME = "batch_state.json"
ENDPOINT = "/v1/chat/completions"
TERMINAL_BATCH_STATUSES = ("completed", "expired", "cancelled", "failed")


def _load_state(out_dir: Path, fingerprint: dict[str, Any] | None) -> dict[str, Any]:
    path = out_dir / STATE_NAME
    if not path.is_file():
        if fingerprint is None:
            raise FileNotFoundError(f"no {STATE_NAME} in {out_dir}: run 'mredit judge batch submit' first")
        return {"format": "mredit-batch/1", "fingerprint": fingerprint, "chunks": []}
    state = json.loads(path.read_text())
    if fingerprint is not None and state["fingerprint"] != fingerprint:
        raise ValueError(f"{path} was made by another judge ({state['fingerprint']}); use a new --out")
    return state


def _save_state(out_dir: Path, state: dict[str, Any]) -> None:
    tmp = out_dir / (STATE_NAME + ".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, out_dir / STATE_NAME)


def _require_batch_judge(judge: Any) -> OpenAIJudge:
    if not isinstance(judge, OpenAIJudge) or judge.provider == "azure":
        raise ValueError("batch mode needs the openai or compatible judge (Azure Global Batch is not supported)")
    return judge


def plan_chunks(
    requests: list[JudgeRequest], judge: OpenAIJudge, out_dir: Path, first_chunk: int, max_requests: int, max_bytes: int
) -> tuple[list[dict[str, Any]], list[JudgeResult]]:
    """Write request files; returns the chunk entries and results for requests too large for any file."""
    chunks: list[dict[str, Any]] = []
    too_large: list[JudgeResult] = []
    handle, chunk = None, None
    (out_dir / "batch").mkdir(parents=True, exist_ok=True)
    fingerprint = judge.fingerprint
    for request in requests:
        custom_id = record_id(request.key, fingerprint)
        line = json.dumps(
            {"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": judge.batch_body(request)}
        )
        size = len(line.encode("utf-8")) + 1
        if size > max_bytes:
            too_large.append(
                JudgeResult(request.key, "invalid", error=f"request of {size} bytes exceeds the batch file limit")
            )
            continue
        if chunk is None or chunk["requests"] >= max_requests or chunk["bytes"] + size > max_bytes:
            if handle is not None:
                handle.close()
            number = first_chunk + len(chunks)
            chunk = {
                "chunk": number,
                "file": f"batch/chunk-{number:06d}.jsonl",
                "keys": {},
                "requests": 0,
                "bytes": 0,
                "status": "planned",
                "file_id": None,
                "batch_id": None,
                "collected": False,
            }
            chunks.append(chunk)
            handle = open(out_dir / chunk["file"], "w", encoding="utf-8")
        handle.write(line + "\n")
        chunk["keys"][custom_id] = request.key
        chunk["requests"] += 1
        chunk["bytes"] += size
    if handle is not None:
        handle.close()
    return chunks, too_large


async def _upload_and_create(client: Any, out_dir: Path, state: dict[str, Any]) -> None:
    for chunk in state["chunks"]:
        if chunk["file_id"] is None:
            data = (out_dir / chunk["file"]).read_bytes()
            uploaded = await client.files.create(
                file=(Path(chunk["file"]).name, data, "application/jsonl"), purpose="batch"
            )
            chunk["file_id"] = uploaded.id
            _save_state(out_dir, state)
        if chunk["batch_id"] is None:
            batch = await client.batches.create(
                input_file_id=chunk["file_id"],
                endpoint=ENDPOINT,
                completion_window="24h",
                metadata={"mredit_chunk": str(chunk["chunk"])},
            )
            chunk["batch_id"], chunk["status"] = batch.id, batch.status
            _save_state(out_dir, state)


def submit(
    shards: ShardSpec,
    out_dir: str | Path,
    judge: Any,
    max_requests: int = 50_000,
    max_bytes: int = 190_000_000,
    limit: int | None = None,
) -> dict[str, Any]:
    """Plan files for pending samples, upload them and create one batch per file (idempotent). Unreadable shards
    are skipped and counted (``skipped`` in the summary)."""
    judge, out_dir = _require_batch_judge(judge), Path(out_dir)
    if max_requests < 1 or max_bytes < 1:
        raise ValueError("max_requests and max_bytes must be >= 1")
    paths, counter = resolve_shards(shards), SkipCounter()
    with RecordWriter(out_dir / RECORDS_NAME) as writer:
        state = _load_state(out_dir, judge.fingerprint)
        records, _ = read_records(out_dir / RECORDS_NAME)
        in_batches = {cid for c in state["chunks"] if not c["collected"] for cid in c["keys"]}
        stats: Counter = Counter()
        raw = (s for i, s in enumerate(iter_raw_samples(paths, counter)) if limit is None or i < limit)
        requests: list[JudgeRequest] = []
        for item in pending_requests(raw, judge.fingerprint, done_ids(records) | in_batches, stats):
            if isinstance(item, JudgeResult):
                writer.append(make_record(item, judge.fingerprint))
                stats["invalid"] += 1
            else:
                requests.append(item)
        chunks, too_large = plan_chunks(requests, judge, out_dir, len(state["chunks"]), max_requests, max_bytes)
        for result in too_large:
            writer.append(make_record(result, judge.fingerprint))
        state["chunks"].extend(chunks)
        _save_state(out_dir, state)  # planned before upload: a crash here resumes at the upload
    asyncio.run(_with_client(judge, lambda client: _upload_and_create(client, out_dir, state)))
    return {
        "new_batches": len(chunks),
        "new_requests": sum(c["requests"] for c in chunks),
        "skipped_done_or_in_flight": stats["skipped_done"],
        "invalid_inputs": stats["invalid"] + len(too_large),
        "skipped": counter.nonzero(),
        "batches": [(c["batch_id"], c["status"]) for c in state["chunks"]],
    }


async def _with_client(judge: OpenAIJudge, action: Any) -> Any:
    try:
        return await action(judge.client)
    finally:
        await judge.aclose()


async def _poll(client: Any, out_dir: Path, state: dict[str, Any]) -> None:
    for chunk in state["chunks"]:
        if chunk["batch_id"] is None or chunk["status"] in TERMINAL_BATCH_STATUSES:
            continue
        batch = await client.batches.retrieve(chunk["batch_id"])
        chunk["status"] = batch.status
        chunk["output_file_id"] = batch.output_file_id
        chunk["error_file_id"] = batch.error_file_id
        counts = getattr(batch, "request_counts", None)
        chunk["request_counts"] = counts.model_dump() if counts is not None else None
    _save_state(out_dir, state)


def status(out_dir: str | Path, judge: Any) -> dict[str, Any]:
    """Poll every unfinished batch and report the state of all of them."""
    judge, out_dir = _require_batch_judge(judge), Path(out_dir)
    state = _load_state(out_dir, judge.fingerprint)
    asyncio.run(_with_client(judge, lambda client: _poll(client, out_dir, state)))
    return {
        "batches": [
            {k: c.get(k) for k in ("chunk", "batch_id", "status", "requests", "collected")} for c in state["chunks"]
        ]
    }


def _results_from_files(chunk: dict[str, Any], output: bytes, errors: bytes, judge: OpenAIJudge, counts: Counter):
    seen: set[str] = set()
    for line in output.splitlines() + errors.splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        key = chunk["keys"].get(entry.get("custom_id"))
        if key is None or entry["custom_id"] in seen:
            counts["unknown_or_repeated_lines"] += 1
            continue
        seen.add(entry["custom_id"])
        response = entry.get("response") or {}
        if entry.get("error") or response.get("status_code") != 200:
            error = entry.get("error") or (response.get("body") or {}).get("error") or {}
            message = error.get("message", "no message") if isinstance(error, dict) else str(error)
            yield JudgeResult(key, "error", error=f"batch request failed ({response.get('status_code')}): {message}")
        else:
            yield judge.result_from_body(key, response["body"])
    missing = len(set(chunk["keys"]) - seen)
    if missing:
        counts["missing"] += missing


async def _collect(client: Any, out_dir: Path, state: dict[str, Any], judge: OpenAIJudge) -> Counter:
    counts: Counter = Counter()
    with RecordWriter(out_dir / RECORDS_NAME) as writer:
        records, _ = read_records(out_dir / RECORDS_NAME)
        already = done_ids(records)
        for chunk in state["chunks"]:
            if chunk["collected"] or chunk["status"] not in TERMINAL_BATCH_STATUSES:
                continue
            # download first, parse second: batch files expire
            output = (
                (await client.files.content(chunk["output_file_id"])).content if chunk.get("output_file_id") else b""
            )
            errors = (await client.files.content(chunk["error_file_id"])).content if chunk.get("error_file_id") else b""
            for result in _results_from_files(chunk, output, errors, judge, counts):
                record = make_record(result, judge.fingerprint)
                if record["id"] in already:  # collected before a crash that lost the state update
                    continue
                writer.append(record)
                counts[result.status] += 1
            chunk["collected"] = True
            _save_state(out_dir, state)
    return counts


def collect(out_dir: str | Path, judge: Any) -> dict[str, Any]:
    """Download finished batches and append their records; missing keys are re-submitted by the next submit."""
    judge, out_dir = _require_batch_judge(judge), Path(out_dir)
    state = _load_state(out_dir, judge.fingerprint)
    counts = asyncio.run(_with_client(judge, lambda client: _collect(client, out_dir, state, judge)))
    waiting = [c["batch_id"] for c in state["chunks"] if not c["collected"]]
    return {"collected": dict(counts), "not_finished": waiting}


def run(
    shards: ShardSpec,
    out_dir: str | Path,
    judge: Any,
    poll_interval: float = 60.0,
    max_requests: int = 50_000,
    max_bytes: int = 190_000_000,
    limit: int | None = None,
) -> dict[str, Any]:
    """Submit, poll until every batch is finished, collect. Safe to interrupt and re-run."""
    submitted = submit(shards, out_dir, judge, max_requests, max_bytes, limit)
    while True:
        polled = status(out_dir, judge)
        if all(b["status"] in TERMINAL_BATCH_STATUSES for b in polled["batches"]):
            break
        time.sleep(poll_interval)
    collected = collect(out_dir, judge)
    return {"submitted": submitted, "collected": collected["collected"]}
