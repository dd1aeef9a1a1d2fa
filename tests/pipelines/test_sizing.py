import numpy as np
import pytest
from PIL import Image

from mredit.pipelines.sizing import fit_image, fitted_size, load_image, size_multiple, to_rgb


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
