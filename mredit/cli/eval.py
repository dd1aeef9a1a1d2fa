"""``mredit eval metrics|compare|convert-benchmark``: the standard metrics beside the judge (docs/eval.md).

``metrics`` and ``convert-benchmark`` print their summary as JSON; ``compare`` prints one markdown table.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from mredit.cli.parsing import CommandGroup, bare_words
from mredit.eval import DEFAULT_CLIP, DEFAULT_DINO


def _print(summary: dict[str, Any]) -> None:
    print(json.dumps(summary, indent=2))


def metrics(
    edits: str,
    benchmark: str,
    out: str,
    protocol: Literal["magicbrush", "emu-edit", "all"] = "all",
    clip: str = DEFAULT_CLIP,
    dino: str = DEFAULT_DINO,
    device: str = "auto",
    batch_size: int = 32,
    turns: Literal["all", "final"] = "all",
    seed: int = 0,
) -> None:
    """Score a model's benchmark edits with the MagicBrush and Emu Edit metrics and write a report.

    MagicBrush: L1, L2, CLIP-I, DINO against the ground-truth target, CLIP-T against its caption. Emu Edit:
    CLIP-dir (image change vs caption change), CLIP-I, DINO and L1 against the input, CLIP-out against the output
    caption. Means overall and per category with 95% bootstrap intervals: OUT/results.json, report.md, scores.jsonl.

    Args:
        edits: Dir of <item id>.png edits.
        benchmark: Benchmark JSONL (mredit eval convert-benchmark), or shards (dir with manifest / tars).
        out: Output dir: results.json, report.md, scores.jsonl.
        protocol: magicbrush, emu-edit, or all (Emu Edit, and MagicBrush when the benchmark has targets).
        clip: CLIP model: a local folder or hub id (default CLIP ViT-B/32, as MagicBrush).
        dino: DINO model (ViTModel or Dinov2Model): a local folder or hub id (default DINO ViT-S/16, as MagicBrush).
        device: auto (a GPU when there is one), cpu, cuda, cuda:1, ...
        batch_size: Edits per forward pass.
        turns: all items, or each MagicBrush session's final turn (the multi-turn setting: iterative edits).
        seed: Bootstrap seed.
    """
    from mredit.eval.evaluate import evaluate_metrics  # torch and transformers: only when the command runs

    results = evaluate_metrics(edits, benchmark, out, protocol, clip, dino, device, batch_size, turns, seed)
    overall = {
        protocol_: {metric: entry["mean"] for metric, entry in by_metric.items()}
        for protocol_, by_metric in results["overall"].items()
    }
    _print({"overall": overall, "coverage": results["coverage"], "report": f"{out}/report.md"})


@bare_words("results")
def compare(results: list[str], names: list[str] | None = None, out: str | None = None) -> None:
    """Compare models: one table of judge perspectives and metrics with their 95% intervals (and a chart).

    mredit eval compare RESULTS_DIR... [--names '[a, b]'] [--out DIR]: each RESULTS_DIR holds the results.json of
    mredit judge eval or of mredit eval metrics; a judge and a metrics folder with the same name are one model.

    Args:
        results: The results folders (also given as bare words).
        names: Model names, one per folder (default: the folders' names).
        out: Also write OUT/compare.md and the chart OUT/compare.png.
    """
    from mredit.eval.compare import compare_results

    print(compare_results(results, names, out))


def convert_benchmark(
    src_format: Literal["magicbrush", "emu-edit", "real-edit"],
    src: str | list[str],
    out: str,
    captions: Literal["local", "global"] = "local",
    images: str | None = None,
) -> None:
    """Convert a benchmark (MagicBrush test split, Emu Edit test set, Real-Edit) into a benchmark JSONL.

    Args:
        src_format: magicbrush (the test folder with edit_sessions.json, or parquet), emu-edit (parquet), real-edit.
        src: The source: a folder, parquet files or a folder of them; real-edit: real_edit_instruct.json.
        out: Output JSONL (image paths are relative to it; extracted images go to <out stem>_images/).
        captions: MagicBrush: the local or global description of the target as its output caption.
        images: real-edit only: the dir of the benchmark images.
    """
    from mredit.eval.benchmarks import convert_emu_edit, convert_magicbrush
    from mredit.judge.benchmark import convert_real_edit

    if src_format == "real-edit":
        if images is None or not isinstance(src, str):
            raise ValueError("real-edit needs one --src (real_edit_instruct.json) and --images DIR")
        _print(convert_real_edit(src, images, out))
    elif src_format == "magicbrush":
        _print(convert_magicbrush(src, out, captions))
    else:
        _print(convert_emu_edit(src, out))


COMMANDS = CommandGroup(
    "Standard image-editing metrics (MagicBrush, Emu Edit), benchmark converters, comparisons.",
    {"metrics": metrics, "compare": compare, "convert-benchmark": convert_benchmark},
)
