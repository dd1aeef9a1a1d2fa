"""Reading input images, the resolution to edit at, and sizing inputs to it.

Sizes follow the InstructPix2Pix ``edit_cli`` recipe of the paper's evaluation (``fitted_size``); the whole image
is resized to that size, so nothing is cropped and the aspect ratio is kept up to the snapping to the model's
size multiple (``crop=True`` crops that remainder instead, as ``edit_cli`` does).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

WHITE = (255, 255, 255)
# the resolution of a model that does not record the one it was trained at (made before it was recorded)
FALLBACK_RESOLUTION = 512
# a requested resolution more than this many times the trained one gets a warning
FAR_ABOVE_TRAINED = 2


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


def fit_image(image: Image.Image, resolution: int = 512, multiple: int = 64, crop: bool = False) -> Image.Image:
    """The whole image resized (LANCZOS) to ``fitted_size``, so its aspect ratio is kept up to the snapping to
    ``multiple``; ``crop=True``: ``ImageOps.fit`` (centre crop of that remainder, then LANCZOS), as ``edit_cli``.
    A no-op when the size already fits. Images whose aspect ratio is the fitted one give the same pixels either
    way (squares, for instance)."""
    size = fitted_size(*image.size, resolution=resolution, multiple=multiple)
    if size == image.size:
        return image
    if crop:
        return ImageOps.fit(image, size, method=Image.Resampling.LANCZOS)
    return image.resize(size, Image.Resampling.LANCZOS)


class ResolutionChoice(NamedTuple):
    """The resolution to edit at, and what to tell the user about it (one line each, or None)."""

    resolution: int
    note: str | None = None  # the model records no resolution: the fallback is used
    warning: str | None = None  # the requested resolution is far above the trained one


def choose_resolution(
    requested: int | None, trained: int | None, model: str = "the model", option: str = "--resolution"
) -> ResolutionChoice:
    """``requested`` if given, else ``trained`` (the resolution the model was trained at, as its checkpoint or
    export records it), else ``FALLBACK_RESOLUTION`` with a note; a request more than ``FAR_ABOVE_TRAINED`` times
    the trained resolution comes with a warning naming both (sampling time grows with the pixel count, and the
    model has not seen that scale). ``model`` and ``option`` name the model and the setting in the messages."""
    if requested is not None and requested < 1:
        raise ValueError(f"{option} must be >= 1, got {requested}")
    if requested is None and trained is not None:
        return ResolutionChoice(trained)
    if requested is None:
        note = (
            f"{model} does not record the resolution it was trained at (made before it was recorded): "
            f"editing at the fallback, {FALLBACK_RESOLUTION} px; {option} chooses"
        )
        return ResolutionChoice(FALLBACK_RESOLUTION, note=note)
    if trained is not None and requested > FAR_ABOVE_TRAINED * trained:
        warning = (
            f"{option} {requested} is more than {FAR_ABOVE_TRAINED}x the {trained} px {model} was trained at: "
            "sampling is much slower and the model has not seen that scale (leave it out to edit at "
            f"{trained} px)"
        )
        return ResolutionChoice(requested, warning=warning)
    return ResolutionChoice(requested)
