import numpy as np
import pytest
from PIL import Image

from mredit.pipelines.sizing import (
    FALLBACK_RESOLUTION,
    choose_resolution,
    fit_image,
    fitted_size,
    load_image,
    size_multiple,
    to_rgb,
)


def test_fitted_size_follows_the_edit_cli_recipe() -> None:
    assert fitted_size(640, 480) == (512, 384)
    assert fitted_size(512, 512) == (512, 512)
    assert fitted_size(1000, 300) == (640, 192)  # short side 153.6 snaps up to 192, the long side follows
    assert fitted_size(30, 20, resolution=32, multiple=8) == (32, 24)
    assert size_multiple(8, 4) == 64 and size_multiple(2, 2) == 4
    assert fit_image(Image.new("RGB", (640, 480))).size == (512, 384)


def test_modes_are_converted() -> None:
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert to_rgb(rgba).getpixel((0, 0)) == (255, 255, 255)  # transparent -> white
    gray16 = Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16))
    assert gray16.mode.startswith("I;16") and to_rgb(gray16).getpixel((0, 0)) == (255, 255, 255)
    assert to_rgb(Image.new("L", (4, 4), 128)).getpixel((0, 0)) == (128, 128, 128)
    assert to_rgb(Image.new("CMYK", (4, 4))).mode == "RGB"
    with pytest.raises(ValueError, match="unsupported image mode 'F'"):
        to_rgb(Image.new("F", (4, 4)))


def test_unreadable_files_fail_clearly(tmp_path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot read image .*bad.png"):
        load_image(bad)
    with pytest.raises(FileNotFoundError, match="image not found"):
        load_image(tmp_path / "missing.png")


def test_fit_image_keeps_the_whole_image() -> None:
    """The whole image is resized to the fitted size (no content cropped); crop=True is edit_cli's centre crop."""
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (477, 720, 3), dtype=np.uint8))
    fitted = fit_image(photo, resolution=16, multiple=4)
    assert fitted.size == (16, 12)
    assert np.array_equal(np.asarray(fitted), np.asarray(photo.resize((16, 12), Image.Resampling.LANCZOS)))
    cropped = fit_image(photo, resolution=16, multiple=4, crop=True)
    assert cropped.size == (16, 12) and not np.array_equal(np.asarray(cropped), np.asarray(fitted))
    square = Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))  # same ratio: the same pixels
    assert np.array_equal(np.asarray(fit_image(square, 16, 4)), np.asarray(fit_image(square, 16, 4, crop=True)))
    assert fit_image(fitted, resolution=16, multiple=4) is fitted  # already fitted: untouched


def test_choose_resolution() -> None:
    assert choose_resolution(None, 256) == (256, None, None)  # the trained resolution, silently
    assert choose_resolution(300, 256) == (300, None, None)
    fallback = choose_resolution(None, None, "old.ckpt")
    assert fallback.resolution == FALLBACK_RESOLUTION == 512 and fallback.warning is None
    assert "old.ckpt" in fallback.note and "512 px" in fallback.note and "\n" not in fallback.note
    far = choose_resolution(513, 256, "m.ckpt")
    assert far.resolution == 513 and far.note is None and "513" in far.warning and "256 px" in far.warning
    assert choose_resolution(512, 256).warning is None  # 2x is not far above
    assert choose_resolution(512, None) == (512, None, None)  # explicit: no note
    with pytest.raises(ValueError, match="--resolution must be >= 1"):
        choose_resolution(0, 256)
