"""Project shards as a source: re-shard them, change the image format, or join rewards into them."""

from __future__ import annotations

from collections.abc import Iterator

from mredit.data.formats import BadRecord, Record
from mredit.data.reader import SkipCounter, classify_skip, iter_raw_samples, resolve_shards
from mredit.schema import SampleError, decode_sample


def read_shards(src: list[str], **_: object) -> Iterator[Record]:
    """Decode every sample of the shards (a directory with manifest.json, brace patterns or tar files)."""
    counter = SkipCounter()
    for raw in iter_raw_samples(resolve_shards(src), counter):
        try:
            yield decode_sample(raw)
        except SampleError as e:
            yield BadRecord(str(raw.get("__key__", "?")), f"{classify_skip(e)}: {e}")
    unreadable = counter.counts()["unreadable_shard"]
    if unreadable:
        yield BadRecord("<tar data>", f"unreadable_shard: {unreadable} unreadable shards (see the log)")
