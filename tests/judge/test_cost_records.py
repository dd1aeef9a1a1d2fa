"""Cost goldens (OpenAI tile formula), idempotency ids, and the record store's crash rules."""

from __future__ import annotations

import json

import pytest

from mredit.judge.base import Judgement, JudgeResult, PerspectiveJudgement
from mredit.judge.cost import PRICES_AS_OF, estimate, image_tokens, price_for, usage_cost
from mredit.judge.records import RecordWriter, done_ids, final_view, make_record, read_records, record_id
from mredit.judge.retry import RetryPolicy, retry_after_seconds


@pytest.mark.parametrize(
    ("size", "detail", "tokens"),
    [
        ((512, 512), "high", 255),
        ((512, 683), "high", 425),
        ((1024, 1024), "high", 765),
        ((768, 768), "high", 765),
        ((2048, 4096), "high", 1105),
        ((4000, 3000), "low", 85),
    ],
)
def test_image_tokens(size, detail, tokens):
    assert image_tokens(*size, detail) == tokens


def test_prices_and_estimate():
    assert price_for("gpt-4o-2024-08-06").input_per_m == 2.5 and price_for("my-vllm-model") is None
    assert price_for("my-vllm-model", input_per_m=1.0).input_per_m == 1.0
    usage = {"prompt_tokens": 1_000_000, "completion_tokens": 100_000, "cached_tokens": 0}
    assert usage_cost(usage, price_for("gpt-4o")) == pytest.approx(3.5)
    assert usage_cost(usage, price_for("gpt-4o"), batch=True) == pytest.approx(1.75)
    sizes = [((512, 512), (512, 512))] * 10
    high = estimate(sizes, ["make it red"] * 10, "gpt-4o", "high", 512)
    low = estimate(sizes, ["make it red"] * 10, "gpt-4o", "low", 512)
    assert high["prompt_tokens"] - low["prompt_tokens"] == 10 * 2 * (255 - 85)
    assert 0.004 < high["usd_per_sample_sync"] < 0.009 and high["prices_as_of"] == PRICES_AS_OF
    big = estimate([((1024, 1024), (1024, 1024))], ["make it red"], "gpt-4o", "high", 512)
    assert big["prompt_tokens"] == high["prompt_tokens"] // 10  # resized to 512 before sending


def _result(key: str, status: str = "ok") -> JudgeResult:
    part = PerspectiveJudgement(4.0, True, "None")
    judgement = Judgement(part, part, part) if status == "ok" else None
    return JudgeResult(key, status, judgement, error=None if status == "ok" else "boom")


def test_record_ids_depend_on_the_fingerprint():
    fingerprint = {"provider": "openai", "model": "gpt-4o", "prompt_version": "v1"}
    assert record_id("k", fingerprint) == record_id("k", dict(reversed(list(fingerprint.items()))))
    assert record_id("k", fingerprint) != record_id("k", {**fingerprint, "model": "gpt-4.1"})


def test_torn_last_line_is_ignored_and_cut(tmp_path):
    fingerprint = {"model": "m"}
    path = tmp_path / "annotations.jsonl"
    with RecordWriter(path) as writer:
        writer.append(make_record(_result("a"), fingerprint))
        writer.append(make_record(_result("b", "error"), fingerprint))
    with open(path, "ab") as f:
        f.write(b'{"key": "c", "id": "trunc')  # a power loss mid-write
    records, bad = read_records(path)
    assert [r["key"] for r in records] == ["a", "b"] and bad == 0
    assert done_ids(records) == {record_id("a", fingerprint)}  # "error" is re-judged on resume
    with RecordWriter(path) as writer:  # reopening cuts the torn tail before appending
        writer.append(make_record(_result("b"), fingerprint))
    records, bad = read_records(path)
    assert bad == 0 and len(records) == 3
    assert {r["key"]: r["status"] for r in final_view(records).values()} == {"a": "ok", "b": "ok"}
    assert all(json.loads(line) for line in path.read_text().splitlines())


def test_one_writer_per_directory(tmp_path):
    with RecordWriter(tmp_path / "annotations.jsonl"):
        with pytest.raises(RuntimeError, match="lock held"):
            RecordWriter(tmp_path / "annotations.jsonl")


def test_retry_policy():
    class Headers(dict):
        pass

    assert retry_after_seconds(Headers({"retry-after-ms": "250"})) == 0.25
    assert retry_after_seconds(Headers({"retry-after": "3"})) == 3.0
    assert retry_after_seconds(Headers({})) is None
    policy = RetryPolicy(base_delay=1.0, max_delay=4.0)
    assert policy.delay(1, retry_after=7.0) == 7.0
    assert all(0.0 <= policy.delay(n) <= 4.0 for n in range(1, 10))


def test_error_descriptions_hide_echoed_keys():
    import httpx2
    import openai

    from mredit.judge.retry import describe

    response = httpx2.Response(401, request=httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions"))
    body = {
        "message": "Incorrect API key provided: sk-proj-abc***wxyz. Find your key at ...",
        "code": "invalid_api_key",
    }
    text = describe(openai.AuthenticationError("bad key", response=response, body=body))
    assert text.startswith("HTTP 401 (invalid_api_key)") and "sk-proj" not in text and "wxyz" not in text
