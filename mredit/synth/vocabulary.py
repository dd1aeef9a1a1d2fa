"""Every word the synthetic world writes: its instructions and the oracle's failure feedback.

The tiny text encoder's word-level tokenizer (``InstructPix2PixModule(tiny_tokenizer="synth_words")``) makes each
of these words a single token, where the default character-level one spells them out letter by letter.
"""

from __future__ import annotations

import re

from mredit.synth.edits import GLOBAL_ADJUSTS, PATTERN_WORDS, POSITIONS, SHAPE_WORDS, STYLES, TEMPLATES
from mredit.synth.scene import COLOR_NAMES, SHAPES, TEXTURE_PATTERNS

# the oracle's failure texts (mredit/synth/oracle.py) around the colour, shape and position words
FEEDBACK_WORDS: tuple[str, ...] = (
    "none", "the", "is", "only", "partly", "still", "not", "there", "removed", "incomplete", "no", "was", "added",
    "has", "on", "are", "or", "edit", "applied", "weak", "background", "changed", "moved", "shape", "colours",
    "of", "whole", "image", "shifted", "visible", "noise", "colour", "blotches", "blurry", "blocky", "compression",
    "artifacts", "to", "at", "in",
)  # fmt: skip
REFERENCE_WORDS: tuple[str, ...] = ("the", "shape", "one")  # edits.refer: "the red shape", "the red one"
WORD = re.compile(r"[a-z]+")
FIELD = re.compile(r"\{\w+\}")  # a str.format field of a template, e.g. {color}


def words_of(text: str) -> list[str]:
    """The lower-case words of ``text``; the fields of a template (``{color}``) are not words."""
    return WORD.findall(FIELD.sub(" ", text).lower())


def synth_words() -> tuple[str, ...]:
    """The sorted vocabulary of the synthetic world's instructions and oracle feedback."""
    texts = [t for templates in TEMPLATES.values() for t in templates]
    texts += [w for words in SHAPE_WORDS.values() for w in words]
    texts += [w for words in PATTERN_WORDS.values() for w in words]
    texts += [*POSITIONS, *COLOR_NAMES, *SHAPES, *TEXTURE_PATTERNS, *GLOBAL_ADJUSTS, *STYLES]
    texts += [*FEEDBACK_WORDS, *REFERENCE_WORDS, "an"]  # {a}: "a" or "an"
    return tuple(sorted({w for text in texts for w in words_of(text)}))
