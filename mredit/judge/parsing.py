"""Turn a judge's answer text into a ``Judgement``: strict JSON first, a lenient path for free-text providers.

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
from mredit.schema import MAX_SCORE, NO_FAILURE, PERSPECTIVES

# case-insensitive aliases a free-text model may use for each perspective
ALIASES: dict[str, tuple[str, ...]] = {
    "following": ("instruction_following", "following", "instruction following", "prompt_compliance", "if"),
    "preserving": ("detail_preserving", "preserving", "detail preserving", "consistency", "preservation", "dp"),
    "quality": ("generation_quality", "quality", "generation quality", "visual_quality", "gq"),
}
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


def coerce_score(value: Any) -> float:
    """A score in [0, 5] from a number or a string like "4", "4.5", "4/5", "8/10", "4 out of 5"."""
    if isinstance(value, bool) or value is None:
        raise ParseError(f"score is not a number: {value!r}")
    if isinstance(value, (int, float)):
        score = float(value)
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


def parse_combined(text: str) -> Judgement:
    """Parse the combined-mode answer (all three perspectives)."""
    data = extract_json_object(text)
    parts = []
    for p in PERSPECTIVES:
        try:
            entry = _lookup(data, (COMBINED_KEYS[p], *ALIASES[p]))
        except KeyError as e:
            raise ParseError(f"answer has no '{COMBINED_KEYS[p]}'") from e
        if not isinstance(entry, dict):
            raise ParseError(f"'{COMBINED_KEYS[p]}' is not an object")
        try:
            score = coerce_score(_lookup(entry, ("score", "rating")))
            verdict = coerce_verdict(_lookup(entry, ("success", "verdict", "yes", "answer")))
        except KeyError as e:
            raise ParseError(f"'{COMBINED_KEYS[p]}' lacks '{e.args[0]}'") from e
        except ParseError as e:
            raise ParseError(f"'{COMBINED_KEYS[p]}': {e}") from e
        feedback = normalise_feedback(entry.get("failure_points", entry.get("feedback", NO_FAILURE)))
        parts.append(PerspectiveJudgement(score=score, verdict=verdict, feedback=feedback))
    return Judgement(*parts)


def parse_paper(perspective: str, text: str) -> PerspectiveJudgement:
    """Parse one paper-mode answer: ``{"reason", "<following|consistent|clear>": yes/no, "score"}``."""
    data = extract_json_object(text)
    verdict_key = PAPER_VERDICT_KEYS[perspective]
    try:
        verdict = coerce_verdict(_lookup(data, (verdict_key, "answer", "verdict")))
        score = coerce_score(_lookup(data, ("score",)))
    except KeyError as e:
        raise ParseError(f"{perspective} answer lacks '{e.args[0]}'") from e
    return PerspectiveJudgement(score=score, verdict=verdict, feedback=normalise_feedback(data.get("reason")))
