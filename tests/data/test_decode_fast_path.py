"""JPEG decoding through simplejpeg (DCT-domain downscaling) gives Pillow's pixels; other formats, JPEGs it refuses
and corrupt images go to Pillow, which decodes them or says why not; the tensor conversion matches the reference."""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
import pytest
import simplejpeg
import torch
import webdataset as wds
from PIL import Image

from mredit.data.reader import SkipCounter, decode_or_skip, iter_raw_samples
from mredit.data.stream import EditStream
from mredit.data.transforms import PairedTransform, image_to_tensor
from mredit.schema import EditSample, SampleError, decode_image, encode_sample


def _noise(width: int, height: int, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(width * height)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).convert(mode)


def _ramps(width: int, height: int) -> Image.Image:
    """Red grows with x, green with y, over the whole image: a pixel's colour says where in the image it is."""
    x, y = np.meshgrid(np.linspace(0, 255, width), np.linspace(0, 255, height))
    return Image.fromarray(np.stack([x, y, np.full_like(x, 99)], axis=-1).round().astype(np.uint8))


def _jpeg(image: Image.Image, **options) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=90, **options)
    return buf.getvalue()


def _pillow(data: bytes, draft: int | None = None) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    if draft is not None:
        image.draft("RGB", (draft, draft))
    return np.asarray(image.convert("RGB"), dtype=np.int16)


@pytest.mark.parametrize("options", [{}, {"subsampling": 0}, {"progressive": True}])
def test_jpeg_decodes_to_pillows_pixels(options) -> None:
    data = _jpeg(_noise(120, 72), **options)
    full = decode_image(data, "src.jpg")
    assert type(full) is Image.Image and full.mode == "RGB" and full.size == (120, 72)
    assert np.abs(np.asarray(full, dtype=np.int16) - _pillow(data)).max() <= 1
    # 1/2 scale, the one Pillow's draft picks too: the same DCT-domain decode
    half = decode_image(data, "src.jpg", draft_size=(32, 32))
    assert half.size == (60, 36)
    assert np.abs(np.asarray(half, dtype=np.int16) - _pillow(data, draft=32)).max() <= 1


def test_gray_jpeg_becomes_rgb() -> None:
    data = _jpeg(_noise(64, 48, "L"))
    gray = decode_image(data, "src.jpg", draft_size=(16, 16))
    assert gray.mode == "RGB" and gray.size == (24, 18)  # 3/8: the smallest n/8 scale keeping both sides >= 16
    full = decode_image(data, "src.jpg")
    assert np.abs(np.asarray(full, dtype=np.int16) - _pillow(data)).max() <= 1


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((512, 512), (256, 256)),  # 1/2
        ((600, 520), (300, 260)),  # 1/2 (3/8 would make the short side 195)
        ((700, 700), (263, 263)),  # 3/8: Pillow's draft stops at 1/2 (350)
        ((1024, 768), (384, 288)),  # 3/8
        ((400, 300), (400, 300)),  # only scales of 1/2 or less: 1/2 is too small, 5/8..7/8 cost more than none
    ],
)
def test_reduced_scale_keeps_both_sides_at_least_the_draft_size(size, expected) -> None:
    data = _jpeg(_ramps(*size))
    assert simplejpeg.decode_jpeg_header(data)[:2] == (size[1], size[0])
    image = decode_image(data, "src.jpg", draft_size=(256, 256))
    assert image.size == expected and min(image.size) >= 256


def _ramp_offset(a: Image.Image, b: Image.Image) -> tuple[float, float]:
    """Mean of a - b in the red (x) and green (y) ramps: 0 when both show the same region; a shift by d pixels
    moves it by d times the ramp's slope (here 0.4-1 level per pixel)."""
    difference = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    assert np.abs(difference).max() <= 8  # JPEG noise only
    return float(difference[..., 0].mean()), float(difference[..., 1].mean())


def test_reduced_scale_crops_the_same_regions_as_a_full_decode() -> None:
    """Up to resampling: 3/8 then a resize to 256 gives the pixels of a full decode resized to 256."""
    data = _jpeg(_ramps(800, 720))
    full, reduced = decode_image(data, "src.jpg"), decode_image(data, "src.jpg", draft_size=(256, 256))
    assert reduced.size == (300, 270)  # 3/8
    transform = PairedTransform(256, random_crop=True, random_flip=True)
    for seed in range(4):
        out_full, _ = transform(full, full, "x", random.Random(seed))
        out_reduced, _ = transform(reduced, reduced, "x", random.Random(seed))
        assert max(map(abs, _ramp_offset(out_full, out_reduced))) < 0.3


