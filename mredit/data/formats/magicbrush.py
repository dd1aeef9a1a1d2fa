"""The MagicBrush parquet release (``osunlp/MagicBrush``).

Columns ``img_id``, ``turn_index``, ``source_img``, ``mask_img``, ``instruction``, ``target_img``. The mask is not
part of the project schema and is not stored; ``meta["has_mask"]`` records whether the row had one, so the mask can
be fetched from the original parquet by ``meta["source_id"]`` if a mask-aware metric needs it.
"""

from __future__ import annotations

from collections.abc import Iterator

from mredit.data.formats import BadRecord, Record, image_from_struct, sanitize_key
from mredit.data.formats.ip2p_parquet import iter_rows, parquet_files
from mredit.schema import EditSample, decode_image

COLUMNS = ("img_id", "turn_index", "source_img", "mask_img", "instruction", "target_img")


def read_magicbrush(src: list[str], **_: object) -> Iterator[Record]:
    """Yield one sample per turn; key ``<img_id>_<turn_index>``."""
    for path in parquet_files(src):
        for index, row in iter_rows(path, COLUMNS):
            source_id = f"{row['img_id']}_{row['turn_index']}"
            try:
                key = sanitize_key(source_id)
                instruction = (row["instruction"] or "").strip()
                if not instruction:
                    raise ValueError("empty instruction")
                mask = row["mask_img"]
                yield EditSample(
                    key=key,
                    source=decode_image(image_from_struct(row["source_img"], "source_img"), "source_img"),
                    target=decode_image(image_from_struct(row["target_img"], "target_img"), "target_img"),
                    instruction=instruction,
                    meta={
                        "dataset": "magicbrush",
                        "source_id": source_id,
                        "img_id": str(row["img_id"]),
                        "turn_index": int(row["turn_index"]),
                        "has_mask": bool(mask and (mask.get("bytes") if isinstance(mask, dict) else mask)),
                        "row": f"{path.name}:{index}",
                    },
                )
            except ValueError as e:
                yield BadRecord(source_id, str(e))
