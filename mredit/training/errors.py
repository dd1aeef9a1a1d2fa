"""One-line error messages for the command lines (LightningCLI and the tool commands), without importing either."""

from __future__ import annotations

USER_ERRORS = (ValueError, FileNotFoundError, RuntimeError)
_NOISE = ("Subtypes:", "Given value type:", "Expected a <class 'NoneType'>", "Errors:")


def condense_parse_error(message: str) -> str:
    """jsonargparse's multi-line report of a union mismatch, as one line that keeps the key and the cause."""
    lines = [line.strip(" -") for line in message.splitlines()]
    return " ".join(line for line in lines if line and not line.startswith(_NOISE))


def root_message(error: BaseException) -> str:
    """The innermost user-facing message (jsonargparse wraps errors raised while instantiating classes)."""
    while isinstance(error.__cause__, USER_ERRORS):
        error = error.__cause__
    return " ".join(str(error).split())
