"""``mredit judge ...``: annotate, export, eval, batch submit|status|collect|run, convert-benchmark.

Errors are raised as ``ValueError``/``FileNotFoundError``/``RuntimeError`` so the dispatcher prints one line.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from mredit.judge.registry import JUDGE_NAMES, build_judge
from mredit.judge.retry import RetryPolicy


def add_judge_options(parser: argparse.ArgumentParser, default_mode: str = "combined") -> None:
    group = parser.add_argument_group("judge")
    group.add_argument("--judge", choices=JUDGE_NAMES, default="openai", help="judge backend (default: openai)")
    group.add_argument("--model", help="model, Azure deployment or served model name (default: gpt-4o)")
    group.add_argument("--base-url", help="OpenAI-compatible endpoint, e.g. http://host:8000/v1 (or OPENAI_BASE_URL)")
    group.add_argument("--azure-endpoint", help="Azure OpenAI endpoint (or AZURE_OPENAI_ENDPOINT)")
    group.add_argument("--api-version", help="Azure API version (or OPENAI_API_VERSION)")
    group.add_argument("--detail", choices=("low", "high", "auto"), help="image detail sent to the API (default high)")
    group.add_argument("--max-side", type=int, help="resize images to at most this long side (default 512)")
    group.add_argument("--mode", choices=("combined", "paper"), default=default_mode, help="prompt protocol")
    group.add_argument("--no-structured", action="store_true", help="skip response_format; parse free-text JSON")
    group.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    group.add_argument("--max-attempts", type=int, default=6, help="attempts per request on transient errors")
    group.add_argument("--retry-base", type=float, default=1.0, help="first backoff in seconds (doubles, jittered)")
    group.add_argument("--transport", choices=("aiohttp", "httpx2"), default="aiohttp", help="HTTP client backend")
    group.add_argument("--price-in", type=float, help="override the input price, USD per 1M tokens")
    group.add_argument("--price-out", type=float, help="override the output price, USD per 1M tokens")


def judge_from_args(args: argparse.Namespace) -> Any:
    if args.judge == "oracle":  # LVLM options given by the user are rejected by build_judge
        names = ("model", "base_url", "azure_endpoint", "api_version", "detail", "max_side")
        return build_judge("oracle", **{name: getattr(args, name) for name in names})
    from mredit.judge.cost import price_for

    price = None
    if args.price_in is not None or args.price_out is not None:
        price = price_for(args.model or "gpt-4o", args.price_in, args.price_out)
    return build_judge(
        args.judge,
        model=args.model,
        base_url=args.base_url,
        azure_endpoint=args.azure_endpoint,
        api_version=args.api_version,
        detail=args.detail,
        max_side=args.max_side,
        mode=args.mode,
        structured=False if args.no_structured else None,
        timeout=args.timeout,
        retry=RetryPolicy(max_attempts=args.max_attempts, base_delay=args.retry_base),
        price=price,
        transport=args.transport,
    )


def _print(summary: dict[str, Any]) -> None:
    print(json.dumps(summary, indent=2))


def _annotate(args: argparse.Namespace) -> int:
    from mredit.judge.annotate import annotate, dry_run

    if args.dry_run:
        from mredit.judge.cost import price_for

        model = args.model or "gpt-4o"
        price = price_for(model, args.price_in, args.price_out)
        _print(dry_run(args.shards, model, args.detail or "high", args.max_side or 512, args.mode, args.limit, price))
        return 0
    summary = annotate(args.shards, args.out, judge_from_args(args), args.concurrency, args.limit, args.retry_failed)
    _print(summary)
    return 0


def _export(args: argparse.Namespace) -> int:
    from mredit.judge.annotate import export_rewards

    _print(export_rewards(args.records, args.out, args.format))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from mredit.judge.evaluate import evaluate_edits

    results = evaluate_edits(
        args.edits, args.benchmark, judge_from_args(args), args.out, args.mode, args.concurrency, seed=args.seed
    )
    _print({"overall": results["overall"], "coverage": results["coverage"], "report": f"{args.out}/report.md"})
    return 0


def _batch(args: argparse.Namespace) -> int:
    from mredit.judge import batch

    judge = judge_from_args(args)
    if args.batch_command == "status":
        _print(batch.status(args.out, judge))
    elif args.batch_command == "submit":
        _print(batch.submit(args.shards, args.out, judge, args.max_requests, args.max_bytes, args.limit))
    elif args.batch_command == "collect":
        _print(batch.collect(args.out, judge))
    else:
        _print(
            batch.run(args.shards, args.out, judge, args.poll_interval, args.max_requests, args.max_bytes, args.limit)
        )
    return 0


def _convert(args: argparse.Namespace) -> int:
    from mredit.judge.benchmark import convert_real_edit

    _print(convert_real_edit(args.real_edit, args.images, args.out))
    return 0


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="judge_command", metavar="<subcommand>")

    annotate = sub.add_parser("annotate", help="score triplets of shards into DIR/annotations.jsonl (resumable)")
    annotate.add_argument(
        "--shards", nargs="+", required=True, help="shard dir(s) with manifest.json, patterns or tars"
    )
    annotate.add_argument("--out", help="output dir (records go to OUT/annotations.jsonl)")
    annotate.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    annotate.add_argument("--limit", type=int, help="only the first N samples (a pilot)")
    annotate.add_argument("--dry-run", action="store_true", help="estimate tokens and cost; no API call")
    annotate.add_argument("--retry-failed", action="store_true", help="also re-judge refused and invalid samples")
    add_judge_options(annotate)
    annotate.set_defaults(func=_require_out(_annotate))

    export = sub.add_parser("export", help="write ok judgements as RewardEdit JSON or reward.json objects")
    export.add_argument("--records", required=True, help="an annotations.jsonl file")
    export.add_argument("--format", choices=("rewardedit", "reward-json"), default="rewardedit")
    export.add_argument("--out", required=True, help="output JSON file")
    export.set_defaults(func=_export)

    evaluate = sub.add_parser("eval", help="judge a model's benchmark edits (Real-Edit protocol) and write a report")
    evaluate.add_argument("--edits", required=True, help="dir of <item id>.png edits")
    evaluate.add_argument("--benchmark", required=True, help="benchmark JSONL, or shards (dir with manifest / tars)")
    evaluate.add_argument("--out", required=True, help="output dir: judgements.jsonl, results.json, report.md")
    evaluate.add_argument("--concurrency", type=int, default=8)
    evaluate.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    add_judge_options(evaluate, default_mode="paper")
    evaluate.set_defaults(func=_eval)

    batch = sub.add_parser("batch", help="annotate through the OpenAI Batch API (50%% cheaper, resumable)")
    batch_sub = batch.add_subparsers(dest="batch_command", metavar="<step>", required=True)
    for name, help_text in (
        ("submit", "build request files for pending samples, upload and create batches"),
        ("status", "poll the batches in OUT/batch_state.json"),
        ("collect", "download finished batches and append their records"),
        ("run", "submit, poll until done and collect (resumable)"),
    ):
        step = batch_sub.add_parser(name, help=help_text)
        step.add_argument("--out", required=True, help="output dir (annotations.jsonl, batch_state.json)")
        if name in ("submit", "run"):
            step.add_argument("--shards", nargs="+", required=True)
            step.add_argument("--limit", type=int)
            step.add_argument("--max-requests", type=int, default=50_000, help="requests per batch file")
            step.add_argument("--max-bytes", type=int, default=190_000_000, help="bytes per batch file (API: 200 MB)")
        if name == "run":
            step.add_argument("--poll-interval", type=float, default=60.0, help="seconds between polls")
        add_judge_options(step)
        step.set_defaults(func=_batch)

    convert = sub.add_parser("convert-benchmark", help="convert the official Real-Edit layout to benchmark JSONL")
    convert.add_argument("--real-edit", required=True, help="real_edit_instruct.json")
    convert.add_argument("--images", required=True, help="dir of the benchmark images")
    convert.add_argument("--out", required=True, help="output JSONL (image paths are relative to it)")
    convert.set_defaults(func=_convert)


def _require_out(func: Any) -> Any:
    def wrapped(args: argparse.Namespace) -> int:
        if not args.dry_run and not args.out:
            raise ValueError("--out is required (except with --dry-run)")
        return func(args)

    return wrapped
