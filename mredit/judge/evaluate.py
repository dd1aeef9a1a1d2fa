"""``mredit judge eval``: judge a model's benchmark edits with the Real-Edit protocol and report the results.

Edits are ``<edits_dir>/<item id>.png``. Judgements go to the same resumable record store as annotation
(``out_dir/judgements.jsonl``), so an interrupted evaluation resumes. Per perspective we report the yes-rate and
the mean 0-5 score, overall, per category and macro-averaged over categories, with seeded item-bootstrap 95%
confidence intervals; coverage says how many items were expected, how many edits were found, how many were
judged ``ok``, and lists the missing edits and failed judgements (they are never silently dropped).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from mredit.data.reader import SkipCounter
from mredit.judge.annotate import run_requests
from mredit.judge.base import Judge, JudgeRequest, JudgeResult
from mredit.judge.benchmark import BenchmarkItem, load_benchmark
from mredit.judge.records import RecordWriter, done_ids, final_view, read_records, record_id
from mredit.schema import PERSPECTIVE_TITLES, PERSPECTIVES, SampleError

RECORDS_NAME = "judgements.jsonl"
NUM_BOOTSTRAP = 1000
THUMB = 96


def _edit_hashes(items: list[BenchmarkItem], edits_dir: Path) -> dict[str, dict[str, str]]:
    """sha256 of each edit file: a judgement is reused on resume only for the very same edit."""
    hashes = {}
    for item in items:
        path = edits_dir / f"{item.id}.png"
        hashes[item.id] = {"edit_sha256": hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None}
    return hashes


def _requests(
    items: list[BenchmarkItem], edits_dir: Path, done: dict[str, dict[str, Any]], hashes: dict[str, dict[str, str]]
) -> Iterator[JudgeRequest | JudgeResult]:
    for item in items:
        if item.id in done and done[item.id].get("edit_sha256") == hashes[item.id]["edit_sha256"]:
            continue
        if item.error is not None:
            yield JudgeResult(item.id, "invalid", error=f"bad benchmark item: {item.error}")
            continue
        try:
            source = item.load_image()
            with Image.open(edits_dir / f"{item.id}.png") as edit:
                edited = edit.convert("RGB")
        except (SampleError, OSError, ValueError) as e:
            yield JudgeResult(item.id, "invalid", error=f"unreadable input: {e}")
            continue
        yield JudgeRequest(item.id, source, item.instruction, edited, meta=dict(item.meta))


def bootstrap_ci(values: np.ndarray, rng: np.random.Generator, num: int = NUM_BOOTSTRAP) -> list[float] | None:
    """Percentile 95% interval of the mean, resampling items with replacement."""
    if len(values) == 0:
        return None
    means = values[rng.integers(0, len(values), size=(num, len(values)))].mean(axis=1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def summarise(records: list[dict[str, Any]], rng: np.random.Generator) -> dict[str, Any]:
    """Yes-rate and mean score (with CIs) per perspective over the ``ok`` records."""
    ok = [r["judgement"] for r in records if r["status"] == "ok"]
    out: dict[str, Any] = {}
    for p in PERSPECTIVES:
        verdicts = np.array([float(j[p]["verdict"]) for j in ok])
        scores = np.array([float(j[p]["score"]) for j in ok])
        out[p] = {
            "yes_rate": float(verdicts.mean()) if len(ok) else None,
            "score": float(scores.mean()) if len(ok) else None,
            "yes_rate_ci": bootstrap_ci(verdicts, rng),
            "score_ci": bootstrap_ci(scores, rng),
            "n": len(ok),
        }
    return out


def _macro(per_category: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for p in PERSPECTIVES:
        rows = [c[p] for c in per_category.values() if c[p]["n"]]
        out[p] = {
            "yes_rate": float(np.mean([r["yes_rate"] for r in rows])) if rows else None,
            "score": float(np.mean([r["score"] for r in rows])) if rows else None,
            "categories": len(rows),
        }
    return out


def aggregate(
    items: list[BenchmarkItem],
    records: dict[str, dict[str, Any]],
    missing: list[str],
    fingerprint: dict,
    seed: int,
    skipped: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Overall, per-category and macro results and the coverage; ``skipped``: benchmark shards skipped as
    unreadable, by reason (their samples are not among ``items``)."""
    rng = np.random.default_rng(seed)
    category_of = {item.id: item.category for item in items}
    judged = [records[item.id] for item in items if item.id in records]
    per_category = {
        category: summarise([r for r in judged if category_of[r["key"]] == category], rng)
        for category in sorted(set(category_of.values()))
    }
    statuses = Counter(r["status"] for r in judged)
    return {
        "overall": summarise(judged, rng),
        "per_category": per_category,
        "macro": _macro(per_category),
        "coverage": {
            "expected": len(items),
            "edits_found": len(items) - len(missing),
            "judged": statuses.get("ok", 0),
            "fraction": statuses.get("ok", 0) / len(items),
            "statuses": dict(statuses),
            "missing_edits": missing,
            "failed": {r["key"]: f"{r['status']}: {r['error']}" for r in judged if r["status"] != "ok"},
            "skipped": dict(skipped or {}),
        },
        "judge": fingerprint,
        "bootstrap": {"samples": NUM_BOOTSTRAP, "seed": seed, "interval": 0.95},
    }


