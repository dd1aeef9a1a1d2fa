"""Data loading throughput: decoded + transformed samples/s on one core, old and new decoding, and the tar cost.

The paper's training setting: 512 px JPEG pairs, random-cropped to 256 px. The script writes its own JPEG shards
into a temporary directory, then

1. reads the raw samples (tar parsing and grouping only, no image decoding) with the project's reader
   (``mredit.data.reader.iter_raw_samples``: webdataset's ``tarfile_samples``) and with the hand-written tar
   parser the project used before (a copy kept in this file only, for this comparison), checks that both give the
   same samples, and prints the CPU ms/sample of each;
2. streams the shards through the same ``EditStream`` + ``PairedTransform`` + ``edit_sample_to_item`` path
   ``EditDataModule`` uses (in the main process, one torch thread), decoding the JPEGs with the project's
   ``decode_image`` (libjpeg-turbo through ``simplejpeg``, DCT-domain downscaling) and with the Pillow decoder it
   replaced (``Image.draft``; a copy kept in this file only), at reduced scale (``draft_decode``, the training
   default) and at full size. Three arms: the old path (Pillow, each image converted to float32 in [-1, 1] in the
   loader), simplejpeg with float32 items, and the new path (simplejpeg, uint8 items that the model converts on
   its device). The settings alternate epoch by epoch, so a busy machine slows them alike; it prints samples/s
   per core (from the process's CPU time), per wall second, and new / old, after checking that both decoders
   give the same pixels.

    taskset -c 0 python benchmarks/data_throughput.py          # 200 pairs, about 40 s
    python benchmarks/data_throughput.py --num_samples 400 --size 512 --resolution 256 --repeats 3
"""

from __future__ import annotations

import argparse
import io
import random
import re
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import torch
from PIL import Image, ImageDraw
from webdataset.tariterators import group_by_keys, tar_file_iterator, url_opener

import mredit.schema
from mredit.data.datamodule import edit_sample_to_item
from mredit.data.reader import iter_raw_samples, resolve_shards
from mredit.data.shards import ShardSetWriter
from mredit.data.stream import EditStream
from mredit.data.transforms import PairedTransform, pixels_to_float
from mredit.schema import EditSample, Reward, SampleError


