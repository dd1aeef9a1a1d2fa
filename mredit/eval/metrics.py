"""The metrics' formulas and image preprocessing, as the MagicBrush evaluation code defines them (docs/eval.md).

- pixel distances: the edit is resized to the reference's size (bicubic) when they differ, both are scaled to
  [0, 1] per channel; L1 is the mean absolute difference and L2 the mean squared difference over all pixels and
  channels (``torch.nn.L1Loss`` / ``MSELoss`` of ``ToTensor`` images in the MagicBrush script);
- CLIP preprocessing: short side resized to the model's input size (bicubic, long side truncated), center crop to a
  square, [0, 1], normalised with CLIP's mean and std (``clip.load``'s transform);
- DINO preprocessing: short side to 256 (bicubic), center crop 224, ImageNet mean and std (the MagicBrush script);
- similarities: the cosine of two embeddings (1 - scipy's cosine distance); the directional CLIP similarity is the
  cosine between the change of the unit image embeddings and the change of the unit text embeddings
  (InstructPix2Pix's ``ClipSimilarity``); 0 when a change is zero (``torch.nn.functional.cosine_similarity``, which
  that code calls, divides by at least a tiny epsilon), as for every edit of an item whose two captions are equal.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DINO_RESIZE, DINO_CROP = 256, 224


def unit_array(image: Image.Image) -> np.ndarray:
    """``[H, W, 3]`` float64 in [0, 1] (the values of torchvision's ``ToTensor``)."""
    return np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0


def pixel_distances(edit: Image.Image, reference: Image.Image) -> tuple[float, float]:
    """(L1, L2) of ``edit`` against ``reference``: ``edit`` resized to the reference's size (bicubic) when they
    differ, then the mean absolute and the mean squared difference of the [0, 1] values."""
    edit, reference = edit.convert("RGB"), reference.convert("RGB")
    if edit.size != reference.size:
        edit = edit.resize(reference.size, Image.Resampling.BICUBIC)
    difference = unit_array(edit) - unit_array(reference)
    return float(np.abs(difference).mean()), float((difference**2).mean())


def resize_short_side(image: Image.Image, size: int) -> Image.Image:
    """Short side to ``size`` (bicubic), long side ``int(size * long / short)``: torchvision's ``Resize(size)``."""
    width, height = image.size
    if width <= height:
        new = (size, int(size * height / width))
    else:
        new = (int(size * width / height), size)
    return image if new == image.size else image.resize(new, Image.Resampling.BICUBIC)


def center_crop(image: Image.Image, size: int) -> Image.Image:
    """A ``size`` x ``size`` center crop, offsets rounded as torchvision's ``CenterCrop``."""
    width, height = image.size
    if width < size or height < size:
        raise ValueError(f"cannot center-crop {size} px from a {width}x{height} image")
    top, left = int(round((height - size) / 2.0)), int(round((width - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def pixel_batch(
    images: Sequence[Image.Image], resize: int, crop: int, mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """``[B, 3, crop, crop]`` float32: resize the short side, center-crop, scale to [0, 1], normalise."""
    squares = [np.asarray(center_crop(resize_short_side(image.convert("RGB"), resize), crop)) for image in images]
    batch = torch.from_numpy(np.stack(squares)).permute(0, 3, 1, 2).contiguous().float().div_(255.0)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return batch.sub_(mean_t).div_(std_t)


def clip_pixels(images: Sequence[Image.Image], size: int) -> torch.Tensor:
    """CLIP's input: short side to ``size``, center crop ``size``, CLIP mean and std."""
    return pixel_batch(images, size, size, CLIP_MEAN, CLIP_STD)


def dino_pixels(images: Sequence[Image.Image], resize: int = DINO_RESIZE, crop: int = DINO_CROP) -> torch.Tensor:
    """DINO's input: short side to 256, center crop 224, ImageNet mean and std."""
    return pixel_batch(images, resize, crop, IMAGENET_MEAN, IMAGENET_STD)


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine similarity in float64."""
    a, b = a.double(), b.double()
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))


def unit(x: torch.Tensor) -> torch.Tensor:
    x = x.double()
    return x / x.norm(dim=-1, keepdim=True)


def directional(
    image_before: torch.Tensor, image_after: torch.Tensor, text_before: torch.Tensor, text_after: torch.Tensor
) -> torch.Tensor:
    """Row-wise cosine between ``unit(image_after) - unit(image_before)`` and ``unit(text_after) -
    unit(text_before)``; 0 where either change is zero (identical captions, or an edit equal to its input)."""
    image_change = unit(image_after) - unit(image_before)
    text_change = unit(text_after) - unit(text_before)
    norms = image_change.norm(dim=-1) * text_change.norm(dim=-1)
    dot = (image_change * text_change).sum(-1)
    return torch.where(norms > 0, dot / norms.clamp_min(1e-300), torch.zeros_like(dot))
