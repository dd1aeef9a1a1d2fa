"""Flawed targets that imitate the failures of InstructPix2Pix training data.

Each corruption belongs to one perspective and has a severity in (0, 1]; a higher severity is a worse flaw.
Following flaws act inside the edit mask (the edit is missing, wrong, on the wrong object, or partial);
preserving flaws act outside it (another object moved or recoloured, the background shifted, a colour cast);
quality flaws act on the whole image (noise, blur, blotches, blocking). ``wrong_object`` is the one flaw that
touches two perspectives: the intended object is unedited (following) and another one changed (preserving).

Two flaw models draw from them (``CorruptionConfig.flaw_model``). ``random``: the twelve kinds above, whose
direction is drawn per sample (which object, which colour, which way, the noise itself), so that a model trained
with a mean-squared error, which learns the mean of its targets, averages most of them away. ``systematic``:
flaws with one consistent direction, as real generated targets have: under-editing (``no_change``), over-editing
(``over_edit``: the requested change spreads beyond its region), a fixed warm tint outside the edit
(``warm_tint``), a stamp in a fixed corner (``stamp``) and shading on a fixed block grid (``grid``); a model
trained on them learns them, and the reward has something to correct.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from mredit.synth.edits import (
    OBJECT_CATEGORIES,
    WHOLE_IMAGE_CATEGORIES,
    Edit,
    render_answer,
    render_edit,
    scene_colors,
)
from mredit.synth.filters import block_mean, gaussian_blur
from mredit.synth.scene import (
    COLOR_NAMES,
    Background,
    Scene,
    color_rgb,
    colors_far_from,
    fits_objects,
    pick,
    render,
    render_layers,
)
from mredit.synth.signatures import apply_grid, apply_stamp

KINDS: dict[str, str] = {
    "no_change": "following",
    "wrong_color": "following",
    "wrong_object": "following",
    "partial": "following",
    "object_moved": "preserving",
    "object_recolored": "preserving",
    "background_shift": "preserving",
    "color_cast": "preserving",
    "noise": "quality",
    "blur": "quality",
    "blotches": "quality",
    "blocking": "quality",
    "over_edit": "preserving",
    "warm_tint": "preserving",
    "stamp": "quality",
    "grid": "quality",
}
# Under-editing and wrong colours dominate real InstructPix2Pix data, and are what the reward must explain.
DEFAULT_KIND_WEIGHTS: dict[str, float] = {
    "no_change": 2.0,
    "wrong_color": 1.5,
    "wrong_object": 0.5,
    "partial": 1.0,
    "object_moved": 1.0,
    "object_recolored": 1.0,
    "background_shift": 1.0,
    "color_cast": 1.0,
    "noise": 1.0,
    "blur": 1.0,
    "blotches": 1.0,
    "blocking": 1.0,
}
# One direction per kind: under-editing stays the most frequent flaw, as in real data.
SYSTEMATIC_KIND_WEIGHTS: dict[str, float] = {
    "no_change": 1.0,
    "over_edit": 1.0,
    "warm_tint": 1.0,
    "stamp": 1.0,
    "grid": 1.0,
}
FLAW_MODELS: dict[str, dict[str, float]] = {"random": DEFAULT_KIND_WEIGHTS, "systematic": SYSTEMATIC_KIND_WEIGHTS}
WARM = np.array([1.0, 0.6, 0.2], np.float32)  # the colour the systematic tint pulls toward (orange)


@dataclass
class CorruptionConfig:
    """How often and how badly training targets are flawed.

    ``rate``: probability that a sample has at least one corruption. A corrupted sample draws its first flaw
    from ``perspective_weights`` then ``kind_weights`` (among the kinds that apply to its edit), and each further
    perspective is flawed too with probability ``extra_rate``. Severities are uniform in ``severity_range``.
    ``flaw_model`` (``random`` or ``systematic``, see the module docstring) gives the default ``kind_weights``.
    """

    rate: float = 0.5
    perspective_weights: dict[str, float] = field(
        default_factory=lambda: {"following": 0.45, "preserving": 0.3, "quality": 0.25}
    )
    kind_weights: dict[str, float] | None = None  # None: the flaw model's
    extra_rate: float = 0.2
    severity_range: tuple[float, float] = (0.2, 1.0)
    flaw_model: str = "random"

    def __post_init__(self) -> None:
        if self.flaw_model not in FLAW_MODELS:
            raise ValueError(f"flaw_model must be one of {', '.join(FLAW_MODELS)}, got {self.flaw_model!r}")
        if self.kind_weights is None:
            self.kind_weights = dict(FLAW_MODELS[self.flaw_model])
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"corrupt rate must be in [0, 1], got {self.rate}")
        if not 0.0 <= self.extra_rate <= 1.0:
            raise ValueError(f"extra_rate must be in [0, 1], got {self.extra_rate}")
        unknown = set(self.kind_weights) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown corruption kinds {sorted(unknown)}; known: {', '.join(KINDS)}")
        lo, hi = self.severity_range
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"severity_range must satisfy 0 < low <= high <= 1, got {self.severity_range}")


@dataclass(frozen=True)
class Corruption:
    kind: str
    severity: float
    seed: int  # drives its random choices (which object, direction, noise), so the target can be re-made

    @property
    def perspective(self) -> str:
        return KINDS[self.kind]

    def to_dict(self) -> dict:
        return {"kind": self.kind, "perspective": self.perspective, "severity": self.severity, "seed": self.seed}


@dataclass
class EditContext:
    """A scene, its edit, and the exact source / answer / mask renderings (float32)."""

    scene: Scene
    edit: Edit
    source: np.ndarray
    answer: np.ndarray
    mask: np.ndarray

    @classmethod
    def build(cls, scene: Scene, edit: Edit) -> EditContext:
        return cls(scene, edit, *render_edit(scene, edit))

    @property
    def outside(self) -> np.ndarray:
        """Where preserving flaws may act: outside the edit, or everywhere for whole-image edits."""
        if self.edit.category in WHOLE_IMAGE_CATEGORIES:
            return np.ones_like(self.mask)
        return 1.0 - self.mask

    def others(self) -> list[int]:
        """Source-scene objects the edit does not touch."""
        return [i for i in range(len(self.scene.objects)) if i != self.edit.target]


def applicable_kinds(ctx: EditContext) -> list[str]:
    category, others = ctx.edit.category, ctx.others()
    kinds = ["no_change", "partial"]
    if ctx.edit.color is not None:
        kinds.append("wrong_color")
    if category in OBJECT_CATEGORIES and others:
        kinds.append("wrong_object")
    if others:
        kinds.append("object_moved")
        if category not in WHOLE_IMAGE_CATEGORIES:
            kinds.append("object_recolored")
    if category not in ("background", *WHOLE_IMAGE_CATEGORIES):
        kinds += ["background_shift", "color_cast"]
    elif category == "background" and others:
        kinds.append("color_cast")
    kinds += ["noise", "blur", "blotches", "blocking"]
    # the systematic kinds (after the random ones, so that the random model's draws are unchanged)
    if category not in WHOLE_IMAGE_CATEGORIES and (category != "background" or others):
        kinds.append("warm_tint")  # where a colour cast can show: outside the edit, on something
        if ctx.edit.color is not None or (category == "remove" and others):
            kinds.append("over_edit")
    return kinds + ["stamp", "grid"]


def _other_color(rng: np.random.Generator, avoid: list[str]) -> str:
    choices = colors_far_from(avoid, 0.35)
    return pick(rng, choices or [c for c in COLOR_NAMES if c not in avoid])


def _answer_of(scene: Scene, edit: Edit) -> np.ndarray:
    return render_answer(scene, edit)


def _partial_keep(ctx: EditContext, severity: float, rng: np.random.Generator) -> np.ndarray:
    """The part of the edit mask left unedited: a half-plane holding 15-85% of the mask, growing with severity."""
    if ctx.edit.category in WHOLE_IMAGE_CATEGORIES:
        return _unedited_regions(ctx, severity, rng)
    res = ctx.scene.resolution
    ys, xs = np.mgrid[0:res, 0:res].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    proj = xs * np.cos(angle) + ys * np.sin(angle)
    weights = ctx.mask.ravel()
    order = np.argsort(proj.ravel(), kind="stable")
    cumulative = np.cumsum(weights[order]) / max(weights.sum(), 1e-6)
    fraction = 0.15 + 0.7 * severity
    threshold = proj.ravel()[order][min(int(np.searchsorted(cumulative, fraction)), len(order) - 1)]
    return ctx.mask * (proj <= threshold)


def _unedited_regions(ctx: EditContext, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Whole-image edits done partially: whole regions (background, objects) keep their source look, in a random
    order until 15-85% of the image is left, growing with severity."""
    _, coverage = render_layers(ctx.scene)
    regions = [np.clip(1.0 - sum(coverage, np.zeros_like(ctx.mask)), 0.0, 1.0), *coverage]
    keep = np.zeros_like(ctx.mask)
    for index in rng.permutation(len(regions)):
        if keep.mean() >= 0.15 + 0.7 * severity:
            break
        keep = keep + regions[index]
    return np.clip(keep, 0.0, 1.0)


