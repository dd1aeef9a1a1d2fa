"""Converters of the MagicBrush test split and the Emu Edit test set into the benchmark JSONL (docs/eval.md).

The benchmark JSONL is the one ``mredit judge eval`` reads (``mredit.judge.benchmark``), with the optional keys the
standard metrics use: ``target`` and ``mask`` (paths relative to the file), ``input_caption``, ``output_caption``.

- **MagicBrush, the released test folder** (``test/``): ``edit_sessions.json`` maps each image id to its turns in
  order, ``{"input", "output", "mask", "instruction"}`` (file names; a later turn's input is the previous turn's
  ground-truth output), the files under ``images/<img_id>/``; ``global_descriptions.json`` and
  ``local_descriptions.json`` map ``{img_id: {file name: caption}}``. One item per turn, id ``<img_id>_<turn>``,
  category ``turn<k>``; the input caption is the global description of the turn's input, the output caption the
  local (default, as the MagicBrush evaluation README passes it) or global description of its output. Images are
  referenced where they are.
- **MagicBrush, parquet** (the Hugging Face layout of ``osunlp/MagicBrush``: ``img_id``, ``turn_index``,
  ``source_img``, ``mask_img``, ``instruction``, ``target_img``, images as ``{bytes, path}``): the same items
  without captions; the images are written next to the JSONL.
- **Emu Edit** (``facebook/emu_edit_test_set`` parquet: ``instruction``, ``image``, ``task``, ``split``, ``idx``,
  ``hash``, ``input_caption``, ``output_caption``): one item per row, id ``<split>_<idx>``, category the ``task``;
  the images are written next to the JSONL (there is no ground-truth edit).

Every item's meta records the dataset and the original ids; MagicBrush items also ``turn_index``, ``turns`` and
``final_turn`` (for ``mredit eval metrics --turns final``). A missing file, column, key or image is a one-line
error naming it.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from PIL import Image

MAGICBRUSH_COLUMNS = ("img_id", "turn_index", "source_img", "mask_img", "instruction", "target_img")
EMU_EDIT_COLUMNS = ("instruction", "image", "task", "idx", "input_caption", "output_caption")
EMU_EDIT_OPTIONAL = ("split", "hash")
_EXTENSIONS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "BMP": "bmp", "GIF": "gif", "TIFF": "tif"}
BATCH_ROWS = 64


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", name.strip())


def _images_dir(out_file: Path) -> Path:
    return out_file.parent / f"{out_file.stem}_images"


def _parquet_files(src: list[str]) -> list[Path]:
    files: list[Path] = []
    for item in map(Path, src):
        if item.is_dir():
            found = sorted(item.rglob("*.parquet"))
            if not found:
                raise FileNotFoundError(f"no *.parquet files under {item}")
            files += found
        elif item.is_file():
            files.append(item)
        else:
            raise FileNotFoundError(f"benchmark source not found: {item}")
    return files


def _rows(path: Path, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> Iterator[tuple[int, dict]]:
    """(row index, row) of a parquet file, one record batch in memory at a time; a missing column is an error."""
    try:
        parquet = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a file that is not parquet
        raise ValueError(f"{path}: not a parquet file ({type(e).__name__}: {str(e).splitlines()[0]})") from e
    names = parquet.schema_arrow.names
    missing = [c for c in required if c not in names]
    if missing:
        raise ValueError(f"{path}: missing column {', '.join(repr(c) for c in missing)} (has: {', '.join(names)})")
    columns = [*required, *(c for c in optional if c in names)]
    index = 0
    for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=columns):
        for row in batch.to_pylist():
            yield index, row
            index += 1


def _image_bytes(value: Any, where: str, column: str) -> bytes:
    data = value.get("bytes") if isinstance(value, dict) else value
    if not isinstance(data, (bytes, bytearray)) or not data:
        raise ValueError(f"{where}: column '{column}' has no image bytes")
    return bytes(data)


def _write_image(data: bytes, directory: Path, stem: str, where: str) -> Path:
    """Check that ``data`` is a readable image and write it unchanged as ``<stem>.<its format's extension>``."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            extension = _EXTENSIONS.get(image.format or "", "png")
    except (OSError, ValueError) as e:
        raise ValueError(f"{where}: not a readable image ({e})") from e
    path = directory / f"{stem}.{extension}"
    path.write_bytes(data)
    return path


