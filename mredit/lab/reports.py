"""Report artefacts for the demo and the experiments: markdown tables, a comparison grid PNG, a bar chart.

Inputs are plain dicts in the shape ``mredit judge eval`` writes (``results.json``): per perspective
``{"yes_rate": float in [0, 1], "score": float in [0, 5], "yes_rate_ci": [lo, hi], "score_ci": [lo, hi], "n": int}``,
the CI and ``n`` keys being optional. Arms (``baseline``, ``reward``, ...) map to such per-perspective dicts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from mredit.eval.evaluate import LABELS, LOWER_IS_BETTER
from mredit.schema import PERSPECTIVE_TITLES, PERSPECTIVES

Metrics = Mapping[str, Mapping[str, Any]]  # perspective -> {"yes_rate": ..., "score": ..., ...}


def _cell(value: Any, percent: bool) -> str:
    if value is None:
        return "–"
    return f"{100 * value:.1f}" if percent else f"{value:.2f}"


def _header(first_columns: Sequence[str]) -> list[str]:
    titles = [f"{PERSPECTIVE_TITLES[p]} {m}" for p in PERSPECTIVES for m in ("yes %", "score")]
    columns = [*first_columns, *titles]
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]


def _metric_cells(metrics: Metrics) -> list[str]:
    cells = []
    for perspective in PERSPECTIVES:
        entry = metrics.get(perspective, {})
        cells += [_cell(entry.get("yes_rate"), percent=True), _cell(entry.get("score"), percent=False)]
    return cells


def format_overall_table(results: Mapping[str, Metrics]) -> str:
    """One row per arm: yes-rate (%) and mean score (0-5) per perspective."""
    lines = _header(["model"])
    lines += ["| " + " | ".join([arm, *_metric_cells(metrics)]) + " |" for arm, metrics in results.items()]
    return "\n".join(lines)


def format_category_table(per_category: Mapping[str, Mapping[str, Metrics]]) -> str:
    """``per_category[arm][category][perspective]`` -> one row per (category, arm), categories in first-seen order."""
    categories: list[str] = []
    for by_category in per_category.values():
        categories += [c for c in by_category if c not in categories]
    lines = _header(["category", "model"])
    for category in categories:
        for arm, by_category in per_category.items():
            if category in by_category:
                lines.append("| " + " | ".join([category, arm, *_metric_cells(by_category[category])]) + " |")
    return "\n".join(lines)


def format_aggregate_table(aggregate: Mapping[str, Mapping[str, Mapping[str, Mapping[str, Any]]]]) -> str:
    """Experiment summary: ``aggregate[arm][perspective][metric] = {"mean", "ci": [lo, hi], "n"}``.

    Cells read ``mean ± half-width`` of the 95% t-interval over seeds (yes-rates in %).
    """
    lines = _header(["arm", "seeds"])
    for arm, metrics in aggregate.items():
        cells, seeds = [], 0
        for perspective in PERSPECTIVES:
            for metric, scale in (("yes_rate", 100.0), ("score", 1.0)):
                entry = metrics.get(perspective, {}).get(metric)
                if entry is None:
                    cells.append("–")
                    continue
                seeds = max(seeds, entry["n"])
                digits = 1 if scale == 100.0 else 2
                half = (entry["ci"][1] - entry["ci"][0]) / 2 if entry.get("ci") else None
                text = f"{scale * entry['mean']:.{digits}f}"
                cells.append(text if half is None else f"{text} ± {scale * half:.{digits}f}")
        lines.append("| " + " | ".join([arm, str(seeds), *cells]) + " |")
    return "\n".join(lines)


EXACT_TITLES = {"inside": "L1 inside the edit", "outside": "L1 outside it", "whole": "L1 whole image"}


def _interval(entry: Mapping[str, Any] | None, scale: float = 1.0, digits: int = 4) -> str:
    """``mean [lo, hi]`` of a ``{"mean", "ci"}`` entry, scaled; "–" when there is no mean."""
    if not entry or entry.get("mean") is None:
        return "–"
    text = f"{scale * entry['mean']:.{digits}f}"
    ci = entry.get("ci")
    return text + (f" [{scale * ci[0]:.{digits}f}, {scale * ci[1]:.{digits}f}]" if ci else "")


def format_exact_table(models: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> str:
    """``models[name][region] = {"mean", "ci", "n"}`` (``mredit.eval.exact``, regions inside / outside / whole) ->
    one row per model: the mean distance to the exact target and its 95% interval per region (lower is better)."""
    regions = list(EXACT_TITLES)
    lines = ["| model | n | " + " | ".join(EXACT_TITLES[r] for r in regions) + " |"]
    lines.append("|---|---|" + "---|" * len(regions))
    for name, by_region in models.items():
        n = max((by_region[r]["n"] for r in regions if r in by_region), default=0)
        lines.append(f"| {name} | {n} | " + " | ".join(_interval(by_region.get(r)) for r in regions) + " |")
    return "\n".join(lines)


def format_exact_category_table(per_category: Mapping[str, Mapping[str, Mapping[str, Mapping[str, Any]]]]) -> str:
    """``per_category[model][category][region]`` -> one row per category, one column per model: the mean distance
    inside / outside the edit region."""
    models = list(per_category)
    categories: list[str] = []
    for by_category in per_category.values():
        categories += [c for c in by_category if c not in categories]
    lines = ["| category | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    for category in categories:
        cells = []
        for model in models:
            entry = per_category[model].get(category, {})
            means = [(entry.get(r) or {}).get("mean") for r in ("inside", "outside")]
            cells.append(" / ".join("–" if m is None else f"{m:.3f}" for m in means))
        lines.append(f"| {category} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_paired_differences(rows: Sequence[tuple[str, Mapping[str, Any], float, int]]) -> str:
    """``(measure, {"mean", "ci", "n", "excludes_zero"}, scale, digits)`` rows -> the paired difference, its 95%
    interval and whether the interval excludes zero."""
    lines = ["| measure | difference [95% interval] | n | interval excludes 0 |", "|---|---|---|---|"]
    for label, entry, scale, digits in rows:
        excludes = "–" if entry.get("mean") is None else ("yes" if entry.get("excludes_zero") else "no")
        lines.append(f"| {label} | {_interval(entry, scale, digits)} | {entry.get('n', 0)} | {excludes} |")
    return "\n".join(lines)


def save_exact_bars(
    models: Mapping[str, Mapping[str, Mapping[str, Any]]], path: str | os.PathLike, title: str = ""
) -> Path:
    """Grouped bars per region (inside / outside the edit, whole image), one bar per model: the mean distance to the
    exact target (lower is better), with its 95% interval as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    regions = list(EXACT_TITLES)
    names = list(models)
    width = 0.8 / max(len(names), 1)
    fig, ax = plt.subplots(figsize=(7, 3.4))
    for i, name in enumerate(names):
        xs = [k + (i - (len(names) - 1) / 2) * width for k in range(len(regions))]
        entries = [models[name].get(r, {}) for r in regions]
        heights = [e.get("mean") or 0.0 for e in entries]
        errors = None
        if all(e.get("ci") for e in entries):
            errors = [
                [max(h - e["ci"][0], 0.0) for h, e in zip(heights, entries)],
                [max(e["ci"][1] - h, 0.0) for h, e in zip(heights, entries)],
            ]
        ax.bar(xs, heights, width, yerr=errors, capsize=3, label=name)
    ax.set_xticks(range(len(regions)), [EXACT_TITLES[r] for r in regions], fontsize=8)
    ax.set_ylabel("mean |edit - exact target| (0-1)")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def save_comparison_grid(
    rows: Sequence[tuple[str, Sequence[Image.Image]]],
    column_titles: Sequence[str],
    path: str | os.PathLike,
    cell_size: int = 96,
) -> Path:
    """A PNG with one row per example (its images side by side, upscaled with nearest neighbour so pixels stay
    visible) and a caption under each row (the instruction); column titles on top."""
    if not rows:
        raise ValueError("no rows to draw")
    columns = len(column_titles)
    for caption, images in rows:
        if len(images) != columns:
            raise ValueError(f"row '{caption}' has {len(images)} images, expected {columns}")
    title_h, caption_h, pad = 16, 14, 4
    width = columns * (cell_size + pad) + pad
    row_h = cell_size + caption_h + pad
    canvas = Image.new("RGB", (width, title_h + len(rows) * row_h + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for c, title in enumerate(column_titles):
        draw.text((pad + c * (cell_size + pad), 2), title, fill="black")
    for r, (caption, images) in enumerate(rows):
        top = title_h + r * row_h
        for c, image in enumerate(images):
            tile = image.convert("RGB").resize((cell_size, cell_size), Image.Resampling.NEAREST)
            canvas.paste(tile, (pad + c * (cell_size + pad), top))
        draw.text((pad, top + cell_size + 1), caption[: width // 6], fill="black")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path


def save_metric_bars(results: Mapping[str, Metrics], path: str | os.PathLike, title: str = "") -> Path:
    """Grouped bars per perspective, one bar per arm: yes-rate (%) on the left, mean score (0-5) on the right.

    Error bars show the 95% intervals when the results carry ``yes_rate_ci``/``score_ci``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = list(results)
    width = 0.8 / max(len(arms), 1)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, metric, scale, label in (
        (axes[0], "yes_rate", 100.0, "yes-rate (%)"),
        (axes[1], "score", 1.0, "mean score (0-5)"),
    ):
        for i, arm in enumerate(arms):
            xs = [k + (i - (len(arms) - 1) / 2) * width for k in range(len(PERSPECTIVES))]
            entries = [results[arm].get(p, {}) for p in PERSPECTIVES]
            heights = [scale * (e.get(metric) or 0.0) for e in entries]
            errors = None
            if all(e.get(f"{metric}_ci") for e in entries):
                lows = [h - scale * e[f"{metric}_ci"][0] for h, e in zip(heights, entries)]
                highs = [scale * e[f"{metric}_ci"][1] - h for h, e in zip(heights, entries)]
                errors = [[max(v, 0.0) for v in lows], [max(v, 0.0) for v in highs]]
            ax.bar(xs, heights, width, yerr=errors, capsize=3, label=arm)
        ax.set_xticks(range(len(PERSPECTIVES)), [PERSPECTIVE_TITLES[p] for p in PERSPECTIVES], fontsize=8)
        ax.set_ylabel(label)
        ax.set_ylim(0, 100 if scale == 100.0 else 5)
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def replace_between_markers(text: str, block: str, name: str = "results") -> str:
    """Put ``block`` between ``<!-- name:start -->`` and ``<!-- name:end -->`` (appended when absent)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    fenced = f"{start}\n{block.strip()}\n{end}"
    if start in text and end in text and text.index(start) < text.index(end):
        return text[: text.index(start)] + fenced + text[text.index(end) + len(end) :]
    return text.rstrip("\n") + "\n\n" + fenced + "\n"


def format_category_means_table(means: Mapping[str, Mapping[str, Any]], perspective: str = "following") -> str:
    """``means[arm][category][perspective]["yes_rate"]`` -> yes-rate % per category (rows) and arm (columns)."""
    arms = [arm for arm in means if means[arm]]
    categories = sorted({c for arm in arms for c in means[arm]})
    lines = ["| category | " + " | ".join(arms) + " |", "|---|" + "---|" * len(arms)]
    for c in categories:
        cells = [f"{100 * means[a][c][perspective]['yes_rate']:.1f}" if c in means[a] else "-" for a in arms]
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_curve_table(curve: Mapping[int, Mapping[str, Any]], perspective: str = "following") -> str:
    """One row per (step, arm): the overall yes-rate % of ``perspective`` and its yes-rate % per category.

    A checkpoint saved during a run is not the model a shorter run would end with (the learning rate has not
    decayed yet), but the EMA weights it holds show when each kind of edit starts to be learned."""
    categories = sorted({c for point in curve.values() for arm in point["per_category"].values() for c in arm})
    lines = [
        "| step | arm | overall | " + " | ".join(categories) + " |",
        "|---|---|---|" + "---|" * len(categories),
    ]
    for step, point in sorted(curve.items()):
        for arm, metrics in point["arms"].items():
            overall = metrics[perspective]["yes_rate"]["mean"]
            cells = [point["per_category"][arm].get(c, {}).get(perspective, {}).get("yes_rate") for c in categories]
            row = [f"{100 * v:.1f}" if v is not None else "-" for v in [overall, *cells]]
            lines.append(f"| {step} | {arm} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def format_experiment_results(
    summary: Mapping[str, Any], budget: Mapping[str, Any], reference: str | None, command: str | None = None
) -> str:
    """The generated results block of an experiment's README: how it was made, the aggregate table, the paired
    differences, the per-category means, the learning curve (``mredit.lab.experiments.aggregate``'s summary) and
    the MagicBrush metrics against the exact targets (``summary["metrics"]``, when measured)."""
    lines = [f"Made by `{command}`.", ""] if command else []
    lines += [
        f"Budget: {json.dumps(budget, sort_keys=True)}. Cells: mean ± half-width of the 95% t-interval over seeds "
        "(yes-rates in %, scores 0-5), judged by the oracle on the clean synthetic test set.",
        "",
        format_aggregate_table(summary["arms"]),
    ]
    if summary.get("differences"):
        lines += ["", f"Paired differences to `{reference}` (same seed):", ""]
        lines.append(format_aggregate_table(summary["differences"]))
    if any(summary.get("per_category", {}).values()):
        for perspective in ("following", "preserving"):
            lines += ["", f"{perspective.capitalize()} yes-rate % per category (mean over seeds):", ""]
            lines.append(format_category_means_table(summary["per_category"], perspective))
    if summary.get("curve"):
        lines += ["", "Learning curve: following yes-rate % at each saved step (mean over seeds):", ""]
        lines.append(format_curve_table(summary["curve"]))
    if summary.get("exact"):
        lines += [
            "",
            "Exact metrics, judge-free: mean |edit - target| (pixels 0-1, lower is better) inside the edit region, "
            "outside it and over the whole image; `copy_source` returns the source unchanged (mean ± half-width of "
            "the 95% t-interval over seeds):",
            "",
            format_exact_aggregate_table(summary["exact"]["arms"]),
        ]
        if summary["exact"].get("differences"):
            lines += ["", f"Exact metrics, paired differences to `{reference}` (same seed; negative is closer):", ""]
            lines.append(format_exact_aggregate_table(summary["exact"]["differences"]))
    if summary.get("metrics"):
        lines += [
            "",
            "MagicBrush metrics against the exact targets (mean ± half-width of the 95% t-interval over seeds):",
        ]
        if summary.get("metrics_note"):
            lines += ["", f"*{summary['metrics_note']}.*"]
        lines += ["", format_metrics_aggregate_table(summary["metrics"])]
    return "\n".join(lines)


def _metric_columns(rows: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[str]:
    metrics: list[str] = []
    for by_metric in rows.values():
        metrics += [m for m, entry in by_metric.items() if entry.get("n") and m not in metrics]
    return metrics


def format_metrics_table(results: Mapping[str, Mapping[str, Any]], protocol: str = "magicbrush") -> str:
    """``results[model]`` = an ``mredit eval metrics`` results dict -> one row per model: each computed metric of
    ``protocol`` as ``mean [95% bootstrap interval]`` (metrics no model has, such as CLIP-T without captions, are
    left out)."""
    rows = {model: result["overall"][protocol] for model, result in results.items()}
    metrics = _metric_columns(rows)
    titles = [f"{LABELS[m]} ({'lower' if m in LOWER_IS_BETTER else 'higher'} is better)" for m in metrics]
    lines = ["| model | " + " | ".join(titles) + " |", "|---|" + "---|" * len(metrics)]
    for model, by_metric in rows.items():
        cells = []
        for metric in metrics:
            entry = by_metric[metric]
            ci = entry.get("ci")
            cells.append(
                "–"
                if entry["mean"] is None
                else f"{entry['mean']:.4f}" + (f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "")
            )
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_exact_aggregate_table(aggregate: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> str:
    """``aggregate[arm][region] = {"mean", "ci", "n"}`` (over seeds) -> ``mean ± half-width`` per arm and region."""
    regions = list(EXACT_TITLES)
    lines = ["| arm | seeds | " + " | ".join(EXACT_TITLES[r] for r in regions) + " |"]
    lines.append("|---|---|" + "---|" * len(regions))
    for arm, by_region in aggregate.items():
        cells = []
        for region in regions:
            entry = by_region[region]
            half = (entry["ci"][1] - entry["ci"][0]) / 2 if entry.get("ci") else None
            cells.append(f"{entry['mean']:.4f}" + ("" if half is None else f" ± {half:.4f}"))
        seeds = max(by_region[r]["n"] for r in regions)
        lines.append(f"| {arm} | {seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_metrics_aggregate_table(aggregate: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> str:
    """``aggregate[arm][metric] = {"mean", "ci", "n"}`` (over seeds) -> ``mean ± half-width`` per arm and metric."""
    metrics = _metric_columns(aggregate)
    titles = [f"{LABELS[m]} ({'lower' if m in LOWER_IS_BETTER else 'higher'} is better)" for m in metrics]
    lines = ["| arm | seeds | " + " | ".join(titles) + " |", "|---|---|" + "---|" * len(metrics)]
    for arm, by_metric in aggregate.items():
        cells, seeds = [], 0
        for metric in metrics:
            entry = by_metric.get(metric) or {}
            if entry.get("mean") is None:
                cells.append("–")
                continue
            seeds = max(seeds, entry["n"])
            half = (entry["ci"][1] - entry["ci"][0]) / 2 if entry.get("ci") else None
            cells.append(f"{entry['mean']:.4f}" + ("" if half is None else f" ± {half:.4f}"))
        lines.append(f"| {arm} | {seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
