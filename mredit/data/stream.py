"""``EditStream``: the ``IterableDataset`` behind ``EditDataModule`` (rank/worker splitting, shuffling, skips).

Each DataLoader worker of each rank reads its own slice of the shard list (split by rank first, then by worker,
like ``wds.split_by_node`` followed by ``wds.split_by_worker``), but the rank and world size are passed in
explicitly by the datamodule instead of being read from the environment, so they are right even before/without
``torch.distributed`` env variables. Shards are read with ``mredit.data.reader``; a sample that cannot be used
(corrupt image, missing member, bad ``reward.json``, a failing transform...) is logged with its reason, counted in
a ``SkipCounter`` shared by all workers of the process, and iteration goes on.

With ``cache_samples``, the decoded samples of the first epoch are kept in memory (up to that many) and later
epochs shuffle them instead of reading and decoding the shards again: for small datasets trained in-process, such
as the tiny synthetic ones, where reading and decoding was an eighth of a training step.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from torch.utils.data import IterableDataset, get_worker_info

from mredit.data.reader import SkipCounter, decode_or_skip, iter_raw_samples
from mredit.schema import EditSample, SampleError

log = logging.getLogger(__name__)


def split_for(shards: list[str], rank: int, world_size: int, worker: int, num_workers: int) -> list[str]:
    """The shards one worker of one rank reads: ``rank::world_size`` (by node), then ``worker::num_workers``."""
    return shards[rank::world_size][worker::num_workers]


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
        cache_samples: int = 0,
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
        if cache_samples < 0:
            raise ValueError(f"cache_samples must be >= 0, got {cache_samples}")
        self.cache_samples = 0 if resampled else cache_samples  # a resampled stream has no epoch to repeat
        self._cache: list[EditSample] | None = None  # the first epoch's decoded samples, in decode order

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

    def _decoded(self, worker: int, num_workers: int, rng: random.Random) -> Iterator[EditSample]:
        return decode_or_skip(
            iter_raw_samples(self._shard_stream(worker, num_workers, rng), self.counter), self.counter, self.draft_size
        )

    def _cached_epoch(self, rng: random.Random) -> Iterator[EditSample] | None:
        """This epoch's samples from the cache (filled first if this process starts after the first epoch), in an
        order drawn from the epoch's seed; None when the slice does not fit ``cache_samples``."""
        if self._cache is None:
            epoch, self.epoch = self.epoch, 0  # the first epoch's shard slice, whatever epoch this is
            try:
                self._cache = self._fill_cache(self._decoded(0, 1, random.Random(f"{self.seed}-0-{self.rank}-0")))
            finally:
                self.epoch = epoch
        if self._cache is None:
            return None
        order = list(self._cache)
        rng.shuffle(order)
        return iter(order)

    def _fill_cache(self, samples: Iterable[EditSample]) -> list[EditSample] | None:
        cache = []
        for sample in samples:
            cache.append(sample)
            if len(cache) > self.cache_samples:
                self._give_up_caching()
                return None
        return cache

    def _give_up_caching(self) -> None:
        log.warning(
            "cache_samples=%d: this rank's slice of the shards holds more samples; streaming them every epoch",
            self.cache_samples,
        )
        self.cache_samples, self._cache = 0, None

    def _recorded(self, samples: Iterable[EditSample]) -> Iterator[EditSample]:
        """``samples`` passed through while they are kept; the cache is complete once they are exhausted."""
        kept: list[EditSample] = []
        for sample in samples:
            if self.cache_samples:
                kept.append(sample)
                if len(kept) > self.cache_samples:
                    self._give_up_caching()
                    kept = []
            yield sample
        if self.cache_samples:
            self._cache = kept

    def __iter__(self) -> Iterator[dict[str, Any]]:
        worker, num_workers = self._worker()
        rng = random.Random(f"{self.seed}-{self.epoch}-{self.rank}-{worker}")
        caching = self.cache_samples and num_workers == 1
        samples: Iterator[EditSample] | None = None
        if caching and (self._cache is not None or self.epoch > 0):
            samples = self._cached_epoch(rng)
        if samples is None:
            decoded = self._decoded(worker, num_workers, rng)
            samples = shuffle_buffer(self._recorded(decoded) if caching else decoded, self.shuffle_size, rng)
        for sample in samples:
            try:
                yield self.to_item(sample, rng)
            except (SampleError, ValueError, OSError) as e:
                log.warning("skipping sample '%s' (bad_transform): %s", sample.key, e)
                self.counter.add("bad_transform")
