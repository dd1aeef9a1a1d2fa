"""The sample schema: one editing triplet plus its optional rewards, as stored in a WebDataset tar shard.

A sample in a shard is a group of tar members sharing ``__key__``:

- ``src.<jpg|png|webp>``: the source image
- ``tgt.<jpg|png|webp>``: the edited (target) image
- ``txt``: the instruction, UTF-8
- ``reward.json`` (optional): ``{"following": {"score": s, "feedback": "..."}, "preserving": {...},
  "quality": {...}, "judge": {provenance}}`` with ``0 <= s <= 5`` and feedback ``"None"`` when no failure
- ``meta.json`` (optional): source dataset, edit category, anything else

The perspective order (following, preserving, quality) is defined here and nowhere else: score tensors
``[B, 3]`` and feedback lists follow it, and so does the RewardEdit20K JSON list.
"""

from __future__ import annotations

import io
import json
import math
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import simplejpeg
from PIL import Image

PERSPECTIVES: tuple[str, str, str] = ("following", "preserving", "quality")
PERSPECTIVE_TITLES = {
    "following": "instruction following",
    "preserving": "detail preserving",
    "quality": "generation quality",
}
NO_FAILURE = "None"
MAX_SCORE = 5.0
BEST_SCORES: tuple[float, float, float] = (MAX_SCORE, MAX_SCORE, MAX_SCORE)
IMAGE_EXTENSIONS: tuple[str, ...] = ("jpg", "jpeg", "png", "webp")
SOURCE_PREFIX, TARGET_PREFIX = "src", "tgt"
INSTRUCTION_KEY, REWARD_KEY, META_KEY = "txt", "reward.json", "meta.json"


class SampleError(ValueError):
    """A sample that cannot be used; the message names the member and the problem."""


@dataclass(frozen=True)
class PerspectiveReward:
    score: float
    feedback: str = NO_FAILURE

    def __post_init__(self) -> None:
        if not isinstance(self.score, (int, float)) or isinstance(self.score, bool) or math.isnan(self.score):
            raise SampleError(f"score must be a number in [0, 5], got {self.score!r}")
        if not 0.0 <= float(self.score) <= MAX_SCORE:
            raise SampleError(f"score {self.score} outside [0, 5]")
        if not isinstance(self.feedback, str):
            raise SampleError(f"feedback must be a string, got {type(self.feedback).__name__}")


