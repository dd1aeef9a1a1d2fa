"""The oracle judge: exact scores for any edit of a synthetic scene, from its ``meta.json``.

It re-renders the exact answer and measures the edited image against it (after resizing to the scene's
resolution and a 3x3 median filter on every image, so specks and pixel noise do not count as content):

- following: inside the (eroded) edit mask, the mean per-pixel progress from the source towards the answer;
- preserving: outside it, the largest change of any region (each untouched object, the background): its
  mean colour, its per-pixel change, its clutter; for whole-image edits (global, style) where every colour
  changes, whether each region of the scene's layout is still one homogeneous region;
- quality: pixel noise and specks (the median-filter residual beyond the answer's own), blur (edge
  sharpness relative to the answer's) and blocking (in-block detail lost), see ``mredit.synth.artifacts``; and
  the synthetic generator's two signature artifacts, its corner stamp and its block-grid shading, measured
  against the answer where they go (``mredit.synth.signatures``).

Each measure maps linearly to 0-5 between a tolerance (5) and a failure level (0); scores are rounded to
0.5, the verdict is yes when the score is at least 3.5, and the feedback names the failure or is "None".
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image

from mredit.judge.base import Judge, Judgement, JudgeRequest, JudgeResult, PerspectiveJudgement
from mredit.judge.registry import register_judge
from mredit.schema import NO_FAILURE
from mredit.synth.artifacts import blockiness, isolated, sharpness
from mredit.synth.edits import WHOLE_IMAGE_CATEGORIES, Edit, answer_scene, position_phrase, render_edit
from mredit.synth.filters import dilate, erode, local_range, median3
from mredit.synth.scene import (
    Scene,
    background_period,
    color_rgb,
    nearest_color,
    pattern_fill,
    quantize,
    render_layers,
)
from mredit.synth.signatures import grid_amplitude, stamp_mask, stamp_strength

PROMPT_VERSION = "oracle-v2"  # v2: the stamp and grid measures of quality
VERDICT_THRESHOLD = 3.5


@dataclass(frozen=True)
class Band:
    """A measure's tolerance (score 5 at or below) and failure level (score 0 at or above)."""

    tolerance: float
    failure: float

    def score(self, value: float) -> float:
        frac = (self.failure - value) / (self.failure - self.tolerance)
        return float(np.round(2 * 5.0 * np.clip(frac, 0.0, 1.0)) / 2)


@dataclass(frozen=True)
class OracleBands:
    following: Band = Band(0.1, 0.7)  # 1 - mean progress inside the edit
    preserving: Band = Band(0.08, 0.4)  # largest region colour change outside the edit
    layout: Band = Band(0.01, 0.1)  # whole-image edits: share of pixels off their layout region's colour
    noise: Band = Band(0.03, 0.15)  # median residual of the median filter beyond the answer's
    specks: Band = Band(0.004, 0.03)  # fraction of pixels that are isolated specks
    blur: Band = Band(0.1, 0.6)  # relative loss of edge sharpness
    blocking: Band = Band(0.1, 0.6)  # share of the in-block detail lost
    stamp: Band = Band(0.1, 0.9)  # opacity of the corner stamp
    grid: Band = Band(0.03, 0.2)  # peak-to-peak amplitude of the block-grid shading


