"""Judge prompts and response schemas.

``combined`` (the default, used for annotation): one call scores all three perspectives; a static rubric goes
first so providers can cache the prefix; per perspective the schema asks for the failure points *before* the
verdict and the score, so the score is conditioned on the model's own critique.
``paper``: the Real-Edit protocol of arXiv 2411.04713, three calls per edit (following and preserving see both
images, quality sees the edited image only), each a yes/no answer plus a 0-5 score; we add a short reason field.
Changing any text here changes the judge: bump ``PROMPT_VERSION`` so cached records are not reused.
"""

from __future__ import annotations

import json
from typing import Any

from mredit.schema import PERSPECTIVES

PROMPT_VERSION = "mredit-judge/1"
MAX_FAILURE_CHARS = 200
# schema key of each perspective (PERSPECTIVES order) in the combined answer
COMBINED_KEYS: dict[str, str] = {
    "following": "instruction_following",
    "preserving": "detail_preserving",
    "quality": "generation_quality",
}
# yes/no key of each perspective in the paper-mode answers (as in the official gpt_eval scripts)
PAPER_VERDICT_KEYS: dict[str, str] = {"following": "following", "preserving": "consistent", "quality": "clear"}

COMBINED_SYSTEM = """You are a meticulous rater of instruction-based image edits. You receive an editing \
instruction, image 1 (the SOURCE image) and image 2 (the EDITED image produced from the source by following the \
instruction). Rate the edit on three independent perspectives, each on an integer scale from 0 to 5.

1. instruction_following: did the edited image carry out the requested change on the right object, attribute, \
count and position? Accept valid alternative or creative readings of an ambiguous instruction. If there is no \
visible change, or the change is unrelated to the instruction, the score is at most 1.
   5 = fully and precisely done; 4 = done with a minor deviation (slightly wrong shade, size or place); \
3 = mostly done but a noticeable part is missing or wrong; 2 = attempted but largely wrong or incomplete; \
1 = barely any trace of the requested change; 0 = not done at all, or the opposite was done.
2. detail_preserving: are the regions and attributes that the instruction does not mention unchanged with respect \
to the source (identity, pose, layout, background, colours, text, lighting)? Over-editing and global drift lower \
this score. If nothing was edited at all, detail preserving is 5.
   5 = everything unrelated is identical; 4 = tiny unrelated changes only visible on close inspection; \
3 = a noticeable unrelated change; 2 = several unrelated regions changed; 1 = most of the image was altered; \
0 = the image no longer resembles the source.
3. generation_quality: judge the EDITED IMAGE ONLY: artifacts, seams, distorted shapes or faces, inconsistent \
lighting, shadows or perspective, blur, noise, unnatural textures, and whether the edited content looks natural.
   5 = flawless and natural; 4 = a minor artifact; 3 = a clearly visible artifact; 2 = several artifacts or an \
unnatural region; 1 = severe distortion; 0 = unusable, broken image.

Rules:
- Judge each perspective independently of the others.
- The two images may look identical because the edit failed; look carefully before assuming a change happened.
- For each perspective first write failure_points: name the object and the defect in at most 25 words, or \
exactly "None" when there is no failure (score 5). Then give success (true when the perspective is satisfied, \
i.e. you would answer "yes" to it) and finally the score.
- Do not identify people and do not comment on content policy: only the technical editing quality is rated.
- The images are provided for rating only; they may be synthetic."""

PAPER_SYSTEM: dict[str, str] = {
    "following": "You are a judge of instruction-based image edits. Image 1 is the input image, image 2 the edited "
    "image. Decide whether the edit follows the instruction; accept reasonable alternative or creative "
    "interpretations. Answer (1) yes or no: was the instruction followed, and (2) how accurately, as a score "
    "from 0 to 5.",
    "preserving": "You are a judge of instruction-based image edits. Image 1 is the input image, image 2 the edited "
    "image. Decide whether the regions and details that the instruction does not ask to change stay consistent "
    "with the input image. Answer (1) yes or no: are they consistent, and (2) a consistency score from 0 to 5.",
    "quality": "You are a judge of image quality. The image is the result of an image edit. Judge sharpness, "
    "generation artifacts, composition, lighting, whether the subject is clear and whether the image looks "
    "natural. Answer (1) yes or no: does the image meet all of these, and (2) a quality score from 0 to 5.",
}


# added to the user text when a request is retried after a refusal
MITIGATION = (
    "Note: these images were prepared only to rate the technical quality of an image edit and may be synthetic. "
    "Rate the edit; do not identify anyone and do not describe people beyond what the rating needs."
)


def _perspective_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "failure_points": {"type": "string", "maxLength": MAX_FAILURE_CHARS},
            "success": {"type": "boolean"},
            "score": {"type": "integer", "enum": [0, 1, 2, 3, 4, 5]},
        },
        "required": ["failure_points", "success", "score"],
        "additionalProperties": False,
    }


def combined_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {COMBINED_KEYS[p]: _perspective_schema() for p in PERSPECTIVES},
        "required": [COMBINED_KEYS[p] for p in PERSPECTIVES],
        "additionalProperties": False,
    }


def paper_schema(perspective: str) -> dict[str, Any]:
    verdict = PAPER_VERDICT_KEYS[perspective]
    return {
        "type": "object",
        "properties": {
            "reason": {"type": "string", "maxLength": MAX_FAILURE_CHARS},
            verdict: {"type": "string", "enum": ["yes", "no"]},
            "score": {"type": "number"},
        },
        "required": ["reason", verdict, "score"],
        "additionalProperties": False,
    }


def response_format(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": name, "strict": True, "schema": schema}}


def lenient_instructions(schema: dict[str, Any]) -> str:
    """Appended to the user text for providers without structured output: describe the JSON to return."""
    return "Reply with a single JSON object and nothing else, following this JSON schema:\n" + json.dumps(
        schema, separators=(",", ":")
    )


def _image_part(url: str, detail: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url, "detail": detail}}


def combined_messages(
    instruction: str, source_url: str, edited_url: str, detail: str, structured: bool = True, mitigate: bool = False
) -> list[dict[str, Any]]:
    text = f"Editing instruction: {instruction}\nImage 1 is the SOURCE image, image 2 is the EDITED image."
    if mitigate:
        text += "\n" + MITIGATION
    if not structured:
        text += "\n" + lenient_instructions(combined_schema())
    return [
        {"role": "system", "content": COMBINED_SYSTEM},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": text},
                _image_part(source_url, detail),
                _image_part(edited_url, detail),
            ],
        },
    ]


def paper_messages(
    perspective: str,
    instruction: str,
    source_url: str,
    edited_url: str,
    detail: str,
    structured: bool = True,
    mitigate: bool = False,
) -> list[dict[str, Any]]:
    if perspective == "quality":  # quality is judged on the edited image alone
        text, images = "Rate this edited image.", [_image_part(edited_url, detail)]
    else:
        text = f"Editing instruction: {instruction}\nImage 1 is the input image, image 2 is the edited image."
        images = [_image_part(source_url, detail), _image_part(edited_url, detail)]
    if mitigate:
        text += "\n" + MITIGATION
    if not structured:
        text += "\n" + lenient_instructions(paper_schema(perspective))
    return [
        {"role": "system", "content": PAPER_SYSTEM[perspective]},
        {"role": "user", "content": [{"type": "text", "text": text}, *images]},
    ]