def photo_like(rng: np.random.Generator, size: int) -> Image.Image:
    """Smooth colour fields plus shapes and mild noise: compresses and decodes like a photo, unlike pure noise."""
    coarse = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x, y = (int(v) for v in rng.integers(0, size, 2))
        r = int(rng.integers(size // 16, size // 4))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    noisy = np.asarray(image, dtype=np.int16) + rng.integers(-4, 5, (size, size, 3))
    return Image.fromarray(noisy.clip(0, 255).astype(np.uint8))


def write_jpeg_shards(out: Path, num_samples: int, size: int) -> list[str]:
    rng = np.random.default_rng(0)
    reward = Reward.from_lists([4, 5, 3], ["None", "None", "slightly blurry"])
    with ShardSetWriter(out, shard_size=100, image_format="jpg") as writer:
        for i in range(num_samples):
            source = photo_like(rng, size)
            writer.write(EditSample(f"b{i:06d}", source, photo_like(rng, size), "make the sky pink", reward))
    return resolve_shards(str(out))


# -- the hand-written tar parser the project used before webdataset's iterator (for the comparison only) --------


def old_iter_raw_samples(urls: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The former ``iter_raw_samples``: webdataset's opening and grouping around ``_tar_members``."""

    def handler(error: Exception) -> bool:
        return True

    streams = url_opener(({"url": url} for url in urls), handler=handler)
    yield from group_by_keys(_expand_tars(streams, handler), handler=handler)


def _expand_tars(sources: Iterable[dict[str, Any]], handler: Callable[[Exception], bool]) -> Iterator[dict[str, Any]]:
    for source in sources:
        url = source["url"]
        try:
            for fname, data in _tar_members(source["stream"], handler):
                yield {"fname": fname, "data": data, "__url__": url}
            yield {}
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


# -- measurements --------------------------------------------------------------------------------------------------


def raw_read_ms(read: Callable[[list[str]], Iterator[dict[str, Any]]], shards: list[str], repeats: int) -> float:
    """CPU ms per sample to read every raw sample of the shards (best of ``repeats`` passes)."""
    best = float("inf")
    for _ in range(repeats):
        start, count = time.process_time(), 0
        for _ in read(shards):
            count += 1
        best = min(best, 1000 * (time.process_time() - start) / count)
    return best


# -- the Pillow decoder the project used before simplejpeg (for the comparison only) ------------------------------


def pillow_decode_image(data: bytes, name: str, draft_size: tuple[int, int] | None = None) -> Image.Image:
    """The former ``mredit.schema.decode_image``: Pillow, with ``Image.draft`` for a reduced-scale JPEG decode."""
    try:
        with io.BytesIO(data) as buffer:
            image = Image.open(buffer)
            if draft_size is not None and image.format == "JPEG":
                image.draft("RGB", draft_size)
            image.load()
    except Exception as e:
        raise SampleError(f"member '{name}' is not a readable image: {e}") from e
    if image.mode != "RGB":
        return image.convert("RGB")
    return image._new(image.im)


DECODERS = {"simplejpeg": mredit.schema.decode_image, "Pillow": pillow_decode_image}
# (decoder, items converted to float32 in [-1, 1] in the loader as before, instead of staying uint8 until the model)
ARMS = {
    "Pillow, float32 items (old)": ("Pillow", True),
    "simplejpeg, float32 items": ("simplejpeg", True),
    "simplejpeg, uint8 items (new)": ("simplejpeg", False),
}


def make_stream(shards: list[str], resolution: int, reduced: bool, float_items: bool = False) -> EditStream:
    transform = PairedTransform(resolution, random_crop=True, random_flip=True)
    return EditStream(
        shards,
        partial(_item, transform, float_items),
        shuffle_shards=True,
        shuffle_size=64,
        seed=0,
        draft_size=(resolution, resolution) if reduced else None,
    )


def one_epoch(stream: EditStream, epoch: int, decoder: Callable[..., Image.Image]) -> tuple[float, float, int]:
    """(CPU seconds of this process, wall seconds, samples) of one pass over the stream with ``decoder``."""
    stream.set_epoch(epoch)
    with mock.patch.object(mredit.schema, "decode_image", decoder):  # what decode_sample calls for each image
        cpu_start, wall_start, count = time.process_time(), time.perf_counter(), 0
        for _ in stream:
            count += 1
        return time.process_time() - cpu_start, time.perf_counter() - wall_start, count


def max_difference(stream: EditStream, items: int) -> float:
    """The largest |difference| between the two decoders' tensors over the first ``items`` items of epoch 0."""
    firsts = []
    for decoder in DECODERS.values():
        with mock.patch.object(mredit.schema, "decode_image", decoder):
            stream.set_epoch(0)
            firsts.append([item for _, item in zip(range(items), stream)])
    worst = 0.0
    for new, old in zip(*firsts):
        if new["key"] != old["key"]:
            raise SystemExit(f"the two decoders give different samples: {new['key']} vs {old['key']}")
        for side in ("source", "target"):
            worst = max(worst, (new[side].float() - old[side].float()).abs().max().item())
    return worst


def _item(transform: PairedTransform, float_items: bool, sample: EditSample, rng: random.Random) -> dict:
    item = edit_sample_to_item(sample, transform, rng)
    if float_items:  # the loader's former work per image: the float32 copy, scaled to [-1, 1]
        item["source"], item["target"] = pixels_to_float(item["source"]), pixels_to_float(item["target"])
    return item


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_samples", "--num-samples", type=int, default=200)
    parser.add_argument("--size", type=int, default=512, help="side of the stored JPEGs")
    parser.add_argument("--resolution", type=int, default=256, help="training crop side")
    parser.add_argument("--repeats", type=int, default=3, help="passes per setting; the best is reported")
    args = parser.parse_args()
    torch.set_num_threads(1)  # per-core figures: one process, one thread

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        shards = write_jpeg_shards(Path(tmp), args.num_samples, args.size)
        megabytes = sum(Path(s).stat().st_size for s in shards) / 1e6
        seconds = time.perf_counter() - start
        print(f"wrote {args.num_samples} {args.size}px JPEG pairs ({megabytes:.1f} MB) in {seconds:.1f}s")
        if list(iter_raw_samples(shards)) != list(old_iter_raw_samples(shards)):
            raise SystemExit("the two tar readers disagree")
        print(f"reading the tar only (no image decoding), CPU ms/sample, best of {2 * args.repeats} passes:")
        new = raw_read_ms(iter_raw_samples, shards, 2 * args.repeats)
        old = raw_read_ms(old_iter_raw_samples, shards, 2 * args.repeats)
        print(f"  webdataset tarfile_samples (mredit.data.reader): {new:.3f}")
        print(f"  former hand-written parser (this file only):     {old:.3f}  (saves {new - old:.3f})")

        streams = {
            (reduced, float_items): make_stream(shards, args.resolution, reduced, float_items)
            for reduced in (True, False)
            for float_items in (True, False)
        }
        for reduced in (True, False):
            worst = max_difference(streams[reduced, False], min(32, args.num_samples))
            scale = "reduced-scale" if reduced else "full-size"
            print(f"{scale} decoding, simplejpeg vs Pillow: max |pixel difference| {worst:.0f} (first 32 items)")
        # (CPU seconds, wall seconds, samples) of each epoch per (reduced, arm); the settings alternate
        runs: dict[tuple[bool, str], list[tuple[float, float, int]]] = {}
        for epoch in range(args.repeats):
            for reduced in (True, False):
                for name, (decoder, float_items) in ARMS.items():
                    stream = streams[reduced, float_items]
                    runs.setdefault((reduced, name), []).append(one_epoch(stream, epoch, DECODERS[decoder]))
        print(f"decode + paired crop/flip to {args.resolution}px + tensors (1 thread), best of {args.repeats} epochs:")
        for reduced in (True, False):
            rates = {}
            for name in ARMS:
                epochs = runs[reduced, name]
                count = epochs[0][2]
                cpu, wall = min(e[0] for e in epochs), min(e[1] for e in epochs)
                rates[name] = count / cpu
                label = f"{'reduced-scale' if reduced else 'full-size'}, {name}:"
                print(
                    f"  {label:<46} {count / cpu:6.1f} samples/s per core ({1000 * cpu / count:.2f} CPU ms/sample),"
                    f" {count / wall:6.1f} wall"
                )
            old_rate, _, new_rate = rates.values()
            print(f"  {'new / old:':<46} {new_rate / old_rate:6.2f}")


if __name__ == "__main__":
    main()