def image_array(image: Image.Image | np.ndarray, resolution: int) -> np.ndarray:
    """RGB float32 [R, R, 3] in [0, 1], resized (area averaging) when the size differs."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(np.clip(np.rint(image * 255), 0, 255).astype(np.uint8))
    image = image.convert("RGB")
    if image.size != (resolution, resolution):
        image = image.resize((resolution, resolution), Image.Resampling.BOX)
    return np.asarray(image, dtype=np.float32) / 255.0


def _interior(mask: np.ndarray, radius: int, min_pixels: int = 3) -> np.ndarray:
    """The mask shrunk by ``radius`` px, or less when that would leave fewer than ``min_pixels``."""
    for r in range(radius, -1, -1):
        core = erode(mask, r)
        if core.sum() >= min_pixels:
            return core
    return mask.astype(bool)


class OracleJudge(Judge):
    """Scores edits of synthetic scenes exactly (see the module docstring). Deterministic, no I/O."""

    def __init__(self, resolution: int | None = None, bands: OracleBands | None = None) -> None:
        self.resolution = resolution  # only reported in the fingerprint; scenes carry their own resolution
        self.bands = bands or OracleBands()

    @property
    def fingerprint(self) -> dict[str, Any]:
        return {
            "provider": "oracle",
            "model": "synthetic-oracle",
            "prompt_version": PROMPT_VERSION,
            "image_size": self.resolution,
        }

    async def judge(self, request: JudgeRequest) -> JudgeResult:
        try:
            judgement = self.score(request.source, request.instruction, request.edited, request.meta)
        except ValueError as e:
            return JudgeResult(request.key, "invalid", error=str(e))
        return JudgeResult(request.key, "ok", judgement=judgement)

    def score(
        self, source: Image.Image | np.ndarray | None, instruction: str, edited: Image.Image | np.ndarray, meta: dict
    ) -> Judgement:
        """Score ``edited`` against the exact answer of ``meta``'s scene and edit; ValueError if meta is unusable.

        ``source`` and ``instruction`` are accepted for the Judge interface; the oracle re-renders the source.
        """
        scene, edit = parse_meta(meta)
        ref = _reference(scene, edit)
        out = image_array(edited, scene.resolution)
        out_f = median3(out)
        return Judgement(
            self._following(scene, edit, ref, out_f, out),
            self._preserving(scene, edit, ref, out_f, out),
            self._quality(ref, out, out_f),
        )

    def _verdict(self, score: float, failure: str) -> PerspectiveJudgement:
        return PerspectiveJudgement(score, score >= VERDICT_THRESHOLD, NO_FAILURE if score >= 5.0 else failure)

    def _following(
        self, scene: Scene, edit: Edit, ref: Reference, out: np.ndarray, raw: np.ndarray
    ) -> PerspectiveJudgement:
        region, src, ans = ref.edit_region, ref.source_filtered, ref.answer_filtered
        d_out = np.abs(out - ans).max(-1)[region]
        d_src = np.abs(src - ans).max(-1)[region]
        progress = 1.0 - np.clip(np.maximum(d_out - 0.1, 0.0) / np.maximum(d_src, 0.25), 0.0, 1.0)
        # pixels the edit must change weigh more than those it keeps (a texture's base colour)
        weight = np.maximum(d_src, 0.2)
        error = 1.0 - float((progress * weight).sum() / weight.sum())
        # a region drowned in clutter shows nothing recognisable, whatever its average colour
        error = max(error, min(1.0, (_clutter(raw, ref.answer, region) - 0.15) / 0.1))
        score = self.bands.following.score(error)
        return self._verdict(score, _following_feedback(scene, edit, src, out, region, error))

    def _preserving(
        self, scene: Scene, edit: Edit, ref: Reference, out: np.ndarray, raw: np.ndarray
    ) -> PerspectiveJudgement:
        regions, ans = ref.regions, ref.answer_filtered
        if not regions:
            return PerspectiveJudgement(5.0, True, NO_FAILURE)
        if edit.category in WHOLE_IMAGE_CATEGORIES:
            return self._layout(scene, ref, out)
        # small regions are mostly anti-aliased rim, where blur and blocking move the mean: they count less
        # and a region drowned in clutter has changed even when its average colour has not
        changes = [
            max(
                float(np.abs(out[r].mean(0) - ans[r].mean(0)).max()),
                2 * _clutter(raw, ref.answer, r) - 0.2,
                2 * float(np.abs(out[r] - ans[r]).max(-1).mean()) - 0.16,
            )
            * min(1.0, r.sum() / 16)
            for _, r in regions
        ]
        worst = int(np.argmax(changes))
        score = self.bands.preserving.score(changes[worst])
        shifted = sum(c > self.bands.preserving.tolerance for c in changes)
        name, region = regions[worst]
        if shifted >= 3 or (shifted >= 2 and shifted == len(regions)):
            failure = "the colours of the whole image shifted"
        elif name == "background":
            failure = f"the background changed to {nearest_color(np.median(out[region], 0))}"
        else:
            seen = nearest_color(np.median(out[region], 0))
            if seen == nearest_color(np.median(ans[region], 0)):
                failure = f"the {name} changed"
            elif _is_background(scene, seen):  # the background shows where the object should be
                failure = f"the {name} moved"
            else:
                failure = f"the {name} changed to {seen}"
        return self._verdict(score, failure)

    def _layout(self, scene: Scene, ref: Reference, out: np.ndarray) -> PerspectiveJudgement:
        """Whole-image edits may map every colour to another, but each region of the scene's layout must
        stay one colour: the share of pixels further from their region's median colour than in the answer.
        An object whose region took the background's colour (in the output, not in the answer) has left it:
        its whole region counts. Regions too small to have an interior at this resolution are not judged."""
        ans = ref.answer_filtered
        backgrounds = [core for label, core in ref.layout if label < 1]
        mismatched, counted, worst, worst_share = 0, 0, "background", 0.0
        for label, core in ref.layout:
            deviation = np.abs(out[core] - np.median(out[core], 0)).max(-1)
            expected = np.abs(ans[core] - np.median(ans[core], 0)).max(-1)
            bad = int((deviation - expected > 0.25).sum())
            # an object whose region shows the background's colour has left it; judged only where the background
            # kept its expected colour (a washed-out image is a following failure, not a moved object)
            if label >= 1 and any(
                _same_color(out, core, bg, 0.08)
                and not _same_color(ans, core, bg, 0.3)
                and float(np.abs(np.median(out[bg], 0) - np.median(ans[bg], 0)).max()) < 0.1
                for bg in backgrounds
            ):
                bad = int(core.sum())
            mismatched, counted = mismatched + bad, counted + int(core.sum())
            if bad / core.sum() > worst_share:
                worst_share = bad / core.sum()
                worst = "background" if label < 1 else scene.objects[label - 1].describe()
        score = self.bands.layout.score(mismatched / max(counted, 1))
        failure = "the background changed" if worst == "background" else f"the {worst} moved or changed shape"
        return self._verdict(score, failure)

    def _quality(self, ref: Reference, out: np.ndarray, out_filtered: np.ndarray) -> PerspectiveJudgement:
        src, ans, res = ref.source, ref.answer, ref.source.shape[0]
        resid_out = np.abs(out - out_filtered).max(-1)
        excess = np.maximum(resid_out - ref.legit_residual, 0.0)
        noise = float(np.median(excess))
        # a speck differs from its neighbourhood and from what the answer or the source show there
        foreign = np.minimum(np.abs(out - ans).max(-1), np.abs(out - src).max(-1)) > 0.2
        specks = float(isolated(out, (excess > max(0.3, 4 * noise)) & foreign).mean())
        # against the less detailed of answer and source, so that a missing or extra edit is not an artifact
        blur = 1.0 - min(1.0, sharpness(out) / max(ref.legit_sharpness, 1e-6))
        block = max(2, res // 8)
        blocking = blockiness(out, ans, src, block)
        b = self.bands
        scored = [
            (b.noise.score(noise), "visible noise"),
            (b.specks.score(specks), "colour blotches"),
            (b.blur.score(blur), "the image is blurry"),
            (b.blocking.score(blocking), "blocky compression artifacts"),
            (b.stamp.score(stamp_strength(out, ans, src)), "a white square in the bottom right"),
            (b.grid.score(grid_amplitude(out, ans, src)), "a visible block pattern"),
        ]
        score = min(s for s, _ in scored)
        failures = [text for s, text in sorted(scored) if s < 5.0]
        return self._verdict(score, "; ".join(failures))


@dataclass(frozen=True)
class Reference:
    """Everything the oracle derives from a scene and edit alone, cached across calls (read-only arrays)."""

    source: np.ndarray  # as stored in 8 bits
    answer: np.ndarray
    source_filtered: np.ndarray  # 3x3 median
    answer_filtered: np.ndarray
    edit_region: np.ndarray  # where following is judged
    regions: list[tuple[str, np.ndarray]]  # named regions preserving is judged on
    layout: list[tuple[int, np.ndarray]]  # whole-image edits: the interior of each label of the layout
    # what the answer or the source legitimately show (patterns, corners) is not an artifact
    legit_residual: np.ndarray  # the larger median-filter residual of answer and source
    legit_sharpness: float  # against the less sharp of the two, so a missing or extra edit is not blur


@lru_cache(maxsize=512)
def _reference(scene: Scene, edit: Edit) -> Reference:
    src, ans, mask = render_edit(scene, edit)
    src, ans = quantize(src), quantize(ans)
    src_f, ans_f = median3(src), median3(ans)
    erosion = max(1, round(scene.resolution / 32))
    region = _interior(mask > 0.5, erosion)
    # pattern edges inside the region are where blur and blocking act: judge the flat parts of the answer
    detail = local_range(ans_f)
    flat = region & (detail < 0.05)
    if flat.sum() < 3:  # a small textured region: its least detailed quarter
        flat = region & (detail <= np.sort(detail[region])[max(2, region.sum() // 4)])
    layout = []
    if edit.category in WHOLE_IMAGE_CATEGORIES:
        labels = _label_map(scene)
        for label in np.unique(labels):
            core = erode(labels == label, erosion + 1)
            core = core if core.sum() >= 8 else erode(labels == label, erosion)
            if core.sum() >= 4:  # regions without an interior at this resolution are not judged
                layout.append((int(label), core))
    legit_residual = np.maximum(np.abs(ans - ans_f), np.abs(src - src_f)).max(-1)
    legit_sharpness = min(sharpness(ans), sharpness(src))
    regions = _layout_regions(scene, edit, mask, erosion)
    # the generator's stamp is a quality flaw: following and preserving do not look where it goes
    keep = ~stamp_mask(scene.resolution)
    flat = _without(flat, keep)
    regions = [(name, _without(r, keep)) for name, r in regions]
    layout = [(label, _without(core, keep, 4)) for label, core in layout]
    ref = Reference(src, ans, src_f, ans_f, flat, regions, layout, legit_residual, legit_sharpness)
    for array in (src, ans, src_f, ans_f, flat, legit_residual):
        array.setflags(write=False)
    return ref


def _without(region: np.ndarray, keep: np.ndarray, min_pixels: int = 3) -> np.ndarray:
    """``region`` restricted to ``keep``, unless that leaves fewer than ``min_pixels``."""
    kept = region & keep
    return kept if kept.sum() >= min_pixels else region


def parse_meta(meta: Any) -> tuple[Scene, Edit]:
    """The scene and edit of a sample's meta.json; ValueError naming what is missing or wrong."""
    if not isinstance(meta, dict):
        raise ValueError(f"oracle needs the sample's meta.json object, got {type(meta).__name__}")
    if meta.get("dataset") not in (None, "synth"):
        raise ValueError(f"oracle only scores synthetic samples, meta.dataset is {meta.get('dataset')!r}")
    for key in ("scene", "edit"):
        if not isinstance(meta.get(key), dict):
            raise ValueError(f"meta.json has no '{key}' object: the oracle cannot re-render the answer")
    scene = Scene.from_dict(meta["scene"])
    return scene, Edit.from_dict(meta["edit"], scene)


