"""Judge prompt protocols from YAML files: what each judge call sends and where its answer is read.

A protocol is either one call per perspective (``perspectives:``, the Real-Edit scheme of arXiv 2411.04713 and of
its released ``gpt_eval`` scripts) or one call answering all three (``combined:``). Per call: an optional system
text, a user template in which ``{instruction}`` is replaced (every other brace is literal, so an answer example
such as ``{'following': 'yes', 'score': 4.5}`` can be written as is), the images sent (``source`` and/or
``edited``, after the text unless ``images_first``), the answer keys (yes/no verdict, score, optional feedback,
optional nested object of a combined answer), ``max_tokens`` and ``response_format`` (``json_schema``: strict
structured output with ``schema``, or one built from the answer keys; ``none``: the text itself asks for the
answer's form and the lenient parser reads it, JSON or a Python dict string). File-level ``image`` (JPEG or PNG,
quality, ``max_side``, ``detail``) and ``request`` (``temperature``, ``seed``) settings complete the request; a
key set to null is left out of the request, a key absent keeps the judge's option (``--lvlm.*``).

The built-in protocols ``combined`` and ``paper`` are files of this package (``protocols/*.yaml``), loaded with
``builtin_protocol``; ``load_protocol(path)`` reads a user's file, whose fingerprint version carries a hash of the
file's bytes so that editing it re-judges everything. See docs/judge.md (*Prompts files*).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mredit.judge.prompts import MAX_FAILURE_CHARS, MITIGATION, lenient_instructions
from mredit.schema import MAX_SCORE, PERSPECTIVES

PROTOCOLS_DIR = Path(__file__).with_name("protocols")
BUILTIN_PROTOCOLS: tuple[str, ...] = ("combined", "paper")
IMAGE_NAMES: tuple[str, ...] = ("source", "edited")
RESPONSE_FORMATS: tuple[str, ...] = ("json_schema", "none")
IMAGE_FORMATS: tuple[str, ...] = ("jpeg", "png")
DETAILS: tuple[str, ...] = ("low", "high", "auto")


class Inherit:
    """A setting the file does not give: the judge's option applies."""

    def __repr__(self) -> str:
        return "INHERIT"


INHERIT: Any = Inherit()
_TOP_KEYS = {"name", "version", "perspectives", "combined", "response_format", "image", "request", "mitigation"}
_CALL_KEYS = {"name", "system", "user", "images", "images_first", "answer", "response_format", "schema", "max_tokens"}
_ANSWER_KEYS = {"verdict", "score", "feedback", "object", "score_max"}
_IMAGE_KEYS = {"format", "quality", "max_side", "detail"}
_REQUEST_KEYS = {"temperature", "seed"}


@dataclass(frozen=True)
class AnswerKeys:
    """Where one perspective's answer is: ``verdict`` (yes/no or a boolean) and ``score`` keys, an optional
    ``feedback`` key, inside the ``object`` key when the call answers several perspectives; a score on
    ``0..score_max`` is rescaled to 0-5."""

    verdict: str
    score: str
    feedback: str | None = None
    object: str | None = None
    score_max: float = MAX_SCORE


@dataclass(frozen=True)
class CallSpec:
    """One request of a protocol and the perspectives its answer gives."""

    name: str  # the response_format schema name; identifies the call
    answers: dict[str, AnswerKeys]
    user: str
    images: tuple[str, ...]
    system: str | None = None
    images_first: bool = False
    response_format: str = "json_schema"
    schema: dict[str, Any] | None = None
    max_tokens: int | None = None

    @property
    def structured(self) -> bool:
        return self.response_format == "json_schema"

    def json_schema(self) -> dict[str, Any]:
        """The given schema, or one built from the answer keys (feedback first, then verdict, then score)."""
        return self.schema if self.schema is not None else default_schema(self.answers)

    def user_text(self, instruction: str, structured: bool, mitigate: bool, mitigation: str) -> str:
        """The user text: the template with the instruction, the mitigation note on a retry after a refusal,
        and, when a json_schema call goes without structured output, the schema it must follow."""
        text = self.user.replace("{instruction}", instruction)
        if mitigate and mitigation:
            text += "\n" + mitigation
        if self.structured and not structured:
            text += "\n" + lenient_instructions(self.json_schema())
        return text


@dataclass(frozen=True)
class ImageEncoding:
    """How images are sent: ``max_side`` and ``detail`` may be ``INHERIT`` (the judge's options) or None (no
    resize / no detail field)."""

    format: str = "jpeg"
    quality: int = 90
    max_side: Any = INHERIT
    detail: Any = INHERIT


