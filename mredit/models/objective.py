"""The regression target of the diffusion loss, for each ``prediction_type`` a diffusers scheduler supports."""

from __future__ import annotations

import torch
from diffusers import DDPMScheduler

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


def diffusion_objective(
    scheduler: DDPMScheduler, clean: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
) -> torch.Tensor:
    """What the UNet should output for ``add_noise(clean, noise, timesteps)``.

    ``sample`` (x0) prediction lets tiny models learn to copy the source much sooner than ``v_prediction``, whose
    outputs stay noisy for thousands of steps at CPU scale; SD 1.5 checkpoints use ``epsilon``.
    """
    prediction_type = scheduler.config.prediction_type
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        return scheduler.get_velocity(clean, noise, timesteps)
    if prediction_type == "sample":
        return clean
    raise ValueError(f"unsupported prediction_type {prediction_type!r}: use one of {', '.join(PREDICTION_TYPES)}")
