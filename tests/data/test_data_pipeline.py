"""Shard resolution, the rank x worker split, and skip-and-count on bad samples."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import webdataset as wds
from torch.utils.data import DataLoader

from mredit.data.pipeline import EditStream, SkipCounter, decode_or_skip, iter_raw_samples, resolve_shards
from mredit.schema import decode_sample, encode_sample


def _keys(sample, rng):
    return sample.key


def test_schema_round_trip_through_tar(tmp_path: Path, make_sample) -> None:
    original = make_sample(3)
    path = tmp_path / "one.tar"
    with wds.TarWriter(str(path)) as writer:
        writer.write(encode_sample(original))
    (raw,) = list(iter_raw_samples([str(path)]))
    decoded = decode_sample(raw)
    assert decoded.key == original.key and decoded.instruction == original.instruction
    assert decoded.reward == original.reward and decoded.meta == original.meta
    assert list(decoded.source.getdata()) == list(original.source.getdata())
    assert list(decoded.target.getdata()) == list(original.target.getdata())


def test_resolve_shards_forms(shard_dir: Path) -> None:
    from_dir = resolve_shards(str(shard_dir))
    assert len(from_dir) == 8
    assert resolve_shards(str(shard_dir / "shard-{000000..000007}.tar")) == from_dir
    assert resolve_shards(from_dir[:2]) == from_dir[:2]
    piped = resolve_shards(f"pipe:cat {shard_dir}/shard-{{000000..000001}}.tar")
    assert piped == [f"pipe:cat {path}" for path in from_dir[:2]]
    assert [s["__key__"] for s in iter_raw_samples(piped)] == [f"s{i:04d}" for i in range(6)]


def test_resolve_shards_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope-000000.tar \(2 of 2 shards missing\)"):
        resolve_shards(str(tmp_path / "nope-{000000..000001}.tar"))
    with pytest.raises(ValueError, match="empty shard list"):
        resolve_shards([])
    with pytest.raises(ValueError, match="no shards in directory"):
        resolve_shards(str(tmp_path))


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


def _bad_tar(path: Path, make_sample) -> None:
    good = encode_sample(make_sample(0))
    with wds.TarWriter(str(path)) as writer:
        writer.write(good)
        writer.write({**encode_sample(make_sample(1)), "src.png": b"\x89PNG broken"})
        missing = encode_sample(make_sample(2))
        del missing["txt"]
        writer.write(missing)
        writer.write({**encode_sample(make_sample(3)), "reward.json": b"{not json"})
        out_of_range = {p: {"score": 7, "feedback": "None"} for p in ("following", "preserving", "quality")}
        writer.write({**encode_sample(make_sample(4)), "reward.json": json.dumps(out_of_range).encode()})
        nan = {p: {"score": float("nan"), "feedback": "None"} for p in ("following", "preserving", "quality")}
        writer.write({**encode_sample(make_sample(5)), "reward.json": json.dumps(nan).encode()})
        writer.write({**encode_sample(make_sample(6)), "meta.json": b"[oops"})
        writer.write(encode_sample(make_sample(7)))


def test_corrupt_samples_are_skipped_and_counted(tmp_path: Path, make_sample) -> None:
    path = tmp_path / "bad.tar"
    _bad_tar(path, make_sample)
    counter = SkipCounter()
    keys = [s.key for s in decode_or_skip(iter_raw_samples([str(path)], counter), counter)]
    assert keys == ["s0000", "s0007"]
    counts = counter.counts()
    assert counts["unreadable_image"] == 1 and counts["missing_member"] == 1
    assert counts["bad_reward"] == 3 and counts["bad_meta"] == 1 and counter.total == 6


def test_skip_counts_add_up_across_workers(tmp_path: Path, make_sample) -> None:
    for i in range(2):
        _bad_tar(tmp_path / f"bad-{i}.tar", make_sample)
    counter = SkipCounter()
    stream = EditStream(sorted(str(p) for p in tmp_path.glob("*.tar")), _keys, counter=counter)
    assert len(list(DataLoader(stream, batch_size=None, num_workers=2))) == 4
    assert counter.total == 12


def test_truncated_shard_is_counted_not_fatal(tmp_path: Path, make_sample) -> None:
    path = tmp_path / "cut.tar"
    _bad_tar(path, make_sample)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    counter = SkipCounter()
    list(decode_or_skip(iter_raw_samples([str(path)], counter), counter))
    assert counter.counts()["unreadable_shard"] >= 1


def test_transform_errors_are_counted(shard_dir: Path) -> None:
    def fails_on_odd(sample, rng: random.Random):
        if int(sample.key[1:]) % 2:
            raise ValueError("bad size")
        return sample.key

    stream = EditStream(resolve_shards(str(shard_dir)), fails_on_odd)
    assert len(list(stream)) == 12 and stream.counter.counts()["bad_transform"] == 12
