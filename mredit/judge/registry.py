"""``build_judge(name, options, mode)``: the judges the CLI and the lab can name.

``openai`` / ``azure`` / ``compatible`` build an ``OpenAIJudge`` for that provider, configured by
``LVLMOptions``. Other judges register a factory with ``register_judge(name, factory)`` when their module is
imported: the synthetic world's oracle registers ``oracle`` in ``mredit.synth.oracle`` (the judge layer does not
import it). A registered judge takes none of the LVLM options: setting one is an error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, Literal

from mredit.judge.base import Judge
from mredit.judge.cost import price_for

LVLM_PROVIDERS = ("openai", "azure", "compatible")
_FACTORIES: dict[str, Callable[..., Judge]] = {}


@dataclass(frozen=True)
class LVLMOptions:
    """How an LVLM judge (``openai``, ``azure``, ``compatible``) is called.

    Args:
        model: Model, Azure deployment or served model name.
        base_url: OpenAI-compatible endpoint, e.g. http://host:8000/v1 (default: $OPENAI_BASE_URL).
        azure_endpoint: Azure OpenAI endpoint (default: $AZURE_OPENAI_ENDPOINT).
        api_version: Azure API version (default: $OPENAI_API_VERSION).
        detail: Image detail sent to the API.
        max_side: Resize images to at most this long side, in pixels.
        structured: Ask for a JSON-schema response (response_format); false parses free-text JSON.
        timeout: Seconds per request.
        max_attempts: Attempts per request on transient errors.
        retry_base: First backoff in seconds (doubles per attempt, jittered).
        transport: HTTP client backend.
        price_in: Override the input price, USD per 1M tokens.
        price_out: Override the output price, USD per 1M tokens.
    """

    model: str = "gpt-4o"
    base_url: str | None = None
    azure_endpoint: str | None = None
    api_version: str | None = None
    detail: Literal["low", "high", "auto"] = "high"
    max_side: int = 512
    structured: bool = True
    timeout: float = 60.0
    max_attempts: int = 6
    retry_base: float = 1.0
    transport: Literal["aiohttp", "httpx2"] = "aiohttp"
    price_in: float | None = None
    price_out: float | None = None

    def changed(self) -> list[str]:
        """The names of the fields set to something other than their default."""
        default = LVLMOptions()
        return [f.name for f in fields(self) if getattr(self, f.name) != getattr(default, f.name)]


def register_judge(name: str, factory: Callable[..., Judge]) -> None:
    """Make ``build_judge(name)`` call ``factory(**kwargs)``; the LVLM provider names are taken."""
    if name in LVLM_PROVIDERS:
        raise ValueError(f"{name!r} is an LVLM provider; register the judge under another name")
    _FACTORIES[name] = factory


def judge_names() -> tuple[str, ...]:
    """The LVLM providers, then the registered judges."""
    return (*LVLM_PROVIDERS, *_FACTORIES)


def build_judge(name: str, options: LVLMOptions | None = None, mode: str = "combined", **kwargs: Any) -> Judge:
    """Build the judge ``name``.

    Args:
        name: An LVLM provider (``openai``, ``azure``, ``compatible``) or a registered judge (``oracle``).
        options: The LVLM options (defaults when None); a registered judge rejects any that is set.
        mode: The prompt protocol of an LVLM judge (``combined`` or ``paper``); registered judges ignore it.
        **kwargs: Passed on to the judge's constructor (e.g. ``api_key``, ``client`` for an LVLM judge).
    """
    options = options or LVLMOptions()
    if name in LVLM_PROVIDERS:
        # openai takes seconds to import: the oracle, which imports this module to register itself, never needs it
        from mredit.judge.openai_judge import OpenAIJudge
        from mredit.judge.retry import RetryPolicy

        price = None
        if options.price_in is not None or options.price_out is not None:
            price = price_for(options.model, options.price_in, options.price_out)
        return OpenAIJudge(
            model=options.model,
            provider=name,
            base_url=options.base_url,
            azure_endpoint=options.azure_endpoint,
            api_version=options.api_version,
            mode=mode,
            detail=options.detail,
            max_side=options.max_side,
            structured=options.structured,
            timeout=options.timeout,
            retry=RetryPolicy(max_attempts=options.max_attempts, base_delay=options.retry_base),
            price=price,
            transport=options.transport,
            **kwargs,
        )
    if name not in _FACTORIES:
        if name == "oracle":
            raise ValueError("the oracle judge is not registered: import mredit.synth.oracle first")
        raise ValueError(f"unknown judge {name!r}; expected one of {', '.join(judge_names())}")
    unused = options.changed()
    if unused:
        raise ValueError(f"the {name} judge takes no {', '.join('--lvlm.' + o for o in unused)}")
    return _FACTORIES[name](**kwargs)
