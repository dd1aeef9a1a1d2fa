"""Reading input images and sizing them as the paper's evaluation does (InstructPix2Pix ``edit_cli`` recipe)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

WHITE = (255, 255, 255)


def to_rgb(image: Image.Image, name: str = "image") -> Image.Image:
    """Convert any common PIL mode to 8-bit RGB: alpha is composited on white, 16/32-bit gray is rescaled.

    Modes that carry no displayable gray or colour values (e.g. float ``F`` maps of arbitrary range) are rejected.
    """
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        values = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        return Image.fromarray(np.clip(values / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "RGBa", "La", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, WHITE + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode in ("L", "1", "P", "CMYK", "YCbCr", "LAB", "HSV"):
        return image.convert("RGB")
    raise ValueError(f"{name}: unsupported image mode {mode!r} (expected RGB, RGBA, grayscale, palette or CMYK)")


def load_image(path: str | Path) -> Image.Image:
    """Open an image file as 8-bit RGB, with a one-line error naming the file when it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        with Image.open(path) as image:
            image.load()
            return to_rgb(image, name=str(path))
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"cannot read image {path}: {e}") from e


def size_multiple(vae_scale_factor: int, num_unet_levels: int) -> int:
    """Pixel multiple an input side must have: VAE downsampling x the UNet's downsampling (64 for SD1.5)."""
    return vae_scale_factor * 2 ** (num_unet_levels - 1)


def fitted_size(width: int, height: int, resolution: int = 512, multiple: int = 64) -> tuple[int, int]:
    """Scale so the long side is ``resolution``, snap the short side up and both sides down to ``multiple``."""
    if min(width, height) < 1:
        raise ValueError(f"image has an empty side: {width}x{height}")
    factor = resolution / max(width, height)
    factor = math.ceil(min(width, height) * factor / multiple) * multiple / min(width, height)
    fitted = (int((width * factor) // multiple) * multiple, int((height * factor) // multiple) * multiple)
    return max(fitted[0], multiple), max(fitted[1], multiple)


def fit_image(image: Image.Image, resolution: int = 512, multiple: int = 64) -> Image.Image:
    """``ImageOps.fit`` (centre crop + LANCZOS) to ``fitted_size``; a no-op when the size already fits."""
    size = fitted_size(*image.size, resolution=resolution, multiple=multiple)
    if size == image.size:
        return image
    return ImageOps.fit(image, size, method=Image.Resampling.LANCZOS)