@dataclass(frozen=True)
class Protocol:
    name: str
    version: str  # the fingerprint's prompt_version
    calls: tuple[CallSpec, ...]
    image: ImageEncoding = field(default_factory=ImageEncoding)
    request: dict[str, Any] = field(default_factory=dict)  # temperature / seed: a value, None (omitted) or absent
    mitigation: str = MITIGATION
    path: str | None = None  # the user's file; None for a built-in protocol

    @property
    def builtin(self) -> bool:
        return self.path is None


def default_schema(answers: dict[str, AnswerKeys]) -> dict[str, Any]:
    """A strict JSON schema asking for the answer keys: per perspective the feedback (a string of at most
    ``MAX_FAILURE_CHARS``), the verdict ("yes"/"no") and the score (a number); nested per perspective when the
    keys name an ``object``."""

    def flat(keys: AnswerKeys) -> dict[str, Any]:
        properties: dict[str, Any] = {}
        if keys.feedback:
            properties[keys.feedback] = {"type": "string", "maxLength": MAX_FAILURE_CHARS}
        properties[keys.verdict] = {"type": "string", "enum": ["yes", "no"]}
        properties[keys.score] = {"type": "number"}
        return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}

    nested = {p: k for p, k in answers.items() if k.object}
    if not nested:
        merged: dict[str, Any] = {"type": "object", "properties": {}, "required": [], "additionalProperties": False}
        for keys in answers.values():
            part = flat(keys)
            merged["properties"].update(part["properties"])
        merged["required"] = list(merged["properties"])
        return merged
    properties = {keys.object: flat(keys) for keys in answers.values()}
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


class ProtocolError(ValueError):
    """A prompts file that cannot be used; the message names the file and the key."""