def test_source_and_target_of_different_sizes_stay_aligned() -> None:
    """A target stored at 1.5x the source's size decodes at another DCT scale; the paired crop still matches."""
    source, target = _jpeg(_ramps(640, 512)), _jpeg(_ramps(960, 768))
    decoded = [decode_image(data, name, draft_size=(256, 256)) for data, name in ((source, "s"), (target, "t"))]
    assert decoded[0].size == (320, 256) and decoded[1].size == (360, 288)  # 1/2 and 3/8
    transform = PairedTransform(256, random_crop=True, random_flip=True)
    crops = set()
    for seed in range(6):
        out_source, out_target = transform(*decoded, "x", random.Random(seed))
        assert max(map(abs, _ramp_offset(out_source, out_target))) < 0.3
        crops.add(np.asarray(out_source)[0, 0, 0])
    assert len(crops) > 2  # the crops do move


def test_other_formats_and_refused_jpegs_go_to_pillow() -> None:
    png = io.BytesIO()
    _noise(40, 30).save(png, format="PNG")
    decoded = decode_image(png.getvalue(), "src.png", draft_size=(8, 8))  # draft_size is for JPEGs only
    assert np.array_equal(np.asarray(decoded), np.asarray(_noise(40, 30)))
    # a stray restart marker in the scan: libjpeg warns, simplejpeg refuses; Pillow decodes it at full size
    data = _jpeg(_ramps(64, 48))
    scan = data.index(b"\xff\xda") + 20
    damaged = data[:scan] + b"\xff\xd0" + data[scan:]
    with pytest.raises(ValueError):
        simplejpeg.decode_jpeg(damaged, "RGB")
    decoded = decode_image(damaged, "src.jpg", draft_size=(16, 16))
    assert decoded.size == (64, 48) and np.array_equal(np.asarray(decoded, dtype=np.int16), _pillow(damaged))
    # data after the end marker: not a JPEG for simplejpeg, a readable one for Pillow
    assert decode_image(data + b"trailer", "src.jpg", draft_size=(16, 16)).size == (64, 48)


CORRUPT_JPEGS = {
    "truncated": lambda data: data[: len(data) // 2],
    "garbage after the start marker": lambda data: data[:3] + bytes(300) + data[-2:],
}


@pytest.mark.parametrize("name", list(CORRUPT_JPEGS))
def test_corrupt_jpeg_is_an_unreadable_image(name) -> None:
    data = CORRUPT_JPEGS[name](_jpeg(_noise(64, 48)))
    for draft_size in (None, (16, 16)):
        with pytest.raises(SampleError, match="member 'src.jpg' is not a readable image"):
            decode_image(data, "src.jpg", draft_size)


def test_corrupt_jpegs_are_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "jpegs.tar"
    with wds.TarWriter(str(path)) as writer:
        for i in range(4):
            sample = EditSample(f"k{i}", _ramps(64, 48), _noise(64, 48), "make it red")
            raw = encode_sample(sample, image_format="jpg")
            if i == 1:
                raw["tgt.jpg"] = CORRUPT_JPEGS["truncated"](raw["tgt.jpg"])
            if i == 2:
                raw["src.jpg"] = CORRUPT_JPEGS["garbage after the start marker"](raw["src.jpg"])
            writer.write(raw)
    counter = SkipCounter()
    samples = list(decode_or_skip(iter_raw_samples([str(path)], counter), counter, draft_size=(24, 24)))
    assert [s.key for s in samples] == ["k0", "k3"] and samples[0].source.size == (32, 24)
    assert counter.nonzero() == {"unreadable_image": 2}
    # the training stream: same skips, counted in its own counter
    stream = EditStream([str(path)], lambda sample, rng: {"key": sample.key}, draft_size=(24, 24))
    assert [item["key"] for item in stream] == ["k0", "k3"] and stream.counter.nonzero() == {"unreadable_image": 2}


def test_image_to_tensor_matches_the_reference_formula() -> None:
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    array[0, :3] = [[0, 127, 255], [128, 1, 254], [64, 191, 2]]
    expected = torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(127.5).sub_(1.0)
    for image in (Image.fromarray(array), Image.fromarray(array).convert("RGBA")):
        assert torch.equal(image_to_tensor(image), expected)
    assert image_to_tensor(Image.new("RGB", (0, 4))).shape == (3, 4, 0)
