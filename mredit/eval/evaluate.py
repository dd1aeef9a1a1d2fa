"""``mredit eval metrics``: the MagicBrush and Emu Edit metrics of a model's benchmark edits.

Edits are ``<edits_dir>/<item id>.png``, as for ``mredit judge eval``. The MagicBrush protocol compares the edit
with the ground-truth target (L1, L2, CLIP-I, DINO) and with the target's caption (CLIP-T); the Emu Edit protocol
compares it with the input (CLIP-I, DINO, L1), with the output caption (CLIP-out) and the change of the captions
(CLIP-dir). Items go through CLIP and DINO in batches (one forward per model and batch), on the GPU when there is
one. Per metric the mean over items, overall, per category and macro-averaged over categories, with seeded
item-bootstrap 95% intervals; ``scores.jsonl`` keeps every item's values. Definitions and their sources:
docs/eval.md.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from mredit.data.reader import SkipCounter
from mredit.eval.encoders import DEFAULT_CLIP, DEFAULT_DINO, ClipEncoder, DinoEncoder
from mredit.eval.metrics import cosine, directional, pixel_distances
from mredit.judge.benchmark import BenchmarkItem, load_benchmark
from mredit.judge.evaluate import NUM_BOOTSTRAP, bootstrap_ci
from mredit.schema import SampleError

RESULTS_KIND = "mredit-metrics/1"
PROTOCOLS: dict[str, tuple[str, ...]] = {
    "magicbrush": ("l1", "l2", "clip_i", "dino", "clip_t"),  # the edit against the ground-truth target
    "emu-edit": ("clip_dir", "clip_i", "clip_out", "l1", "dino"),  # the edit against the input and the captions
}
PROTOCOL_TITLES = {"magicbrush": "MagicBrush", "emu-edit": "Emu Edit"}
LABELS = {
    "l1": "L1",
    "l2": "L2",
    "clip_i": "CLIP-I",
    "dino": "DINO",
    "clip_t": "CLIP-T",
    "clip_dir": "CLIP-dir",
    "clip_out": "CLIP-out",
}
LOWER_IS_BETTER = frozenset({"l1", "l2"})
CLIP_METRICS = frozenset({"clip_i", "clip_t", "clip_dir", "clip_out"})
TURNS = ("all", "final")


def metric_label(protocol: str, metric: str) -> str:
    return f"{PROTOCOL_TITLES[protocol]} {LABELS[metric]}"


def _protocols(protocol: str, items: list[BenchmarkItem]) -> list[str]:
    has_target = any(item.has_target for item in items)
    if protocol == "all":
        return [p for p in PROTOCOLS if p != "magicbrush" or has_target]
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected magicbrush, emu-edit or all")
    if protocol == "magicbrush" and not has_target:
        raise ValueError("the benchmark has no ground-truth targets: the MagicBrush protocol needs them")
    return [protocol]


def select_turns(items: list[BenchmarkItem], turns: str) -> list[BenchmarkItem]:
    """``all`` items, or the ``final`` turn of each session (``meta.final_turn``, written by the MagicBrush
    converter): MagicBrush's multi-turn setting, whose edits must come from editing each session iteratively."""
    if turns not in TURNS:
        raise ValueError(f"--turns must be all or final, got {turns!r}")
    if turns == "all":
        return items
    if not any("final_turn" in item.meta for item in items):
        raise ValueError("--turns final needs the turn of each item (meta.final_turn, from the MagicBrush converter)")
    return [item for item in items if item.meta.get("final_turn")]


class _Batch:
    """The images and captions of a batch of items, and the row of each in the encoders' outputs."""

    def __init__(self) -> None:
        self.images: list[Image.Image] = []
        self.texts: list[str] = []

    def image(self, image: Image.Image) -> int:
        self.images.append(image)
        return len(self.images) - 1

    def text(self, text: str) -> int:
        self.texts.append(text)
        return len(self.texts) - 1


