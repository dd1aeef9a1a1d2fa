"""Reading project shards for the judge: a dir with manifest.json, a brace pattern, or tar paths.

Samples are streamed raw (members as bytes, grouped by WebDataset key) so a corrupt sample can be reported by
``mredit.schema.decode_sample`` and turned into an ``invalid`` record instead of stopping the run.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import braceexpand

from mredit.data.shards import MANIFEST_NAME, shard_paths


def resolve_shards(specs: list[str]) -> list[str]:
    """Expand each spec (a shard dir with a manifest, a ``{000..009}`` pattern, or a tar path) to tar paths."""
    paths: list[str] = []
    for spec in specs:
        if Path(spec).is_dir():
            if not (Path(spec) / MANIFEST_NAME).is_file():
                raise FileNotFoundError(f"{spec} is a directory without {MANIFEST_NAME}")
            paths.extend(shard_paths(spec))
        else:
            paths.extend(braceexpand.braceexpand(spec))
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(
            f"shard not found: {missing[0]}" + (f" (+{len(missing) - 1} more)" if missing[1:] else "")
        )
    if not paths:
        raise ValueError("no shards given")
    return paths


def _split_member(name: str) -> tuple[str, str]:
    directory, _, base = name.rpartition("/")
    stem, _, suffix = base.partition(".")
    return (f"{directory}/{stem}" if directory else stem), suffix


def iter_raw_samples(paths: list[str]) -> Iterator[dict[str, Any]]:
    """Yield ``{"__key__", "__url__", <suffix>: bytes, ...}`` per sample, in shard order.

    A tar that cannot be read raises ``ValueError`` naming it: that is a broken dataset, not a bad sample.
    """
    for path in paths:
        current: dict[str, Any] | None = None
        try:
            with tarfile.open(path, mode="r|*") as tar:
                for member in tar:
                    if not member.isfile():
                        continue
                    key, suffix = _split_member(member.name)
                    if current is not None and current["__key__"] != key:
                        yield current
                        current = None
                    if current is None:
                        current = {"__key__": key, "__url__": path}
                    data = tar.extractfile(member)
                    current[suffix] = data.read() if data is not None else b""
        except (tarfile.TarError, OSError, EOFError) as e:
            raise ValueError(f"cannot read shard {path}: {e}") from e
        if current is not None:
            yield current
