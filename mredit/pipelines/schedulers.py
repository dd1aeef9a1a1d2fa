"""Inference schedulers of an editing model, built from its training scheduler's config.

"auto" picks Euler ancestral (the paper's sampler) unless the model predicts x0, which Euler ancestral cannot
sample; DDIM then.
"""

from __future__ import annotations

from typing import Any

from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler

SCHEDULERS: dict[str, tuple[type, dict[str, Any]]] = {
    "euler_a": (EulerAncestralDiscreteScheduler, {}),
    "ddim": (DDIMScheduler, {}),
    "dpmpp": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++"}),
}
AUTO_SCHEDULER = "auto"
SCHEDULER_CHOICES = (AUTO_SCHEDULER, *SCHEDULERS)


def resolve_scheduler_name(name: str, base_config: dict) -> str:
    """``name``, or for ``"auto"`` the scheduler that fits the model's prediction type."""
    if name == AUTO_SCHEDULER:
        return "ddim" if base_config.get("prediction_type") == "sample" else "euler_a"
    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}: choose one of {', '.join(SCHEDULER_CHOICES)}")
    return name


def build_scheduler(name: str, base_config: dict):
    """An inference scheduler of kind ``name`` (or ``"auto"``) sharing the training scheduler's betas and
    prediction type."""
    name = resolve_scheduler_name(name, base_config)
    cls, overrides = SCHEDULERS[name]
    if base_config.get("prediction_type") == "sample" and cls is EulerAncestralDiscreteScheduler:
        raise ValueError(
            f"the model predicts x0 (prediction_type 'sample'), which {name} cannot sample: use ddim or dpmpp"
        )
    # an in-memory config lists the fields its scheduler left at default; dropping that list makes a live
    # training scheduler and its saved scheduler_config.json give the same inference scheduler
    config = {k: v for k, v in dict(base_config).items() if k != "_use_default_values"}
    return cls.from_config(config, **overrides)
