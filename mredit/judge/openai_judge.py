"""LVLM judges over the OpenAI chat-completions API: OpenAI, Azure OpenAI, or any compatible server (vLLM).

One ``AsyncOpenAI``/``AsyncAzureOpenAI`` client per judge, created on first use, SDK retries off (see
``mredit.judge.retry``). Structured output (``response_format`` json_schema) is used when the provider supports
it; a 400 that rejects ``response_format`` switches the judge to the lenient prompt-and-extract path for the rest
of the run. The API key is read by the SDK (argument or environment) and never logged or recorded.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx2
import openai

from mredit.judge.base import Judge, Judgement, JudgeRequest, JudgeResult, PerspectiveJudgement
from mredit.judge.cost import Price, price_for, usage_cost
from mredit.judge.images import encode_data_url
from mredit.judge.parsing import ParseError, looks_like_refusal, parse_answer
from mredit.judge.prompts import response_format
from mredit.judge.protocol import INHERIT, CallSpec, Protocol, builtin_protocol, load_protocol
from mredit.judge.retry import FatalJudgeError, RetryPolicy, classify, describe, retry_after_seconds
from mredit.schema import PERSPECTIVES

PROVIDERS = ("openai", "azure", "compatible")
MODES = ("combined", "paper")
DETAILS = ("low", "high", "auto")
_STATUS_RANK = {"error": 0, "refused": 1, "invalid": 2}  # which failure a several-call result reports first


@dataclass
class CallOutcome:
    status: str
    value: Any = None  # a Judgement (combined) or PerspectiveJudgement (paper) when status == "ok"
    error: str | None = None
    raw: str | None = None
    usage: dict[str, int] = field(default_factory=dict)


def usage_of(body: dict[str, Any]) -> dict[str, int]:
    usage = body.get("usage") or {}
    details = usage.get("prompt_tokens_details") or {}
    return {
        "prompt_tokens": int(usage.get("prompt_tokens") or 0),
        "completion_tokens": int(usage.get("completion_tokens") or 0),
        "cached_tokens": int(details.get("cached_tokens") or 0),
    }


def interpret_completion(body: dict[str, Any], parse: Callable[[str], Any], structured: bool) -> CallOutcome:
    """Map a chat-completion body to an outcome: ok, refused, or invalid (raw text kept). Shared with batch mode."""
    usage = usage_of(body)
    choices = body.get("choices") or []
    if not choices:
        return CallOutcome("invalid", error="response has no choices", raw=json.dumps(body)[:2000], usage=usage)
    choice = choices[0]
    message = choice.get("message") or {}
    content, finish = message.get("content"), choice.get("finish_reason")
    if message.get("refusal"):
        return CallOutcome("refused", error=f"refusal: {message['refusal'][:200]}", usage=usage)
    if finish == "content_filter":
        return CallOutcome("refused", error="content filter", raw=content, usage=usage)
    if finish == "length":
        return CallOutcome("invalid", error="answer truncated (finish_reason=length)", raw=content, usage=usage)
    if not content:
        return CallOutcome("invalid", error="empty answer", raw=content, usage=usage)
    if not structured and looks_like_refusal(content):
        return CallOutcome("refused", error=f"refusal: {content[:200]}", raw=content, usage=usage)
    try:
        return CallOutcome("ok", value=parse(content), usage=usage)
    except ParseError as e:
        return CallOutcome("invalid", error=f"unparseable answer: {e}", raw=content, usage=usage)


def _rejects_response_format(error: openai.BadRequestError) -> bool:
    text = f"{error.message} {error.body}".lower()
    return "response_format" in text or "json_schema" in text or "structured" in text


class OpenAIJudge(Judge):
    """Score requests with a vision chat model, with the built-in protocol ``mode`` (``combined``: one call,
    ``paper``: three calls) or the protocol of a prompts file (``prompts``, a YAML path or a ``Protocol``)."""

    def __init__(
        self,
        model: str = "gpt-4o",
        provider: str = "openai",
        base_url: str | None = None,
        api_key: str | None = None,
        azure_endpoint: str | None = None,
        api_version: str | None = None,
        mode: str = "combined",
        detail: str = "high",
        max_side: int = 512,
        structured: bool = True,
        temperature: float = 0.0,
        seed: int | None = 0,
        max_tokens: int = 600,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        price: Price | None = None,
        client: Any = None,
        transport: str = "aiohttp",
        prompts: str | os.PathLike | Protocol | None = None,
    ) -> None:
        if provider not in PROVIDERS:
            raise ValueError(f"unknown provider {provider!r}; expected one of {PROVIDERS}")
        if mode not in MODES:
            raise ValueError(f"unknown judge mode {mode!r}; expected one of {MODES}")
        if prompts is None:
            self.protocol = builtin_protocol(mode)
        else:
            self.protocol = prompts if isinstance(prompts, Protocol) else load_protocol(prompts)
        if detail not in DETAILS:
            raise ValueError(f"unknown image detail {detail!r}; expected one of {DETAILS}")
        if provider == "compatible" and not (base_url or os.environ.get("OPENAI_BASE_URL")):
            raise ValueError(
                "the 'compatible' judge needs --lvlm.base_url (e.g. http://host:8000/v1) or OPENAI_BASE_URL"
            )
        self.model, self.provider, self.detail = model, provider, detail
        self.base_url, self.api_key, self.azure_endpoint, self.api_version = (
            base_url,
            api_key,
            azure_endpoint,
            api_version,
        )
        self.max_side, self.structured, self.temperature, self.seed = max_side, structured, temperature, seed
        self.max_tokens, self.timeout = max_tokens, timeout
        self.retry = retry or RetryPolicy()
        self.price = price if price is not None else (price_for(model) if provider != "compatible" else None)
        if transport not in ("aiohttp", "httpx2"):
            raise ValueError(f"unknown transport {transport!r}; expected aiohttp or httpx2")
        self.transport = transport
        self._client, self._owns_client = client, client is None
        self._rng = random.Random(0)

    @property
    def mode(self) -> str:
        """The protocol's name: ``combined``, ``paper``, or the name of a prompts file."""
        return self.protocol.name

    @mode.setter
    def mode(self, mode: str) -> None:
        if not self.protocol.builtin:
            raise ValueError(f"this judge runs the prompts file {self.protocol.path}; its mode cannot be set to {mode}")
        self.protocol = builtin_protocol(mode)

    def _setting(self, value: Any, default: Any) -> Any:
        return default if value is INHERIT else value

    @property
    def image_max_side(self) -> int | None:
        return self._setting(self.protocol.image.max_side, self.max_side)

    @property
    def image_detail(self) -> str | None:
        return self._setting(self.protocol.image.detail, self.detail)

    @property
    def request_settings(self) -> dict[str, Any]:
        """``temperature`` and ``seed`` of the requests (None: left out of the request body)."""
        defaults = {"temperature": self.temperature, "seed": self.seed}
        return {name: self.protocol.request.get(name, default) for name, default in defaults.items()}

    @property
    def fingerprint(self) -> dict[str, Any]:
        settings = self.request_settings
        fingerprint = {
            "provider": self.provider,
            "model": self.model,
            "prompt_version": self.protocol.version,
            "mode": self.protocol.name,
            "image_size": self.image_max_side,
            "detail": self.image_detail,
            "temperature": settings["temperature"],
            "seed": settings["seed"],
        }
        if not self.protocol.builtin:  # the built-in protocols keep the fingerprint their records were made with
            image = self.protocol.image
            fingerprint["prompts"] = {"file": os.path.basename(self.protocol.path), "format": image.format}
            if image.format == "jpeg":
                fingerprint["prompts"]["quality"] = image.quality
        return fingerprint

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._make_client()
        return self._client

    def _make_client(self) -> Any:
        options: dict[str, Any] = {"max_retries": 0, "timeout": self.timeout}
        if self.transport == "aiohttp":  # several times less client CPU per request than the default HTTPX2 pool
            try:
                options["http_client"] = openai.DefaultAioHttpClient(timeout=self.timeout)
            except RuntimeError:  # the aiohttp extra is not installed
                pass
        try:
            if self.provider == "azure":
                return openai.AsyncAzureOpenAI(
                    azure_endpoint=self.azure_endpoint or os.environ.get("AZURE_OPENAI_ENDPOINT"),
                    api_version=self.api_version or os.environ.get("OPENAI_API_VERSION") or "2024-10-21",
                    api_key=self.api_key or os.environ.get("AZURE_OPENAI_API_KEY"),
                    **options,
                )
            api_key = self.api_key or os.environ.get("OPENAI_API_KEY")
            if self.provider == "compatible":
                api_key = api_key or "EMPTY"  # self-hosted servers usually need no key
            return openai.AsyncOpenAI(api_key=api_key, base_url=self.base_url, **options)
        except openai.OpenAIError as e:  # missing key / endpoint: the SDK message names the env variable
            raise FatalJudgeError(f"cannot create the {self.provider} client: {e}") from e

    async def aclose(self) -> None:
        if self._client is not None and self._owns_client:
            await self._client.close()
            self._client = None  # a later event loop gets a fresh client

    # -- one request --------------------------------------------------------------------------------------
    def _image_urls(self, request: JudgeRequest) -> dict[str, str]:
        image = self.protocol.image
        needed = {name for call in self.protocol.calls for name in call.images}
        images = {"source": request.source, "edited": request.edited}
        return {
            name: encode_data_url(images[name], self.image_max_side, image.format, image.quality)
            for name in sorted(needed)
        }

    def messages(
        self, call: CallSpec, instruction: str, urls: dict[str, str], structured: bool, mitigate: bool = False
    ) -> list[dict[str, Any]]:
        """The chat messages of one call of the protocol."""
        detail = self.image_detail
        parts: list[dict[str, Any]] = []
        for name in call.images:
            image_url = {"url": urls[name]} if detail is None else {"url": urls[name], "detail": detail}
            parts.append({"type": "image_url", "image_url": image_url})
        text = {"type": "text", "text": call.user_text(instruction, structured, mitigate, self.protocol.mitigation)}
        content = [*parts, text] if call.images_first else [text, *parts]
        messages: list[dict[str, Any]] = [] if call.system is None else [{"role": "system", "content": call.system}]
        return [*messages, {"role": "user", "content": content}]

    def batch_body(self, request: JudgeRequest) -> dict[str, Any]:
        """The chat-completions body of ``request`` for a one-call protocol (the Batch API line's ``body``)."""
        if len(self.protocol.calls) != 1:
            raise ValueError("batch mode supports one-call protocols only (the combined judge mode)")
        call = self.protocol.calls[0]
        messages = self.messages(call, request.instruction, self._image_urls(request), call.structured)
        return self._body(messages, call, call.structured)

    def result_from_body(self, key: str, body: dict[str, Any]) -> JudgeResult:
        """A ``JudgeResult`` from a one-call protocol's completion body (used to collect Batch API output)."""
        call = self.protocol.calls[0]
        outcome = interpret_completion(body, self._parser(call), structured=call.structured)
        return self._result(key, outcome.status, outcome.value, outcome.error, outcome.raw, outcome.usage, batch=True)

    def _body(self, messages: list[dict[str, Any]], call: CallSpec, structured: bool) -> dict[str, Any]:
        settings = self.request_settings
        body: dict[str, Any] = {"model": self.model, "messages": messages}
        if settings["temperature"] is not None:
            body["temperature"] = settings["temperature"]
        body["max_tokens"] = call.max_tokens or self.max_tokens
        if settings["seed"] is not None:
            body["seed"] = settings["seed"]
        if structured:
            body["response_format"] = response_format(call.name, call.json_schema())
        return body

    def _parser(self, call: CallSpec) -> Callable[[str], Any]:
        if len(call.answers) == len(PERSPECTIVES):
            return lambda text: Judgement(*(parse_answer(text, call.answers)[p] for p in PERSPECTIVES))
        return lambda text: parse_answer(text, call.answers)

    async def _call(self, call: CallSpec, instruction: str, urls: dict[str, str]) -> CallOutcome:
        """One judgement call; a refusal is retried once with the protocol's mitigation note."""
        outcome = await self._attempts(call, instruction, urls, mitigate=False)
        if outcome.status != "refused" or not self.protocol.mitigation:
            return outcome
        retried = await self._attempts(call, instruction, urls, mitigate=True)
        for name, value in outcome.usage.items():
            retried.usage[name] = retried.usage.get(name, 0) + value
        if retried.status == "refused":
            retried.error = f"{retried.error} (also with the mitigation note)"
        return retried

    async def _attempts(self, call: CallSpec, instruction: str, urls: dict[str, str], mitigate: bool) -> CallOutcome:
        last = "no attempt"
        attempt = 0
        parse = self._parser(call)
        while attempt < self.retry.max_attempts:
            attempt += 1
            structured = self.structured and call.structured
            body = self._body(self.messages(call, instruction, urls, structured, mitigate), call, structured)
            try:
                # a plain POST: the typed create() re-walks every message (base64 images included) in Python
                response = await self.client.post("/chat/completions", cast_to=httpx2.Response, body=body)
                outcome = interpret_completion(json.loads(await response.aread()), parse, structured)
                outcome.usage["attempts"] = attempt
                return outcome
            except openai.BadRequestError as e:
                if structured and _rejects_response_format(e):
                    self.structured = False  # provider cannot constrain decoding: use the lenient path from now on
                    attempt -= 1
                    continue
                return CallOutcome("invalid", error=f"request rejected: {describe(e)}", usage={"attempts": attempt})
            except (openai.APIError, json.JSONDecodeError) as e:
                if isinstance(e, json.JSONDecodeError):
                    return CallOutcome("invalid", error=f"response is not JSON: {e}", usage={"attempts": attempt})
                kind, last = classify(e), describe(e)
                if kind == "fatal":
                    raise FatalJudgeError(f"{self.provider} judge stopped: {last}") from None
                if kind == "fail":
                    return CallOutcome("error", error=last, usage={"attempts": attempt})
                wait = retry_after_seconds(getattr(getattr(e, "response", None), "headers", None))
                if wait is not None and wait > self.retry.max_retry_after:
                    return CallOutcome(
                        "error", error=f"{last}; server asked to wait {wait:.0f}s", usage={"attempts": attempt}
                    )
                if attempt < self.retry.max_attempts:
                    await asyncio.sleep(self.retry.delay(attempt, wait, self._rng))
        return CallOutcome("error", error=f"gave up after {attempt} attempts: {last}", usage={"attempts": attempt})

    async def judge(self, request: JudgeRequest) -> JudgeResult:
        urls = self._image_urls(request)
        calls = self.protocol.calls
        if len(calls) == 1:
            outcome = await self._call(calls[0], request.instruction, urls)
            return self._result(request.key, outcome.status, outcome.value, outcome.error, outcome.raw, outcome.usage)
        outcomes = await asyncio.gather(*(self._call(call, request.instruction, urls) for call in calls))
        usage: dict[str, int] = {}
        for outcome in outcomes:
            for name, value in outcome.usage.items():
                usage[name] = usage.get(name, 0) + value
        failed = sorted((o for o in outcomes if o.status != "ok"), key=lambda o: _STATUS_RANK[o.status])
        if failed:
            first = failed[0]
            return self._result(request.key, first.status, None, first.error, first.raw, usage)
        parts: dict[str, PerspectiveJudgement] = {}
        for outcome in outcomes:
            parts.update(outcome.value)
        judgement = Judgement(*(parts[p] for p in PERSPECTIVES))
        return self._result(request.key, "ok", judgement, None, None, usage)

    def _result(
        self,
        key: str,
        status: str,
        value: Judgement | PerspectiveJudgement | None,
        error: str | None,
        raw: str | None,
        usage: dict[str, int],
        batch: bool = False,
    ) -> JudgeResult:
        return JudgeResult(
            key=key,
            status=status,  # type: ignore[arg-type]
            judgement=value if status == "ok" else None,  # type: ignore[arg-type]
            error=error,
            usage=usage,
            cost_usd=usage_cost(usage, self.price, batch=batch),
            raw=raw,
        )
