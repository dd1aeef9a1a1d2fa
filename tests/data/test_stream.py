"""``EditStream``: the rank x worker split, determinism, resampling, and skip-and-count across workers."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from torch.utils.data import DataLoader

from mredit.data.reader import SkipCounter, resolve_shards
from mredit.data.stream import EditStream, shuffle_buffer, split_for


def _keys(sample, rng):
    return sample.key


def test_split_for_partitions_by_rank_then_worker() -> None:
    shards = [f"s{i}" for i in range(10)]
    parts = [split_for(shards, rank, 2, worker, 3) for rank in range(2) for worker in range(3)]
    assert sorted(s for part in parts for s in part) == shards
    assert split_for(shards, 1, 2, 0, 3) == ["s1", "s7"]


def test_shuffle_buffer_keeps_every_item() -> None:
    items = list(range(50))
    assert list(shuffle_buffer(items, 1, random.Random(0))) == items
    shuffled = list(shuffle_buffer(items, 8, random.Random(0)))
    assert sorted(shuffled) == items and shuffled != items


@pytest.mark.parametrize("shuffle", [False, True])
def test_two_ranks_two_workers_see_every_sample_once(shard_dir: Path, shuffle: bool) -> None:
    shards = resolve_shards(str(shard_dir))
    seen: list[str] = []
    for rank in range(2):
        stream = EditStream(shards, _keys, rank=rank, world_size=2, shuffle_shards=shuffle, shuffle_size=4, seed=1)
        stream.set_epoch(3)
        loader = DataLoader(stream, batch_size=None, num_workers=2)
        seen.extend(loader)
    assert sorted(seen) == [f"s{i:04d}" for i in range(24)]


def test_stream_is_deterministic_and_epochs_differ(shard_dir: Path) -> None:
    shards = resolve_shards(str(shard_dir))

    def order(epoch: int) -> list[str]:
        stream = EditStream(shards, _keys, shuffle_shards=True, shuffle_size=5, seed=7)
        stream.set_epoch(epoch)
        return list(stream)

    assert order(0) == order(0)
    assert order(0) != order(1)
    assert sorted(order(1)) == sorted(order(0))


def test_resampled_stream_is_infinite(shard_dir: Path) -> None:
    stream = EditStream(resolve_shards(str(shard_dir)), _keys, resampled=True)
    first = [key for key, _ in zip(stream, range(60))]
    assert len(first) == 60  # more than the 24 samples in the shards


def test_skip_counts_add_up_across_workers(tmp_path: Path, bad_tar) -> None:
    for i in range(2):
        bad_tar(tmp_path / f"bad-{i}.tar")
    counter = SkipCounter()
    stream = EditStream(sorted(str(p) for p in tmp_path.glob("*.tar")), _keys, counter=counter)
    assert len(list(DataLoader(stream, batch_size=None, num_workers=2))) == 4
    assert counter.total == 12


def test_an_unreadable_shard_is_skipped_and_counted_by_the_stream(tmp_path: Path, shard_dir: Path) -> None:
    shards = resolve_shards(str(shard_dir))
    cut = tmp_path / "cut.tar"
    cut.write_bytes(Path(shards[0]).read_bytes()[:300])  # inside the first member's header
    stream = EditStream([str(cut), *shards[1:]], _keys)
    assert sorted(stream) == [f"s{i:04d}" for i in range(3, 24)]
    assert stream.counter.nonzero() == {"unreadable_shard": 1}


def test_transform_errors_are_counted(shard_dir: Path) -> None:
    def fails_on_odd(sample, rng: random.Random):
        if int(sample.key[1:]) % 2:
            raise ValueError("bad size")
        return sample.key

    stream = EditStream(resolve_shards(str(shard_dir)), fails_on_odd)
    assert len(list(stream)) == 12 and stream.counter.counts()["bad_transform"] == 12


def _cached_stream(shards: list[str], **kwargs) -> EditStream:
    return EditStream(shards, _keys, shuffle_shards=True, shuffle_size=5, seed=7, **kwargs)


def test_cached_epochs_decode_nothing_and_match_a_fresh_process(shard_dir: Path, monkeypatch) -> None:
    shards = resolve_shards(str(shard_dir))
    cached = _cached_stream(shards, cache_samples=100)
    uncached = _cached_stream(shards)
    assert list(cached) == list(uncached)  # the first epoch is the plain stream, recorded on the way
    decodes = []
    original = EditStream._decoded
    monkeypatch.setattr(EditStream, "_decoded", lambda self, *a: decodes.append(1) or original(self, *a))
    epochs = {}
    for epoch in (1, 2):
        cached.set_epoch(epoch)
        epochs[epoch] = list(cached)
        assert sorted(epochs[epoch]) == [f"s{i:04d}" for i in range(24)]  # every sample once per epoch
    assert decodes == [] and epochs[1] != epochs[2]
    restarted = _cached_stream(shards, cache_samples=100)  # a process resumed at epoch 2 fills the cache first
    restarted.set_epoch(2)
    assert list(restarted) == epochs[2] and decodes == [1]


def test_a_partly_read_first_epoch_is_not_cached(shard_dir: Path) -> None:
    stream = _cached_stream(resolve_shards(str(shard_dir)), cache_samples=100)
    first = iter(stream)
    assert [next(first) for _ in range(5)]  # the loader stopped early (max_batches): the cache is incomplete
    stream.set_epoch(1)
    assert sorted(stream) == [f"s{i:04d}" for i in range(24)]


def test_a_slice_larger_than_the_cache_streams_every_epoch(shard_dir: Path, caplog) -> None:
    shards = resolve_shards(str(shard_dir))
    stream = _cached_stream(shards, cache_samples=10)
    reference = _cached_stream(shards)
    assert list(stream) == list(reference)
    assert "cache_samples=10" in caplog.text and stream.cache_samples == 0
    stream.set_epoch(1), reference.set_epoch(1)
    assert list(stream) == list(reference)
    with pytest.raises(ValueError, match="cache_samples must be >= 0"):
        _cached_stream(shards, cache_samples=-1)
