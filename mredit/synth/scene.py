"""Scenes of the synthetic editing world and their exact rendering with numpy.

A scene is a background (solid, stripes or checker) and 1-4 flat or textured shapes. Positions and sizes
are in image units (0..1), so a scene renders at any resolution; pattern periods are in pixels (at least 2)
so that a 3x3 median filter, which the oracle uses, keeps them. Rendering supersamples 2x2 per pixel for
anti-aliased edges and is exact: the same scene always gives the same float image.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np

# Colours distinguishable at 32 px (and their names are what instructions and feedback say).
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "orange": (245, 140, 20),
    "yellow": (240, 220, 40),
    "green": (40, 170, 60),
    "cyan": (40, 200, 220),
    "blue": (40, 70, 220),
    "purple": (140, 50, 190),
    "pink": (245, 130, 200),
    "white": (245, 245, 245),
    "black": (25, 25, 25),
    "gray": (128, 128, 128),
    "brown": (120, 70, 30),
}
COLOR_NAMES: tuple[str, ...] = tuple(PALETTE)
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond")
BACKGROUND_PATTERNS: tuple[str, ...] = ("solid", "stripes", "checker")
TEXTURE_PATTERNS: tuple[str, ...] = ("stripes", "checker")
SUPERSAMPLE = 2
_RGB_TABLE = {name: np.asarray(rgb, dtype=np.float32) / 255.0 for name, rgb in PALETTE.items()}
for _rgb in _RGB_TABLE.values():
    _rgb.setflags(write=False)
_DISTANCES = {(a, b): float(np.abs(_RGB_TABLE[a] - _RGB_TABLE[b]).max()) for a in PALETTE for b in PALETTE}


def color_rgb(name: str) -> np.ndarray:
    if name not in PALETTE:
        raise ValueError(f"unknown colour {name!r}; known: {', '.join(COLOR_NAMES)}")
    return _RGB_TABLE[name]


def nearest_color(rgb: np.ndarray) -> str:
    """The palette name closest to an RGB triple in [0, 1] (used to name what an image shows)."""
    table = np.stack([color_rgb(n) for n in COLOR_NAMES])
    return COLOR_NAMES[int(np.argmin(((table - rgb) ** 2).sum(-1)))]


def color_distance(a: str, b: str) -> float:
    """Largest channel difference between two palette colours, in [0, 1]."""
    return _DISTANCES[(a, b)]


@dataclass(frozen=True)
class Texture:
    pattern: str  # stripes | checker
    color: str  # the second colour of the fill; the first is the object's own colour


@dataclass(frozen=True)
class SceneObject:
    shape: str
    color: str
    x: float  # centre, image units
    y: float
    size: float  # radius, image units
    texture: Texture | None = None

    def to_dict(self) -> dict[str, Any]:
        texture = {"pattern": self.texture.pattern, "color": self.texture.color} if self.texture else None
        return {
            "shape": self.shape,
            "color": self.color,
            "x": self.x,
            "y": self.y,
            "size": self.size,
            "texture": texture,
        }

    def describe(self) -> str:
        return f"{self.color} {self.shape}"


@dataclass(frozen=True)
class Background:
    color: str
    pattern: str = "solid"  # solid | stripes | checker
    color2: str | None = None


@dataclass(frozen=True)
class Scene:
    background: Background
    objects: tuple[SceneObject, ...] = field(default_factory=tuple)
    resolution: int = 32

    def to_dict(self) -> dict[str, Any]:
        bg = self.background
        return {
            "background": {"color": bg.color, "pattern": bg.pattern, "color2": bg.color2},
            "objects": [o.to_dict() for o in self.objects],
            "resolution": self.resolution,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scene:
        try:
            objects = tuple(
                SceneObject(**{**o, "texture": Texture(**o["texture"]) if o.get("texture") else None})
                for o in data["objects"]
            )
            scene = cls(Background(**data["background"]), objects, int(data["resolution"]))
        except (KeyError, TypeError) as e:
            raise ValueError(f"malformed scene: {e!r}") from e
        scene.validate()
        return scene

    def validate(self) -> None:
        if self.resolution < 8:
            raise ValueError(f"scene resolution must be >= 8, got {self.resolution}")
        colors = [self.background.color, self.background.color2] + [o.color for o in self.objects]
        colors += [o.texture.color for o in self.objects if o.texture]
        for c in colors:
            if c is not None:
                color_rgb(c)
        if self.background.pattern not in BACKGROUND_PATTERNS:
            raise ValueError(f"unknown background pattern {self.background.pattern!r}")
        for o in self.objects:
            if o.shape not in SHAPES:
                raise ValueError(f"unknown shape {o.shape!r}")
            if o.texture and o.texture.pattern not in TEXTURE_PATTERNS:
                raise ValueError(f"unknown texture pattern {o.texture.pattern!r}")

    def with_object(self, index: int, **changes: Any) -> Scene:
        objects = list(self.objects)
        objects[index] = replace(objects[index], **changes)
        return replace(self, objects=tuple(objects))


@lru_cache(maxsize=8)
def _grid(resolution: int, supersample: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample coordinates in image units, shape [R*s, R*s]."""
    n = resolution * supersample
    coords = (np.arange(n, dtype=np.float32) + 0.5) / n
    return np.meshgrid(coords, coords, indexing="xy")


