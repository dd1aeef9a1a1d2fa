"""Image policy shared by annotation and evaluation: resize to ``max_side``, JPEG, base64 data URL (a prompts file
may choose PNG, another JPEG quality or no resize: ``encode_data_url``).

The same policy (recorded in the judge fingerprint) must be used for annotation and evaluation, since the
resolution the judge sees changes its detail-preserving and quality scores.
"""

from __future__ import annotations

import base64
import io

from PIL import Image

JPEG_QUALITY = 90


def fit_max_side(image: Image.Image, max_side: int) -> Image.Image:
    """Downscale (never upscale) so the long side is at most ``max_side``; aspect ratio kept."""
    if max_side < 1:
        raise ValueError(f"max_side must be >= 1, got {max_side}")
    width, height = image.size
    scale = max_side / max(width, height)
    image = image.convert("RGB")
    if scale >= 1.0:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def encode_data_url(image: Image.Image, max_side: int | None, fmt: str = "jpeg", quality: int = JPEG_QUALITY) -> str:
    """A base64 data URL of ``image`` as JPEG (at ``quality``) or PNG, downscaled to ``max_side`` (None: as is)."""
    image = image.convert("RGB") if max_side is None else fit_max_side(image, max_side)
    buf = io.BytesIO()
    if fmt == "png":
        image.save(buf, format="PNG")
    else:
        image.save(buf, format="JPEG", quality=quality)
    return f"data:image/{fmt};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def image_data_url(image: Image.Image, max_side: int) -> str:
    """The default policy: JPEG quality 90, long side at most ``max_side``."""
    return encode_data_url(image, max_side)


def sent_size(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """The (width, height) the judge receives for an image of ``size`` (used by the cost estimator)."""
    width, height = size
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))
