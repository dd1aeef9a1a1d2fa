"""Reading project shards as a stream: shard-spec resolution, rank/worker splitting, shuffling, skip-and-count.

``EditStream`` is the ``IterableDataset`` behind ``EditDataModule``. Each DataLoader worker of each rank reads
its own slice of the shard list (split by rank first, then by worker, like ``wds.split_by_node`` followed by
``wds.split_by_worker``), but the rank and world size are passed in explicitly by the datamodule instead of being
read from the environment, so they are right even before/without ``torch.distributed`` env variables.

A sample that cannot be used (corrupt image, missing member, bad ``reward.json``...) is logged with its reason,
counted in a ``SkipCounter`` shared by all workers of the process, and iteration goes on.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import random
import re
import tarfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import braceexpand
from torch.utils.data import IterableDataset, get_worker_info
from webdataset.tariterators import group_by_keys, tar_file_iterator, url_opener

from mredit.data.shards import MANIFEST_NAME, shard_paths
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
_REMOTE_PREFIXES = ("pipe:", "http://", "https://", "gs://", "hf://", "ais://", "sftp://", "ftps://", "scp://")


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
        with self._array.get_lock():
            return {reason: int(v) for reason, v in zip(SKIP_REASONS, self._array[:])}

    @property
    def total(self) -> int:
        return sum(self.counts().values())


def resolve_shards(spec: str | list[str] | tuple[str, ...]) -> list[str]:
    """Expand a shard spec into a list of shard URLs and check that local ones exist.

    ``spec`` is a brace pattern (``data/shard-{000000..000009}.tar``), a path to a tar file, a directory holding a
    ``manifest.json`` (or, failing that, ``*.tar`` files), a ``pipe:`` command or remote URL (not checked), or a
    list of any of these. Raises ``FileNotFoundError`` naming the first missing path, ``ValueError`` if empty.
    """
    items = [spec] if isinstance(spec, str) else list(spec)
    urls: list[str] = []
    for item in items:
        item = str(item).strip()
        if not item:
            continue
        if item.startswith(_REMOTE_PREFIXES):
            urls.extend(braceexpand.braceexpand(item))  # like WebDataset, pipe: commands are brace-expanded too
            continue
        path = Path(item)
        if path.is_dir():
            if (path / MANIFEST_NAME).is_file():
                found = shard_paths(path)
            else:
                found = sorted(str(p) for p in path.glob("*.tar"))
            if not found:
                raise ValueError(f"no shards in directory {item} (no {MANIFEST_NAME} and no *.tar files)")
            urls.extend(found)
            continue
        urls.extend(braceexpand.braceexpand(item))
    if not urls:
        raise ValueError(f"empty shard list: {spec!r}")
    missing = [url for url in urls if not url.startswith(_REMOTE_PREFIXES) and not os.path.isfile(url)]
    if missing:
        raise FileNotFoundError(f"shard not found: {missing[0]} ({len(missing)} of {len(urls)} shards missing)")
    return urls


def split_for(shards: list[str], rank: int, world_size: int, worker: int, num_workers: int) -> list[str]:
    """The shards one worker of one rank reads: ``rank::world_size`` (by node), then ``worker::num_workers``."""
    return shards[rank::world_size][worker::num_workers]


def iter_raw_samples(urls: Iterable[str], counter: SkipCounter | None = None) -> Iterator[dict[str, Any]]:
    """Raw tar samples (member name -> bytes) of the given shards; unreadable shards are logged and counted.

    Equivalent to ``webdataset.tariterators.tarfile_samples`` (same opening, grouping and error handling), with a
    lighter reader for uncompressed tar streams (``_tar_members``).
    """

    def handler(error: Exception) -> bool:
        log.warning("skipping unreadable shard data: %s", error)
        if counter is not None:
            counter.add("unreadable_shard")
        return True

    streams = url_opener(({"url": url} for url in urls), handler=handler)
    yield from group_by_keys(_expand_tars(streams, handler), handler=handler)


def _expand_tars(sources: Iterable[dict[str, Any]], handler: Callable[[Exception], bool]) -> Iterator[dict[str, Any]]:
    """``webdataset.tariterators.tar_file_expander`` over ``_tar_members``: files of each shard, then ``{}``."""
    for source in sources:
        url = source["url"]
        try:
            for fname, data in _tar_members(source["stream"], handler):
                yield {"fname": fname, "data": data, "__url__": url}
            yield {}  # end of shard: samples of different shards are never merged
        except Exception as exn:
            exn.args = exn.args + (source.get("stream"), url)
            if not handler(exn):
                break


_BLOCK = 512
_COMPRESSED_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")  # gzip, bzip2, xz: left to tarfile ("r|*")
_REGULAR, _PAX, _PAX_GLOBAL, _GNU_LONGNAME = (b"0", b"\x00", b"7"), b"x", b"g", b"L"
_NO_DATA_TYPES = (b"1", b"2", b"3", b"4", b"5", b"6")  # links, devices, directories, fifos: size is ignored
_META_MEMBER = re.compile(r"__[^/]*__($|/)")


class _Prefixed:
    """A read-only stream: ``prefix`` bytes, then the rest of ``stream``."""

    def __init__(self, prefix: bytes, stream: Any) -> None:
        self.prefix, self.stream = prefix, stream

    def read(self, size: int = -1) -> bytes:
        if not self.prefix:
            return self.stream.read(size)
        if size is None or size < 0:
            data, self.prefix = self.prefix + self.stream.read(), b""
            return data
        data, self.prefix = self.prefix[:size], self.prefix[size:]
        return data if len(data) == size else data + self.stream.read(size - len(data))


def _pax_records(data: bytes) -> dict[str, str]:
    """``path``/``size`` of a pax extended header (``"%d %s=%s\\n"`` records)."""
    records, pos = {}, 0
    while pos < len(data) and data[pos] != 0:
        space = data.index(b" ", pos)
        length = int(data[pos:space])
        if length <= 0:
            raise tarfile.InvalidHeaderError("invalid pax header")
        key, _, value = data[space + 1 : pos + length - 1].partition(b"=")
        records[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return records


def _tar_members(stream: Any, handler: Callable[[Exception], bool]) -> Iterator[tuple[str, bytes]]:
    """(name, data) of the regular files of a tar stream, like ``webdataset.tariterators.tar_file_iterator``.

    Python's ``tarfile`` parses every numeric and string field of every header (and the pax header that
    ``webdataset.TarWriter`` puts before each member); this reads only what is needed: name, size, type, and the
    checksum, with ``tarfile``'s own helpers and rules (a bad first header is an error, a bad later one ends the
    archive, an extended header followed by a bad one is an error). Compressed streams and member types it does
    not handle (GNU sparse, ...) go to ``tar_file_iterator`` from that member on.
    """
    read, offset, pending = stream.read, 0, b""
    pax: dict[str, str] = {}
    pax_global: dict[str, str] = {}
    long_name: str | None = None
    while True:
        header = read(_BLOCK)
        if (
            offset == 0
            and header.startswith(_COMPRESSED_MAGIC)
            or header[156:157]
            not in (
                *_REGULAR,
                _PAX,
                _PAX_GLOBAL,
                _GNU_LONGNAME,
                *_NO_DATA_TYPES,
                b"",
            )
        ):
            for sample in tar_file_iterator(_Prefixed(pending + header, stream), handler=handler):
                yield sample["fname"], sample["data"]
            return
        try:
            if len(header) < _BLOCK:
                raise (
                    tarfile.EmptyHeaderError("empty file")
                    if not header
                    else tarfile.TruncatedHeaderError("truncated header")
                )
            if header.count(0) == _BLOCK:
                return  # end-of-archive block
            checksum = tarfile.nti(header[148:156])
            # the usual unsigned checksum (the 8 checksum bytes count as spaces), else tarfile's full check
            if checksum != sum(header) - sum(header[148:156]) + 256 and checksum not in tarfile.calc_chksums(header):
                raise tarfile.InvalidHeaderError("bad checksum")
            kind = header[156:157]
            size = int(pax["size"]) if "size" in pax else tarfile.nti(header[124:136])
        except tarfile.HeaderError as e:
            if offset == 0:
                raise tarfile.ReadError("empty file" if isinstance(e, tarfile.EmptyHeaderError) else str(e)) from None
            if pending:
                raise tarfile.ReadError(str(e)) from None  # tarfile's SubsequentHeaderError
            return  # like tarfile: a bad header after the first one ends the archive
        padded = size + (-size) % _BLOCK
        if kind in (_PAX, _PAX_GLOBAL, _GNU_LONGNAME):
            body = read(padded)
            if len(body) < padded:
                raise tarfile.ReadError("unexpected end of data")
            if kind == _GNU_LONGNAME:
                long_name = tarfile.nts(body[:size], "utf-8", "surrogateescape")
            else:
                (pax if kind == _PAX else pax_global).update(_pax_records(body[:size]))
            offset, pending = offset + _BLOCK + padded, pending + header + body
            continue
        fname = pax.get("path", pax_global.get("path")) or long_name
        if fname is None:
            fname = tarfile.nts(header[0:100], "utf-8", "surrogateescape")
            prefix = tarfile.nts(header[345:500], "utf-8", "surrogateescape")
            if prefix:
                fname = prefix + "/" + fname
        pax, long_name, pending = {}, None, b""
        offset += _BLOCK
        if kind in _NO_DATA_TYPES or (kind == b"\x00" and fname.endswith("/")):
            continue  # not a regular file (an old-style directory entry ends with "/"): no data follows
        try:
            data = read(size)
            if len(data) < size or len(read(padded - size)) < padded - size:
                raise tarfile.ReadError("unexpected end of data")
        except Exception as exn:
            if exn.args:
                exn.args = (f"{exn.args[0]} @ {stream}",) + exn.args[1:]
            handler(exn)
            return  # the stream is broken: nothing after this point can be read
        offset += padded
        if "/" not in fname and fname.startswith("__") and fname.endswith("__") or _META_MEMBER.match(fname):
            continue
        yield fname, data


def decode_or_skip(
    raws: Iterable[dict[str, Any]], counter: SkipCounter | None, draft_size: tuple[int, int] | None = None
) -> Iterator[EditSample]:
    """Decode raw samples, logging and counting the ones that fail instead of stopping."""
    for raw in raws:
        try:
            yield decode_sample(raw, draft_size=draft_size)
        except SampleError as e:
            reason = classify_skip(e)
            log.warning("skipping sample (%s): %s [%s]", reason, e, raw.get("__url__", "?"))
            if counter is not None:
                counter.add(reason)


def shuffle_buffer(items: Iterable[Any], size: int, rng: random.Random) -> Iterator[Any]:
    """Approximate shuffle through a buffer of ``size`` items (``size <= 1`` passes items through)."""
    if size <= 1:
        yield from items
        return
    buffer: list[Any] = []
    for item in items:
        if len(buffer) < size:
            buffer.append(item)
            continue
        index = rng.randrange(size)
        buffer[index], item = item, buffer[index]
        yield item
    rng.shuffle(buffer)
    yield from buffer


class EditStream(IterableDataset):
    """Stream per-sample dicts (see ``mredit.data.datamodule``) from shards, split across ranks and workers.

    Non-resampled: every epoch each rank reads the shards ``rank::world_size`` of a shard list shuffled identically
    on all ranks with ``(seed, epoch)``; its workers split those again. Every sample is seen exactly once per epoch
    across all ranks and workers. Resampled: each worker draws shards with replacement forever (seeded by
    ``seed, epoch, rank, worker``); the loader must cap the epoch length.
    """

    def __init__(
        self,
        shards: list[str],
        to_item: Callable[[EditSample, random.Random], dict[str, Any]],
        rank: int = 0,
        world_size: int = 1,
        shuffle_shards: bool = False,
        shuffle_size: int = 0,
        resampled: bool = False,
        seed: int = 0,
        draft_size: tuple[int, int] | None = None,
        counter: SkipCounter | None = None,
    ) -> None:
        super().__init__()
        if not shards:
            raise ValueError("EditStream needs at least one shard")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.shards, self.to_item = list(shards), to_item
        self.rank, self.world_size = rank, world_size
        self.shuffle_shards, self.shuffle_size, self.resampled = shuffle_shards, shuffle_size, resampled
        self.seed, self.draft_size = seed, draft_size
        self.counter = counter if counter is not None else SkipCounter()
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _worker(self) -> tuple[int, int]:
        info = get_worker_info()
        return (info.id, info.num_workers) if info is not None else (0, 1)

    def _shard_stream(self, worker: int, num_workers: int, rng: random.Random) -> Iterator[str]:
        if self.resampled:
            while True:
                yield rng.choice(self.shards)
        shards = list(self.shards)
        if self.shuffle_shards:  # same permutation on every rank, so the rank split stays a partition
            random.Random(f"{self.seed}-{self.epoch}").shuffle(shards)
        mine = split_for(shards, self.rank, self.world_size, worker, num_workers)
        if not mine:
            log.warning(
                "rank %d worker %d has no shards (%d shards for %d ranks x %d workers)",
                self.rank,
                worker,
                len(shards),
                self.world_size,
                num_workers,
            )
        yield from mine

    def __iter__(self) -> Iterator[dict[str, Any]]:
        worker, num_workers = self._worker()
        rng = random.Random(f"{self.seed}-{self.epoch}-{self.rank}-{worker}")
        samples = decode_or_skip(
            iter_raw_samples(self._shard_stream(worker, num_workers, rng), self.counter), self.counter, self.draft_size
        )
        for sample in shuffle_buffer(samples, self.shuffle_size, rng):
            try:
                yield self.to_item(sample, rng)
            except (SampleError, ValueError, OSError) as e:
                log.warning("skipping sample '%s' (bad_transform): %s", sample.key, e)
                self.counter.add("bad_transform")