def _fmt(value: float | None, ci: list[float] | None, percent: bool) -> str:
    if value is None:
        return "n/a"
    scale, digits, unit = (100.0, 1, "%") if percent else (1.0, 2, "")
    text = f"{value * scale:.{digits}f}{unit}"
    if ci:
        text += f" [{ci[0] * scale:.{digits}f}, {ci[1] * scale:.{digits}f}]"
    return text


def write_report(results: dict[str, Any], out_dir: Path, thumbnail: str | None) -> Path:
    coverage = results["coverage"]
    lines = [
        "# Edit evaluation",
        "",
        f"Judge: `{json.dumps(results['judge'], sort_keys=True)}`",
        "",
        f"Coverage: {coverage['judged']} of {coverage['expected']} items judged ({coverage['fraction']:.1%}); "
        f"edits found: {coverage['edits_found']}; statuses: {coverage['statuses']}."
        + (f" Unreadable benchmark shards skipped: {coverage['skipped']}." if coverage.get("skipped") else ""),
        "",
        "## Overall (95% bootstrap intervals)",
        "",
        "| perspective | yes-rate | score (0-5) | n |",
        "|---|---|---|---|",
    ]
    for p in PERSPECTIVES:
        row = results["overall"][p]
        lines.append(
            f"| {PERSPECTIVE_TITLES[p]} | {_fmt(row['yes_rate'], row['yes_rate_ci'], True)} | "
            f"{_fmt(row['score'], row['score_ci'], False)} | {row['n']} |"
        )
    lines += [
        "",
        "## Per category",
        "",
        "| category | n | " + " | ".join(f"{p} yes | {p} score" for p in PERSPECTIVES) + " |",
    ]
    lines.append("|---|---|" + "---|---|" * len(PERSPECTIVES))
    for category, row in [*results["per_category"].items(), ("macro average", results["macro"])]:
        n = row[PERSPECTIVES[0]].get("n", row[PERSPECTIVES[0]].get("categories"))
        cells = [f"{_fmt(row[p]['yes_rate'], None, True)} | {_fmt(row[p]['score'], None, False)}" for p in PERSPECTIVES]
        lines.append(f"| {category} | {n} | " + " | ".join(cells) + " |")
    if coverage["missing_edits"]:
        shown = ", ".join(coverage["missing_edits"][:20])
        more = len(coverage["missing_edits"]) - 20
        lines += [
            "",
            f"## Missing edits ({len(coverage['missing_edits'])})",
            "",
            shown + (f" and {more} more" if more > 0 else ""),
        ]
    if coverage["failed"]:
        lines += ["", f"## Failed judgements ({len(coverage['failed'])})", ""]
        lines += [f"- `{key}`: {why}" for key, why in list(coverage["failed"].items())[:50]]
    if thumbnail:
        lines += ["", "## Examples (source | edit, scores F/P/Q)", "", f"![examples]({thumbnail})"]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def write_thumbnails(
    items: list[BenchmarkItem], edits_dir: Path, records: dict[str, dict[str, Any]], path: Path, per_category: int = 2
) -> bool:
    """A PNG grid: per category up to ``per_category`` judged items, source | edit, with their scores."""
    chosen: list[BenchmarkItem] = []
    counts: Counter = Counter()
    for item in items:
        if records.get(item.id, {}).get("status") == "ok" and counts[item.category] < per_category:
            chosen.append(item)
            counts[item.category] += 1
    if not chosen:
        return False
    caption = 14
    grid = Image.new("RGB", (2 * THUMB, len(chosen) * (THUMB + caption)), "white")
    draw = ImageDraw.Draw(grid)
    for row, item in enumerate(chosen):
        top = row * (THUMB + caption)
        with Image.open(edits_dir / f"{item.id}.png") as edit:
            pair = (item.load_image(), edit.convert("RGB"))
        for column, image in enumerate(pair):
            method = Image.Resampling.NEAREST if max(image.size) < THUMB else Image.Resampling.LANCZOS
            grid.paste(ImageOps.contain(image, (THUMB, THUMB), method), (column * THUMB, top + caption))
        judgement = records[item.id]["judgement"]
        scores = "/".join(f"{judgement[p]['score']:g}" for p in PERSPECTIVES)
        draw.text((2, top + 1), f"{item.category} {item.id[:14]} {scores}", fill="black")
    grid.save(path)
    return True


