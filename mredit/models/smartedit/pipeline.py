"""SmartEdit sampling: [IMG] hidden states -> Q-Former -> BIM -> InstructPix2Pix UNet with 3-way guidance.

The LLM is teacher-forced through the answer and the r [IMG] tokens exactly as in training (SmartEdit samples the
answer at temperature 0.7 and keeps the hidden states of whatever [IMG] tokens come out; forcing them is
deterministic, cheaper, and never produces a wrong count or order). Guidance follows SmartEdit/InstructPix2Pix:
branches (f_final, src), (null, src), (null, 0), ε = ε_u + s_T (ε_text − ε_img) + s_I (ε_img − ε_u); BIM's v_sp and
the reward condition (by default the best rewards, (5, 5, 5) with no failure text) are applied in all three branches.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from diffusers import EulerAncestralDiscreteScheduler
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

from mredit.inference.pipeline import AUTO_SCHEDULER, BEST_SCORES, NO_FAILURE, build_scheduler
from mredit.inference.sizing import fit_image, size_multiple, to_rgb


def _rewards(
    scores: Any, feedback: list[str] | list[list[str]] | None, batch: int
) -> tuple[torch.Tensor, list[list[str]]]:
    score_tensor = torch.as_tensor(BEST_SCORES if scores is None else scores, dtype=torch.float32).reshape(-1, 3)
    if score_tensor.shape[0] == 1:
        score_tensor = score_tensor.expand(batch, 3)
    if score_tensor.shape[0] != batch:
        raise ValueError(f"scores must be one triple or one per image ({batch}), got {score_tensor.shape[0]}")
    texts = [list(NO_FAILURE)] if feedback is None else feedback
    texts = [list(texts)] if isinstance(texts[0], str) else [list(t) for t in texts]
    texts = texts * batch if len(texts) == 1 else texts
    if len(texts) != batch or any(len(t) != 3 for t in texts):
        raise ValueError(f"feedback must be one triple of texts or one triple per image ({batch})")
    return score_tensor, texts


@torch.no_grad()
def edit_tensors(
    module,
    source: torch.Tensor,
    instructions: list[str],
    scores: Any = None,
    feedback: list[str] | list[list[str]] | None = None,
    steps: int | None = None,
    text_guidance: float | None = None,
    image_guidance: float | None = None,
    seed: int = 0,
    scheduler: str = AUTO_SCHEDULER,
) -> torch.Tensor:
    """Edit ``source`` ``[B, 3, H, W]`` in [-1, 1]; returns ``[B, 3, H, W]`` in [-1, 1].

    ``steps``/``text_guidance``/``image_guidance`` default to the module's hyperparameters (SmartEdit: 100, 7.5,
    1.5). ``scores``/``feedback``: one triple for the batch or one per image; default the best rewards.
    """
    hp = module.hparams
    steps = steps or hp.inference_steps
    s_text = hp.text_guidance if text_guidance is None else text_guidance
    s_image = hp.image_guidance if image_guidance is None else image_guidance
    if module.stage == "align":
        raise ValueError("a stage-1 (align) SmartEdit model has not learned to edit: train stage mllmsd/smartedit")
    if len(instructions) != source.shape[0]:
        raise ValueError(f"{source.shape[0]} images for {len(instructions)} instructions")
    batch, device, vae = source.shape[0], module.device, module.vae
    source = source.to(device, vae.dtype)
    image_latents = vae.encode(source).latent_dist.mode()
    text, spatial, _ = module.condition(source, instructions, tuple(image_latents.shape[-2:]), False)
    null = module.null_text.to(text.dtype).expand_as(text)
    text_states = torch.cat([text, null, null])
    image_states = torch.cat([image_latents, image_latents, torch.zeros_like(image_latents)])
    spatial = None if spatial is None else spatial.repeat(3, 1, 1, 1)
    reward = None
    if module.reward_conditioner is not None:
        score_tensor, texts = _rewards(scores, feedback, batch)
        reward = module.compute_reward_condition(score_tensor.repeat(3, 1), texts * 3)

    sampler = build_scheduler(scheduler, module.noise_scheduler.config)
    sampler.set_timesteps(steps, device=device)
    generator = torch.Generator("cpu").manual_seed(seed)
    shape = (batch, vae.config.latent_channels, *image_latents.shape[-2:])
    latents = randn_tensor(shape, generator=generator, device=device, dtype=text.dtype) * sampler.init_noise_sigma
    step_kwargs = {"generator": generator} if isinstance(sampler, EulerAncestralDiscreteScheduler) else {}
    for t in sampler.timesteps:
        model_input = sampler.scale_model_input(torch.cat([latents] * 3), t)
        model_input = torch.cat([model_input, image_states.to(model_input.dtype)], dim=1)
        timesteps = t.expand(model_input.shape[0]).to(device)
        eps_text, eps_image, eps_uncond = module.unet_forward(
            model_input, timesteps, text_states, spatial, reward
        ).chunk(3)
        eps = eps_uncond + s_text * (eps_text - eps_image) + s_image * (eps_image - eps_uncond)
        latents = sampler.step(eps, t, latents, **step_kwargs, return_dict=False)[0]
    if module.hparams.get("edit_residual", False):  # the UNet denoised the edit: add the source back
        latents = latents + image_latents * vae.config.scaling_factor
    return vae.decode(latents / vae.config.scaling_factor, return_dict=False)[0].clamp(-1, 1)


def edit_images(
    module, images: list[Image.Image], instructions: list[str], resolution: int = 256, **options: Any
) -> list[Image.Image]:
    """PIL in, PIL out: images are fitted to ``resolution`` (long side, snapped to the model's size multiple),
    edited with ``edit_tensors(**options)``; images of different sizes are edited one at a time."""
    if len(images) != len(instructions):
        raise ValueError(f"{len(images)} images for {len(instructions)} instructions")
    vae_factor = 2 ** (len(module.vae.config.block_out_channels) - 1)
    multiple = size_multiple(vae_factor, len(module.unet.config.down_block_types))
    fitted = [fit_image(to_rgb(image), resolution, multiple) for image in images]
    scores, feedback = options.pop("scores", None), options.pop("feedback", None)
    per_image = scores is not None and torch.as_tensor(scores).numel() > 3
    results = []
    for index, (image, instruction) in enumerate(zip(fitted, instructions)):
        pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None]
        own_feedback = feedback[index] if feedback is not None and not isinstance(feedback[0], str) else feedback
        own_scores = torch.as_tensor(scores)[index] if per_image else scores
        results.append(to_pil(edit_tensors(module, pixels, [instruction], own_scores, own_feedback, **options)[0]))
    return results


def to_pil(image: torch.Tensor) -> Image.Image:
    """``[3, H, W]`` in [-1, 1] -> 8-bit RGB."""
    array = ((image.detach().float().cpu().permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255)
    return Image.fromarray(array.astype(np.uint8))