def _move_object(ctx: EditContext, index: int, severity: float, rng: np.random.Generator) -> Scene:
    """Shift a source object by 0.5-1.5 of its radius (more with severity), staying in frame."""
    obj = ctx.scene.objects[index]
    distance = obj.size * (0.5 + severity)
    angles = rng.uniform(0, 2 * np.pi) + np.linspace(0, 2 * np.pi, 12, endpoint=False)
    for angle in angles:
        x, y = obj.x + distance * np.cos(angle), obj.y + distance * np.sin(angle)
        if fits_objects((), float(x), float(y), obj.size):  # in frame, whatever the other objects
            break
    return ctx.scene.with_object(index, x=round(float(x), 4), y=round(float(y), 4))


def _spread_target(ctx: EditContext) -> np.ndarray:
    """What over-editing pulls the rest of the image toward: the requested colour, or, for a removal, the scene
    with every object removed (the removal spreads to the others)."""
    if ctx.edit.category == "remove":
        return render(replace(ctx.scene, objects=()))
    return color_rgb(ctx.edit.color)


_OUTSIDE_KINDS = ("object_moved", "object_recolored", "background_shift", "color_cast", "over_edit", "warm_tint")
# the kinds without random choices: no generator to seed (seeding one costs more than most flaws)
_DETERMINISTIC_KINDS = ("no_change", "blur", "blocking", "over_edit", "warm_tint", "stamp", "grid")