def evaluate_edits(
    edits_dir: str | Path,
    benchmark: str | Path | list[str],
    judge: Judge,
    out_dir: str | Path,
    mode: str | None = "combined",
    concurrency: int = 8,
    seed: int = 0,
) -> dict[str, Any]:
    """Judge every benchmark item's edit, write ``results.json`` + ``report.md``, return the results dict.

    ``mode`` sets the built-in protocol of an LVLM judge (``combined`` or ``paper``); None keeps the judge's own
    (the protocol of a prompts file)."""
    edits_dir, out_dir = Path(edits_dir), Path(out_dir)
    if not edits_dir.is_dir():
        raise FileNotFoundError(f"edits directory not found: {edits_dir}")
    if mode is not None:  # None: the judge's own protocol (a prompts file)
        if mode not in ("combined", "paper"):
            raise ValueError(f"unknown eval mode {mode!r}; expected combined or paper")
        if getattr(judge, "mode", mode) != mode:
            judge.mode = mode  # the LVLM judge's protocol; the oracle answers both modes identically
    counter = SkipCounter()
    items = load_benchmark(benchmark, counter)
    missing = [item.id for item in items if item.error is None and not (edits_dir / f"{item.id}.png").is_file()]
    present = [item for item in items if item.id not in set(missing)]
    fingerprint = judge.fingerprint
    records_path = out_dir / RECORDS_NAME
    hashes = _edit_hashes(present, edits_dir)
    with RecordWriter(records_path) as writer:
        records = read_records(records_path)[0]
        done_set = done_ids(records)
        done = {
            r["key"]: r
            for rid, r in final_view(records).items()
            if rid in done_set and rid == record_id(r["key"], fingerprint)
        }
        requests = _requests(present, edits_dir, done, hashes)
        asyncio.run(run_requests(requests, judge, writer, concurrency, record_extras=hashes))
    current = {
        r["key"]: r for r in final_view(read_records(records_path)[0]).values() if r["fingerprint"] == fingerprint
    }
    results = aggregate(items, current, missing, fingerprint, seed, counter.nonzero())
    has_thumbs = write_thumbnails(present, edits_dir, current, out_dir / "thumbnails.png")
    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    write_report(results, out_dir, "thumbnails.png" if has_thumbs else None)
    return results
