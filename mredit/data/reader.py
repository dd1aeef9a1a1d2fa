"""The one reader of project shards: shard specs, tar reading, skip-and-count.

Everything that reads shards (the datamodules, latents, ``encode``, ``inspect``, ``convert --src_format shards``,
the judge, ``mredit edit --shards``) goes through this module:

- ``resolve_shards(spec)``: a brace pattern, a tar path, a directory (its ``manifest.json``, else its ``*.tar``),
  a ``pipe:`` command or remote URL, or a list of these -> shard URLs; one-line errors for a missing shard or an
  empty spec;
- ``iter_raw_samples(urls, counter)``: raw samples (``{"__key__", "__url__", <suffix>: bytes}``) in tar order,
  read with ``webdataset.tariterators.tarfile_samples`` one shard at a time; a shard that cannot be opened or
  read is logged, counted once as ``unreadable_shard`` and the next one is read;
- ``decode_or_skip`` / ``read_samples``: decoded ``EditSample``s; a bad sample is logged, counted by reason
  (``SKIP_REASONS``) and skipped.

``SkipCounter`` keeps the counts in shared memory, so DataLoader workers add to the numbers of their process.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import braceexpand
from webdataset.tariterators import tarfile_samples

from mredit.data.recipes import how_to_make
from mredit.data.shards import MANIFEST_NAME, read_manifest, shard_paths
from mredit.schema import EditSample, SampleError, decode_sample

log = logging.getLogger(__name__)

SKIP_REASONS: tuple[str, ...] = (
    "unreadable_image",
    "missing_member",
    "bad_reward",
    "bad_meta",
    "bad_transform",
    "unreadable_shard",
    "other",
)
# what webdataset.gopen opens besides local files (S3 goes through "pipe:aws s3 cp s3://... -")
REMOTE_PREFIXES: tuple[str, ...] = (
    "pipe:",
    "http://",
    "https://",
    "gs://",
    "hf://",
    "ais://",
    "sftp://",
    "ftps://",
    "scp://",
)

ShardSpec = str | os.PathLike | Sequence[str | os.PathLike]


def classify_skip(error: SampleError) -> str:
    """Map a decoding error (its message names the member and problem) to one of ``SKIP_REASONS``."""
    message = str(error)
    if "not a readable image" in message:
        return "unreadable_image"
    if "missing member" in message:
        return "missing_member"
    if "reward.json" in message or "score" in message:
        return "bad_reward"
    if "meta.json" in message:
        return "bad_meta"
    return "other"


class SkipCounter:
    """Per-reason counts of skipped samples, in shared memory so that DataLoader workers add to the same numbers.

    The array is created in the main process and inherited by the workers (both ``fork`` and ``spawn`` pass it at
    process creation), so ``counts()`` in the main process sees every worker's skips. Counts are per process (rank).
    """

    def __init__(self) -> None:
        self._array = multiprocessing.get_context().Array("q", len(SKIP_REASONS))

    def add(self, reason: str, n: int = 1) -> None:
        index = SKIP_REASONS.index(reason if reason in SKIP_REASONS else "other")
        with self._array.get_lock():
            self._array[index] += n

    def counts(self) -> dict[str, int]:
        """Every reason with its count (zeros included)."""
        with self._array.get_lock():
            return {reason: int(v) for reason, v in zip(SKIP_REASONS, self._array[:])}

    def nonzero(self) -> dict[str, int]:
        """The reasons that occurred, with their counts (``{}`` when nothing was skipped)."""
        return {reason: n for reason, n in self.counts().items() if n}

    @property
    def total(self) -> int:
        return sum(self.counts().values())


def is_remote(url: str) -> bool:
    """A ``pipe:`` command or a URL webdataset opens (not checked for existence)."""
    return url.startswith(REMOTE_PREFIXES)


def resolve_shards(spec: ShardSpec) -> list[str]:
    """Expand a shard spec into a list of shard URLs and check that local ones exist.

    ``spec`` is a brace pattern (``data/shard-{000000..000009}.tar``), a path to a tar file, a directory holding a
    ``manifest.json`` (or, failing that, ``*.tar`` files), a ``pipe:`` command or remote URL (brace-expanded like
    WebDataset does, not checked), or a list of any of these. Raises ``FileNotFoundError`` naming the first
    missing path, ``ValueError`` for an empty spec or a directory without shards; for a tiny config's default
    folder (``data/synth/train``...) the message also names the command that makes it.
    """
    items = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    urls: list[str] = []
    for item in items:
        item = os.fspath(item).strip()
        if not item:
            continue
        if is_remote(item):
            urls.extend(braceexpand.braceexpand(item))
            continue
        path = Path(item)
        if path.is_dir():
            if (path / MANIFEST_NAME).is_file():
                found = shard_paths(path)
            else:
                found = sorted(str(p) for p in path.glob("*.tar"))
            if not found:
                raise ValueError(
                    f"no shards in directory {item} (no {MANIFEST_NAME} and no *.tar files){how_to_make(item)}"
                )
            urls.extend(found)
            continue
        urls.extend(braceexpand.braceexpand(item))
    if not urls:
        raise ValueError(f"empty shard list: {spec!r}")
    missing = [url for url in urls if not is_remote(url) and not os.path.isfile(url)]
    if missing:
        raise FileNotFoundError(
            f"shard not found: {missing[0]} ({len(missing)} of {len(urls)} shards missing){how_to_make(missing[0])}"
        )
    return urls


def count_samples(spec: ShardSpec) -> int | None:
    """The number of samples of a shard spec when every part of it is a folder with a manifest, else None."""
    items = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    total = 0
    for item in items:
        path = Path(os.fspath(item).strip())
        if not (path / MANIFEST_NAME).is_file():
            return None
        try:
            total += int(read_manifest(path)["num_samples"])
        except (ValueError, KeyError, TypeError):
            return None
    return total


def iter_raw_samples(urls: Iterable[str], counter: SkipCounter | None = None) -> Iterator[dict[str, Any]]:
    """Raw samples (``__key__``, ``__url__`` and one ``bytes`` value per member suffix) of the shards, in order.

    Each shard is read by ``webdataset.tariterators.tarfile_samples`` (``url_opener`` -> ``tar_file_expander``
    -> ``group_by_keys``, Python's ``tarfile`` underneath), one shard at a time so that a sample never spans two
    shards. A shard that cannot be opened or read (missing, truncated, not a tar, a failing ``pipe:``) is logged
    and counted once as ``unreadable_shard``; the samples read from it before the error are still yielded.
    """
    for url in urls:
        errors: list[Exception] = []

        def handler(error: Exception, url: str = url, errors: list[Exception] = errors) -> bool:
            message = error.args[0] if error.args else repr(error)
            if not errors:  # webdataset may report one broken stream twice (the member, then the next header)
                log.warning("skipping the rest of unreadable shard %s: %s", url, message)
                if counter is not None:
                    counter.add("unreadable_shard")
            errors.append(error)
            return True  # go on: a truncated shard yields what it has, then the next shard is read

        yield from tarfile_samples([{"url": url}], handler=handler)


def decode_or_skip(
    raws: Iterable[dict[str, Any]], counter: SkipCounter | None, draft_size: tuple[int, int] | None = None
) -> Iterator[EditSample]:
    """Decode raw samples, logging and counting the ones that fail instead of stopping.

    With ``draft_size`` (width, height) JPEGs decode at a reduced scale in the DCT domain, both sides kept >= it
    (``mredit.schema.decode_image``: libjpeg-turbo through ``simplejpeg``, Pillow for other formats).
    """
    for raw in raws:
        try:
            yield decode_sample(raw, draft_size=draft_size)
        except SampleError as e:
            reason = classify_skip(e)
            log.warning("skipping sample (%s): %s [%s]", reason, e, raw.get("__url__", "?"))
            if counter is not None:
                counter.add(reason)


def read_samples(
    spec: ShardSpec, counter: SkipCounter | None = None, draft_size: tuple[int, int] | None = None
) -> Iterator[EditSample]:
    """The decodable samples of a shard spec, in order: ``decode_or_skip(iter_raw_samples(resolve_shards(spec)))``.

    The spec is resolved when this is called (a missing shard raises here, before iteration starts).
    """
    urls = resolve_shards(spec)
    return decode_or_skip(iter_raw_samples(urls, counter), counter, draft_size)
