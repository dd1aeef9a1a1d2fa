"""Paired transforms keep source and target aligned; the flip respects left/right instructions."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image

from mredit.data.transforms import (
    PairedTransform,
    image_to_pixels,
    image_to_tensor,
    mentions_side,
    pixels_to_float,
    tensor_to_image,
)


def _coordinate_image(width: int, height: int) -> Image.Image:
    """Red = x, green = y, blue = constant: every pixel says where it came from."""
    x, y = np.meshgrid(np.arange(width), np.arange(height))
    return Image.fromarray(np.stack([x, y, np.full_like(x, 99)], axis=-1).astype(np.uint8))


def _inverted(image: Image.Image) -> Image.Image:
    return Image.fromarray(255 - np.asarray(image))


@pytest.mark.parametrize("seed", range(6))
def test_crop_and_flip_keep_pairs_aligned(seed: int) -> None:
    source = _coordinate_image(40, 32)
    target = _inverted(source)  # a known per-pixel mapping of the source
    transform = PairedTransform(32, random_crop=True, random_flip=True)  # no resize: short side is already 32
    out_source, out_target = transform(source, target, "make it blue", random.Random(seed))
    assert out_source.size == out_target.size == (32, 32)
    np.testing.assert_array_equal(255 - np.asarray(out_source), np.asarray(out_target))
    xs = np.asarray(out_source)[0, :, 0].astype(int)
    assert abs(xs[-1] - xs[0]) == 31  # a contiguous 32-px window of the x ramp, flipped or not


def test_random_crop_and_flip_both_happen() -> None:
    source = _coordinate_image(48, 32)
    transform = PairedTransform(32, random_crop=True, random_flip=True)
    firsts = {int(np.asarray(transform(source, source, "x", random.Random(s))[0])[0, 0, 0]) for s in range(30)}
    flipped = any(x >= 31 for x in firsts)
    assert len(firsts) > 5 and flipped


def test_flip_never_applied_when_instruction_mentions_sides() -> None:
    source = _coordinate_image(32, 32)
    transform = PairedTransform(32, random_crop=False, random_flip=True)
    for seed in range(40):
        for instruction in ("put a dog on the left", "Move the cup to the RIGHT side", "make the leftmost tree red"):
            out, _ = transform(source, source, instruction, random.Random(seed))
            assert np.asarray(out)[0, 0, 0] == 0  # x = 0 stays on the left
    assert mentions_side("Right-hand side") and not mentions_side("make it bright")


def test_resize_short_side_and_center_crop() -> None:
    source = _coordinate_image(64, 32)
    target = source.resize((128, 64))  # a target of another size is brought to the source's size first
    out_source, out_target = PairedTransform(16)(source, target, "x")
    assert out_source.size == out_target.size == (16, 16)
    assert abs(int(np.asarray(out_source)[8, 8, 0]) - 32) <= 2  # the center column of the source


@pytest.mark.parametrize("seed", range(4))
def test_resized_pairs_stay_aligned(seed: int) -> None:
    source = _coordinate_image(60, 40)
    target = _inverted(source).resize((120, 80), Image.Resampling.NEAREST)  # same content at twice the size
    out_source, out_target = PairedTransform(20, random_crop=True, random_flip=True)(
        source, target, "add a hat", random.Random(seed)
    )
    difference = (255 - np.asarray(out_source).astype(int)) - np.asarray(out_target).astype(int)
    assert out_source.size == out_target.size == (20, 20) and np.abs(difference).max() <= 2


def test_tensor_round_trip_range() -> None:
    image = _coordinate_image(8, 8)
    tensor = image_to_tensor(image)
    assert tensor.shape == (3, 8, 8) and tensor.dtype == torch.float32
    assert tensor.min() >= -1 and tensor.max() <= 1
    np.testing.assert_array_equal(np.asarray(tensor_to_image(tensor)), np.asarray(image))


def test_pixels_stay_uint8_until_the_model_converts_them() -> None:
    image = _coordinate_image(8, 6)
    pixels = image_to_pixels(image)
    assert pixels.shape == (3, 6, 8) and pixels.dtype == torch.uint8
    np.testing.assert_array_equal(pixels.permute(1, 2, 0).numpy(), np.asarray(image))
    batch = torch.stack([pixels, pixels])
    converted = pixels_to_float(batch)
    assert converted.dtype == torch.float32 and torch.equal(converted[0], image_to_tensor(image))
    assert converted.min() >= -1 and converted.max() <= 1
    assert pixels_to_float(converted) is converted  # float images are already in [-1, 1]
    with pytest.raises(TypeError, match="uint8"):
        pixels_to_float(batch.to(torch.int32))
