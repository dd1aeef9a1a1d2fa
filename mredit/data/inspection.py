"""``mredit data inspect``: what is in a set of shards, and what is wrong with it.

Prints the sample count, reward coverage, a score histogram per perspective and the bad samples with their
reasons; with ``--out``, also writes ``histograms.png``, ``contact_sheet.png`` (source | target | instruction and
scores for the first ``--num`` samples) and ``summary.json`` (everything printed, with the full bad-sample list)
there. Without ``--out`` nothing is written.

Example::

    mredit data inspect --shards shards/ip2p --out reports/ip2p --num 8
"""

from __future__ import annotations

import json
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

from PIL import Image

from mredit.data.reader import ShardSpec, SkipCounter, classify_skip, iter_raw_samples, resolve_shards
from mredit.schema import MAX_SCORE, PERSPECTIVE_TITLES, PERSPECTIVES, EditSample, SampleError, decode_sample

THUMBNAIL = 192
SCORE_BINS = [i / 2 for i in range(int(2 * MAX_SCORE) + 1)]  # 0, 0.5, ..., 5


def inspect_shards(shards: ShardSpec, out: str | Path | None = None, num: int = 8) -> dict[str, Any]:
    """Scan every sample of the shards and return the summary; with ``out``, also write ``histograms.png``,
    ``contact_sheet.png`` (the first ``num`` samples) and ``summary.json`` there (``summary["files"]``).

    Unreadable shards and undecodable samples are counted (``skipped``) and listed (``bad_samples``), not raised.
    """
    if num < 0:
        raise ValueError(f"num must be >= 0, got {num}")
    urls = resolve_shards(shards)
    counter = SkipCounter()
    histograms = {p: Counter() for p in PERSPECTIVES}
    categories: Counter = Counter()
    bad: list[dict[str, str]] = []
    shown: list[EditSample] = []
    total = with_reward = 0
    for raw in iter_raw_samples(urls, counter):
        try:
            sample = decode_sample(raw, draft_size=(THUMBNAIL, THUMBNAIL))
        except SampleError as e:
            bad.append({"key": str(raw.get("__key__")), "shard": str(raw.get("__url__")), "reason": str(e)})
            counter.add(classify_skip(e))
            continue
        total += 1
        if sample.reward is not None:
            with_reward += 1
            for p, score in zip(PERSPECTIVES, sample.reward.scores):
                histograms[p][round(score * 2) / 2] += 1
        categories[str(sample.meta.get("category", "-"))] += 1
        if out is not None and len(shown) < num:
            sample.source.thumbnail((THUMBNAIL, THUMBNAIL))
            sample.target.thumbnail((THUMBNAIL, THUMBNAIL))
            shown.append(sample)
    summary = {
        "shards": len(urls),
        "num_samples": total,
        "with_reward": with_reward,
        "reward_fraction": with_reward / total if total else 0.0,
        "score_histogram": {p: {str(k): v for k, v in sorted(h.items())} for p, h in histograms.items()},
        "categories": dict(sorted(categories.items())),
        "skipped": counter.nonzero(),
        "bad_samples": bad,
        "files": {},
    }
    if out is None:
        return summary
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if with_reward:
        summary["files"]["histograms"] = str(_plot_histograms(histograms, out / "histograms.png"))
    if shown:
        summary["files"]["contact_sheet"] = str(_contact_sheet(shown, out / "contact_sheet.png"))
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    summary["files"]["summary"] = str(out / "summary.json")
    return summary


def _plot_histograms(histograms: dict[str, Counter], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PERSPECTIVES), figsize=(4 * len(PERSPECTIVES), 3), sharey=True)
    for ax, p in zip(axes, PERSPECTIVES):
        ax.bar(SCORE_BINS, [histograms[p].get(b, 0) for b in SCORE_BINS], width=0.4, color="tab:blue")
        ax.set_title(PERSPECTIVE_TITLES[p])
        ax.set_xlabel("score")
        ax.set_xticks(range(int(MAX_SCORE) + 1))
    axes[0].set_ylabel("samples")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _contact_sheet(samples: list[EditSample], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(samples), 3, figsize=(9, 3 * len(samples)), squeeze=False)
    for row, sample in zip(axes, samples):
        for ax, image, title in ((row[0], sample.source, "source"), (row[1], sample.target, "target")):
            ax.imshow(_square(image))
            ax.set_title(f"{title}: {sample.key}" if title == "source" else title, fontsize=8)
            ax.axis("off")
        row[2].axis("off")
        row[2].text(0, 1, _caption(sample), va="top", ha="left", fontsize=8, family="monospace", wrap=True)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _square(image: Image.Image) -> Image.Image:
    canvas = Image.new("RGB", (max(image.size),) * 2, (255, 255, 255))
    canvas.paste(image, ((canvas.width - image.width) // 2, (canvas.height - image.height) // 2))
    return canvas


def _caption(sample: EditSample) -> str:
    lines = textwrap.wrap(sample.instruction, 34)[:6]
    if sample.reward is None:
        lines.append("(no reward)")
    else:
        for p, score, feedback in zip(PERSPECTIVES, sample.reward.scores, sample.reward.feedbacks):
            lines.append(f"{p}: {score:g}")
            if feedback != "None":
                lines.extend("  " + part for part in textwrap.wrap(feedback, 32)[:2])
    return "\n".join(lines)


def print_summary(summary: dict[str, Any]) -> None:
    """Print what ``inspect_shards`` returned: counts, score histograms as bars, bad samples, files written."""
    print(f"{summary['num_samples']} samples in {summary['shards']} shards")
    print(f"rewards: {summary['with_reward']} samples ({summary['reward_fraction']:.1%})")
    for p in PERSPECTIVES:
        histogram = summary["score_histogram"][p]
        if not histogram:
            continue
        peak = max(histogram.values())
        print(f"  {PERSPECTIVE_TITLES[p]}:")
        for score, count in histogram.items():
            print(f"    {float(score):>4g} {'#' * max(1, round(30 * count / peak))} {count}")
    if len(summary["categories"]) > 1 or "-" not in summary["categories"]:
        print(f"categories: {summary['categories']}")
    if summary["bad_samples"] or summary["skipped"]:
        print(f"bad samples: {len(summary['bad_samples'])} ({summary['skipped']})")
        for entry in summary["bad_samples"][:20]:
            print(f"  {entry['key']} [{Path(entry['shard']).name}]: {entry['reason']}")
    else:
        print("bad samples: none")
    for name, path in summary["files"].items():
        print(f"wrote {name}: {path}")
