"""``mredit.data.reader``: shard specs, raw samples (checked against Python's ``tarfile``), skip-and-count."""

from __future__ import annotations

import gzip
import tarfile
from pathlib import Path

import pytest
import webdataset as wds

from mredit.data.reader import (
    SkipCounter,
    decode_or_skip,
    iter_raw_samples,
    read_samples,
    resolve_shards,
)
from mredit.data.shards import ShardSetWriter
from mredit.schema import decode_sample, encode_sample


def tarfile_reference(urls: list[str]) -> tuple[list[dict], int]:
    """What a shard set holds, read with nothing but ``tarfile``: the regular members of each shard in order,
    grouped into samples by key (path up to the first dot of the file name; suffix lower-cased, metadata members
    ``__*__`` left out), a sample never spanning two shards. A shard that raises stops there (what it gave so far
    is kept) and is counted once."""
    samples, broken = [], 0
    for url in urls:
        current: dict | None = None
        try:
            with tarfile.open(url, mode="r|*") as tar:
                for member in tar:
                    directory, _, name = member.name.rpartition("/")
                    stem, dot, suffix = name.partition(".")
                    if not member.isreg() or name.startswith("__") or not dot:
                        continue
                    key = f"{directory}/{stem}" if directory else stem
                    data = tar.extractfile(member).read()
                    if current is None or current["__key__"] != key:
                        if current is not None:
                            samples.append(current)
                        current = {"__key__": key, "__url__": url}
                    current[suffix.lower()] = data
        except (tarfile.TarError, OSError):
            broken += 1
        if current is not None:
            samples.append(current)
    return samples, broken


def _ours(urls: list[str]) -> tuple[list[dict], int]:
    counter = SkipCounter()
    samples = list(iter_raw_samples(urls, counter))
    assert set(counter.nonzero()) <= {"unreadable_shard"}
    return samples, counter.total


@pytest.fixture
def written(tmp_path: Path, make_sample) -> list[str]:
    """Shards written by our own writer: PNG and JPEG, with and without rewards, three shards."""
    with ShardSetWriter(tmp_path / "png", shard_size=3) as writer:
        for i in range(7):
            writer.write(make_sample(i, with_reward=i % 3 != 0))
    with ShardSetWriter(tmp_path / "jpg", shard_size=4, image_format="jpg", mtime=0.0) as writer:
        for i in range(4):
            writer.write(make_sample(10 + i))
    return resolve_shards([str(tmp_path / "png"), str(tmp_path / "jpg")])


def test_same_samples_as_tarfile(written: list[str]) -> None:
    ours, reference = _ours(written), tarfile_reference(written)
    assert ours == reference and ours[1] == 0
    assert [s["__key__"] for s in ours[0]] == [f"s{i:04d}" for i in (*range(7), *range(10, 14))]
    assert all(isinstance(v, bytes) for s in ours[0] for k, v in s.items() if not k.startswith("__"))


def test_same_samples_through_pipe_and_gzip(tmp_path: Path, written: list[str]) -> None:
    packed = tmp_path / "packed.tar.gz"
    packed.write_bytes(gzip.compress(Path(written[0]).read_bytes()))
    expected = tarfile_reference(written[:1])[0]
    for url in (f"pipe:cat {written[0]}", str(packed)):
        samples, broken = _ours([url])
        assert broken == 0 and [{**s, "__url__": ""} for s in samples] == [{**s, "__url__": ""} for s in expected]


