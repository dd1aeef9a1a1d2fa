"""The examples gallery of ``mredit serve``: input images with their instructions, copied as PNGs into a folder
the server owns (so the page never serves, or reads on request, the folder they came from).

The source is a folder of images (``<stem>.txt`` beside an image gives its instruction) or a shard spec (each
sample's source image and instruction, read through ``mredit.data.reader``, up to an equal number per
``meta.category``, as the demo's clean test set has them).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from mredit.data.reader import SkipCounter, read_samples
from mredit.pipelines.sizing import load_image

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
# where `make demo` writes its clean test set; the default examples when it exists
DEMO_TEST_SET = Path("reports/demo/data/test")


@dataclass(frozen=True)
class Example:
    """One gallery entry: a PNG the server wrote and its instruction ("" when none)."""

    image: Path
    instruction: str


def _from_folder(folder: Path, limit: int, out_dir: Path) -> list[Example]:
    examples = []
    for file in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        if len(examples) >= limit:
            break
        try:
            image = load_image(file)
        except ValueError as e:
            log.warning("examples: skipping %s", e)
            continue
        text_file = file.with_suffix(".txt")
        instruction = text_file.read_text().strip() if text_file.is_file() else ""
        path = out_dir / f"{len(examples):03d}_{file.stem}.png"
        image.save(path)
        examples.append(Example(path, instruction))
    return examples


def _from_shards(spec: str, limit: int, out_dir: Path) -> list[Example]:
    samples = list(read_samples(spec, SkipCounter()))
    categories = sorted({str(sample.meta.get("category", "")) for sample in samples})
    per_category = max(1, -(-limit // max(len(categories), 1)))
    chosen, counts = [], {}
    for sample in samples:
        category = str(sample.meta.get("category", ""))
        if counts.get(category, 0) < per_category and len(chosen) < limit:
            counts[category] = counts.get(category, 0) + 1
            chosen.append(sample)
    chosen.sort(key=lambda sample: str(sample.meta.get("category", "")))
    examples = []
    for index, sample in enumerate(chosen):
        path = out_dir / f"{index:03d}.png"
        sample.source.convert("RGB").save(path)
        examples.append(Example(path, sample.instruction))
    return examples


def collect_examples(source: str | Path, out_dir: str | Path, limit: int = 14) -> list[Example]:
    """Up to ``limit`` examples from ``source`` (a folder of images, or a shard spec), written to ``out_dir``."""
    if limit < 1:
        return []
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    folder = Path(source)
    if folder.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir()):
        examples = _from_folder(folder, limit, out_dir)
    else:
        examples = _from_shards(str(source), limit, out_dir)  # a missing path fails here, naming it
    if not examples:
        raise ValueError(f"--examples: no readable images in {source}")
    return examples


def default_examples_source() -> Path | None:
    """The demo's clean test set (``reports/demo/data/test`` under the working directory) when it exists."""
    return DEMO_TEST_SET if (DEMO_TEST_SET / "manifest.json").is_file() else None