def _score_batch(
    batch: list[tuple[BenchmarkItem, Image.Image, Image.Image | None, Image.Image | None]],
    protocols: list[str],
    clip: ClipEncoder | None,
    dino: DinoEncoder | None,
    not_computed: dict[str, dict[str, Counter]],
) -> list[dict[str, dict[str, float | None]]]:
    """Every protocol's metrics for each (item, edit, source, target) of a batch; None where not computable."""
    rows, jobs = [], _Batch()
    for item, edit, source, target in batch:
        row: dict[str, Any] = {"edit": jobs.image(edit)}
        if source is not None:
            row["source"] = jobs.image(source)
        if target is not None:
            row["target"] = jobs.image(target)
        if item.output_caption:
            row["out_text"] = jobs.text(item.output_caption)
        if item.input_caption and item.output_caption:
            row["in_text"] = jobs.text(item.input_caption)
        rows.append(row)
    need_clip = any(set(PROTOCOLS[p]) & CLIP_METRICS for p in protocols)
    need_dino = any("dino" in PROTOCOLS[p] for p in protocols)
    clip_images = clip.encode_images(jobs.images) if need_clip and clip is not None else None
    clip_texts = clip.encode_texts(jobs.texts) if need_clip and clip is not None and jobs.texts else None
    dino_images = dino.encode_images(jobs.images) if need_dino and dino is not None else None

    def similarity(features, a: int, b: int) -> float:
        return float(cosine(features[a : a + 1], features[b : b + 1])[0])

    out = []
    for (_item, edit, source, target), row in zip(batch, rows):
        scores: dict[str, dict[str, float | None]] = {}
        for protocol in protocols:
            values: dict[str, float | None] = dict.fromkeys(PROTOCOLS[protocol])
            reference = "target" if protocol == "magicbrush" else "source"
            reason = None
            if reference not in row:
                reason = "no ground-truth target" if reference == "target" else "no input image"
            else:
                reference_image = target if reference == "target" else source
                l1, l2 = pixel_distances(edit, reference_image)
                values["l1"] = l1
                if "l2" in values:
                    values["l2"] = l2
                values["clip_i"] = similarity(clip_images, row["edit"], row[reference])
                values["dino"] = similarity(dino_images, row["edit"], row[reference])
            text_metric = "clip_t" if protocol == "magicbrush" else "clip_out"
            if "out_text" in row:
                edit_feature = clip_images[row["edit"] : row["edit"] + 1]
                text_feature = clip_texts[row["out_text"] : row["out_text"] + 1]
                values[text_metric] = float(cosine(edit_feature, text_feature)[0])
            else:
                not_computed[protocol][text_metric]["no output caption"] += 1
            if protocol == "emu-edit":
                if "in_text" in row and "source" in row:
                    values["clip_dir"] = float(
                        directional(
                            clip_images[row["source"] : row["source"] + 1],
                            clip_images[row["edit"] : row["edit"] + 1],
                            clip_texts[row["in_text"] : row["in_text"] + 1],
                            clip_texts[row["out_text"] : row["out_text"] + 1],
                        )[0]
                    )
                else:
                    not_computed[protocol]["clip_dir"]["no input and output captions"] += 1
            if reason is not None:
                for metric in ("l1", "l2", "clip_i", "dino"):
                    if metric in values:
                        not_computed[protocol][metric][reason] += 1
            scores[protocol] = values
        out.append(scores)
    return out


def summarise(values: list[float], rng: np.random.Generator) -> dict[str, Any]:
    array = np.array(values, dtype=np.float64)
    return {
        "mean": float(array.mean()) if len(array) else None,
        "ci": bootstrap_ci(array, rng),
        "n": len(array),
    }


def aggregate(
    scores: dict[str, dict[str, dict[str, float | None]]],
    categories: dict[str, str],
    protocols: list[str],
    seed: int,
) -> dict[str, Any]:
    """Overall, per-category and macro means (with item-bootstrap intervals) of every protocol's metrics."""
    rng = np.random.default_rng(seed)

    def block(ids: list[str]) -> dict[str, Any]:
        return {
            protocol: {
                metric: summarise(
                    [v for i in ids if (v := scores[i][protocol][metric]) is not None and np.isfinite(v)], rng
                )
                for metric in PROTOCOLS[protocol]
            }
            for protocol in protocols
        }

    ids = sorted(scores)
    per_category = {
        category: block([i for i in ids if categories[i] == category])
        for category in sorted({categories[i] for i in ids})
    }
    macro = {
        protocol: {
            metric: {
                "mean": float(np.mean(means))
                if (means := [c[protocol][metric]["mean"] for c in per_category.values() if c[protocol][metric]["n"]])
                else None,
                "categories": len(means),
            }
            for metric in PROTOCOLS[protocol]
        }
        for protocol in protocols
    }
    return {"overall": block(ids), "per_category": per_category, "macro": macro}


