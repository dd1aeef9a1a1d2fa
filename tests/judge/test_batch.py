"""Batch API mode against the local server's files/batches endpoints."""

from __future__ import annotations

import json
import random

from fake_server import expected_scores
from judge_helpers import tiny_image, write_corrupt_tar, write_shards, write_truncated_tar

from mredit.judge import batch
from mredit.judge.base import JudgeRequest
from mredit.judge.records import final_view, read_records
from mredit.schema import PERSPECTIVES


def test_batch_submit_status_collect_resubmit(tmp_path, fake_server, make_judge):
    instructions = ["make it red", "add a moon", "x #fault=batcherror", "y #fault=batchmissing", "z #fault=refusal"]
    shards = write_shards(tmp_path / "shards", instructions)
    bad = write_corrupt_tar(tmp_path / "bad.tar")
    cut = write_truncated_tar(tmp_path / "cut.tar", shards / "shard-000000.tar")
    out = tmp_path / "out"
    summary = batch.submit([str(shards), str(bad), str(cut)], out, make_judge(), max_requests=2)
    assert summary["new_batches"] == 3 and summary["new_requests"] == 5 and summary["invalid_inputs"] == 1
    assert summary["skipped"] == {"unreadable_shard": 1}
    state = json.loads((out / batch.STATE_NAME).read_text())
    assert all(c["batch_id"] and c["file_id"] for c in state["chunks"])
    lines = (out / state["chunks"][0]["file"]).read_text().splitlines()
    first = json.loads(lines[0])
    assert first["url"] == "/v1/chat/completions" and len(first["custom_id"]) == 64
    assert first["body"]["response_format"]["json_schema"]["strict"] is True

    # submitting again while batches are in flight adds nothing
    assert batch.submit([str(shards), str(bad)], out, make_judge(), max_requests=2)["new_requests"] == 0
    assert batch.collect(out, make_judge())["collected"] == {}  # nothing finished yet
    batch.status(out, make_judge())  # -> in_progress
    polled = batch.status(out, make_judge())  # -> completed
    assert {b["status"] for b in polled["batches"]} == {"completed"}
    collected = batch.collect(out, make_judge())["collected"]
    assert collected == {"ok": 2, "error": 1, "refused": 1, "missing": 1}

    view = {r["key"]: r for r in final_view(read_records(out / "annotations.jsonl")[0]).values()}
    assert view["s000"]["status"] == "ok" and view["broken"]["status"] == "invalid"
    expected = expected_scores("add a moon")
    assert [view["s001"]["judgement"][p]["score"] for p in PERSPECTIVES] == [expected[p] for p in PERSPECTIVES]
    assert "s003" not in view  # missing from both files: no record, re-submitted below
    assert view["s000"]["cost_usd"] > 0

    # collecting twice is a no-op; a re-submit takes the error and the missing sample
    assert batch.collect(out, make_judge())["collected"] == {}
    again = batch.submit([str(shards), str(bad)], out, make_judge())
    assert again["new_requests"] == 2 and again["new_batches"] == 1


def test_batch_run_and_byte_limit(tmp_path, fake_server, make_judge):
    shards = write_shards(tmp_path / "shards", ["make it red", "add a moon", "remove the cat"])
    one_line = len(json.dumps(make_judge().batch_body(_request("make it red")))) + 200
    result = batch.run([str(shards)], tmp_path / "out", make_judge(), poll_interval=0.01, max_bytes=int(1.5 * one_line))
    assert result["submitted"]["new_batches"] == 3  # the byte cap allows one request per file
    assert result["collected"] == {"ok": 3}
    records, _ = read_records(tmp_path / "out/annotations.jsonl")
    assert sorted(r["key"] for r in records) == ["s000", "s001", "s002"]


def _request(instruction: str) -> JudgeRequest:
    rng = random.Random(0)
    return JudgeRequest("k", tiny_image(rng), instruction, tiny_image(rng))
