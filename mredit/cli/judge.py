"""``mredit judge annotate|export|eval|batch submit|status|collect|run|convert-benchmark``.

Each command prints its summary as JSON. The judge is an LVLM (``--judge openai|azure|compatible``, configured by
``--lvlm.<option>``) or the synthetic world's exact oracle (``--judge oracle``, registered by importing
``mredit.synth.oracle``).
"""

from __future__ import annotations

import json
from typing import Any, Literal

import mredit.synth.oracle  # noqa: F401  (registers the "oracle" judge)
from mredit.cli.parsing import CommandGroup
from mredit.judge import batch as batch_api
from mredit.judge.annotate import annotate as annotate_shards
from mredit.judge.annotate import dry_run as estimate_cost
from mredit.judge.annotate import export_rewards
from mredit.judge.benchmark import convert_real_edit
from mredit.judge.cost import price_for
from mredit.judge.evaluate import evaluate_edits
from mredit.judge.registry import LVLM_PROVIDERS, LVLMOptions, build_judge, judge_names

JudgeName = Literal[judge_names()]  # the LVLM providers and the registered judges (the oracle)
Mode = Literal["combined", "paper"]
BATCH_MODE = "combined"  # the Batch API path builds combined-prompt requests only (one request per sample)
DEFAULT_LVLM = LVLMOptions()


def _print(summary: dict[str, Any]) -> None:
    print(json.dumps(summary, indent=2))


def _protocol(judge: str, mode: Mode | None, prompts: str | None, default: Mode) -> tuple[Mode, dict[str, Any]]:
    """The built-in mode and the extra judge arguments for ``--mode`` / ``--prompts`` (one of them at most)."""
    if prompts is None:
        return mode or default, {}
    if mode is not None:
        raise ValueError("give --mode (a built-in protocol) or --prompts (a prompts file), not both")
    if judge not in LVLM_PROVIDERS:
        raise ValueError(f"the {judge} judge takes no --prompts")
    return default, {"prompts": prompts}


def annotate(
    shards: str | list[str],
    out: str | None = None,
    concurrency: int = 16,
    limit: int | None = None,
    dry_run: bool = False,
    retry_failed: bool = False,
    judge: JudgeName = "openai",
    mode: Mode | None = None,
    prompts: str | None = None,
    lvlm: LVLMOptions = DEFAULT_LVLM,
) -> None:
    """Score the triplets of shards into OUT/annotations.jsonl (resumable).

    Args:
        shards: Shard dir(s) with manifest.json, brace patterns or tars; several as '[a, b]'.
        out: Output dir (records go to OUT/annotations.jsonl); required except with --dry_run true.
        concurrency: Requests in flight.
        limit: Only the first N samples (a pilot).
        dry_run: Estimate tokens and cost only; no API call.
        retry_failed: Also re-judge refused and invalid samples.
        judge: The judge backend.
        mode: The built-in prompt protocol (default combined).
        prompts: A prompts file (YAML, docs/judge.md) instead of a built-in protocol; LVLM judges only.
        lvlm: Options of an LVLM judge.
    """
    shard_list = _as_list(shards)
    mode_, extra = _protocol(judge, mode, prompts, "combined")
    if dry_run:
        if prompts is not None:
            raise ValueError("--dry_run estimates the built-in protocols only; drop --prompts")
        price = price_for(lvlm.model, lvlm.price_in, lvlm.price_out)
        _print(estimate_cost(shard_list, lvlm.model, lvlm.detail, lvlm.max_side, mode_, limit, price))
        return
    if not out:
        raise ValueError("--out is required (except with --dry_run true)")
    judge_ = build_judge(judge, lvlm, mode_, **extra)
    _print(annotate_shards(shard_list, out, judge_, concurrency, limit, retry_failed))


def export(records: str, out: str, format: Literal["rewardedit", "reward-json"] = "rewardedit") -> None:
    """Write the ok judgements as RewardEdit JSON or reward.json objects.

    Args:
        records: An annotations.jsonl file.
        out: Output JSON file.
        format: RewardEdit20K layout ({key: [{Score, Negative Prompt} x3]}) or reward.json objects.
    """
    _print(export_rewards(records, out, format))