def _label_map(scene: Scene) -> np.ndarray:
    """Per pixel: 0 / -1 for the background's two pattern colours, i + 1 for the topmost object i."""
    bg = scene.background
    res = scene.resolution
    second = pattern_fill(bg.pattern, bg.color, bg.color2, res, background_period(res))
    labels = np.where((np.abs(second - color_rgb(bg.color)).max(-1) > 0), -1, 0)
    _, coverage = render_layers(scene)
    for i, cov in enumerate(coverage):
        labels = np.where(cov > 0.5, i + 1, labels)
    return labels


def _clutter(raw: np.ndarray, answer: np.ndarray, region: np.ndarray) -> float:
    """How much more the unfiltered output varies inside a region than the answer does (std per channel)."""
    return float(raw[region].std(0).mean() - answer[region].std(0).mean())


def _same_color(image: np.ndarray, a: np.ndarray, b: np.ndarray, tolerance: float) -> bool:
    """Whether two regions of an image have about the same median colour."""
    return float(np.abs(np.median(image[a], 0) - np.median(image[b], 0)).max()) < tolerance


def _is_background(scene: Scene, color: str) -> bool:
    return color in (scene.background.color, scene.background.color2)


def _layout_regions(scene: Scene, edit: Edit, mask: np.ndarray, erosion: int) -> list[tuple[str, np.ndarray]]:
    """Named regions the edit must leave alone: each untouched object and the background, eroded."""
    _, coverage = render_layers(answer_scene(scene, edit))
    source_index = [i for i in range(len(scene.objects)) if edit.category != "remove" or i != edit.target]
    whole = edit.category in WHOLE_IMAGE_CATEGORIES
    keep_out = np.zeros(mask.shape, bool) if whole else dilate(mask > 0.02, 1)
    regions = []
    union = np.zeros(mask.shape, np.float32)
    for pos, cov in enumerate(coverage):
        union += cov
        is_new = edit.category == "add" and pos == len(coverage) - 1
        if is_new or (edit.category in ("local", "texture") and pos == edit.target):
            continue
        region = (cov > 0.5) & ~keep_out
        if region.any():
            region = _interior(region, erosion)
            name = scene.objects[source_index[pos]].describe()
            regions.append((name, region))
    if edit.category != "background":
        background = (union < 0.02) & ~keep_out
        if background.sum() >= 3:
            regions.append(("background", _interior(background, erosion)))
    return regions