def _relative(path: Path, out_file: Path) -> str:
    return os.path.relpath(path, out_file.parent)


def _write_jsonl(items: list[dict[str, Any]], out_file: Path) -> None:
    ids = Counter(item["id"] for item in items)
    duplicates = sorted(i for i, n in ids.items() if n > 1)
    if duplicates:
        raise ValueError(f"duplicate item id {duplicates[0]!r} ({len(duplicates)} duplicated ids)")
    if not items:
        raise ValueError("the source has no items")
    out_file.write_text("".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items), encoding="utf-8")


def _summary(items: list[dict[str, Any]], out_file: Path, **extra: Any) -> dict[str, Any]:
    return {
        "items": len(items),
        "per_category": dict(sorted(Counter(item["category"] for item in items).items())),
        "with_target": sum("target" in item for item in items),
        "with_output_caption": sum("output_caption" in item for item in items),
        "with_input_caption": sum("input_caption" in item for item in items),
        **extra,
        "out": str(out_file),
    }


# --- MagicBrush --------------------------------------------------------------------------------------------------


def _magicbrush_root(src: Path) -> Path | None:
    """The folder holding ``edit_sessions.json`` (``src`` itself or its ``test/``), or None (parquet)."""
    for root in (src, src / "test"):
        if (root / "edit_sessions.json").is_file():
            return root
    return None


def _descriptions(root: Path, name: str) -> dict[str, dict[str, str]]:
    path = root / name
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not JSON ({e})") from e
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ValueError(f"{path}: expected {{img_id: {{file name: caption}}}}")
    return data


