"""Exact, judge-free metrics for benchmarks whose targets are the exact answer (the synthetic world).

Where the target is exact, the distance to it says how far an edit is from correct, with no judge in between.
Per item, the mean absolute difference between the edit and the target (pixels scaled to 0..1, averaged over
channels) in three regions:

- ``inside``: the edit region, the pixels where the source and the target differ (what the edit had to change:
  a missing or wrong edit shows here);
- ``outside``: the other pixels, which the edit had to leave alone (over-editing, tints, moved objects);
- ``whole``: the whole image (stamps, grids and noise count wherever they are).

An item whose region is empty (no pixel changed, or every pixel did) has no value there. Means over items, overall
and per category, with seeded item-bootstrap 95% intervals (the judge's ``bootstrap_ci``); paired differences
between two models resample the items' differences, so that the interval says whether the two differ. The
``copy_source`` reference (the source returned unchanged) scores 0 outside and the size of the edit inside: a model
that beats it inside without losing it outside has learned to edit.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mredit.judge.benchmark import BenchmarkItem, load_benchmark
from mredit.judge.evaluate import NUM_BOOTSTRAP, bootstrap_ci
from mredit.schema import SampleError

REGIONS: tuple[str, ...] = ("inside", "outside", "whole")
COPY_SOURCE = "copy_source"  # the reference that returns the source unchanged
ItemScores = dict[str, dict[str, Any]]  # item id -> {"category": str, "inside": float | None, ...}


def _pixels(image: Image.Image, size: tuple[int, int] | None = None) -> np.ndarray:
    image = image.convert("RGB")
    if size is not None and image.size != size:
        image = image.resize(size, Image.Resampling.BOX)
    return np.asarray(image, dtype=np.uint8)


def region_distances(edit: np.ndarray, source: np.ndarray, target: np.ndarray) -> dict[str, float | None]:
    """Mean |edit - target| (0..1) inside the edit region (source != target), outside it and over the whole image;
    uint8 [H, W, 3] arrays of one size; None for an empty region."""
    if not edit.shape == source.shape == target.shape:
        raise ValueError(f"images differ in size: edit {edit.shape}, source {source.shape}, target {target.shape}")
    error = np.abs(edit.astype(np.float64) - target.astype(np.float64)).mean(-1) / 255.0
    region = (source != target).any(-1)
    return {
        "inside": float(error[region].mean()) if region.any() else None,
        "outside": float(error[~region].mean()) if not region.all() else None,
        "whole": float(error.mean()),
    }


def item_scores(items: list[BenchmarkItem], edits_dir: str | os.PathLike | None) -> tuple[ItemScores, list[str]]:
    """Each item's region distances for the edits ``<edits_dir>/<id>.png`` (resized to the target's size when they
    differ), or for the source itself (``edits_dir`` None: the copy-the-source reference); and the ids left out
    (no edit, no target, unreadable)."""
    scores: ItemScores = {}
    left_out = []
    for item in items:
        path = None if edits_dir is None else Path(edits_dir) / f"{item.id}.png"
        if item.error is not None or not item.has_target or (path is not None and not path.is_file()):
            left_out.append(item.id)
            continue
        try:
            target = _pixels(item.load_target())
            source = _pixels(item.load_image(), (target.shape[1], target.shape[0]))
            if path is None:
                edit = source
            else:
                with Image.open(path) as opened:
                    edit = _pixels(opened, (target.shape[1], target.shape[0]))
        except (SampleError, OSError, ValueError):
            left_out.append(item.id)
            continue
        scores[item.id] = {"category": item.category, **region_distances(edit, source, target)}
    return scores, left_out


def _mean(values: list[float], rng: np.random.Generator) -> dict[str, Any]:
    array = np.asarray(values, dtype=np.float64)
    return {"mean": float(array.mean()) if len(array) else None, "ci": bootstrap_ci(array, rng), "n": len(array)}


def _region_means(scores: ItemScores, ids: list[str], rng: np.random.Generator) -> dict[str, Any]:
    return {r: _mean([v for i in ids if (v := scores[i][r]) is not None], rng) for r in REGIONS}


def _by_category(scores: ItemScores) -> dict[str, list[str]]:
    categories: dict[str, list[str]] = {}
    for item_id in sorted(scores):
        categories.setdefault(scores[item_id]["category"], []).append(item_id)
    return dict(sorted(categories.items()))


def summarise(scores: ItemScores, seed: int = 0) -> dict[str, Any]:
    """``{"overall": {region: {"mean", "ci", "n"}}, "per_category": {category: {region: ...}}}``."""
    rng = np.random.default_rng(seed)
    return {
        "overall": _region_means(scores, sorted(scores), rng),
        "per_category": {c: _region_means(scores, ids, rng) for c, ids in _by_category(scores).items()},
    }


def paired_difference(a: Mapping[str, float | None], b: Mapping[str, float | None], rng: np.random.Generator) -> dict:
    """Mean of ``a - b`` over the items both have a value for, with the item-bootstrap 95% interval of that mean
    (items resampled together, so the interval is the paired one); ``excludes_zero`` when it does."""
    shared = sorted(k for k in a.keys() & b.keys() if a[k] is not None and b[k] is not None)
    differences = np.asarray([float(a[k]) - float(b[k]) for k in shared], dtype=np.float64)
    ci = bootstrap_ci(differences, rng)
    return {
        "mean": float(differences.mean()) if len(shared) else None,
        "ci": ci,
        "n": len(shared),
        "excludes_zero": bool(ci is not None and (ci[0] > 0 or ci[1] < 0)),
    }


def paired_region_differences(a: ItemScores, b: ItemScores, seed: int = 0) -> dict[str, Any]:
    """``paired_difference`` of ``a - b`` per region, overall and per category (of ``a``'s items)."""
    rng = np.random.default_rng(seed)

    def block(ids: list[str]) -> dict[str, Any]:
        return {
            r: paired_difference({i: a[i][r] for i in ids}, {i: b[i][r] for i in ids if i in b}, rng) for r in REGIONS
        }

    return {
        "overall": block(sorted(a)),
        "per_category": {c: block(ids) for c, ids in _by_category(a).items()},
    }


def evaluate_exact(
    editions: Mapping[str, str | os.PathLike],
    benchmark: str | os.PathLike | list[str],
    pairs: Sequence[tuple[str, str]] = (),
    seed: int = 0,
) -> dict[str, Any]:
    """The exact metrics of each edition (name -> folder of ``<id>.png`` edits) and of the ``copy_source``
    reference on a benchmark with exact targets, and the paired differences ``a - b`` for each ``(a, b)`` of
    ``pairs`` (names of editions or ``copy_source``).

    Returns ``{"models": {name: {"overall", "per_category", "n", "left_out"}}, "differences": {"a - b": {"overall",
    "per_category"}}, "regions": {...}, "bootstrap": {...}}``; ValueError when the benchmark has no targets."""
    items = load_benchmark(benchmark)
    if not any(item.has_target for item in items):
        raise ValueError("the benchmark has no targets: the exact metrics need the exact answer of every item")
    per_item: dict[str, ItemScores] = {}
    models: dict[str, Any] = {}
    for name, edits_dir in {**editions, COPY_SOURCE: None}.items():
        if edits_dir is not None and not Path(edits_dir).is_dir():
            raise FileNotFoundError(f"edits directory not found: {edits_dir}")
        scores, left_out = item_scores(items, edits_dir)
        per_item[name] = scores
        models[name] = {**summarise(scores, seed), "n": len(scores), "left_out": left_out}
    differences = {}
    for a, b in pairs:
        unknown = {a, b} - set(per_item)
        if unknown:
            raise ValueError(f"unknown editions {sorted(unknown)} in pairs; known: {', '.join(per_item)}")
        differences[f"{a} - {b}"] = paired_region_differences(per_item[a], per_item[b], seed)
    return {
        "models": models,
        "differences": differences,
        "regions": {
            "inside": "mean |edit - target| where the source and the target differ (the edit region)",
            "outside": "mean |edit - target| where they are equal",
            "whole": "mean |edit - target| over the image",
        },
        "bootstrap": {"samples": NUM_BOOTSTRAP, "seed": seed, "interval": 0.95},
    }