def _fmt(value: float | None, ci: list[float] | None = None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.4f}" + (f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "")


def write_report(results: dict[str, Any], out_dir: Path) -> Path:
    coverage = results["coverage"]
    models = results["models"]
    lines = ["# Standard metrics", ""]
    if results.get("note"):
        lines += [f"**{results['note']}**", ""]
    lines += [
        f"Edits: `{results['edits']}`. CLIP: `{models['clip']}`, DINO: `{models['dino']}` ({models['device']}, "
        f"float32). Turns: {results['turns']}. Definitions and sources: docs/eval.md.",
        "",
        f"Coverage: {coverage['scored']} of {coverage['expected']} items scored ({coverage['fraction']:.1%}); "
        f"edits found: {coverage['edits_found']}."
        + (f" Unreadable benchmark shards skipped: {coverage['skipped']}." if coverage.get("skipped") else ""),
    ]
    if coverage.get("identical_captions"):
        lines += [
            "",
            f"{coverage['identical_captions']} items have identical input and output captions: their CLIP-dir is 0.",
        ]
    for protocol in results["protocols"]:
        reference = "the ground-truth target" if protocol == "magicbrush" else "the input image and the captions"
        lines += [
            "",
            f"## {PROTOCOL_TITLES[protocol]} (edit vs {reference}; 95% bootstrap intervals)",
            "",
            "| metric | mean [95% CI] | n | better |",
            "|---|---|---|---|",
        ]
        for metric in PROTOCOLS[protocol]:
            row = results["overall"][protocol][metric]
            better = "lower" if metric in LOWER_IS_BETTER else "higher"
            lines.append(f"| {LABELS[metric]} | {_fmt(row['mean'], row['ci'])} | {row['n']} | {better} |")
        lines += ["", "| category | n | " + " | ".join(LABELS[m] for m in PROTOCOLS[protocol]) + " |"]
        lines.append("|---|---|" + "---|" * len(PROTOCOLS[protocol]))
        rows = [*results["per_category"].items(), ("macro average", None)]
        for category, entry in rows:
            if entry is None:
                macro = results["macro"][protocol]
                cells = [_fmt(macro[m]["mean"]) for m in PROTOCOLS[protocol]]
                n = max((macro[m]["categories"] for m in PROTOCOLS[protocol]), default=0)
            else:
                cells = [_fmt(entry[protocol][m]["mean"]) for m in PROTOCOLS[protocol]]
                n = max(entry[protocol][m]["n"] for m in PROTOCOLS[protocol])
            lines.append(f"| {category} | {n} | " + " | ".join(cells) + " |")
        missing = {m: dict(r) for m, r in coverage["not_computed"].get(protocol, {}).items() if r}
        if missing:
            lines += ["", "Not computed: " + "; ".join(f"{LABELS[m]}: {r}" for m, r in missing.items()) + "."]
    if coverage["missing_edits"]:
        shown = ", ".join(coverage["missing_edits"][:20])
        more = len(coverage["missing_edits"]) - 20
        lines += [
            "",
            f"## Missing edits ({len(coverage['missing_edits'])})",
            "",
            shown + (f" and {more} more" * (more > 0)),
        ]
    if coverage["failed"]:
        lines += ["", f"## Unreadable items ({len(coverage['failed'])})", ""]
        lines += [f"- `{key}`: {why}" for key, why in list(coverage["failed"].items())[:50]]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _encoder(value: Any, kind: str, device: str) -> Any:
    if value is None or isinstance(value, (ClipEncoder, DinoEncoder)):
        return value
    return (ClipEncoder if kind == "clip" else DinoEncoder).from_pretrained(str(value), device)


