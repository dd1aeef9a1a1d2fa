"""Small numpy image filters used by the corruptions and the oracle ([H, W] or [H, W, C] float arrays)."""

from __future__ import annotations

import numpy as np


def shifted_stack(image: np.ndarray, radius: int) -> np.ndarray:
    """All (2r+1)^2 shifted copies of an edge-padded image, stacked on a new first axis."""
    h, w = image.shape[:2]
    pad = [(radius, radius), (radius, radius)] + [(0, 0)] * (image.ndim - 2)
    padded = np.pad(image, pad, mode="edge")
    size = 2 * radius + 1
    return np.stack([padded[dy : dy + h, dx : dx + w] for dy in range(size) for dx in range(size)])


def median3(image: np.ndarray) -> np.ndarray:
    """3x3 median filter: removes specks of up to 2x2 pixels and most per-pixel noise, keeps flat regions."""
    return np.median(shifted_stack(image, 1), axis=0).astype(np.float32)


def erode(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary erosion with a (2r+1) square; pixels beyond the frame count as inside."""
    if radius <= 0:
        return mask.astype(bool)
    return shifted_stack(mask.astype(bool), radius).all(axis=0)


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    if radius <= 0:
        return mask.astype(bool)
    return shifted_stack(mask.astype(bool), radius).any(axis=0)


def local_range(image: np.ndarray) -> np.ndarray:
    """Max minus min over each 3x3 window, largest over channels: [H, W]."""
    stack = shifted_stack(image, 1)
    return (stack.max(axis=0) - stack.min(axis=0)).max(axis=-1)


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur with edge padding; sigma in pixels."""
    if sigma <= 0:
        return image.astype(np.float32)
    radius = max(1, int(np.ceil(3 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps = (taps / taps.sum()).astype(np.float32)
    out = image.astype(np.float32)
    for axis in (0, 1):
        pad = [(0, 0)] * out.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="edge")
        n = out.shape[axis]
        window = [slice(None)] * out.ndim
        shifted = []
        for i in range(len(taps)):
            window[axis] = slice(i, i + n)
            shifted.append(padded[tuple(window)])
        out = sum(t * v for t, v in zip(taps, shifted))
    return out.astype(np.float32)


def block_mean(image: np.ndarray, block: int) -> np.ndarray:
    """Replace each aligned block x block tile by its mean (the crudest JPEG-like artifact)."""
    h, w = image.shape[:2]
    hb, wb = -(-h // block) * block, -(-w // block) * block
    padded = np.pad(image, [(0, hb - h), (0, wb - w), (0, 0)], mode="edge")
    tiles = padded.reshape(hb // block, block, wb // block, block, -1).mean(axis=(1, 3), keepdims=True)
    return np.broadcast_to(tiles, (hb // block, block, wb // block, block, image.shape[2])).reshape(hb, wb, -1)[:h, :w]
