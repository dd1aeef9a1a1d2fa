"""The seven Real-Edit categories on synthetic scenes: sampling an edit, its exact answer, its mask and its
instruction text.

``local`` recolours one object, ``remove`` deletes one, ``add`` places a new shape at a named position,
``texture`` fills an object with a pattern, ``background`` recolours the background, ``global`` adjusts
brightness / contrast / tint, ``style`` applies grayscale / posterise / invert / sepia. Object edits change the
scene and re-render it; global and style edits are pixel maps of the rendered source.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from mredit.synth.scene import (
    SHAPES,
    TEXTURE_PATTERNS,
    Background,
    Scene,
    SceneObject,
    Texture,
    color_rgb,
    colors_far_from,
    composite,
    fits,
    pick,
    render,
    visible_layers,
)

CATEGORIES: tuple[str, ...] = ("local", "remove", "add", "texture", "background", "global", "style")
OBJECT_CATEGORIES = ("local", "remove", "texture")
WHOLE_IMAGE_CATEGORIES = ("global", "style")
POSITIONS: dict[str, tuple[float, float]] = {
    "top left": (0.25, 0.25),
    "top": (0.5, 0.25),
    "top right": (0.75, 0.25),
    "left": (0.25, 0.5),
    "center": (0.5, 0.5),
    "right": (0.75, 0.5),
    "bottom left": (0.25, 0.75),
    "bottom": (0.5, 0.75),
    "bottom right": (0.75, 0.75),
}
GLOBAL_ADJUSTS: tuple[str, ...] = ("brighten", "darken", "contrast", "tint")
TINT_COLORS: tuple[str, ...] = ("red", "orange", "yellow", "green", "blue", "purple")
STYLES: tuple[str, ...] = ("grayscale", "posterize", "invert", "sepia")
MIN_GLOBAL_CHANGE = 0.15  # mean absolute pixel change a global/style edit must make to count as an edit

SHAPE_WORDS = {
    "circle": ("circle", "round shape", "disc"),
    "square": ("square", "box", "block"),
    "triangle": ("triangle", "triangular shape"),
    "diamond": ("diamond", "rhombus"),
}
PATTERN_WORDS = {
    "stripes": ("{color} stripes", "a {color} striped pattern", "{color} horizontal stripes"),
    "checker": ("a {color} checkerboard pattern", "a {color} checkered pattern", "{color} checks"),
}
TEMPLATES: dict[str, tuple[str, ...]] = {
    "local": (
        "make {ref} {color}",
        "turn {ref} {color}",
        "paint {ref} in {color}",
        "change the colour of {ref} to {color}",
        "recolor {ref} {color}",
        "{ref} should be {color}",
    ),
    "remove": ("remove {ref}", "delete {ref}", "take away {ref}", "get rid of {ref}", "erase {ref}"),
    "add": (
        "add {a} {color} {shape} {where}",
        "put {a} {color} {shape} {where}",
        "place {a} {color} {shape} {where}",
        "draw {a} {color} {shape} {where}",
        "there should be {a} {color} {shape} {where}",
    ),
    "texture": (
        "fill {ref} with {pattern}",
        "give {ref} {pattern}",
        "cover {ref} with {pattern}",
        "put {pattern} on {ref}",
    ),
    "background": (
        "make the background {color}",
        "change the background to {color}",
        "turn the background {color}",
        "paint the background {color}",
        "use a {color} background",
    ),
    "brighten": ("make the image brighter", "brighten the picture", "increase the brightness", "lighten the image"),
    "darken": ("make the image darker", "darken the picture", "lower the brightness", "dim the image"),
    "contrast": ("increase the contrast", "boost the contrast", "make the contrast stronger", "add more contrast"),
    "tint": ("give the image a {color} tint", "tint the picture {color}", "add a {color} cast", "wash it in {color}"),
    "grayscale": ("make it black and white", "convert the image to grayscale", "remove all colour", "make it grey"),
    "posterize": ("posterize the image", "reduce it to a few flat colours", "apply a poster effect"),
    "invert": ("invert the colours", "make it look like a negative", "invert the image"),
    "sepia": ("make it look like an old photo", "apply a sepia filter", "give it a sepia look"),
}


@dataclass(frozen=True)
class Edit:
    """One edit of a scene. ``target`` indexes the source scene's objects; unused fields stay None."""

    category: str
    target: int | None = None
    color: str | None = None  # local/background/tint: the new colour; texture: the pattern's colour
    pattern: str | None = None  # texture
    new_object: SceneObject | None = None  # add
    position: str | None = None  # add
    adjust: str | None = None  # global
    style: str | None = None  # style

    def to_dict(self) -> dict[str, Any]:
        fields = {
            "category": self.category,
            "target": self.target,
            "color": self.color,
            "pattern": self.pattern,
            "new_object": self.new_object.to_dict() if self.new_object else None,
            "position": self.position,
            "adjust": self.adjust,
            "style": self.style,
        }
        return {k: v for k, v in fields.items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any], scene: Scene) -> Edit:
        try:
            new = data.get("new_object")
            edit = cls(**{**data, "new_object": SceneObject(**new) if new else None})
        except TypeError as e:
            raise ValueError(f"malformed edit: {e}") from e
        edit.validate(scene)
        return edit

    def validate(self, scene: Scene) -> None:
        if self.category not in CATEGORIES:
            raise ValueError(f"unknown edit category {self.category!r}")
        if self.category in OBJECT_CATEGORIES and not (
            isinstance(self.target, int) and 0 <= self.target < len(scene.objects)
        ):
            raise ValueError(f"{self.category} edit needs a target object index, got {self.target!r}")
        needs = {
            "local": ("color",),
            "texture": ("color", "pattern"),
            "add": ("new_object", "position"),
            "background": ("color",),
            "global": ("adjust",),
            "style": ("style",),
        }.get(self.category, ())
        for name in needs:
            if getattr(self, name) is None:
                raise ValueError(f"{self.category} edit needs '{name}'")
        if self.color is not None:
            color_rgb(self.color)
        if self.adjust is not None and self.adjust not in GLOBAL_ADJUSTS:
            raise ValueError(f"unknown global adjustment {self.adjust!r}")
        if self.style is not None and self.style not in STYLES:
            raise ValueError(f"unknown style {self.style!r}")


