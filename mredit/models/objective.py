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


def edit_region_balanced_mse(
    prediction: torch.Tensor, objective: torch.Tensor, edit: torch.Tensor, threshold: float = 0.1
) -> torch.Tensor:
    """MSE in which, per sample, the latent positions the edit changes and those it keeps weigh half each.

    ``edit`` is the target minus the source in latent space; a position is changed when any channel moves by more
    than ``threshold``. Under a plain MSE a recolour of a small object is a few percent of the loss of a global
    edit, so small models learn global edits first and local ones late; this gives the edited pixels of every
    sample the same share. A sample that changes everywhere (or nowhere) gets its plain MSE.
    """
    error = (prediction.float() - objective.float()).pow(2).mean(dim=1, keepdim=True)
    changed = (edit.float().abs().amax(dim=1, keepdim=True) > threshold).float()
    dims = (1, 2, 3)
    inside = (error * changed).sum(dims) / changed.sum(dims).clamp(min=1)
    outside = (error * (1 - changed)).sum(dims) / (1 - changed).sum(dims).clamp(min=1)
    fraction = changed.mean(dims)
    partial = (fraction > 0) & (fraction < 1)
    return torch.where(partial, 0.5 * (inside + outside), error.mean(dims)).mean()
