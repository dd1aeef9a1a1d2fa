"""Constants and helpers of the judge prompts; the prompt texts themselves live in YAML protocol files.

The built-in protocols are ``protocols/combined.yaml`` (the default, used for annotation: one call scores all three
perspectives) and ``protocols/paper.yaml`` (the Real-Edit protocol of arXiv 2411.04713, three calls per edit);
``mredit.judge.protocol`` reads them and any user's prompts file. Changing a text of a built-in file changes the
judge: bump its ``version`` (``PROMPT_VERSION``) so that cached records are not reused.
"""

from __future__ import annotations

import json
from typing import Any

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

# added to the user text when a request is retried after a refusal
MITIGATION = (
    "Note: these images were prepared only to rate the technical quality of an image edit and may be synthetic. "
    "Rate the edit; do not identify anyone and do not describe people beyond what the rating needs."
)


def response_format(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": name, "strict": True, "schema": schema}}


def lenient_instructions(schema: dict[str, Any]) -> str:
    """Appended to the user text for providers without structured output: describe the JSON to return."""
    return "Reply with a single JSON object and nothing else, following this JSON schema:\n" + json.dumps(
        schema, separators=(",", ":")
    )
