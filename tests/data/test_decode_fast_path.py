"""The fast decode/convert paths give the same pixels and values as the plain PIL/numpy ones."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from mredit.data.transforms import image_to_tensor
from mredit.schema import decode_image


def _jpeg(width: int, height: int, mode: str = "RGB") -> bytes:
    rng = np.random.default_rng(width * height)
    image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).convert(mode)
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@pytest.mark.parametrize(("size", "draft", "expected"), [((512, 512), 256, (256, 256)), ((600, 520), 256, (300, 260))])
def test_draft_decode_keeps_short_side_at_least_the_resolution(size, draft, expected) -> None:
    image = decode_image(_jpeg(*size), "src.jpg", draft_size=(draft, draft))
    assert image.mode == "RGB" and image.size == expected and min(image.size) >= draft
    reference = Image.open(io.BytesIO(_jpeg(*size)))
    reference.draft("RGB", (draft, draft))
    np.testing.assert_array_equal(np.asarray(image), np.asarray(reference.convert("RGB")))


def test_decode_returns_plain_rgb_images() -> None:
    gray = decode_image(_jpeg(64, 48, "L"), "src.jpg", draft_size=(16, 16))
    assert gray.mode == "RGB" and gray.size == (32, 24)  # scale 2: the largest with both sides >= 16
    full = decode_image(_jpeg(64, 48), "src.jpg")
    assert full.mode == "RGB" and full.size == (64, 48) and type(full) is Image.Image


def test_image_to_tensor_matches_the_reference_formula() -> None:
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    array[0, :3] = [[0, 127, 255], [128, 1, 254], [64, 191, 2]]
    expected = torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(127.5).sub_(1.0)
    for image in (Image.fromarray(array), Image.fromarray(array).convert("RGBA")):
        assert torch.equal(image_to_tensor(image), expected)
    assert image_to_tensor(Image.new("RGB", (0, 4))).shape == (3, 4, 0)
