"""Evaluation benchmarks: the benchmark JSONL format, project shards as a benchmark, the Real-Edit converter.

Benchmark JSONL: one item per line, ``{"id", "image" (path relative to the file), "instruction", "category",
"meta" (optional)}``, and optionally ``"target"`` and ``"mask"`` (paths relative to the file: the ground-truth edit
and its mask), ``"input_caption"`` and ``"output_caption"`` (captions of the source and of the edited image), which
the standard metrics read (``mredit eval metrics``; the MagicBrush and Emu Edit converters write them). Shards: each
sample is an item with id ``__key__``, image ``src``, target ``tgt``, instruction ``txt``, category
``meta["category"]``, captions ``meta["input_caption"]`` / ``meta["output_caption"]`` when present, and meta the
whole meta.json (the synthetic oracle reads its scene from it).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from mredit.data.reader import SkipCounter, iter_raw_samples, resolve_shards
from mredit.schema import SampleError, decode_sample

REAL_EDIT_CATEGORIES: tuple[str, ...] = ("local", "remove", "add", "texture", "background", "global", "style")
UNCATEGORISED = "uncategorised"
_CATEGORY_ALIASES = {"removal": "remove", "addition": "add", "adding": "add", "removing": "remove"}


@dataclass
class BenchmarkItem:
    id: str
    instruction: str
    category: str
    image_path: Path | None = None  # JSONL items: loaded on demand
    image: Image.Image | None = None  # shard items: decoded already
    meta: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # a benchmark sample that could not be read
    target_path: Path | None = None  # the ground-truth edit (JSONL items), loaded on demand
    target: Image.Image | None = None  # the ground-truth edit (shard items)
    mask_path: Path | None = None  # the edit mask, when the benchmark has one
    input_caption: str | None = None  # a caption of the source image
    output_caption: str | None = None  # a caption of the edited image

    def load_image(self) -> Image.Image:
        return _load(self.image, self.image_path, self.id, "image")

    @property
    def has_target(self) -> bool:
        return self.target is not None or self.target_path is not None

    def load_target(self) -> Image.Image:
        """The ground-truth edit (``SampleError`` when the item has none or it cannot be read)."""
        return _load(self.target, self.target_path, self.id, "target")


def _load(image: Image.Image | None, path: Path | None, item_id: str, what: str) -> Image.Image:
    if image is not None:
        return image
    if path is None:
        raise SampleError(f"item '{item_id}' has no {what}")
    try:
        with Image.open(path) as opened:
            return opened.convert("RGB")
    except (OSError, ValueError) as e:
        raise SampleError(f"item '{item_id}': cannot read {path}: {e}") from e


def _caption(value: Any) -> str | None:
    return str(value) if isinstance(value, str) and value.strip() else None


def normalise_category(name: str) -> str:
    """Map "Local", "Background change", "removal", ... to one of the seven Real-Edit names."""
    word = re.split(r"[\s_\-]+", name.strip().lower())[0] if name.strip() else ""
    word = _CATEGORY_ALIASES.get(word, word)
    if word not in REAL_EDIT_CATEGORIES:
        raise ValueError(f"unknown Real-Edit category {name!r}; expected one of {', '.join(REAL_EDIT_CATEGORIES)}")
    return word


def _jsonl_items(path: Path) -> Iterator[BenchmarkItem]:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            item = BenchmarkItem(
                id=str(entry["id"]),
                instruction=str(entry["instruction"]),
                category=str(entry.get("category") or UNCATEGORISED),
                image_path=path.parent / entry["image"],
                meta=dict(entry.get("meta") or {}),
                target_path=path.parent / entry["target"] if entry.get("target") else None,
                mask_path=path.parent / entry["mask"] if entry.get("mask") else None,
                input_caption=_caption(entry.get("input_caption")),
                output_caption=_caption(entry.get("output_caption")),
            )
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{path}:{number}: not a benchmark item ({e})") from e
        yield item


def _shard_items(specs: list[str], counter: SkipCounter | None) -> Iterator[BenchmarkItem]:
    for raw in iter_raw_samples(resolve_shards(specs), counter):
        key = str(raw["__key__"])
        try:
            sample = decode_sample(raw)
        except SampleError as e:
            yield BenchmarkItem(id=key, instruction="", category=UNCATEGORISED, error=str(e))
            continue
        category = str(sample.meta.get("category") or UNCATEGORISED)
        yield BenchmarkItem(
            key,
            sample.instruction,
            category,
            image=sample.source,
            meta=sample.meta,
            target=sample.target,
            input_caption=_caption(sample.meta.get("input_caption")),
            output_caption=_caption(sample.meta.get("output_caption")),
        )


def load_benchmark(spec: str | os.PathLike | list[str], counter: SkipCounter | None = None) -> list[BenchmarkItem]:
    """Items of a benchmark JSONL file, or of shards (anything ``mredit.data.reader.resolve_shards`` takes).

    A shard sample that cannot be decoded is an item with ``error`` set; a shard that cannot be read is skipped
    and counted in ``counter`` (``unreadable_shard``).
    """
    specs = [str(s) for s in spec] if isinstance(spec, list) else [str(spec)]
    if len(specs) == 1 and specs[0].endswith((".jsonl", ".json")):
        path = Path(specs[0])
        if not path.is_file():
            raise FileNotFoundError(f"benchmark file not found: {path}")
        items = list(_jsonl_items(path))
    else:
        items = list(_shard_items(specs, counter))
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise ValueError(f"benchmark has duplicate item id {item.id!r}")
        seen.add(item.id)
    if not items:
        raise ValueError(f"benchmark {specs[0]} has no items")
    return items


def parse_real_edit_entry(text: str, position: int) -> tuple[str, str]:
    """``"<Category>. <label>: <instruction>"`` -> (category, instruction); split on the FIRST ": " only.

    Instructions may themselves contain ": ". A prefix whose category is not recognisable falls back to the
    official order of the seven instructions per image.
    """
    prefix, separator, instruction = text.partition(": ")
    if not separator or not instruction.strip():
        raise ValueError(f"Real-Edit entry without '<label>: <instruction>': {text!r}")
    try:
        category = normalise_category(prefix.split(".")[0])
    except ValueError:
        if position >= len(REAL_EDIT_CATEGORIES):
            raise
        category = REAL_EDIT_CATEGORIES[position]
    return category, instruction.strip()


def convert_real_edit(instruct_json: str | Path, images_dir: str | Path, out_file: str | Path) -> dict[str, Any]:
    """Convert ``real_edit_instruct.json`` (``{image file: [7 strings]}``) into a benchmark JSONL."""
    instruct_json, images_dir, out_file = Path(instruct_json), Path(images_dir), Path(out_file)
    if not instruct_json.is_file():
        raise FileNotFoundError(f"Real-Edit instruction file not found: {instruct_json}")
    data = json.loads(instruct_json.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{instruct_json}: expected an object mapping image files to instruction lists")
    out_file.parent.mkdir(parents=True, exist_ok=True)
    lines, counts = [], {c: 0 for c in REAL_EDIT_CATEGORIES}
    for image_file, entries in sorted(data.items()):
        image = images_dir / image_file
        if not image.is_file():
            raise FileNotFoundError(f"Real-Edit image not found: {image}")
        if not isinstance(entries, list):
            raise ValueError(f"{instruct_json}: entry for {image_file!r} is not a list")
        stem = re.sub(r"[^A-Za-z0-9_-]", "_", Path(image_file).stem)  # WebDataset-safe: no dots
        for position, text in enumerate(entries):
            category, instruction = parse_real_edit_entry(str(text), position)
            item = {
                "id": f"{stem}_{position}_{category}",
                "image": os.path.relpath(image, out_file.parent),
                "instruction": instruction,
                "category": category,
                "meta": {"source_image": image_file, "original": text},
            }
            lines.append(json.dumps(item, ensure_ascii=False))
            counts[category] += 1
    out_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"items": len(lines), "images": len(data), "per_category": counts, "out": str(out_file)}
