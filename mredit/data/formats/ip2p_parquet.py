"""The Hugging Face parquet release of InstructPix2Pix (``timbrooks/instructpix2pix-clip-filtered`` layout).

Columns ``original_prompt``, ``original_image``, ``edit_prompt``, ``edited_prompt``, ``edited_image``; images are
``{bytes, path}`` structs. Files are read one record batch at a time, never whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq

from mredit.data.formats import BadRecord, Record, image_from_struct, sanitize_key
from mredit.schema import EditSample, decode_image

COLUMNS = ("original_prompt", "original_image", "edit_prompt", "edited_prompt", "edited_image")
BATCH_ROWS = 64


def parquet_files(src: list[str]) -> list[Path]:
    """Parquet files named directly or found (recursively, sorted) under directories."""
    files: list[Path] = []
    for item in map(Path, src):
        if item.is_dir():
            found = sorted(item.rglob("*.parquet"))
            if not found:
                raise FileNotFoundError(f"no *.parquet files under {item}")
            files.extend(found)
        elif item.is_file():
            files.append(item)
        else:
            raise FileNotFoundError(f"parquet source not found: {item}")
    return files


def iter_rows(path: Path, columns: tuple[str, ...]) -> Iterator[tuple[int, dict]]:
    """(row index, row dict) for each row, one record batch in memory at a time."""
    parquet = pq.ParquetFile(path)
    missing = [c for c in columns if c not in parquet.schema_arrow.names]
    if missing:
        raise ValueError(f"{path}: missing columns {missing} (found {parquet.schema_arrow.names})")
    index = 0
    for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=list(columns)):
        for row in batch.to_pylist():
            yield index, row
            index += 1


def read_ip2p_parquet(src: list[str], **_: object) -> Iterator[Record]:
    """Yield one sample per row; key ``<file stem>_<row index>``."""
    for path in parquet_files(src):
        stem = sanitize_key(path.name.removesuffix(".parquet"))
        for index, row in iter_rows(path, COLUMNS):
            key = f"{stem}_{index:07d}"
            try:
                instruction = (row["edit_prompt"] or "").strip()
                if not instruction:
                    raise ValueError("empty edit_prompt")
                yield EditSample(
                    key=key,
                    source=decode_image(image_from_struct(row["original_image"], "original_image"), "original_image"),
                    target=decode_image(image_from_struct(row["edited_image"], "edited_image"), "edited_image"),
                    instruction=instruction,
                    meta={
                        "dataset": "instructpix2pix",
                        "source_id": f"{path.name}:{index}",
                        "original_prompt": row["original_prompt"],
                        "edited_prompt": row["edited_prompt"],
                    },
                )
            except ValueError as e:
                yield BadRecord(key, str(e))
