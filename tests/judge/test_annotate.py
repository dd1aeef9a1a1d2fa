"""End-to-end annotation against the local OpenAI-compatible server: statuses, resume, kill, export, secrets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from fake_server import FakeJudgeServer, expected_scores
from judge_helpers import API_KEY, write_corrupt_tar, write_shards, write_truncated_tar

from mredit.judge.annotate import annotate, dry_run, export_rewards
from mredit.judge.openai_judge import OpenAIJudge
from mredit.judge.records import read_records
from mredit.judge.retry import RetryPolicy
from mredit.schema import PERSPECTIVES

REPO = Path(__file__).resolve().parents[2]
FAULTY = [
    "make the sky red",
    "add a hat #fault=429x1",
    "remove the dog #fault=500x2",
    "turn it to winter #fault=timeout",
    "paint it #fault=refusal",
    "make it longer #fault=length",
    "shy at first #fault=refusalx1",
    "blur it #fault=malformed",
    "zoom in #fault=down",
]
EXPECTED = ["ok", "ok", "ok", "ok", "refused", "invalid", "ok", "invalid", "error"]


def _final(path: Path) -> dict[str, dict]:
    records, _ = read_records(path)
    return {r["key"]: r for r in records}  # last-wins


def test_every_input_ends_in_one_terminal_record(tmp_path, fake_server, make_judge):
    shards = write_shards(tmp_path / "shards", FAULTY)
    bad_tar = write_corrupt_tar(tmp_path / "bad.tar")
    summary = annotate([str(shards), str(bad_tar)], tmp_path / "out", make_judge(), concurrency=4)
    records, unreadable = read_records(tmp_path / "out/annotations.jsonl")
    assert unreadable == 0 and len(records) == len(FAULTY) + 1 == summary["inputs"]
    by_key = {r["key"]: r for r in records}
    assert [by_key[f"s{i:03d}"]["status"] for i in range(len(FAULTY))] == EXPECTED
    assert by_key["broken"]["status"] == "invalid" and "not a readable image" in by_key["broken"]["error"]
    ok = by_key["s000"]
    assert ok["judgement"]["following"]["score"] == expected_scores(FAULTY[0])["following"]
    assert set(ok["fingerprint"]) >= {"provider", "model", "prompt_version", "image_size", "detail"}
    assert ok["cost_usd"] > 0 and ok["usage"]["prompt_tokens"] > 0
    assert by_key["s005"]["raw"] and by_key["s004"]["judgement"] is None
    assert by_key["s004"]["usage"]["attempts"] == 2 and "mitigation" in by_key["s004"]["error"]  # retried once
    assert by_key["s006"]["usage"]["attempts"] == 2  # refused once, then answered with the mitigation note
    for record in records:  # never a fabricated score
        assert (record["judgement"] is not None) == (record["status"] == "ok")

    requests_before = fake_server.chat_requests
    again = annotate([str(shards), str(bad_tar)], tmp_path / "out", make_judge(), concurrency=4)
    # only the transient "error" sample is re-judged (and fails again); everything else is skipped
    assert again["skipped_done"] == len(FAULTY) and again["this_run"] == {"error": 1}
    assert fake_server.chat_requests - requests_before == 3  # the 3 attempts of the "down" sample
    assert again["final"] == dict(Counter(EXPECTED + ["invalid"]))


def test_unreadable_shards_are_skipped_and_counted(tmp_path, fake_server, make_judge):
    shards = write_shards(tmp_path / "shards", [f"edit {i}" for i in range(6)])  # 4 + 2 samples
    plain = tmp_path / "plain"  # a directory without manifest.json: its *.tar files
    plain.mkdir()
    (plain / "a.tar").write_bytes((shards / "shard-000000.tar").read_bytes())
    write_truncated_tar(plain / "b.tar", shards / "shard-000000.tar")
    spec = [str(plain), f"pipe:cat {shards / 'shard-000001.tar'}", "pipe:exit 3"]
    summary = annotate(spec, tmp_path / "out", make_judge(), concurrency=4)
    assert summary["inputs"] == 6 and summary["final"] == {"ok": 6}
    assert summary["skipped"] == {"unreadable_shard": 2}  # the truncated shard and the failing command
    estimate = dry_run(spec, "gpt-4o", "low", 512)
    assert estimate["samples"] == 6 and estimate["skipped"] == {"unreadable_shard": 2}
    assert annotate([str(shards)], tmp_path / "out2", make_judge())["skipped"] == {}


def test_transient_error_is_superseded_on_resume(tmp_path, fake_server, make_judge):
    shards = write_shards(tmp_path / "shards", ["flaky #fault=500x3", "fine"])
    annotate([str(shards)], tmp_path / "out", make_judge(), concurrency=2)
    assert _final(tmp_path / "out/annotations.jsonl")["s000"]["status"] == "error"
    summary = annotate([str(shards)], tmp_path / "out", make_judge(), concurrency=2)
    records, _ = read_records(tmp_path / "out/annotations.jsonl")
    assert len(records) == 3 and summary["final"] == {"ok": 2}
    assert _final(tmp_path / "out/annotations.jsonl")["s000"]["status"] == "ok"


@pytest.mark.parametrize(
    ("fault", "api_key", "message"), [("quota", API_KEY, "insufficient_quota"), ("", "wrong", "401")]
)
def test_fatal_errors_stop_the_run_resumably(tmp_path, fake_server, make_judge, fault, api_key, message):
    instructions = [f"edit {i}" for i in range(6)] + [f"edit 6 #fault={fault}"] if fault else ["edit"] * 3
    shards = write_shards(tmp_path / "shards", instructions)
    with pytest.raises(RuntimeError, match=message) as info:
        annotate([str(shards)], tmp_path / "out", make_judge(api_key=api_key), concurrency=1)
    assert "re-run to resume" in str(info.value) and API_KEY not in str(info.value)
    records, _ = read_records(tmp_path / "out/annotations.jsonl")
    assert all(r["status"] == "ok" for r in records)  # nothing written for the fatal request


def test_lenient_fallback_when_structured_output_is_unsupported(tmp_path, make_judge, fake_server):
    fake_server.structured = False
    shards = write_shards(tmp_path / "shards", ["make it red", "add a moon"])
    summary = annotate([str(shards)], tmp_path / "out", make_judge(), concurrency=2)
    assert summary["final"] == {"ok": 2}
    record = _final(tmp_path / "out/annotations.jsonl")["s001"]
    assert record["judgement"]["quality"]["score"] == expected_scores("add a moon")["quality"]  # from "n/5"


def test_azure_deployment_path_and_header(tmp_path, fake_server, make_judge):
    judge = make_judge(provider="azure", base_url=None, azure_endpoint=fake_server.endpoint, model="my-gpt4o")
    shards = write_shards(tmp_path / "shards", ["make it red"])
    assert annotate([str(shards)], tmp_path / "out", judge)["final"] == {"ok": 1}


def test_export_rewardedit_and_reward_json(tmp_path, fake_server, make_judge):
    instructions = ["make it red", "add a moon", "x #fault=refusal"]
    shards = write_shards(tmp_path / "shards", instructions)
    annotate([str(shards)], tmp_path / "out", make_judge())
    summary = export_rewards(tmp_path / "out/annotations.jsonl", tmp_path / "rewards.json")
    assert summary["exported"] == 2 and summary["statuses"] == {"ok": 2, "refused": 1}
    data = json.loads((tmp_path / "rewards.json").read_text())
    assert sorted(data) == ["s000", "s001"]
    expected = expected_scores("add a moon")
    assert [e["Score"] for e in data["s001"]] == [expected[p] for p in PERSPECTIVES]
    assert all(set(e) == {"Score", "Negative Prompt"} for e in data["s001"])
    export_rewards(tmp_path / "out/annotations.jsonl", tmp_path / "reward_json.json", fmt="reward-json")
    reward = json.loads((tmp_path / "reward_json.json").read_text())["s000"]
    assert reward["judge"]["model"] == "gpt-4o" and "feedback" in reward["following"]


def _cli(args: list[str], env: dict[str, str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mredit", "judge", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


@pytest.mark.slow
def test_sigkill_and_resume_matches_an_uninterrupted_run(tmp_path):
    server = FakeJudgeServer(api_key=API_KEY, latency=0.05).start()
    try:
        env = {**os.environ, "OPENAI_API_KEY": API_KEY, "OPENAI_BASE_URL": server.base_url}
        kinds = ["", " #fault=refusal", " #fault=malformed", " #fault=429x1"]
        instructions = [f"edit number {i}{kinds[i % 4]}" for i in range(40)]
        shards = write_shards(tmp_path / "shards", instructions)
        common = ["annotate", "--shards", str(shards), "--concurrency", "2", "--lvlm.retry_base", "0.01"]

        killed_out = tmp_path / "killed"
        proc = _cli([*common, "--out", str(killed_out)], env)
        records_file = killed_out / "annotations.jsonl"
        deadline = time.time() + 30
        while time.time() < deadline and (not records_file.exists() or records_file.read_bytes().count(b"\n") < 8):
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        partial = records_file.read_bytes().count(b"\n")
        assert 8 <= partial < len(instructions)

        resumed = _cli([*common, "--out", str(killed_out)], env)
        out_resumed, err_resumed = resumed.communicate(timeout=60)
        assert resumed.returncode == 0, err_resumed
        clean_judge = OpenAIJudge(base_url=server.base_url, api_key=API_KEY, retry=RetryPolicy(base_delay=0.01))
        annotate([str(shards)], tmp_path / "clean", clean_judge, concurrency=8)

        killed_records, bad = read_records(records_file)
        clean_records, _ = read_records(tmp_path / "clean/annotations.jsonl")
        assert bad == 0 and len(killed_records) == len({r["id"] for r in killed_records}) == len(instructions)
        assert sorted((r["key"], r["status"]) for r in killed_records) == sorted(
            (r["key"], r["status"]) for r in clean_records
        )
        everything = out_resumed + err_resumed
        for path in [*killed_out.iterdir(), *(tmp_path / "clean").iterdir()]:
            everything += path.read_text()
        assert API_KEY not in everything
    finally:
        server.stop()


def test_dry_run_estimates_without_calling_the_api(tmp_path, fake_server):
    shards = write_shards(tmp_path / "shards", ["make it red"] * 3)
    proc = _cli(["annotate", "--shards", str(shards), "--dry_run", "true", "--lvlm.detail", "low"], {**os.environ})
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    estimate = json.loads(out)
    assert estimate["samples"] == 3 and estimate["usd_sync"] > 0 and estimate["prices_as_of"]
    assert estimate["usd_batch"] == pytest.approx(estimate["usd_sync"] / 2)
    assert fake_server.chat_requests == 0


def test_concurrency_is_bounded(tmp_path, fake_server, make_judge):
    fake_server.latency = 0.05
    shards = write_shards(tmp_path / "shards", [f"edit {i}" for i in range(12)])
    annotate([str(shards)], tmp_path / "out", make_judge(), concurrency=3)
    assert 2 <= fake_server.peak_in_flight <= 3


def test_a_crashing_judge_records_errors_instead_of_losing_samples(tmp_path):
    from mredit.judge.base import Judge

    class Broken(Judge):
        fingerprint = {"provider": "broken"}

        async def judge(self, request):
            raise KeyError("bug")

    shards = write_shards(tmp_path / "shards", ["a", "b"])
    summary = annotate([str(shards)], tmp_path / "out", Broken())
    assert summary["final"] == {"error": 2}
    assert "judge crashed: KeyError" in read_records(tmp_path / "out/annotations.jsonl")[0][0]["error"]


def test_cli_errors_are_one_line_and_export_works(tmp_path, fake_server, make_judge, capsys, monkeypatch):
    from mredit.cli import main

    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    shards = write_shards(tmp_path / "shards", ["make it red"])
    assert (
        main(["judge", "annotate", "--shards", str(shards), "--out", str(tmp_path / "o"), "--judge", "compatible"]) == 1
    )
    assert "needs --lvlm.base_url" in capsys.readouterr().err
    assert main(["judge", "annotate", "--shards", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 1
    assert "shard not found" in capsys.readouterr().err
    annotate([str(shards)], tmp_path / "out", make_judge())
    records = str(tmp_path / "out/annotations.jsonl")
    assert main(["judge", "export", "--records", records, "--out", str(tmp_path / "r.json")]) == 0
    assert json.loads(capsys.readouterr().out)["exported"] == 1
    assert list(json.loads((tmp_path / "r.json").read_text())) == ["s000"]


def test_retry_after_header_overrides_the_backoff(tmp_path, fake_server, make_judge):
    from mredit.judge.retry import RetryPolicy

    shards = write_shards(tmp_path / "shards", ["add a hat #fault=429x2"])
    slow_backoff = RetryPolicy(max_attempts=3, base_delay=30.0, max_delay=30.0)  # would take up to a minute
    started = time.perf_counter()
    summary = annotate([str(shards)], tmp_path / "out", make_judge(retry=slow_backoff))
    assert summary["final"] == {"ok": 1} and time.perf_counter() - started < 10  # waited retry-after-ms: 10
    tight = RetryPolicy(max_attempts=3, base_delay=0.01, max_retry_after=0.001)  # refuses to wait that long
    summary = annotate(
        [str(write_shards(tmp_path / "s2", ["x #fault=429x1"]))], tmp_path / "o2", make_judge(retry=tight)
    )
    record = read_records(tmp_path / "o2/annotations.jsonl")[0][0]
    assert record["status"] == "error" and "server asked to wait" in record["error"]
