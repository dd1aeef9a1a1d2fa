"""The judge interface shared by the LVLM judges (OpenAI, Azure, any OpenAI-compatible server) and the
synthetic world's oracle, so that ``mredit judge annotate`` and ``mredit judge eval`` accept any of them.

A judge scores one (source image, instruction, edited image) request on the three perspectives of
``mredit.schema.PERSPECTIVES``. It never fabricates a score: a failure is a ``JudgeResult`` whose status
says what went wrong and whose ``judgement`` is None.
"""

from __future__ import annotations

import abc
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from PIL import Image

from mredit.schema import NO_FAILURE, PERSPECTIVES, PerspectiveReward, Reward

Status = Literal["ok", "refused", "invalid", "error"]
TERMINAL_STATUSES: tuple[str, ...] = ("ok", "refused", "invalid", "error")


@dataclass(frozen=True)
class PerspectiveJudgement:
    score: float  # 0..5
    verdict: bool  # the yes/no answer: did the edit succeed on this perspective
    feedback: str = NO_FAILURE  # failure points, or "None"


@dataclass(frozen=True)
class Judgement:
    following: PerspectiveJudgement
    preserving: PerspectiveJudgement
    quality: PerspectiveJudgement

    def __getitem__(self, perspective: str) -> PerspectiveJudgement:
        if perspective not in PERSPECTIVES:
            raise KeyError(perspective)
        return getattr(self, perspective)

    def to_reward(self, judge: dict[str, Any] | None = None) -> Reward:
        return Reward(
            *(PerspectiveReward(float(self[p].score), self[p].feedback) for p in PERSPECTIVES), judge=dict(judge or {})
        )

    def to_dict(self) -> dict[str, Any]:
        return {p: asdict(self[p]) for p in PERSPECTIVES}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Judgement:
        return cls(*(PerspectiveJudgement(**data[p]) for p in PERSPECTIVES))


@dataclass
class JudgeRequest:
    key: str
    source: Image.Image
    instruction: str
    edited: Image.Image
    meta: dict[str, Any] = field(default_factory=dict)  # the synthetic oracle reads its scene from here


@dataclass
class JudgeResult:
    key: str
    status: Status
    judgement: Judgement | None = None  # set only when status == "ok"
    error: str | None = None  # why, when status != "ok"
    usage: dict[str, int] = field(default_factory=dict)  # prompt_tokens, completion_tokens, ...
    cost_usd: float = 0.0
    raw: str | None = None  # the model's raw answer, kept for audit when it could not be parsed

    def __post_init__(self) -> None:
        if self.status not in TERMINAL_STATUSES:
            raise ValueError(f"unknown judge status {self.status!r}")
        if (self.status == "ok") != (self.judgement is not None):
            raise ValueError("a judgement is present exactly when status is 'ok'")


class Judge(abc.ABC):
    """Score editing requests. Implementations are safe to call concurrently from one event loop."""

    @property
    @abc.abstractmethod
    def fingerprint(self) -> dict[str, Any]:
        """Provenance that identifies the scoring: provider, model, prompt version, image size, ..."""

    @abc.abstractmethod
    async def judge(self, request: JudgeRequest) -> JudgeResult:
        """Score one request; return a terminal ``JudgeResult`` (never raise for a per-request failure)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release network clients."""