@dataclass(frozen=True)
class Reward:
    """Scores and failure texts of the three perspectives, plus the judge's provenance."""

    following: PerspectiveReward
    preserving: PerspectiveReward
    quality: PerspectiveReward
    judge: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def best(cls) -> Reward:
        """The inference-time condition: top scores, no failure text."""
        return cls(*(PerspectiveReward(MAX_SCORE, NO_FAILURE) for _ in PERSPECTIVES))

    @classmethod
    def from_lists(cls, scores: list[float], feedbacks: list[str], judge: dict[str, Any] | None = None) -> Reward:
        if len(scores) != len(PERSPECTIVES) or len(feedbacks) != len(PERSPECTIVES):
            raise SampleError(f"expected {len(PERSPECTIVES)} scores and feedbacks, got {len(scores)}/{len(feedbacks)}")
        return cls(*(PerspectiveReward(float(s), f) for s, f in zip(scores, feedbacks)), judge=dict(judge or {}))

    @property
    def scores(self) -> list[float]:
        return [float(getattr(self, p).score) for p in PERSPECTIVES]

    @property
    def feedbacks(self) -> list[str]:
        return [getattr(self, p).feedback for p in PERSPECTIVES]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {p: {"score": float(r.score), "feedback": r.feedback} for p, r in self._items()}
        out["judge"] = dict(self.judge)
        return out

    @classmethod
    def from_dict(cls, data: Any) -> Reward:
        if not isinstance(data, dict):
            raise SampleError(f"reward.json must be an object, got {type(data).__name__}")
        parts = []
        for p in PERSPECTIVES:
            entry = data.get(p)
            if not isinstance(entry, dict) or "score" not in entry:
                raise SampleError(f"reward.json: missing '{p}.score'")
            score = entry["score"]
            if isinstance(score, str):
                try:
                    score = float(score)
                except ValueError as e:
                    raise SampleError(f"reward.json: '{p}.score' is not a number: {score!r}") from e
            try:
                parts.append(PerspectiveReward(score, str(entry.get("feedback", NO_FAILURE))))
            except SampleError as e:
                raise SampleError(f"reward.json: '{p}': {e}") from e
        judge = data.get("judge") or {}
        return cls(*parts, judge=judge if isinstance(judge, dict) else {"value": judge})

    def to_rewardedit(self) -> list[dict[str, Any]]:
        """The RewardEdit20K list layout: ``[{"Score": s, "Negative Prompt": text}] x 3`` in perspective order."""
        return [{"Score": r.score, "Negative Prompt": r.feedback} for _, r in self._items()]

    @classmethod
    def from_rewardedit(cls, entries: Any, judge: dict[str, Any] | None = None) -> Reward:
        if not isinstance(entries, list) or len(entries) != len(PERSPECTIVES):
            raise SampleError(f"RewardEdit entry must be a list of {len(PERSPECTIVES)} objects")
        try:
            scores = [float(e["Score"]) for e in entries]
            feedbacks = [str(e.get("Negative Prompt", NO_FAILURE)) for e in entries]
        except (KeyError, TypeError, ValueError) as e:
            raise SampleError(f"RewardEdit entry malformed: {e}") from e
        return cls.from_lists(scores, feedbacks, judge)

    def _items(self):
        return ((p, getattr(self, p)) for p in PERSPECTIVES)


@dataclass
class EditSample:
    """One decoded triplet. Images are RGB PIL images."""

    key: str
    source: Image.Image
    target: Image.Image
    instruction: str
    reward: Reward | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def encode_image(image: Image.Image, fmt: str = "png", quality: int = 95, compress_level: int | None = None) -> bytes:
    """Encode an image as RGB; ``quality`` is for JPEG/WebP.

    ``compress_level`` (zlib 0-9) is for PNG, which stays lossless at any level. None (the default) lets PIL
    encode with its defaults (level 6, adaptive row filters). A level writes the PNG directly with zlib at that
    level and no row filters, which for small flat images like the synthetic world's is several times faster
    than PIL (whose per-call overhead dominates at 32 px) and about as small: the same pixels, other bytes.
    """
    fmt = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}[fmt.lower()]
    image = image if image.mode == "RGB" else image.convert("RGB")  # (saving does not modify it)
    if fmt == "PNG" and compress_level is not None:
        return _encode_png_rgb(image, compress_level)
    buf = io.BytesIO()
    params = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    image.save(buf, format=fmt, **params)
    return buf.getvalue()


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(tag)))


def _encode_png_rgb(image: Image.Image, compress_level: int) -> bytes:
    """A minimal 8-bit RGB PNG (IHDR, one IDAT, IEND; filter type 0 on every row)."""
    if not 0 <= compress_level <= 9:
        raise ValueError(f"PNG compress_level must be in 0..9, got {compress_level}")
    width, height = image.size
    data, stride = image.tobytes(), 3 * width
    rows = b"".join([b"\x00" + data[i : i + stride] for i in range(0, len(data), stride)])
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, deflate, filter method 0, no interlace
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            _png_chunk(b"IHDR", header),
            _png_chunk(b"IDAT", zlib.compress(rows, compress_level)),
            _png_chunk(b"IEND", b""),
        )
    )


