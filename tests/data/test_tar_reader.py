"""``iter_raw_samples`` reads shards exactly like ``webdataset.tarfile_samples``: names, data, grouping, errors."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from webdataset.tariterators import tarfile_samples

from mredit.data.pipeline import SkipCounter, iter_raw_samples

LONG = "d/" + "x" * 150 + "/k1"
MEMBERS = [
    ("a/", None),
    ("k1.txt", b"hi"),
    ("k1.src.jpg", b"x" * 1000),
    ("__meta__", b"m"),
    ("k2.txt", b""),
    (LONG + ".txt", b"L" * 513),
    ("dir/k3.TXT", b"q"),
]


def _reference(urls: list[str]) -> tuple[list[dict], int]:
    counter = SkipCounter()

    def handler(error: Exception) -> bool:
        counter.add("unreadable_shard")
        return True

    return [dict(s) for s in tarfile_samples(({"url": u} for u in urls), handler=handler)], counter.total


def _ours(urls: list[str]) -> tuple[list[dict], int]:
    counter = SkipCounter()
    return [dict(s) for s in iter_raw_samples(urls, counter)], counter.total


def _write(path: Path, fmt: int, compression: str = "") -> str:
    with tarfile.open(path, "w" + (":" + compression if compression else ""), format=fmt) as tar:
        for name, data in MEMBERS:
            if fmt == tarfile.USTAR_FORMAT and len(name) > 100 and "/" not in name[-100:]:
                continue
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size, info.mtime = len(data), 1.5  # a float mtime: a pax header per member, like TarWriter
                tar.addfile(info, io.BytesIO(data))
    return str(path)


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
@pytest.mark.parametrize("compression", ["", "gz"])
def test_same_samples_as_webdataset(tmp_path: Path, fmt: int, compression: str) -> None:
    url = _write(tmp_path / f"shard.tar{'.' + compression if compression else ''}", fmt, compression)
    ours, reference = _ours([url]), _reference([url])
    assert ours == reference and ours[1] == 0
    assert [s["__key__"] for s in ours[0]] == ["k1", "k2", LONG, "dir/k3"]


def test_same_errors_as_webdataset(tmp_path: Path) -> None:
    data = Path(_write(tmp_path / "good.tar", tarfile.PAX_FORMAT)).read_bytes()
    broken = {
        "cut.tar": data[:1500],  # inside a member's data
        "cut-header.tar": data[:700],
        "empty.tar": b"",
        "garbage.tar": b"y" * 2000,
        "bad-tail.tar": data[:-1024] + b"z" * 512,
    }
    urls = []
    for name, blob in broken.items():
        (tmp_path / name).write_bytes(blob)
        urls.append(str(tmp_path / name))
        assert _ours([urls[-1]]) == _reference([urls[-1]]), name
    urls += [str(tmp_path / "good.tar"), f"pipe:cat {tmp_path / 'good.tar'}", "pipe:exit 3"]
    ours = _ours(urls)
    assert ours == _reference(urls) and ours[1] == 4
