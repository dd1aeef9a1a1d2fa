"""``mredit eval compare``: models side by side, judge perspectives and standard metrics, with their intervals.

Each results folder holds the ``results.json`` of ``mredit judge eval`` (per perspective the yes-rate and the mean
0-5 score) or of ``mredit eval metrics`` (per protocol and metric the mean). A folder is one model, named by
``names`` or else by the folder's name; two folders of different kinds with the same name (a model's judge and
metrics results) are one model. The table has one row per measure (judge perspectives first, then each protocol's
metrics) and one column per model, each cell ``mean [95% interval]``; the chart has one panel per measure, one bar
per model with its interval.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from mredit.eval.evaluate import LOWER_IS_BETTER, PROTOCOLS, RESULTS_KIND, metric_label
from mredit.schema import PERSPECTIVE_TITLES, PERSPECTIVES

Measure = tuple[str, str, bool, float]  # key, label, higher is better, display scale


def load_results(directory: str | Path) -> tuple[str, dict[str, Any]]:
    """(kind, results): ``metrics`` or ``judge``; a one-line error for a folder without a known results.json."""
    path = Path(directory) / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"no results.json in {directory}")
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not JSON: {e}") from e
    if isinstance(results, dict) and results.get("kind") == RESULTS_KIND:
        return "metrics", results
    if isinstance(results, dict) and all(p in results.get("overall", {}) for p in PERSPECTIVES):
        return "judge", results
    raise ValueError(f"{path} is neither an `mredit judge eval` nor an `mredit eval metrics` results file")


def measures_of(kind: str, results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{measure key: {"label", "higher", "scale", "mean", "ci", "n"}}`` of one results file."""
    out: dict[str, dict[str, Any]] = {}
    if kind == "judge":
        for p in PERSPECTIVES:
            entry = results["overall"][p]
            for metric, label, scale in (("yes_rate", "yes %", 100.0), ("score", "score (0-5)", 1.0)):
                out[f"judge/{p}/{metric}"] = {
                    "label": f"judge {PERSPECTIVE_TITLES[p]} {label}",
                    "higher": True,
                    "scale": scale,
                    "mean": entry.get(metric),
                    "ci": entry.get(f"{metric}_ci"),
                    "n": entry.get("n"),
                }
        return out
    for protocol in results["protocols"]:
        for metric in PROTOCOLS[protocol]:
            entry = results["overall"][protocol][metric]
            out[f"{protocol}/{metric}"] = {
                "label": metric_label(protocol, metric),
                "higher": metric not in LOWER_IS_BETTER,
                "scale": 1.0,
                "mean": entry["mean"],
                "ci": entry["ci"],
                "n": entry["n"],
            }
    return out


def _order(key: str) -> tuple[int, int, int]:
    parts = key.split("/")
    if parts[0] == "judge":
        return 0, PERSPECTIVES.index(parts[1]), 0 if parts[2] == "yes_rate" else 1
    protocols = list(PROTOCOLS)
    return 1 + protocols.index(parts[0]), PROTOCOLS[parts[0]].index(parts[1]), 0


def collect(directories: list[str], names: list[str] | None = None) -> dict[str, dict[str, dict[str, Any]]]:
    """``{model: {measure key: entry}}`` in the order of the folders."""
    if not directories:
        raise ValueError("give at least one results folder")
    if names is not None and len(names) != len(directories):
        raise ValueError(f"--names has {len(names)} names for {len(directories)} results folders")
    models: dict[str, dict[str, dict[str, Any]]] = {}
    kinds: dict[tuple[str, str], str] = {}
    for index, directory in enumerate(directories):
        kind, results = load_results(directory)
        name = names[index] if names else Path(directory).resolve().name
        if (name, kind) in kinds:
            raise ValueError(
                f"{directory} and {kinds[name, kind]} are both {kind} results named {name!r}: give --names"
            )
        kinds[name, kind] = directory
        models.setdefault(name, {}).update(measures_of(kind, results))
    return models


def _cell(entry: dict[str, Any] | None) -> str:
    if entry is None or entry["mean"] is None:
        return "–"
    scale = entry["scale"]
    digits = 1 if scale == 100.0 else (2 if entry["label"].startswith("judge") else 4)
    text = f"{scale * entry['mean']:.{digits}f}"
    if entry.get("ci"):
        low, high = entry["ci"]
        text += f" [{scale * low:.{digits}f}, {scale * high:.{digits}f}]"
    return text


def format_table(models: dict[str, dict[str, dict[str, Any]]]) -> str:
    """One markdown table: a row per measure, a column per model (``mean [95% interval]``), and which way is
    better."""
    keys = sorted({key for measures in models.values() for key in measures}, key=_order)
    lines = ["| measure | better | " + " | ".join(models) + " |", "|---|---|" + "---|" * len(models)]
    for key in keys:
        first = next(m[key] for m in models.values() if key in m)
        cells = [_cell(measures.get(key)) for measures in models.values()]
        better = "higher" if first["higher"] else "lower"
        lines.append(f"| {first['label']} | {better} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def save_chart(models: dict[str, dict[str, dict[str, Any]]], path: Path) -> Path:
    """One figure: a panel per measure, a bar per model with its 95% interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({key for measures in models.values() for key in measures}, key=_order)
    columns = min(4, len(keys))
    rows = math.ceil(len(keys) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.6 * rows), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, key in zip(axes.flat, keys):
        first = next(m[key] for m in models.values() if key in m)
        for i, measures in enumerate(models.values()):
            entry = measures.get(key)
            if entry is None or entry["mean"] is None:
                continue
            scale, mean = entry["scale"], entry["scale"] * entry["mean"]
            error = None
            if entry.get("ci"):
                error = [[max(mean - scale * entry["ci"][0], 0.0)], [max(scale * entry["ci"][1] - mean, 0.0)]]
            ax.bar(i, mean, yerr=error, capsize=3, color=colours[i % len(colours)])
        ax.set_xticks(range(len(models)), list(models), fontsize=7, rotation=20)
        ax.set_title(f"{first['label']} ({'higher' if first['higher'] else 'lower'} is better)", fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def compare_results(directories: list[str], names: list[str] | None = None, out: str | Path | None = None) -> str:
    """The comparison table (returned); with ``out``, also ``compare.md`` and ``compare.png`` there."""
    models = collect([str(d) for d in directories], names)
    table = format_table(models)
    if out is not None:
        out = Path(out)
        save_chart(models, out / "compare.png")
        sources = ", ".join(f"`{d}`" for d in directories)
        (out / "compare.md").write_text(
            f"# Comparison\n\nFrom {sources}. Cells: mean [95% bootstrap interval]; judge yes-rates in %, scores "
            f"0-5; metric definitions in docs/eval.md.\n\n{table}\n\n![comparison](compare.png)\n"
        )
    return table