def evaluate_metrics(
    edits_dir: str | Path,
    benchmark: str | Path | list[str],
    out_dir: str | Path,
    protocol: str = "all",
    clip: str | ClipEncoder | None = DEFAULT_CLIP,
    dino: str | DinoEncoder | None = DEFAULT_DINO,
    device: str = "auto",
    batch_size: int = 32,
    turns: str = "all",
    seed: int = 0,
    note: str | None = None,
) -> dict[str, Any]:
    """Score every benchmark item's edit with the protocol's metrics; write ``results.json``, ``report.md`` and
    ``scores.jsonl`` to ``out_dir`` and return the results.

    ``protocol``: ``magicbrush``, ``emu-edit``, or ``all`` (Emu Edit, and MagicBrush when the benchmark has
    ground-truth targets). ``clip`` / ``dino``: a local folder or hub id (loaded when a metric needs it), or a
    ready encoder. ``turns``: ``all`` items or each session's ``final`` turn. ``note``: printed at the top of the
    report (the demo says its random models are a wiring check).
    """
    edits_dir, out_dir = Path(edits_dir), Path(out_dir)
    if not edits_dir.is_dir():
        raise FileNotFoundError(f"edits directory not found: {edits_dir}")
    if batch_size < 1:
        raise ValueError(f"--batch_size must be >= 1, got {batch_size}")
    counter = SkipCounter()
    items = select_turns(load_benchmark(benchmark, counter), turns)
    if not items:
        raise ValueError(f"no benchmark items to score (--turns {turns})")
    protocols = _protocols(protocol, items)
    needed = {m for p in protocols for m in PROTOCOLS[p]}
    clip_encoder = _encoder(clip, "clip", device) if needed & CLIP_METRICS else None
    dino_encoder = _encoder(dino, "dino", device) if "dino" in needed else None
    if needed & CLIP_METRICS and clip_encoder is None:
        raise ValueError("the protocol's CLIP metrics need --clip")
    if "dino" in needed and dino_encoder is None:
        raise ValueError("the protocol's DINO metric needs --dino")

    missing = [item.id for item in items if item.error is None and not (edits_dir / f"{item.id}.png").is_file()]
    failed = {item.id: f"bad benchmark item: {item.error}" for item in items if item.error is not None}
    present = [item for item in items if item.error is None and item.id not in set(missing)]
    not_computed: dict[str, dict[str, Counter]] = {p: defaultdict(Counter) for p in protocols}
    scores: dict[str, dict[str, dict[str, float | None]]] = {}
    progress = tqdm(total=len(present), desc="metrics", unit="edit", disable=None, dynamic_ncols=True)
    for start in range(0, len(present), batch_size):
        batch = []
        for item in present[start : start + batch_size]:
            try:
                with Image.open(edits_dir / f"{item.id}.png") as opened:
                    edit = opened.convert("RGB")
                source = item.load_image()
                target = item.load_target() if item.has_target and "magicbrush" in protocols else None
            except (SampleError, OSError, ValueError) as e:
                failed[item.id] = f"unreadable input: {e}"
                continue
            batch.append((item, edit, source, target))
        for (item, *_), values in zip(batch, _score_batch(batch, protocols, clip_encoder, dino_encoder, not_computed)):
            scores[item.id] = values
        progress.update(len(present[start : start + batch_size]))
    progress.close()

    categories = {item.id: item.category for item in items}
    results = {
        "kind": RESULTS_KIND,
        "protocols": protocols,
        **aggregate(scores, categories, protocols, seed),
        "coverage": {
            "expected": len(items),
            "edits_found": len(items) - len(missing),
            "scored": len(scores),
            "fraction": len(scores) / len(items),
            "missing_edits": missing,
            "failed": failed,
            "not_computed": {p: {m: dict(r) for m, r in by_metric.items()} for p, by_metric in not_computed.items()},
            "identical_captions": sum(
                1
                for item in present
                if item.id in scores and item.input_caption and item.input_caption == item.output_caption
            ),
            "skipped": counter.nonzero(),
        },
        "turns": turns,
        "edits": str(edits_dir),
        "models": {
            "clip": getattr(clip_encoder, "name", None),
            "dino": getattr(dino_encoder, "name", None),
            "device": str((clip_encoder or dino_encoder).device) if (clip_encoder or dino_encoder) else "cpu",
        },
        "note": note,
        "bootstrap": {"samples": NUM_BOOTSTRAP, "seed": seed, "interval": 0.95},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "scores.jsonl", "w") as f:
        for item in items:
            if item.id in scores:
                f.write(json.dumps({"id": item.id, "category": item.category, **scores[item.id]}) + "\n")
    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    write_report(results, out_dir)
    return results