def _inside(obj: SceneObject, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    dx, dy, r = xs - obj.x, ys - obj.y, obj.size
    if obj.shape == "circle":
        return dx * dx + dy * dy <= r * r
    if obj.shape == "square":  # half-side 0.85 r: about the circle's area
        return np.maximum(np.abs(dx), np.abs(dy)) <= 0.85 * r
    if obj.shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= 1.15 * r
    # triangle pointing up: apex at y - r, base at y + 0.8 r with half-width 1.05 r
    t = (dy + r) / (1.8 * r)
    return (t >= 0) & (t <= 1) & (np.abs(dx) <= 1.05 * r * t)


def _downsample(mask: np.ndarray, supersample: int) -> np.ndarray:
    h, w = mask.shape[0] // supersample, mask.shape[1] // supersample
    return mask.reshape(h, supersample, w, supersample).sum(axis=(1, 3), dtype=np.float32) / supersample**2


class _Geometry(NamedTuple):
    """What an object's coverage depends on (not its colours), as ``_inside`` reads it."""

    shape: str
    x: float
    y: float
    size: float


@lru_cache(maxsize=2048)
def _coverage_box(shape: str, x: float, y: float, size: float, resolution: int) -> tuple[int, int, int, int, Any]:
    """(y0, y1, x0, x1, coverage of that pixel window) of a shape, or a None window when it misses the frame.

    Cached (read-only): a sample renders the same geometry several times (source, answer, flawed variants)."""
    xs, ys = _grid(resolution, SUPERSAMPLE)
    # only the pixels of the bounding box (every shape lies within 1.2 radii of its centre)
    reach = 1.2 * size
    x0, x1 = max(0, int((x - reach) * resolution)), max(0, int((x + reach) * resolution) + 2)
    y0, y1 = max(0, int((y - reach) * resolution)), max(0, int((y + reach) * resolution) + 2)
    x0, x1, y0, y1 = min(resolution, x0), min(resolution, x1), min(resolution, y0), min(resolution, y1)
    if not (x1 > x0 and y1 > y0):
        return y0, y1, x0, x1, None
    window = (slice(y0 * SUPERSAMPLE, y1 * SUPERSAMPLE), slice(x0 * SUPERSAMPLE, x1 * SUPERSAMPLE))
    coverage = _downsample(_inside(_Geometry(shape, x, y, size), xs[window], ys[window]), SUPERSAMPLE)
    coverage.setflags(write=False)
    return y0, y1, x0, x1, coverage


def object_coverage(obj: SceneObject, resolution: int) -> np.ndarray:
    """Fraction of each pixel the object covers, [R, R] float32 (before occlusion by later objects)."""
    y0, y1, x0, x1, window = _coverage_box(obj.shape, obj.x, obj.y, obj.size, resolution)
    coverage = np.zeros((resolution, resolution), np.float32)
    if window is not None:
        coverage[y0:y1, x0:x1] = window
    return coverage


@lru_cache(maxsize=1024)
def pattern_fill(pattern: str, first: str, second: str | None, resolution: int, period: int) -> np.ndarray:
    """A full-image fill [R, R, 3]: solid, horizontal stripes, or checker with cells of ``period // 2`` px.

    Cached and read-only: copy it to draw on it."""
    base = np.broadcast_to(color_rgb(first), (resolution, resolution, 3))
    if pattern == "solid" or second is None:
        return base
    idx = np.arange(resolution) // max(1, period // 2)
    if pattern == "stripes":
        select = np.broadcast_to((idx % 2 == 1)[:, None], (resolution, resolution))
    else:
        select = (idx[:, None] + idx[None, :]) % 2 == 1
    fill = np.where(select[..., None], color_rgb(second), base)
    fill.setflags(write=False)
    return fill


def background_period(resolution: int) -> int:
    return max(4, round(resolution / 4))


def texture_period(resolution: int) -> int:
    return max(4, round(resolution / 4))


def pick(rng: np.random.Generator, options):
    """One element of a sequence (much faster than ``rng.choice`` on a Python list)."""
    return options[int(rng.integers(len(options)))]


Box = tuple[int, int, int, int, Any]  # (y0, y1, x0, x1, coverage window or None), see ``_coverage_box``


def composite(scene: Scene) -> tuple[np.ndarray, list[Box]]:
    """The rendered image [R, R, 3] in [0, 1] (a new array) and each object's coverage box.

    Objects are composited over their bounding boxes only: outside them their coverage is 0, which leaves the
    image exactly as a full-frame pass would."""
    res = scene.resolution
    bg = scene.background
    image = np.array(pattern_fill(bg.pattern, bg.color, bg.color2, res, background_period(res)), dtype=np.float32)
    boxes = [_coverage_box(o.shape, o.x, o.y, o.size, res) for o in scene.objects]
    period = texture_period(res)
    for obj, (y0, y1, x0, x1, cov) in zip(scene.objects, boxes):
        if cov is None:
            continue
        tex = obj.texture
        fill = pattern_fill(tex.pattern if tex else "solid", obj.color, tex.color if tex else None, res, period)
        window = image[y0:y1, x0:x1]
        window += cov[..., None] * (fill[y0:y1, x0:x1] - window)
    return image, boxes


def visible_layers(boxes: list[Box], resolution: int, first: int = 0) -> list[np.ndarray]:
    """The visible coverage (after occlusion by later objects) of objects ``first, first + 1, ...``, [R, R] each."""
    visible, unoccluded = [], np.ones((resolution, resolution), np.float32)
    for y0, y1, x0, x1, cov in reversed(boxes[first:]):  # from the top: what later objects leave uncovered
        layer = np.zeros((resolution, resolution), np.float32)
        if cov is not None:
            free = unoccluded[y0:y1, x0:x1]
            layer[y0:y1, x0:x1] = cov * free
            unoccluded[y0:y1, x0:x1] = free * (1.0 - cov)
        visible.append(layer)
    return visible[::-1]


def render_layers(scene: Scene) -> tuple[np.ndarray, list[np.ndarray]]:
    """The rendered image [R, R, 3] in [0, 1] and each object's visible coverage (after occlusion)."""
    image, boxes = composite(scene)
    return image, visible_layers(boxes, scene.resolution)


def render(scene: Scene) -> np.ndarray:
    return composite(scene)[0]


def to_uint8(image: np.ndarray) -> np.ndarray:
    scaled = np.rint(image * 255.0)
    return np.minimum(np.maximum(scaled, 0, out=scaled), 255, out=scaled).astype(np.uint8)  # clip, NaN kept


def quantize(image: np.ndarray) -> np.ndarray:
    """What an image becomes once stored as 8-bit PNG, as float32 in [0, 1]."""
    return to_uint8(image).astype(np.float32) / 255.0


@lru_cache(maxsize=64)
def _far_bits(name: str, min_distance: float) -> int:
    """The palette colours at least ``min_distance`` from ``name``, as a bit set over ``COLOR_NAMES``."""
    return sum(1 << i for i, c in enumerate(COLOR_NAMES) if color_distance(c, name) >= min_distance)


@lru_cache(maxsize=8192)
def _colors_of_bits(bits: int) -> tuple[str, ...]:
    return tuple(c for i, c in enumerate(COLOR_NAMES) if bits >> i & 1)


def colors_far_from(avoid: list[str], min_distance: float = 0.3) -> tuple[str, ...]:
    """The palette colours (in ``COLOR_NAMES`` order) at least ``min_distance`` from every colour of ``avoid``."""
    bits = (1 << len(COLOR_NAMES)) - 1
    for a in avoid:
        bits &= _far_bits(a, min_distance)
    return _colors_of_bits(bits)


@lru_cache(maxsize=16)
def _second_background_colors(color: str) -> tuple[str, ...]:
    """Colours for a pattern's second colour: near ``color`` but distinguishable (any other when none is)."""
    near = tuple(c for c in COLOR_NAMES if 0.2 <= color_distance(c, color) <= 0.5)
    return near or tuple(c for c in COLOR_NAMES if c != color)


def fits(scene: Scene, x: float, y: float, size: float, ignore: int | None = None) -> bool:
    """Whether a shape at (x, y) with radius ``size`` stays inside the frame and barely overlaps the others."""
    return fits_objects(scene.objects, x, y, size, ignore)


def fits_objects(objects, x: float, y: float, size: float, ignore: int | None = None) -> bool:
    """``fits`` for a sequence of objects (no scene needed)."""
    margin = 0.02
    if not (size + margin <= x <= 1 - size - margin and size + margin <= y <= 1 - size - margin):
        return False
    return all(np.hypot(o.x - x, o.y - y) >= 0.95 * (o.size + size) for i, o in enumerate(objects) if i != ignore)


def random_scene(rng: np.random.Generator, resolution: int, num_objects: int) -> Scene:
    """A background and ``num_objects`` shapes of distinct colours, all unlike the background's colours.

    Shapes may be at most slightly overlapping; every (colour, shape) is unique, so a colour alone names an object.
    """
    draw = rng.random()
    pattern = BACKGROUND_PATTERNS[(draw >= 0.6) + (draw >= 0.8)]  # 60/20/20
    bg_color = pick(rng, COLOR_NAMES)
    bg_color2 = None
    if pattern != "solid":
        bg_color2 = pick(rng, _second_background_colors(bg_color))
    objects: list[SceneObject] = []
    taken = [c for c in (bg_color, bg_color2) if c]
    for _ in range(num_objects):
        color = pick(rng, colors_far_from(taken))
        for _attempt in range(50):
            size = float(rng.uniform(0.12, 0.19))
            x, y = rng.uniform(size + 0.02, 1 - size - 0.02, size=2).tolist()
            if fits_objects(objects, x, y, size):
                break
        else:
            break  # the frame is full: fewer objects than asked
        objects.append(SceneObject(pick(rng, SHAPES), color, round(x, 4), round(y, 4), round(size, 4)))
        taken.append(color)
    return Scene(Background(bg_color, pattern, bg_color2), tuple(objects), resolution)