def _following_feedback(scene: Scene, edit: Edit, src, out, region, error: float) -> str:
    seen = nearest_color(np.median(out[region], 0))
    before = nearest_color(np.median(src[region], 0))
    mostly_missing = error > 0.6
    if edit.category == "local":
        name = scene.objects[edit.target].describe()
        if seen == edit.color:
            return f"the {name} is only partly {edit.color}"
        return f"the {name} is still {before}" if seen == before else f"the {name} is {seen}, not {edit.color}"
    if edit.category == "remove":
        name = scene.objects[edit.target].describe()
        return f"the {name} is still there" if mostly_missing else f"the {name} is only partly removed"
    if edit.category == "add":
        new = edit.new_object
        if seen == new.color:
            return f"the {new.color} {new.shape} is incomplete"
        if seen == before:
            return f"no {new.color} {new.shape} was added {position_phrase(edit.position)}"
        return f"the added {new.shape} is {seen}, not {new.color}"
    if edit.category == "texture":
        name = scene.objects[edit.target].describe()
        return (
            f"the {name} has no {edit.color} {edit.pattern}"
            if mostly_missing
            else (f"the {edit.pattern} on the {name} are incomplete or not {edit.color}")
        )
    if edit.category == "background":
        if seen == edit.color:
            return f"the background is only partly {edit.color}"
        return f"the background is still {before}" if seen == before else f"the background is {seen}, not {edit.color}"
    what = edit.adjust if edit.category == "global" else edit.style
    if edit.adjust == "tint":
        what = f"{edit.color} tint"
    return f"the {what} edit was not applied" if mostly_missing else f"the {what} edit is weak or incomplete"


register_judge("oracle", OracleJudge)