def decode_image(data: bytes, name: str, draft_size: tuple[int, int] | None = None) -> Image.Image:
    """Decode to RGB: JPEGs with libjpeg-turbo (``simplejpeg``), other formats with Pillow.

    ``draft_size`` (width, height) lets a JPEG decode at a reduced scale in the DCT domain (much faster for large
    images): the smallest of libjpeg-turbo's n/8 scales that keeps both sides >= ``draft_size``, and only scales
    of 1/2 or less (between 1/2 and 1 the scaled IDCT costs more than a full decode). A JPEG ``simplejpeg``
    refuses (truncated, bytes after the end marker, any libjpeg warning such as damaged scan data) goes to Pillow
    at full size, which decodes it or says why it cannot.
    """
    if simplejpeg.is_jpeg(data):
        width, height = draft_size if draft_size is not None else (0, 0)
        try:
            pixels = simplejpeg.decode_jpeg(
                data, "RGB", min_height=height, min_width=width, min_factor=2.0 if draft_size is not None else 1.0
            )
        except ValueError:  # refused: Pillow below decodes it or names the problem
            pass
        else:
            return Image.fromarray(pixels)
    try:
        with io.BytesIO(data) as buffer:
            image = Image.open(buffer)
            image.load()
    except Exception as e:  # PIL raises many types for corrupt data
        raise SampleError(f"member '{name}' is not a readable image: {e}") from e
    if image.mode == "I;16" or image.mode == "I":
        image = image.point(lambda v: v / 256).convert("L")
    if image.mode != "RGB":
        return image.convert("RGB")
    # a plain Image sharing the decoded pixels (no copy), detached from the file object and its decoder state
    return image._new(image.im)


def encode_sample(sample: EditSample, image_format: str = "png", compress_level: int | None = None) -> dict[str, Any]:
    """The tar members of a sample, ready for ``webdataset.TarWriter.write`` (``compress_level``: PNG only)."""
    ext = "jpg" if image_format == "jpeg" else image_format
    out: dict[str, Any] = {
        "__key__": sample.key,
        f"{SOURCE_PREFIX}.{ext}": encode_image(sample.source, ext, compress_level=compress_level),
        f"{TARGET_PREFIX}.{ext}": encode_image(sample.target, ext, compress_level=compress_level),
        INSTRUCTION_KEY: sample.instruction.encode("utf-8"),
    }
    if sample.reward is not None:
        out[REWARD_KEY] = json.dumps(sample.reward.to_dict()).encode("utf-8")
    if sample.meta:
        out[META_KEY] = json.dumps(sample.meta).encode("utf-8")
    return out


def find_image_member(raw: dict[str, Any], prefix: str) -> str:
    for ext in IMAGE_EXTENSIONS:
        if f"{prefix}.{ext}" in raw:
            return f"{prefix}.{ext}"
    raise SampleError(f"missing member '{prefix}.<{'|'.join(IMAGE_EXTENSIONS)}>'")


def decode_reward(data: bytes | None) -> Reward | None:
    if data is None:
        return None
    try:
        parsed = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SampleError(f"member '{REWARD_KEY}' is not valid JSON: {e}") from e
    return Reward.from_dict(parsed)


def decode_sample(raw: dict[str, Any], draft_size: tuple[int, int] | None = None) -> EditSample:
    """Decode the raw members of one tar sample; raise ``SampleError`` naming the first problem."""
    key = str(raw.get("__key__", "?"))
    try:
        src_name, tgt_name = find_image_member(raw, SOURCE_PREFIX), find_image_member(raw, TARGET_PREFIX)
        if INSTRUCTION_KEY not in raw:
            raise SampleError(f"missing member '{INSTRUCTION_KEY}'")
        instruction = raw[INSTRUCTION_KEY]
        instruction = instruction.decode("utf-8") if isinstance(instruction, bytes) else str(instruction)
        meta: dict[str, Any] = {}
        if META_KEY in raw:
            try:
                meta = json.loads(raw[META_KEY])
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise SampleError(f"member '{META_KEY}' is not valid JSON: {e}") from e
        return EditSample(
            key=key,
            source=decode_image(raw[src_name], src_name, draft_size),
            target=decode_image(raw[tgt_name], tgt_name, draft_size),
            instruction=instruction.strip(),
            reward=decode_reward(raw.get(REWARD_KEY)),
            meta=meta,
        )
    except SampleError as e:
        raise SampleError(f"sample '{key}': {e}") from e
