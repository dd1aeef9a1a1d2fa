"""Turn a judge's answer text into judgements: strict JSON first, a lenient path for free-text providers (JSON
inside prose or a code fence, or a Python dict string such as ``{'following': 'yes', 'score': 4.5}``, the shape the
released ``gpt_eval`` scripts ask for).

Never fills a default: a missing or non-numeric score raises ``ParseError`` and the sample ends ``invalid``
with the raw text kept. Scores outside 0..5 are clamped (a model answering 6 meant "top").
"""

from __future__ import annotations

import ast
import json
import math
import re
from typing import Any

from mredit.judge.base import Judgement, PerspectiveJudgement
from mredit.judge.prompts import COMBINED_KEYS, MAX_FAILURE_CHARS, PAPER_VERDICT_KEYS
from mredit.judge.protocol import AnswerKeys
from mredit.schema import MAX_SCORE, NO_FAILURE, PERSPECTIVES

# case-insensitive aliases a free-text model may use for each perspective
ALIASES: dict[str, tuple[str, ...]] = {
    "following": ("instruction_following", "following", "instruction following", "prompt_compliance", "if"),
    "preserving": ("detail_preserving", "preserving", "detail preserving", "consistency", "preservation", "dp"),
    "quality": ("generation_quality", "quality", "generation quality", "visual_quality", "gq"),
}
VERDICT_ALIASES: tuple[str, ...] = ("success", "verdict", "yes", "answer")
SCORE_ALIASES: tuple[str, ...] = ("score", "rating")
FEEDBACK_ALIASES: tuple[str, ...] = ("failure_points", "feedback", "reason")
NO_FAILURE_SPELLINGS = {"", "none", "n/a", "na", "no issues", "no failure", "no failures", "nothing", "-"}
REFUSAL_PATTERNS = re.compile(
    r"^\s*(i'?m sorry|i am sorry|sorry,|i can(?:'|no)t (?:help|assist|evaluate|comply)|i am unable|i'm unable)",
    re.IGNORECASE,
)
_SCORE_TEXT = re.compile(r"^\s*([-+]?\d+(?:\.\d+)?)\s*(?:/\s*(\d+(?:\.\d+)?)|out of\s*(\d+(?:\.\d+)?))?\s*$")


class ParseError(ValueError):
    """The answer does not contain a complete, valid judgement."""


def looks_like_refusal(text: str) -> bool:
    return bool(REFUSAL_PATTERNS.match(text or ""))


def _first_balanced_object(text: str) -> str | None:
    start = text.find("{")
    while start != -1:
        depth, in_string, escaped = 0, "", False
        for i in range(start, len(text)):
            ch = text[i]
            if in_string:
                if escaped:
                    escaped = False
                elif ch == "\\":
                    escaped = True
                elif ch == in_string:
                    in_string = ""
                continue
            if ch in "\"'":
                in_string = ch
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    return text[start : i + 1]
        start = text.find("{", start + 1)
    return None


def extract_json_object(text: str) -> dict[str, Any]:
    """The first JSON object in ``text``: the whole text, a fenced block, or a Python dict string."""
    text = (text or "").strip()
    candidates = [text]
    block = _first_balanced_object(text)
    if block is not None and block != text:
        candidates.append(block)
    for candidate in candidates:
        for loader in (json.loads, ast.literal_eval):
            try:
                value = loader(candidate)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                continue
            if isinstance(value, dict):
                return value
    raise ParseError(f"no JSON object in the answer: {text[:80]!r}")


