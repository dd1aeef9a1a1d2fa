"""Readers of the source datasets ``mredit data convert`` understands, one module per format.

A reader yields ``EditSample``s, or ``BadRecord``s for source records it cannot use (the converter counts and
reports those instead of stopping). Sample keys must not contain '.' (WebDataset splits member names at the first
dot): ``sanitize_key`` replaces it and the original name goes into ``meta["source_id"]``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from mredit.schema import EditSample

_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9_\-]")


@dataclass(frozen=True)
class BadRecord:
    """A source record that could not be turned into a sample."""

    key: str
    reason: str


Record = EditSample | BadRecord
Reader = Callable[..., Iterator[Record]]


def sanitize_key(name: str) -> str:
    """A WebDataset-safe key: letters, digits, '_' and '-' only (so no '.', '/' or spaces)."""
    key = _UNSAFE_KEY_CHARS.sub("_", name.strip())
    if not key:
        raise ValueError(f"cannot make a sample key from {name!r}")
    return key


def image_from_struct(value: Any, column: str) -> bytes:
    """The bytes of a Hugging Face ``Image`` feature cell (``{bytes, path}`` struct) or a raw binary cell."""
    if isinstance(value, dict):
        value = value.get("bytes")
    if not isinstance(value, (bytes, bytearray)) or not value:
        raise ValueError(f"column '{column}' has no image bytes")
    return bytes(value)


def reader_for(name: str) -> Reader:
    """The reader function of a format name (imported lazily: each pulls in its own dependencies)."""
    from mredit.data.formats import ip2p_folder, ip2p_parquet, magicbrush, shards

    readers: dict[str, Reader] = {
        "ip2p-folder": ip2p_folder.read_ip2p_folder,
        "ip2p-parquet": ip2p_parquet.read_ip2p_parquet,
        "magicbrush": magicbrush.read_magicbrush,
        "shards": shards.read_shards,
    }
    if name not in readers:
        raise ValueError(f"unknown format '{name}' (choose from {', '.join(readers)})")
    return readers[name]


FORMAT_NAMES: tuple[str, ...] = ("ip2p-folder", "ip2p-parquet", "magicbrush", "shards")