def apply_corruption(image: np.ndarray, corruption: Corruption, ctx: EditContext) -> np.ndarray:
    """Apply one flaw to ``image`` (the exact answer, or an already flawed one); returns float32 in [0, 1]."""
    kind, sev = corruption.kind, float(corruption.severity)
    rng = None if kind in _DETERMINISTIC_KINDS else np.random.default_rng(corruption.seed)
    edit, scene = ctx.edit, ctx.scene
    res = scene.resolution
    m = ctx.mask[..., None]
    out = ctx.outside[..., None] if kind in _OUTSIDE_KINDS else None
    if kind == "no_change":
        image = image + sev * m * (ctx.source - ctx.answer)
    elif kind == "wrong_color":
        wrong = _other_color(rng, [edit.color] + scene_colors(scene))
        new_object = replace(edit.new_object, color=wrong) if edit.new_object else None
        image = image + sev * (_answer_of(scene, replace(edit, color=wrong, new_object=new_object)) - ctx.answer)
    elif kind == "wrong_object":
        other = pick(rng, ctx.others())
        image = image + sev * (_answer_of(scene, replace(edit, target=other)) - ctx.answer)
    elif kind == "partial":
        image = image + _partial_keep(ctx, sev, rng)[..., None] * (ctx.source - ctx.answer)
    elif kind in ("object_moved", "object_recolored"):
        index = pick(rng, ctx.others())
        if kind == "object_moved":
            changed = _move_object(ctx, index, sev, rng)
            image = image + out * (_answer_of(changed, edit) - ctx.answer)
        else:
            color = _other_color(rng, scene_colors(scene) + [edit.color or scene.objects[index].color])
            recolored = _answer_of(scene.with_object(index, color=color), edit)
            image = image + (0.3 + 0.7 * sev) * out * (recolored - ctx.answer)
    elif kind == "background_shift":
        bg = scene.background
        shifted = replace(scene, background=Background(_other_color(rng, scene_colors(scene)), bg.pattern, bg.color2))
        image = image + (0.2 + 0.6 * sev) * out * (_answer_of(shifted, edit) - ctx.answer)
    elif kind == "color_cast":
        cast = color_rgb(_other_color(rng, [scene.background.color]))
        image = image + (0.1 + 0.3 * sev) * out * (cast - image)
    elif kind == "noise":
        image = image + rng.normal(0.0, 0.02 + 0.08 * sev, size=image.shape).astype(np.float32)
    elif kind == "blur":
        image = gaussian_blur(image, (0.3 + 0.5 * sev) * max(1.0, res / 32))  # at least 0.3-0.8 px
    elif kind == "blotches":
        image = np.array(image, dtype=np.float32)
        for _ in range(max(1, round((2 + 10 * sev) * (res / 32) ** 2))):  # as many per area
            y, x = (int(v) for v in rng.integers(0, res - 1, size=2))
            h, w = (int(v) for v in rng.integers(1, 3, size=2))
            image[y : y + h, x : x + w] = rng.uniform(0, 1, size=3)
    elif kind == "blocking":
        image = image + (0.1 + 0.5 * sev) * (block_mean(image, max(2, res // 8)) - image)
    elif kind == "over_edit":
        image = image + (0.15 + 0.45 * sev) * out * (_spread_target(ctx) - image)
    elif kind == "warm_tint":
        image = image + (0.1 + 0.3 * sev) * out * (WARM - image)
    elif kind == "stamp":
        image = apply_stamp(image, 0.1 + 0.9 * sev)
    elif kind == "grid":
        image = apply_grid(image, 0.05 + 0.15 * sev)
    else:
        raise ValueError(f"unknown corruption kind {kind!r}; known: {', '.join(KINDS)}")
    return np.minimum(np.maximum(image, 0.0), 1.0).astype(np.float32, copy=False)  # clip: a new array


def _weighted_pick(rng: np.random.Generator, options: list[str], weights: np.ndarray) -> str:
    """``rng.choice(options, p=weights / weights.sum())`` without its overhead: the same draw from the same stream
    (one ``rng.random()`` against the normalised cumulative weights, as ``Generator.choice`` does)."""
    cdf = (weights / weights.sum()).cumsum()
    cdf /= cdf[-1]
    return options[int(cdf.searchsorted(rng.random(), side="right"))]


def sample_corruptions(ctx: EditContext, config: CorruptionConfig, rng: np.random.Generator) -> list[Corruption]:
    """The flaws of one training target (empty with probability ``1 - config.rate``), in perspective order."""
    if rng.random() >= config.rate:
        return []
    kinds = applicable_kinds(ctx)
    by_perspective = {
        p: [k for k in kinds if KINDS[k] == p and config.kind_weights.get(k, 0.0) > 0]
        for p in config.perspective_weights
    }
    available = [p for p, ks in by_perspective.items() if ks and config.perspective_weights[p] > 0]
    if not available:
        return []
    weights = np.array([config.perspective_weights[p] for p in available], dtype=np.float64)
    first = _weighted_pick(rng, available, weights)
    chosen = [first] + [p for p in available if p != first and rng.random() < config.extra_rate]
    lo, hi = config.severity_range
    corruptions = []
    for p in ("following", "preserving", "quality"):
        if p in chosen:
            ks = by_perspective[p]
            kw = np.array([config.kind_weights[k] for k in ks], dtype=np.float64)
            kind = _weighted_pick(rng, ks, kw)
            severity = round(float(rng.uniform(lo, hi)), 2)
            corruptions.append(Corruption(kind, severity, int(rng.integers(2**31))))
    return corruptions
