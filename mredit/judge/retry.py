"""The judges' retry policy: exponential backoff with full jitter, honouring Retry-After.

The SDK's own retries are turned off (``max_retries=0``) so this policy is the only one and every attempt is
counted. Transient failures (408, 409, 429, 5xx, timeouts, connection errors) are retried; a sample that still
fails ends ``error`` (and is retried on the next run). Insufficient quota and authentication failures stop the
whole run: retrying them only burns time.
"""

from __future__ import annotations

import email.utils
import random
import re
import time
from dataclasses import dataclass
from typing import Any

import openai

RETRYABLE_STATUS = {408, 409, 429}


class FatalJudgeError(RuntimeError):
    """A failure that no retry can fix (bad credentials, no quota, unknown model): stop the run."""


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    base_delay: float = 1.0  # seconds before the first retry (times 2 per attempt, full jitter)
    max_delay: float = 60.0
    max_retry_after: float = 300.0  # a server asking for a longer wait ends the sample as "error"

    def delay(self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        if retry_after is not None:
            return retry_after
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return (rng or random).uniform(0.0, ceiling)


def retry_after_seconds(headers: Any) -> float | None:
    """The server's requested wait from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date)."""
    if headers is None:
        return None
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_tz(value)
        return max(0.0, email.utils.mktime_tz(parsed) - time.time()) if parsed else None


def classify(error: Exception) -> str:
    """``"retry"``, ``"fatal"`` or ``"fail"`` (a per-request failure that a retry will not fix)."""
    if isinstance(error, openai.RateLimitError) and error.code == "insufficient_quota":
        return "fatal"
    if isinstance(error, (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError)):
        return "fatal"
    if isinstance(error, openai.APIStatusError):
        return "retry" if error.status_code in RETRYABLE_STATUS or error.status_code >= 500 else "fail"
    if isinstance(error, openai.APIConnectionError):  # includes APITimeoutError
        return "retry"
    return "fail"


_KEY_LIKE = re.compile(r"\b(sk|key)-[\w*\-]{4,}", re.IGNORECASE)


def describe(error: Exception) -> str:
    """A one-line description without request headers; key-like tokens that providers echo (OpenAI's 401 message
    quotes a masked key) are replaced, so nothing resembling the API key reaches records or logs."""
    if isinstance(error, openai.APIStatusError):
        code = f" ({error.code})" if getattr(error, "code", None) else ""
        body = error.body if isinstance(error.body, dict) else {}
        message = str(body.get("message") or error.message).split("\n")[0][:200]
        return f"HTTP {error.status_code}{code}: {_KEY_LIKE.sub('<key>', message)}"
    if isinstance(error, openai.APITimeoutError):
        return "request timed out"
    if isinstance(error, openai.APIConnectionError):
        return f"connection error: {error.__cause__ or error}"[:200]
    return f"{type(error).__name__}: {error}"[:200]
