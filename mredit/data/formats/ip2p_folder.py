"""The released InstructPix2Pix folder layout.

``<root>/seeds.json`` lists ``[dir_name, [seed, ...]]``; each ``<root>/<dir_name>/`` holds ``prompt.json`` (the
instruction under ``"edit"``), ``<seed>_0.jpg`` (source) and ``<seed>_1.jpg`` (edited) for each seed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from mredit.data.formats import BadRecord, Record, sanitize_key
from mredit.schema import EditSample, SampleError, decode_image


def read_seeds(root: Path) -> list[tuple[str, list[int]]]:
    if not root.is_dir():
        raise FileNotFoundError(f"ip2p folder not found: {root}")
    path = root / "seeds.json"
    if not path.is_file():
        raise FileNotFoundError(f"no seeds.json in {root} (expected the InstructPix2Pix folder layout)")
    try:
        entries = json.loads(path.read_text())
        return [(str(name), [int(s) for s in seeds]) for name, seeds in entries]
    except (json.JSONDecodeError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: expected a list of [dir_name, [seed, ...]]: {e}") from e


def read_ip2p_folder(src: list[str], seeds: str = "first", **_: object) -> Iterator[Record]:
    """Yield one sample per directory (``seeds="first"``, key ``<dir>``) or per seed (``"all"``, ``<dir>_<seed>``)."""
    if seeds not in ("first", "all"):
        raise ValueError(f"--seeds must be 'first' or 'all', got {seeds!r}")
    roots = [Path(root) for root in src]
    listings = [read_seeds(root) for root in roots]  # check every root before yielding anything
    for root, listing in zip(roots, listings):
        for dir_name, dir_seeds in listing:
            chosen = dir_seeds[:1] if seeds == "first" else dir_seeds
            if not chosen:
                yield BadRecord(dir_name, "no seeds listed")
            for seed in chosen:
                source_id = dir_name if seeds == "first" else f"{dir_name}_{seed}"
                try:
                    yield _read_pair(root / dir_name, seed, sanitize_key(source_id), source_id, dir_name)
                except (OSError, ValueError, KeyError) as e:  # SampleError is a ValueError
                    yield BadRecord(source_id, str(e))


def _read_pair(folder: Path, seed: int, key: str, source_id: str, dir_name: str) -> EditSample:
    prompt = json.loads((folder / "prompt.json").read_text())
    instruction = prompt.get("edit") if isinstance(prompt, dict) else None
    if not isinstance(instruction, str) or not instruction.strip():
        raise SampleError(f"{folder / 'prompt.json'}: no 'edit' instruction")
    images = [decode_image((folder / f"{seed}_{i}.jpg").read_bytes(), f"{dir_name}/{seed}_{i}.jpg") for i in (0, 1)]
    meta = {"dataset": "instructpix2pix", "source_id": source_id, "dir_name": dir_name, "seed": seed}
    for field in ("input", "output"):
        if isinstance(prompt.get(field), str):
            meta[f"{field}_caption"] = prompt[field]
    return EditSample(key=key, source=images[0], target=images[1], instruction=instruction.strip(), meta=meta)
