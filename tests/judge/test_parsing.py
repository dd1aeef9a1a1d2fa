"""The answer parser: strict JSON, the lenient path, coercion, clamping, and never a default score."""

from __future__ import annotations

import json

import pytest

from mredit.judge.parsing import (
    ParseError,
    coerce_score,
    extract_json_object,
    looks_like_refusal,
    normalise_feedback,
    parse_combined,
    parse_paper,
)


def _answer(**overrides):
    base = {
        "instruction_following": {"failure_points": "the hat is blue, not red", "success": False, "score": 2},
        "detail_preserving": {"failure_points": "None", "success": True, "score": 5},
        "generation_quality": {"failure_points": "  blurry   edges ", "success": True, "score": 4},
    }
    base.update(overrides)
    return base


def test_strict_answer():
    judgement = parse_combined(json.dumps(_answer()))
    assert judgement.following.score == 2.0 and judgement.following.verdict is False
    assert judgement.preserving.feedback == "None" and judgement.quality.feedback == "blurry edges"


@pytest.mark.parametrize(
    "text",
    [
        "Sure, here it is:\n```json\n" + json.dumps(_answer()) + "\n```\nThanks",
        str(_answer()),  # a Python dict string with single quotes
        json.dumps(
            {
                "Following": {"score": "2/5", "verdict": "no"},
                "Preserving": {"score": "5", "yes": "yes"},
                "Quality": {"score": 4.0, "success": "true", "feedback": "blurry edges"},
            }
        ),
    ],
)
def test_lenient_answers(text):
    judgement = parse_combined(text)
    assert [judgement[p].score for p in ("following", "preserving", "quality")] == [2.0, 5.0, 4.0]


@pytest.mark.parametrize(
    ("value", "expected"),
    [(4, 4.0), ("4", 4.0), ("4.5", 4.5), ("4/5", 4.0), ("8/10", 4.0), ("3 out of 5", 3.0), (7, 5.0), (-1, 0.0)],
)
def test_coerce_score(value, expected):
    assert coerce_score(value) == expected


@pytest.mark.parametrize("value", [None, True, "four", "nan", float("nan"), [], "3/0"])
def test_bad_scores_are_errors_not_defaults(value):
    with pytest.raises(ParseError):
        coerce_score(value)


def test_missing_parts_raise():
    answer = _answer()
    del answer["generation_quality"]
    with pytest.raises(ParseError, match="generation_quality"):
        parse_combined(json.dumps(answer))
    answer = _answer(detail_preserving={"failure_points": "x", "success": True})
    with pytest.raises(ParseError, match="score"):
        parse_combined(json.dumps(answer))
    with pytest.raises(ParseError, match="no JSON object"):
        extract_json_object('{"unterminated": ')


def test_paper_answer_and_helpers():
    judgement = parse_paper("preserving", "{'reason': 'n/a', 'consistent': 'Yes', 'score': 4.5}")
    assert judgement.verdict is True and judgement.score == 4.5 and judgement.feedback == "None"
    assert looks_like_refusal("I'm sorry, I can't help with that.") and not looks_like_refusal('{"score": 1}')
    assert normalise_feedback("x" * 500) == "x" * 200
    assert extract_json_object('prefix {"a": "}{", "b": {"c": 1}} suffix') == {"a": "}{", "b": {"c": 1}}
