"""The synthetic generator's signature artifacts: a stamp in a fixed corner and shading on a fixed block grid.

Real editing data repeats its generator's artifacts (watermarks, blocking on the codec's grid) in the same place
in every image, so a model trained on it learns to reproduce them. These two are their synthetic counterparts:
fixed in position and look at every resolution, so that they are learnable, and known to the oracle, which
measures how much of each an image shows relative to the exact answer (``stamp_strength``, ``grid_amplitude``).

- The stamp: a bright square with a dark centre, ``3/16`` of the image side, inset ``1/16`` from the bottom
  right corner (3x3 px at 16 px). Blended over the image with an opacity.
- The grid: each ``res/4`` x ``res/4`` block (4x4 at 16 px) shaded by a diagonal ramp, darker at its top left and
  lighter at its bottom right, so that every block seam shows a step. Zero-mean in every block, so that region
  means barely move; added with an amplitude (the ramp's peak-to-peak height).
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np

STAMP_BRIGHT = np.array([0.96, 0.96, 0.96], np.float32)
STAMP_DARK = np.array([0.1, 0.1, 0.1], np.float32)
# a part of the stamp where the stamp and the answer differ by less than this tells nothing about the stamp
_STAMP_VISIBLE = 0.2
# first differences larger than this are content edges (a moved object, a missing edit), not grid seams
_GRID_MAX_STEP = 0.3
_FLAT = 0.02  # a neighbour step of the answer or the source under this is flat (8-bit rounding and no edge)


class StampLayout(NamedTuple):
    rows: slice
    cols: slice
    pattern: np.ndarray  # [k, k, 3]: the stamp's colours
    parts: tuple[np.ndarray, np.ndarray]  # flat indices into the [k * k * 3] window: its bright and dark parts


@lru_cache(maxsize=8)
def stamp_layout(resolution: int) -> StampLayout:
    """Where the stamp goes at ``resolution`` and what it looks like (read-only arrays)."""
    side = max(3, round(3 * resolution / 16))
    inset = max(1, resolution // 16)
    core = max(1, side // 3)
    start = (side - core) // 2
    dark = np.zeros((side, side), bool)
    dark[start : start + core, start : start + core] = True
    pattern = np.where(dark[..., None], STAMP_DARK, STAMP_BRIGHT).astype(np.float32)
    per_value = np.repeat(dark.reshape(-1), 3)
    parts = (np.flatnonzero(~per_value), np.flatnonzero(per_value))
    end = resolution - inset
    layout = StampLayout(slice(end - side, end), slice(end - side, end), pattern, parts)
    for array in (pattern, *parts):
        array.setflags(write=False)
    return layout


def apply_stamp(image: np.ndarray, opacity: float) -> np.ndarray:
    """``image`` with the stamp blended over it at ``opacity`` in [0, 1] (a new array)."""
    layout = stamp_layout(image.shape[0])
    out = np.array(image, dtype=np.float32)
    window = out[layout.rows, layout.cols]
    window += opacity * (layout.pattern - window)
    return out


def stamp_mask(resolution: int) -> np.ndarray:
    """[R, R] bool: where the stamp goes (the oracle judges it there, and only by quality)."""
    layout = stamp_layout(resolution)
    mask = np.zeros((resolution, resolution), bool)
    mask[layout.rows, layout.cols] = True
    return mask


def stamp_strength(out: np.ndarray, answer: np.ndarray, source: np.ndarray) -> float:
    """How opaque a stamp ``out`` shows over ``answer`` (0: none, 1: fully opaque); float [R, R, 3] images.

    In the stamp's window the change from the answer is fitted, by least squares, as the stamp's own change
    (``stamp - answer``, the opacity its coefficient) plus a step back toward the source (an under-edit there, which
    may come with a stamp). The opacity counts only when that fit explains the change, and when each part of the
    stamp (bright, dark) moved toward its own colour by about as much, so that content which merely resembles one
    part (a white object moved into the corner, a missing edit there) is not a stamp. A part whose stamp colour
    the answer already shows there, and where nothing changed, tells nothing and is skipped.
    """
    layout = stamp_layout(answer.shape[0])
    window = (layout.rows, layout.cols)
    reference = answer[window].astype(np.float64).reshape(-1)
    d = out[window].reshape(-1) - reference
    dd = float(d @ d)
    if dd < 1e-8:
        return 0.0
    t = layout.pattern.reshape(-1) - reference
    u = source[window].reshape(-1) - reference
    # least squares of d on t and u (the normal equations of two regressors; u is left out where it is zero)
    tt, tu, uu, dt, du = float(t @ t), float(t @ u), float(u @ u), float(d @ t), float(d @ u)
    determinant = tt * uu - tu * tu
    if uu > 1e-6 and determinant > 1e-9 * tt * uu:
        opacity, back = (dt * uu - du * tu) / determinant, (du * tt - dt * tu) / determinant
    else:
        opacity, back = dt / tt, 0.0
    stamp_change = d - back * u
    residual = stamp_change - opacity * t
    explained = 1.0 - float(residual @ residual) / dd
    fits = []
    for part in layout.parts:
        change, own = stamp_change[part], t[part]
        scale = max(float(own @ own), float(change @ change))
        if scale < len(part) * _STAMP_VISIBLE**2 / 4:  # neither the stamp nor any change is visible here
            continue
        fits.append(float(change @ own) / scale)
    part_opacity = min(max(min(fits), 0.0), 1.0) if fits else 0.0
    return part_opacity * min(max((explained - 0.6) / 0.3, 0.0), 1.0)


def grid_block(resolution: int) -> int:
    """The side of the grid's blocks: a quarter of the image (4 px at 16 px), at least 2 px."""
    return max(2, resolution // 4)


@lru_cache(maxsize=8)
def grid_pattern(resolution: int) -> np.ndarray:
    """The grid's shading [R, R] in [-0.5, 0.5]: a diagonal ramp in each block, zero-mean per block (read-only)."""
    block = grid_block(resolution)
    position = np.arange(resolution) % block
    ramp = (position[:, None] + position[None, :]) / (2 * (block - 1)) - 0.5
    pattern = ramp.astype(np.float32)
    pattern.setflags(write=False)
    return pattern


def apply_grid(image: np.ndarray, amplitude: float) -> np.ndarray:
    """``image`` with the grid's shading added at ``amplitude`` (peak-to-peak), unclipped (a new array)."""
    return (image + amplitude * grid_pattern(image.shape[0])[..., None]).astype(np.float32)


@lru_cache(maxsize=8)
def _grid_steps(resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """The grid pattern's vertical and horizontal neighbour steps, [R-1, R, 1] and [R, R-1, 1] (read-only)."""
    pattern = grid_pattern(resolution)[..., None]
    steps = (np.diff(pattern, axis=0), np.diff(pattern, axis=1))
    for array in steps:
        array.setflags(write=False)
    return steps


def grid_amplitude(out: np.ndarray, answer: np.ndarray, source: np.ndarray) -> float:
    """The grid amplitude ``out`` shows over ``answer``: least squares of their difference's neighbour steps on the
    grid's steps (its seams and ramps), where the answer and the source are flat (no edge, no pattern of the
    scene) and the step is no content edge (over 0.3, more than a grid makes).

    Content changes are piecewise flat: their steps lie on edges of the scene or of the changed content, which are
    left out or, in sign, as often with the grid's steps as against them."""
    change = out - answer
    numerator, denominator = 0.0, 0.0
    for axis, p in enumerate(_grid_steps(answer.shape[0])):
        d = np.diff(change, axis=axis)
        flat = (np.abs(np.diff(answer, axis=axis)) < _FLAT) & (np.abs(np.diff(source, axis=axis)) < _FLAT)
        kept = flat & (np.abs(d) <= _GRID_MAX_STEP)
        weighted = p * kept
        numerator += float((d * weighted).sum())
        denominator += float((p * weighted).sum())
    return max(0.0, numerator / denominator) if denominator > 0 else 0.0