def answer_scene(scene: Scene, edit: Edit) -> Scene:
    """The scene after an object/background edit (global and style edits leave the scene as it is)."""
    if edit.category == "local":
        return scene.with_object(edit.target, color=edit.color)
    if edit.category == "texture":
        return scene.with_object(edit.target, texture=Texture(edit.pattern, edit.color))
    if edit.category == "remove":
        return replace(scene, objects=scene.objects[: edit.target] + scene.objects[edit.target + 1 :])
    if edit.category == "add":
        return replace(scene, objects=scene.objects + (edit.new_object,))
    if edit.category == "background":
        return replace(scene, background=Background(edit.color))
    return scene


def apply_pixel_edit(edit: Edit, image: np.ndarray) -> np.ndarray:
    """The pixel map of a global or style edit; other edits return the image unchanged."""
    if edit.category == "global":
        if edit.adjust == "brighten":
            return image + 0.45 * (1.0 - image)
        if edit.adjust == "darken":
            return image * 0.5
        if edit.adjust == "contrast":
            return np.clip((image - 0.5) * 2.0 + 0.5, 0.0, 1.0)
        return 0.6 * image + 0.4 * color_rgb(edit.color)
    if edit.category == "style":
        luma = image @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        if edit.style == "grayscale":
            return np.repeat(luma[..., None], 3, axis=-1)
        if edit.style == "posterize":
            return np.round(image)
        if edit.style == "invert":
            return 1.0 - image
        sepia = np.array([1.0, 0.8, 0.55], dtype=np.float32)
        return np.clip(luma[..., None] * sepia * 1.15, 0.0, 1.0)
    return image


def render_answer(scene: Scene, edit: Edit) -> np.ndarray:
    """The exact answer image of an edit, float32 (``render_edit``'s second image, without the rest)."""
    return apply_pixel_edit(edit, render(answer_scene(scene, edit))).astype(np.float32, copy=False)