def _magicbrush_folder(root: Path, out_file: Path, captions: str) -> list[dict[str, Any]]:
    sessions_path = root / "edit_sessions.json"
    try:
        sessions = json.loads(sessions_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{sessions_path}: not JSON ({e})") from e
    if not isinstance(sessions, dict):
        raise ValueError(f"{sessions_path}: expected {{img_id: [turn, ...]}}")
    global_captions = _descriptions(root, "global_descriptions.json")
    output_captions = _descriptions(root, f"{captions}_descriptions.json")
    items = []
    for img_id, turns in sessions.items():
        if not isinstance(turns, list) or not turns:
            raise ValueError(f"{sessions_path}: image {img_id} has no list of turns")
        for turn, entry in enumerate(turns, 1):
            where = f"{sessions_path.name}: image {img_id} turn {turn}"
            if not isinstance(entry, dict):
                raise ValueError(f"{where} is not an object")
            for key in ("input", "output", "instruction"):
                if not entry.get(key):
                    raise ValueError(f"{where} has no '{key}'")
            files = {"image": entry["input"], "target": entry["output"]}
            if entry.get("mask"):
                files["mask"] = entry["mask"]
            item: dict[str, Any] = {"id": _safe(f"{img_id}_{turn}"), "instruction": str(entry["instruction"]).strip()}
            for key, name in files.items():
                path = root / "images" / str(img_id) / str(name)
                if not path.is_file():
                    raise FileNotFoundError(f"MagicBrush image not found: {path} ({where}, '{key}')")
                item[key] = _relative(path, out_file)
            item["category"] = f"turn{turn}"
            input_caption = global_captions.get(str(img_id), {}).get(str(entry["input"]))
            output_caption = output_captions.get(str(img_id), {}).get(str(entry["output"]))
            if input_caption:
                item["input_caption"] = input_caption
            if output_caption:
                item["output_caption"] = output_caption
            item["meta"] = {
                "dataset": "magicbrush",
                "img_id": str(img_id),
                "turn_index": turn,
                "turns": len(turns),
                "final_turn": turn == len(turns),
                "files": {"input": entry["input"], "output": entry["output"], "mask": entry.get("mask")},
            }
            items.append(item)
    return items


def _magicbrush_parquet(files: list[Path], out_file: Path) -> list[dict[str, Any]]:
    turns: Counter = Counter()
    for path in files:  # the number of turns of each image first (two columns only)
        for _, row in _rows(path, MAGICBRUSH_COLUMNS[:2]):
            turns[str(row["img_id"])] = max(turns[str(row["img_id"])], int(row["turn_index"]))
    images_dir = _images_dir(out_file)
    images_dir.mkdir(parents=True, exist_ok=True)
    items = []
    for path in files:
        for index, row in _rows(path, MAGICBRUSH_COLUMNS):
            img_id, turn = str(row["img_id"]), int(row["turn_index"])
            item_id = _safe(f"{img_id}_{turn}")
            where = f"{path.name} row {index} (img_id {img_id}, turn {turn})"
            instruction = (row["instruction"] or "").strip()
            if not instruction:
                raise ValueError(f"{where}: column 'instruction' is empty")
            item: dict[str, Any] = {"id": item_id, "instruction": instruction}
            for key, column, suffix in (("image", "source_img", "input"), ("target", "target_img", "target")):
                data = _image_bytes(row[column], where, column)
                item[key] = _relative(_write_image(data, images_dir, f"{item_id}-{suffix}", where), out_file)
            if row["mask_img"] is not None and _has_bytes(row["mask_img"]):
                mask = _write_image(
                    _image_bytes(row["mask_img"], where, "mask_img"), images_dir, f"{item_id}-mask", where
                )
                item["mask"] = _relative(mask, out_file)
            item["category"] = f"turn{turn}"
            item["meta"] = {
                "dataset": "magicbrush",
                "img_id": img_id,
                "turn_index": turn,
                "turns": turns[img_id],
                "final_turn": turn == turns[img_id],
                "row": f"{path.name}:{index}",
            }
            items.append(item)
    return items


def _has_bytes(value: Any) -> bool:
    data = value.get("bytes") if isinstance(value, dict) else value
    return isinstance(data, (bytes, bytearray)) and len(data) > 0


def convert_magicbrush(src: str | list[str], out_file: str | Path, captions: str = "local") -> dict[str, Any]:
    """The MagicBrush test split (the released folder, or parquet files in the Hugging Face layout) as a benchmark
    JSONL; ``captions``: the ``local`` or ``global`` description of each target as its output caption."""
    if captions not in ("local", "global"):
        raise ValueError(f"--captions must be local or global, got {captions!r}")
    sources = [src] if isinstance(src, str) else [str(s) for s in src]
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    root = _magicbrush_root(Path(sources[0])) if len(sources) == 1 and Path(sources[0]).is_dir() else None
    if root is not None:
        items, layout = _magicbrush_folder(root, out_file, captions), "folder"
    else:
        items, layout = _magicbrush_parquet(_parquet_files(sources), out_file), "parquet"
    _write_jsonl(items, out_file)
    sessions = len({item["meta"]["img_id"] for item in items})
    return _summary(items, out_file, layout=layout, sessions=sessions)


# --- Emu Edit ----------------------------------------------------------------------------------------------------


def convert_emu_edit(src: str | list[str], out_file: str | Path) -> dict[str, Any]:
    """The Emu Edit test set (parquet files of ``facebook/emu_edit_test_set``) as a benchmark JSONL."""
    sources = [src] if isinstance(src, str) else [str(s) for s in src]
    out_file = Path(out_file)
    files = _parquet_files(sources)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    images_dir = _images_dir(out_file)
    images_dir.mkdir(parents=True, exist_ok=True)
    items, identical = [], 0
    for path in files:
        for index, row in _rows(path, EMU_EDIT_COLUMNS, EMU_EDIT_OPTIONAL):
            split = str(row.get("split") or "emu")
            item_id = _safe(f"{split}_{row['idx']}")
            where = f"{path.name} row {index} (idx {row['idx']})"
            instruction = (row["instruction"] or "").strip()
            if not instruction:
                raise ValueError(f"{where}: column 'instruction' is empty")
            image = _write_image(_image_bytes(row["image"], where, "image"), images_dir, item_id, where)
            item: dict[str, Any] = {
                "id": item_id,
                "image": _relative(image, out_file),
                "instruction": instruction,
                "category": str(row["task"] or "uncategorised").strip().lower(),
            }
            for key in ("input_caption", "output_caption"):
                if row[key] and str(row[key]).strip():
                    item[key] = str(row[key]).strip()
            identical += bool(item.get("input_caption")) and item.get("input_caption") == item.get("output_caption")
            item["meta"] = {
                "dataset": "emu_edit",
                "split": row.get("split"),
                "idx": row["idx"],
                "hash": row.get("hash"),
                "task": row["task"],
                "row": f"{path.name}:{index}",
            }
            items.append(item)
    _write_jsonl(items, out_file)
    return _summary(items, out_file, identical_captions=identical)
