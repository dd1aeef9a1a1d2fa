"""Paired transforms: the source and the target get the same resize, crop and flip, so they stay aligned."""

from __future__ import annotations

import random
import re
import warnings

import torch
from PIL import Image

# "left"/"right" and their derivatives (leftmost, right-hand...): flipping would contradict the instruction.
_SIDE_WORDS = re.compile(r"\b(left|right)", re.IGNORECASE)


def mentions_side(instruction: str) -> bool:
    """True when a horizontal flip would change the meaning of the instruction."""
    return _SIDE_WORDS.search(instruction) is not None


def image_to_pixels(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> uint8 tensor ``[3, H, W]`` (0..255): what a sample carries through the data loader."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    width, height = image.size
    if width == 0 or height == 0:
        return torch.empty(3, height, width, dtype=torch.uint8)
    with warnings.catch_warnings():  # the bytes are read-only; nothing writes to them (stacking copies them)
        warnings.simplefilter("ignore", UserWarning)
        pixels = torch.frombuffer(image.tobytes(), dtype=torch.uint8)
    return pixels.view(height, width, 3).permute(2, 0, 1)  # HWC memory viewed as CHW, no copy


def pixels_to_float(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 images (0..255, any leading dimensions) -> float32 in ``[-1, 1]``; floating images are returned as
    they are (already in ``[-1, 1]``). Models call it on the batch they receive, so the conversion runs on the
    device and the loader moves and shares a quarter of the bytes."""
    if pixels.is_floating_point():
        return pixels
    if pixels.dtype != torch.uint8:
        raise TypeError(f"images must be uint8 (0..255) or floating point ([-1, 1]), got {pixels.dtype}")
    return pixels.float().div_(127.5).sub_(1.0)


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float tensor ``[3, H, W]`` in ``[-1, 1]``."""
    return pixels_to_float(image_to_pixels(image))


def tensor_to_image(tensor: torch.Tensor) -> Image.Image:
    """Inverse of ``image_to_tensor`` (clamped)."""
    array = tensor.detach().float().add(1.0).mul(127.5).round().clamp(0, 255).byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array)


class PairedTransform:
    """Resize so the short side is ``resolution``, crop ``resolution x resolution``, maybe flip; same for both images.

    ``random_crop`` picks the crop offset with the given RNG (else center crop); ``random_flip`` flips both images
    with probability 0.5 unless the instruction mentions left or right. A target whose size differs from the
    source's is resized to the source's size first, so pixel (y, x) of one corresponds to pixel (y, x) of the other.
    """

    def __init__(self, resolution: int = 256, random_crop: bool = False, random_flip: bool = False) -> None:
        if resolution < 1:
            raise ValueError(f"resolution must be >= 1, got {resolution}")
        self.resolution, self.random_crop, self.random_flip = resolution, random_crop, random_flip

    def __call__(
        self, source: Image.Image, target: Image.Image, instruction: str, rng: random.Random | None = None
    ) -> tuple[Image.Image, Image.Image]:
        rng = rng or random.Random(0)
        width, height = source.size
        scale = self.resolution / min(width, height)
        size = (max(self.resolution, round(width * scale)), max(self.resolution, round(height * scale)))
        spare_x, spare_y = size[0] - self.resolution, size[1] - self.resolution
        if self.random_crop:
            left, top = rng.randint(0, spare_x), rng.randint(0, spare_y)
        else:
            left, top = spare_x // 2, spare_y // 2
        # The crop in source pixels; the target's box is the same region in its own pixels (it may be another size).
        sx, sy = size[0] / width, size[1] / height
        box = (left / sx, top / sy, (left + self.resolution) / sx, (top + self.resolution) / sy)
        tx, ty = target.width / width, target.height / height
        target_box = (box[0] * tx, box[1] * ty, box[2] * tx, box[3] * ty)
        source, target = self._region(source, box), self._region(target, target_box)
        if self.random_flip and not mentions_side(instruction) and rng.random() < 0.5:
            source = source.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            target = target.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return source, target

    def _region(self, image: Image.Image, box: tuple[float, float, float, float]) -> Image.Image:
        """``box`` of ``image`` at ``resolution x resolution``: a plain crop when no scaling is needed."""
        square = (self.resolution, self.resolution)
        if all(float(v).is_integer() for v in box) and (box[2] - box[0], box[3] - box[1]) == square:
            return image if box == (0, 0, *image.size) else image.crop(tuple(int(v) for v in box))
        # antialiased bilinear on the cropped region only, like the diffusers InstructPix2Pix training script
        return image.resize(square, Image.Resampling.BILINEAR, box=box)