def render_edit(scene: Scene, edit: Edit) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(source image, exact answer image, edit mask) as float32; the mask marks what the edit may change."""
    res, category = scene.resolution, edit.category
    source, source_boxes = composite(scene)
    edited = answer_scene(scene, edit)
    # global and style edits keep the scene: their answer is a pixel map of the source image
    answer, answer_boxes = (source.copy(), source_boxes) if edited is scene else composite(edited)
    answer = apply_pixel_edit(edit, answer).astype(np.float32, copy=False)
    if category in OBJECT_CATEGORIES:
        mask = visible_layers(source_boxes, res, first=edit.target)[0]
    elif category == "add":
        mask = visible_layers(answer_boxes, res, first=len(answer_boxes) - 1)[0]  # on top of everything
    elif category == "background":
        mask = 1.0 - np.clip(sum(visible_layers(source_boxes, res), np.zeros((res, res), np.float32)), 0.0, 1.0)
    else:
        mask = np.ones((res, res), np.float32)
    return source, answer, mask.astype(np.float32)


def position_phrase(position: str) -> str:
    """The position in words: "in the top left", "at the top", "on the left", "in the center"."""
    if position in ("top", "bottom"):
        return f"at the {position}"
    if position in ("left", "right"):
        return f"on the {position}"
    return f"in the {position}"


def refer(scene: Scene, index: int, rng: np.random.Generator) -> str:
    """An unambiguous phrase for an object: colours are unique in a scene, shapes may be too."""
    obj = scene.objects[index]
    shape_word = pick(rng, SHAPE_WORDS[obj.shape])
    options = [f"the {obj.color} {shape_word}", f"the {obj.color} shape", f"the {obj.color} one"]
    if sum(o.shape == obj.shape for o in scene.objects) == 1:
        options += [f"the {shape_word}"] * 2
    return pick(rng, options)


def instruction_for(scene: Scene, edit: Edit, rng: np.random.Generator) -> str:
    key = {"global": edit.adjust, "style": edit.style}.get(edit.category, edit.category)
    template = pick(rng, TEMPLATES[key])
    fields: dict[str, str] = {"color": edit.color or ""}
    if edit.target is not None:
        fields["ref"] = refer(scene, edit.target, rng)
    if edit.category == "add":
        fields["a"] = "an" if edit.color[0] in "aeiou" else "a"
        fields["where"] = position_phrase(edit.position)
        fields |= {"shape": pick(rng, SHAPE_WORDS[edit.new_object.shape]), "position": edit.position}
    if edit.category == "texture":
        fields["pattern"] = pick(rng, PATTERN_WORDS[edit.pattern]).format(color=edit.color)
    return template.format(**fields)


def _new_color(rng: np.random.Generator, avoid: list[str]) -> str | None:
    choices = colors_far_from(avoid, 0.3)
    return pick(rng, choices) if choices else None


def scene_colors(scene: Scene) -> list[str]:
    bg = scene.background
    return [c for c in (bg.color, bg.color2) if c] + [o.color for o in scene.objects]


def sample_edit(scene: Scene, category: str, rng: np.random.Generator) -> Edit | None:
    """A random edit of ``category`` that changes the image, or None when the scene does not allow one."""
    if category in OBJECT_CATEGORIES:
        if not scene.objects:
            return None
        target = int(rng.integers(len(scene.objects)))
        if category == "remove":
            return Edit("remove", target=target)
        color = _new_color(rng, scene_colors(scene))
        if color is None:
            return None
        if category == "local":
            return Edit("local", target=target, color=color)
        return Edit("texture", target=target, color=color, pattern=pick(rng, TEXTURE_PATTERNS))
    if category == "add":
        free = []
        size = round(float(rng.uniform(0.12, 0.17)), 4)
        for name, (x, y) in POSITIONS.items():
            if fits(scene, x, y, size):
                free.append(name)
        if not free or len(scene.objects) >= 4:
            return None
        position = pick(rng, free)
        x, y = POSITIONS[position]
        color = _new_color(rng, scene_colors(scene))
        if color is None:
            return None
        new = SceneObject(pick(rng, SHAPES), color, x, y, size)
        return Edit("add", color=new.color, new_object=new, position=position)
    if category == "background":
        color = _new_color(rng, [o.color for o in scene.objects] + [scene.background.color])
        return Edit("background", color=color) if color else None
    if category == "global":
        adjust = pick(rng, GLOBAL_ADJUSTS)
        return Edit("global", adjust=adjust, color=pick(rng, TINT_COLORS) if adjust == "tint" else None)
    if category == "style":
        return Edit("style", style=pick(rng, STYLES))
    raise ValueError(f"unknown edit category {category!r}")