def evaluate(
    edits: str,
    benchmark: str,
    out: str,
    concurrency: int = 8,
    seed: int = 0,
    judge: JudgeName = "openai",
    mode: Mode | None = None,
    prompts: str | None = None,
    lvlm: LVLMOptions = DEFAULT_LVLM,
) -> None:
    """Judge a model's benchmark edits (Real-Edit protocol) and write a report.

    Args:
        edits: Dir of <item id>.png edits.
        benchmark: Benchmark JSONL, or shards (dir with manifest / tars).
        out: Output dir: judgements.jsonl, results.json, report.md.
        concurrency: Requests in flight.
        seed: Bootstrap seed.
        judge: The judge backend.
        mode: The built-in prompt protocol (default paper).
        prompts: A prompts file (YAML, docs/judge.md) instead of a built-in protocol; LVLM judges only.
        lvlm: Options of an LVLM judge.
    """
    mode_, extra = _protocol(judge, mode, prompts, "paper")
    judge_ = build_judge(judge, lvlm, mode_, **extra)
    results = evaluate_edits(edits, benchmark, judge_, out, None if prompts else mode_, concurrency, seed=seed)
    _print({"overall": results["overall"], "coverage": results["coverage"], "report": f"{out}/report.md"})


def batch_submit(
    out: str,
    shards: str | list[str],
    limit: int | None = None,
    max_requests: int = 50_000,
    max_bytes: int = 190_000_000,
    judge: JudgeName = "openai",
    lvlm: LVLMOptions = DEFAULT_LVLM,
) -> None:
    """Build request files for the pending samples, upload them and create batches.

    Args:
        out: Output dir (annotations.jsonl, batch_state.json).
        shards: Shard dir(s) with manifest.json, brace patterns or tars; several as '[a, b]'.
        limit: Only the first N samples.
        max_requests: Requests per batch file.
        max_bytes: Bytes per batch file (the API's limit is 200 MB).
        judge: The judge backend.
        lvlm: Options of an LVLM judge.
    """
    judge_ = build_judge(judge, lvlm, BATCH_MODE)
    _print(batch_api.submit(_as_list(shards), out, judge_, max_requests, max_bytes, limit))


def batch_status(out: str, judge: JudgeName = "openai", lvlm: LVLMOptions = DEFAULT_LVLM) -> None:
    """Poll the batches in OUT/batch_state.json.

    Args:
        out: Output dir (annotations.jsonl, batch_state.json).
        judge: The judge backend.
        lvlm: Options of an LVLM judge.
    """
    _print(batch_api.status(out, build_judge(judge, lvlm, BATCH_MODE)))


def batch_collect(out: str, judge: JudgeName = "openai", lvlm: LVLMOptions = DEFAULT_LVLM) -> None:
    """Download the finished batches and append their records.

    Args:
        out: Output dir (annotations.jsonl, batch_state.json).
        judge: The judge backend.
        lvlm: Options of an LVLM judge.
    """
    _print(batch_api.collect(out, build_judge(judge, lvlm, BATCH_MODE)))


def batch_run(
    out: str,
    shards: str | list[str],
    limit: int | None = None,
    max_requests: int = 50_000,
    max_bytes: int = 190_000_000,
    poll_interval: float = 60.0,
    judge: JudgeName = "openai",
    lvlm: LVLMOptions = DEFAULT_LVLM,
) -> None:
    """Submit, poll until done and collect (resumable).

    Args:
        out: Output dir (annotations.jsonl, batch_state.json).
        shards: Shard dir(s) with manifest.json, brace patterns or tars; several as '[a, b]'.
        limit: Only the first N samples.
        max_requests: Requests per batch file.
        max_bytes: Bytes per batch file (the API's limit is 200 MB).
        poll_interval: Seconds between polls.
        judge: The judge backend.
        lvlm: Options of an LVLM judge.
    """
    judge_ = build_judge(judge, lvlm, BATCH_MODE)
    _print(batch_api.run(_as_list(shards), out, judge_, poll_interval, max_requests, max_bytes, limit))


def convert_benchmark(real_edit: str, images: str, out: str) -> None:
    """Convert the official Real-Edit layout to a benchmark JSONL.

    Args:
        real_edit: The real_edit_instruct.json file.
        images: Dir of the benchmark images.
        out: Output JSONL (image paths are relative to it).
    """
    _print(convert_real_edit(real_edit, images, out))


def _as_list(shards: str | list[str]) -> list[str]:
    return [shards] if isinstance(shards, str) else list(shards)


COMMANDS = CommandGroup(
    "Annotate rewards and evaluate edits with an LVLM or the oracle judge.",
    {
        "annotate": annotate,
        "export": export,
        "eval": evaluate,
        "batch": CommandGroup(
            "Annotate through the OpenAI Batch API (50% cheaper, resumable).",
            {"submit": batch_submit, "status": batch_status, "collect": batch_collect, "run": batch_run},
        ),
        "convert-benchmark": convert_benchmark,
    },
)