def coerce_score(value: Any, score_max: float = MAX_SCORE) -> float:
    """A score in [0, 5] from a number or a string like "4", "4.5", "4/5", "8/10", "4 out of 5"; a bare number is
    on ``0..score_max`` (rescaled to 0-5)."""
    if isinstance(value, bool) or value is None:
        raise ParseError(f"score is not a number: {value!r}")
    if isinstance(value, (int, float)):
        score = float(value) * MAX_SCORE / score_max
    elif isinstance(value, str):
        match = _SCORE_TEXT.match(value)
        if not match:
            raise ParseError(f"score is not a number: {value!r}")
        score = float(match.group(1))
        denominator = match.group(2) or match.group(3)
        if denominator is not None:
            if float(denominator) <= 0:
                raise ParseError(f"score has a bad denominator: {value!r}")
            score = score / float(denominator) * MAX_SCORE
        else:
            score = score * MAX_SCORE / score_max
    else:
        raise ParseError(f"score is not a number: {value!r}")
    if math.isnan(score) or math.isinf(score):
        raise ParseError(f"score is not finite: {value!r}")
    return min(MAX_SCORE, max(0.0, score))


def coerce_verdict(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower().rstrip(".!")
        if word in ("yes", "true", "y"):
            return True
        if word in ("no", "false", "n"):
            return False
    raise ParseError(f"verdict is not yes/no: {value!r}")


def normalise_feedback(value: Any) -> str:
    text = " ".join(str(value if value is not None else "").split())
    if text.lower().rstrip(".") in NO_FAILURE_SPELLINGS:
        return NO_FAILURE
    return text[:MAX_FAILURE_CHARS]


def _lookup(data: dict[str, Any], names: tuple[str, ...]) -> Any:
    lowered = {str(k).strip().lower(): v for k, v in data.items()}
    for name in names:
        if name in lowered:
            return lowered[name]
    raise KeyError(names[0])


def parse_answer(text: str, answers: dict[str, AnswerKeys]) -> dict[str, PerspectiveJudgement]:
    """Parse one call's answer (JSON, or a Python dict string such as ``{'following': 'yes', 'score': 4.5}``, also
    inside prose or a code fence) into the judgement of each perspective ``answers`` names.

    Each perspective's keys are looked up case-insensitively, with aliases: the object of a combined answer also
    under ``ALIASES``, the verdict also as ``verdict``/``answer``/``success``/``yes``, the score also as
    ``score``/``rating``, the feedback also as ``failure_points``/``feedback``/``reason``.
    """
    data = extract_json_object(text)
    out = {}
    for perspective, keys in answers.items():
        entry: Any = data
        name = keys.object or perspective
        if keys.object:
            try:
                entry = _lookup(data, (keys.object, *ALIASES[perspective]))
            except KeyError as e:
                raise ParseError(f"answer has no '{keys.object}'") from e
            if not isinstance(entry, dict):
                raise ParseError(f"'{keys.object}' is not an object")
        try:
            verdict = coerce_verdict(_lookup(entry, (keys.verdict, *VERDICT_ALIASES)))
            score = coerce_score(_lookup(entry, (keys.score, *SCORE_ALIASES)), keys.score_max)
        except KeyError as e:
            raise ParseError(
                f"'{name}' lacks '{e.args[0]}'" if keys.object else f"{name} answer lacks '{e.args[0]}'"
            ) from e
        except ParseError as e:
            raise ParseError(f"'{name}': {e}") from e
        try:
            feedback = _lookup(entry, tuple(k for k in (keys.feedback, *FEEDBACK_ALIASES) if k))
        except KeyError:
            feedback = NO_FAILURE
        out[perspective] = PerspectiveJudgement(score=score, verdict=verdict, feedback=normalise_feedback(feedback))
    return out


COMBINED_ANSWERS = {
    p: AnswerKeys(verdict="success", score="score", feedback="failure_points", object=COMBINED_KEYS[p])
    for p in PERSPECTIVES
}


def parse_combined(text: str) -> Judgement:
    """Parse the combined-mode answer (all three perspectives)."""
    parts = parse_answer(text, COMBINED_ANSWERS)
    return Judgement(*(parts[p] for p in PERSPECTIVES))


def parse_paper(perspective: str, text: str) -> PerspectiveJudgement:
    """Parse one paper-mode answer: ``{"reason", "<following|consistent|clear>": yes/no, "score"}``."""
    keys = AnswerKeys(verdict=PAPER_VERDICT_KEYS[perspective], score="score", feedback="reason")
    return parse_answer(text, {perspective: keys})[perspective]