def test_corrupt_and_truncated_shards_are_skipped_and_counted_once(tmp_path: Path, written: list[str]) -> None:
    data = Path(written[0]).read_bytes()
    members = [m for m in tarfile.open(written[0]) if m.isreg()]
    inside_data = members[2].offset_data + 10  # inside the third member's data
    flipped = bytearray(data)
    flipped[members[4].offset + 150] ^= 0xFF  # a header checksum byte: tarfile ends the archive there
    broken = {
        "cut-data.tar": (data[:inside_data], 1),
        "cut-header.tar": (data[: members[3].offset + 100], 0),  # a short header after the first: end of archive
        "cut-first-header.tar": (data[:700], 1),
        "empty.tar": (b"", 1),
        "garbage.tar": (b"y" * 2000, 1),
        "bad-checksum.tar": (bytes(flipped), 0),
    }
    urls = []
    for name, (blob, count) in broken.items():
        (tmp_path / name).write_bytes(blob)
        urls.append(str(tmp_path / name))
        ours, reference = _ours([urls[-1]]), tarfile_reference([urls[-1]])
        assert ours == (reference[0], count) and reference[1] == count, name
    partial = _ours([str(tmp_path / "cut-data.tar")])[0]
    read_before_the_cut = {m.name.partition(".")[2]: m.size for m in members[:2]}
    assert [{k: len(v) for k, v in s.items() if not k.startswith("__")} for s in partial] == [read_before_the_cut]
    urls += [*written, "pipe:exit 3", str(tmp_path / "vanished.tar")]
    ours = _ours(urls)
    assert ours == tarfile_reference(urls) and ours[1] == 4 + 2  # + the failing pipe and the missing file
    assert [s["__key__"] for s in ours[0][-11:]] == [f"s{i:04d}" for i in (*range(7), *range(10, 14))]


def test_a_truncated_sample_is_skipped_as_missing_member(tmp_path: Path, written: list[str]) -> None:
    data = Path(written[0]).read_bytes()
    members = [m for m in tarfile.open(written[0]) if m.isreg()]
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[: members[-1].offset_data + 5])  # the last member of the last sample is cut short
    counter = SkipCounter()
    keys = [s.key for s in read_samples(str(cut), counter)]
    assert keys == ["s0000", "s0001"]
    assert counter.nonzero() == {"missing_member": 1, "unreadable_shard": 1}


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


def test_resolve_shards_forms(tmp_path: Path, shard_dir: Path) -> None:
    from_dir = resolve_shards(str(shard_dir))
    assert len(from_dir) == 8
    assert resolve_shards(str(shard_dir / "shard-{000000..000007}.tar")) == from_dir
    assert resolve_shards(shard_dir) == from_dir  # a Path
    assert resolve_shards(from_dir[:2]) == from_dir[:2]
    piped = resolve_shards(f"pipe:cat {shard_dir}/shard-{{000000..000001}}.tar")
    assert piped == [f"pipe:cat {path}" for path in from_dir[:2]]
    assert [s["__key__"] for s in iter_raw_samples(piped)] == [f"s{i:04d}" for i in range(6)]
    assert resolve_shards("https://example.com/s-{0..2}.tar") == [f"https://example.com/s-{i}.tar" for i in range(3)]
    (tmp_path / "plain").mkdir()
    for path in from_dir[:3]:  # a directory without a manifest: its *.tar files, sorted
        (tmp_path / "plain" / Path(path).name).write_bytes(Path(path).read_bytes())
    assert [Path(p).name for p in resolve_shards(str(tmp_path / "plain"))] == [Path(p).name for p in from_dir[:3]]


def test_resolve_shards_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope-000000.tar \(2 of 2 shards missing\)"):
        resolve_shards(str(tmp_path / "nope-{000000..000001}.tar"))
    with pytest.raises(ValueError, match="empty shard list"):
        resolve_shards([])
    with pytest.raises(ValueError, match="empty shard list"):
        resolve_shards(" ")
    with pytest.raises(ValueError, match="no shards in directory"):
        resolve_shards(str(tmp_path))


def test_corrupt_samples_are_skipped_and_counted(tmp_path: Path, bad_tar) -> None:
    path = bad_tar(tmp_path / "bad.tar")
    counter = SkipCounter()
    keys = [s.key for s in decode_or_skip(iter_raw_samples([str(path)], counter), counter)]
    assert keys == ["s0000", "s0007"]
    assert counter.nonzero() == {"unreadable_image": 1, "missing_member": 1, "bad_reward": 3, "bad_meta": 1}
    assert counter.total == 6
