"""How the edits of a model fail instruction following, per category, read from the oracle's failure texts.

    python experiments/object_edits_only/failure_modes.py --benchmark DATA/test RUN/eval [RUN/eval ...]

Each ``RUN/eval`` is a ``mredit judge eval --judge oracle`` output (``judgements.jsonl``) on the test shards given
by ``--benchmark``; several runs (seeds) are pooled, which is right for the runner's seeds because the clean
test split's category of item ``i`` depends only on ``i``. Prints, per category, the share of edits that followed the
instruction and of those that did not: left the target unchanged, changed it partly, or changed it to the wrong
colour. The classes follow the templates of ``mredit.synth.oracle`` (e.g. "the red square is still red", "the red
square is gray, not blue", "the red square is only partly blue"); free-text feedback of an LVLM judge lands in
"other".
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path

from mredit.judge.benchmark import load_benchmark

MODES = ("followed", "unchanged", "partial", "wrong colour", "other")
PATTERNS = (  # first match wins
    ("partial", re.compile(r"only partly|incomplete|weak")),
    ("unchanged", re.compile(r"\bstill\b|was not applied|^no .* was added|\bhas no\b")),
    ("wrong colour", re.compile(r"\bis \w+, not \w+")),
)


def failure_mode(following: dict) -> str:
    if following.get("verdict"):
        return "followed"
    feedback = str(following.get("feedback", ""))
    return next((mode for mode, pattern in PATTERNS if pattern.search(feedback)), "other")


def tally(benchmark: str, eval_dirs: list[str]) -> dict[str, Counter]:
    category_of = {item.id: item.category for item in load_benchmark(benchmark)}
    counts: dict[str, Counter] = {}
    for eval_dir in eval_dirs:
        for line in (Path(eval_dir) / "judgements.jsonl").read_text().splitlines():
            record = json.loads(line)
            if record.get("status") != "ok" or record["key"] not in category_of:
                continue
            mode = failure_mode(record["judgement"]["following"])
            counts.setdefault(category_of[record["key"]], Counter())[mode] += 1
    return counts


def format_table(counts: dict[str, Counter]) -> str:
    lines = ["| category | n | " + " | ".join(f"{m} %" for m in MODES) + " |", "|---|---|" + "---|" * len(MODES)]
    for category, modes in sorted(counts.items()):
        n = sum(modes.values())
        lines.append(f"| {category} | {n} | " + " | ".join(f"{100 * modes[m] / n:.0f}" for m in MODES) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--benchmark", required=True, help="the test shards the runs were judged on")
    parser.add_argument("eval_dirs", nargs="+", help="mredit judge eval output directories (pooled)")
    args = parser.parse_args(argv)
    print(format_table(tally(args.benchmark, args.eval_dirs)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
