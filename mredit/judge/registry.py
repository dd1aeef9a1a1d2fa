"""``build_judge(name, **options)``: the judges the CLI and the demo can name.

``openai`` / ``azure`` / ``compatible`` build an ``OpenAIJudge`` for that provider; ``oracle`` builds the
synthetic world's ``mredit.synth.oracle.OracleJudge`` (imported lazily: it reads the scene from
``request.meta`` and needs no network). Options the chosen judge does not use must be None.
"""

from __future__ import annotations

import importlib
from typing import Any

from mredit.judge.base import Judge

JUDGE_NAMES = ("openai", "azure", "compatible", "oracle")
LVLM_ONLY_OPTIONS = ("model", "base_url", "api_key", "azure_endpoint", "api_version", "detail", "max_side", "transport")


def build_judge(name: str, **options: Any) -> Judge:
    """Build a judge; ``None``-valued options are left to the judge's defaults."""
    options = {k: v for k, v in options.items() if v is not None}
    if name == "oracle":
        try:
            module = importlib.import_module("mredit.synth.oracle")
        except ModuleNotFoundError as e:
            raise RuntimeError(
                "the oracle judge needs mredit.synth (the synthetic world), which is not installed"
            ) from e
        unused = sorted(set(options) & set(LVLM_ONLY_OPTIONS))
        if unused:
            raise ValueError(f"the oracle judge takes no {', '.join('--' + o.replace('_', '-') for o in unused)}")
        options.pop("retry", None)
        options.pop("timeout", None)
        options.pop("structured", None)
        return module.OracleJudge(**options)
    if name not in JUDGE_NAMES:
        raise ValueError(f"unknown judge {name!r}; expected one of {', '.join(JUDGE_NAMES)}")
    from mredit.judge.openai_judge import OpenAIJudge

    return OpenAIJudge(provider=name, **options)
