"""Token and cost estimates for judge runs: a dated, overridable price table and OpenAI's image-token formula.

Prices change; the table says when it was written, and ``--lvlm.price_in`` / ``--lvlm.price_out`` (USD per 1M tokens)
override it. Models not in the table (a self-hosted vLLM model) cost 0 here: their cost is GPU time.
The estimate is a planning figure: calibrate it with the ``usage`` that real records carry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from mredit.judge.images import sent_size
from mredit.judge.protocol import builtin_protocol

PRICES_AS_OF = "2026-08-12"  # USD per 1M tokens, OpenAI list prices (standard tier) on that date
BATCH_DISCOUNT = 0.5  # the Batch API bills half the sync price
# expected completion tokens per call (three short failure texts + JSON; one verdict + score in paper mode)
OUTPUT_TOKENS = {"combined": 150, "paper": 60}
# tokens of a call's fixed user text and message framing, besides the system text, instruction and images
OVERHEAD_TOKENS = {"combined": 40, "paper": 60}


@dataclass(frozen=True)
class Price:
    input_per_m: float
    cached_input_per_m: float
    output_per_m: float
    image_scheme: str = "tile_4o"  # tile_4o | tile_4o_mini


PRICES: dict[str, Price] = {
    "gpt-4o": Price(2.50, 1.25, 10.00),
    "gpt-4o-2024-11-20": Price(2.50, 1.25, 10.00),
    "gpt-4o-2024-08-06": Price(2.50, 1.25, 10.00),
    "gpt-4o-2024-05-13": Price(5.00, 5.00, 15.00),
    "gpt-4.1": Price(2.00, 0.50, 8.00),
    "gpt-4o-mini": Price(0.15, 0.075, 0.60, image_scheme="tile_4o_mini"),
}
# (base tokens, tokens per 512 px tile) at detail "high"; "low" costs the base alone
IMAGE_TOKEN_SCHEMES: dict[str, tuple[int, int]] = {"tile_4o": (85, 170), "tile_4o_mini": (2833, 5667)}


def price_for(model: str, input_per_m: float | None = None, output_per_m: float | None = None) -> Price | None:
    """The table price of ``model`` (or of its dated snapshot family), with optional overrides."""
    price = PRICES.get(model)
    if price is None:
        family = max((name for name in PRICES if model.startswith(name)), key=len, default=None)
        price = PRICES.get(family) if family else None
    if price is None and input_per_m is None and output_per_m is None:
        return None
    price = price or Price(0.0, 0.0, 0.0)
    if input_per_m is not None:
        price = replace(price, input_per_m=input_per_m, cached_input_per_m=input_per_m)
    if output_per_m is not None:
        price = replace(price, output_per_m=output_per_m)
    return price


def image_tokens(width: int, height: int, detail: str, scheme: str = "tile_4o") -> int:
    """OpenAI's tile formula: fit in 2048x2048, scale the short side down to 768, count 512 px tiles."""
    base, per_tile = IMAGE_TOKEN_SCHEMES[scheme]
    if detail == "low":
        return base
    scale = min(1.0, 2048 / max(width, height))
    width, height = width * scale, height * scale
    scale = min(1.0, 768 / min(width, height))
    width, height = width * scale, height * scale
    return base + per_tile * math.ceil(width / 512) * math.ceil(height / 512)


def usage_cost(usage: dict[str, Any], price: Price | None, batch: bool = False) -> float:
    """USD for one response's ``usage`` (prompt_tokens, cached_tokens, completion_tokens)."""
    if price is None:
        return 0.0
    cached = int(usage.get("cached_tokens", 0) or 0)
    uncached = int(usage.get("prompt_tokens", 0) or 0) - cached
    dollars = (uncached * price.input_per_m + cached * price.cached_input_per_m) / 1e6 + int(
        usage.get("completion_tokens", 0) or 0
    ) * price.output_per_m / 1e6
    return dollars * (BATCH_DISCOUNT if batch else 1.0)


def text_tokens(text: str) -> int:
    return math.ceil(len(text) / 4)  # ~4 characters per token for English with o200k_base


def estimate(
    image_sizes: list[tuple[tuple[int, int], tuple[int, int]]],
    instructions: list[str],
    model: str,
    detail: str,
    max_side: int,
    mode: str = "combined",
    price: Price | None = None,
) -> dict[str, Any]:
    """Estimated tokens and USD (sync and batch) for judging triplets of the given (source, edited) sizes."""
    if len(image_sizes) != len(instructions):
        raise ValueError("image_sizes and instructions must have the same length")
    price = price if price is not None else price_for(model)
    scheme = price.image_scheme if price else "tile_4o"
    prompt = completion = 0
    for (src, edited), instruction in zip(image_sizes, instructions):
        src_tokens = image_tokens(*sent_size(src, max_side), detail, scheme)
        edit_tokens = image_tokens(*sent_size(edited, max_side), detail, scheme)
        for call in builtin_protocol(mode).calls:
            images = sum(src_tokens if name == "source" else edit_tokens for name in call.images)
            prompt += text_tokens(call.system or "") + text_tokens(instruction) + OVERHEAD_TOKENS[mode] + images
            completion += OUTPUT_TOKENS[mode]
    usage = {"prompt_tokens": prompt, "completion_tokens": completion}
    n = len(instructions)
    return {
        "samples": n,
        "model": model,
        "detail": detail,
        "max_side": max_side,
        "mode": mode,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "schema_tokens": text_tokens(str(builtin_protocol("combined").calls[0].json_schema())),
        "usd_sync": usage_cost(usage, price),
        "usd_batch": usage_cost(usage, price, batch=True),
        "usd_per_sample_sync": usage_cost(usage, price) / n if n else 0.0,
        "priced": price is not None,
        "prices_as_of": PRICES_AS_OF,
    }