def _check_keys(where: str, data: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ProtocolError(f"{where} must be a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ProtocolError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(allowed))})")
    return data


def _text(where: str, value: Any, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or (not value.strip() and not optional):
        raise ProtocolError(f"{where} must be a non-empty string")
    return value


def _answer_keys(where: str, data: Any, nested: bool) -> AnswerKeys:
    data = _check_keys(where, data, _ANSWER_KEYS)
    for key in ("verdict", "score"):
        if key not in data:
            raise ProtocolError(f"{where}: missing '{key}' (the answer key holding it)")
    if nested and not data.get("object"):
        raise ProtocolError(f"{where}: a call answering several perspectives needs 'object' for each")
    score_max = data.get("score_max", MAX_SCORE)
    if not isinstance(score_max, (int, float)) or isinstance(score_max, bool) or score_max <= 0:
        raise ProtocolError(f"{where}.score_max must be a positive number, got {score_max!r}")
    return AnswerKeys(
        verdict=str(data["verdict"]),
        score=str(data["score"]),
        feedback=str(data["feedback"]) if data.get("feedback") else None,
        object=str(data["object"]) if data.get("object") else None,
        score_max=float(score_max),
    )


def _call(where: str, data: Any, perspectives: list[str], default_name: str, default_format: str) -> CallSpec:
    data = _check_keys(where, data, _CALL_KEYS)
    if "user" not in data:
        raise ProtocolError(f"{where}: missing 'user' (the user text template)")
    images = data.get("images", list(IMAGE_NAMES))
    if not isinstance(images, list) or not images or any(i not in IMAGE_NAMES for i in images):
        raise ProtocolError(f"{where}.images must be a non-empty list of {' and/or '.join(IMAGE_NAMES)}, got {images}")
    response = data.get("response_format", default_format)
    if response not in RESPONSE_FORMATS:
        raise ProtocolError(f"{where}.response_format must be one of {', '.join(RESPONSE_FORMATS)}, got {response!r}")
    answer = data.get("answer")
    if answer is None:
        raise ProtocolError(f"{where}: missing 'answer' (the keys of the verdict and the score)")
    if len(perspectives) == 1:
        answers = {perspectives[0]: _answer_keys(f"{where}.answer", answer, nested=False)}
    else:
        answer = _check_keys(f"{where}.answer", answer, set(PERSPECTIVES))
        missing = [p for p in perspectives if p not in answer]
        if missing:
            raise ProtocolError(f"{where}.answer: missing perspective(s) {', '.join(missing)}")
        answers = {p: _answer_keys(f"{where}.answer.{p}", answer[p], nested=True) for p in perspectives}
    schema = data.get("schema")
    if schema is not None and not isinstance(schema, dict):
        raise ProtocolError(f"{where}.schema must be a JSON-schema mapping")
    max_tokens = data.get("max_tokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1):
        raise ProtocolError(f"{where}.max_tokens must be a positive integer, got {max_tokens!r}")
    return CallSpec(
        name=str(data.get("name") or default_name),
        answers=answers,
        user=_text(f"{where}.user", data["user"]),
        images=tuple(images),
        system=_text(f"{where}.system", data.get("system"), optional=True),
        images_first=bool(data.get("images_first", False)),
        response_format=response,
        schema=schema,
        max_tokens=max_tokens,
    )


def _image(where: str, data: Any) -> ImageEncoding:
    data = _check_keys(where, data or {}, _IMAGE_KEYS)
    fmt = str(data.get("format", "jpeg")).lower()
    if fmt == "jpg":
        fmt = "jpeg"
    if fmt not in IMAGE_FORMATS:
        raise ProtocolError(f"{where}.format must be jpeg or png, got {data.get('format')!r}")
    quality = data.get("quality", 90)
    if not isinstance(quality, int) or isinstance(quality, bool) or not 1 <= quality <= 100:
        raise ProtocolError(f"{where}.quality must be an integer in 1..100, got {quality!r}")
    max_side = data.get("max_side", INHERIT)
    if max_side is not INHERIT and max_side is not None and (not isinstance(max_side, int) or max_side < 1):
        raise ProtocolError(f"{where}.max_side must be a positive integer or null, got {max_side!r}")
    detail = data.get("detail", INHERIT)
    if detail is not INHERIT and detail is not None and detail not in DETAILS:
        raise ProtocolError(f"{where}.detail must be one of {', '.join(DETAILS)} or null, got {detail!r}")
    return ImageEncoding(fmt, quality, max_side, detail)


def parse_protocol(data: Any, where: str, version: str | None = None, path: str | None = None) -> Protocol:
    """A ``Protocol`` from the mapping of a prompts file (``where`` names it in errors)."""
    data = _check_keys(where, data, _TOP_KEYS)
    if ("perspectives" in data) == ("combined" in data):
        raise ProtocolError(f"{where}: give exactly one of 'perspectives' (one call each) or 'combined' (one call)")
    name = str(data.get("name") or Path(where).stem)
    default_format = data.get("response_format", "json_schema")
    if "combined" in data:
        calls = (_call(f"{where}: combined", data["combined"], list(PERSPECTIVES), "edit_judgement", default_format),)
    else:
        per = _check_keys(f"{where}: perspectives", data["perspectives"], set(PERSPECTIVES))
        missing = [p for p in PERSPECTIVES if p not in per]
        if missing:
            raise ProtocolError(f"{where}: perspectives: missing {', '.join(missing)}")
        calls = tuple(
            _call(f"{where}: perspectives.{p}", per[p], [p], f"paper_{p}", default_format) for p in PERSPECTIVES
        )
    request = _check_keys(f"{where}: request", data.get("request") or {}, _REQUEST_KEYS)
    mitigation = data.get("mitigation", MITIGATION)
    return Protocol(
        name=name,
        version=version or str(data.get("version") or name),
        calls=calls,
        image=_image(f"{where}: image", data.get("image")),
        request=dict(request),
        mitigation=_text(f"{where}: mitigation", mitigation, optional=True) or "",
        path=path,
    )


def load_protocol(path: str | Path) -> Protocol:
    """A user's prompts file; its fingerprint version is ``<version or name>+<sha256 of the file, 12 hex>``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompts file not found: {path}")
    raw = path.read_bytes()
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise ProtocolError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from e
    base = parse_protocol(data, str(path))
    digest = hashlib.sha256(raw).hexdigest()[:12]
    return parse_protocol(data, str(path), version=f"{base.version}+{digest}", path=str(path))


_BUILTIN_CACHE: dict[str, Protocol] = {}


def builtin_protocol(name: str) -> Protocol:
    """The shipped protocol ``combined`` or ``paper`` (``protocols/<name>.yaml``)."""
    if name not in BUILTIN_PROTOCOLS:
        raise ValueError(f"unknown judge mode {name!r}; expected one of {BUILTIN_PROTOCOLS}")
    if name not in _BUILTIN_CACHE:
        path = PROTOCOLS_DIR / f"{name}.yaml"
        _BUILTIN_CACHE[name] = parse_protocol(yaml.safe_load(path.read_text(encoding="utf-8")), path.name)
    return _BUILTIN_CACHE[name]
