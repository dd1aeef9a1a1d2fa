"""SmartEdit sampling: [IMG] hidden states -> Q-Former -> BIM -> the shared ``RewardEditPipeline`` loop.

The LLM is teacher-forced through the answer and the r [IMG] tokens exactly as in training (SmartEdit samples the
answer at temperature 0.7 and keeps the hidden states of whatever [IMG] tokens come out; forcing them is
deterministic, cheaper, and never produces a wrong count or order). The Q-Former/BIM output is the pipeline's
``prompt_embeds`` and the null text its ``negative_prompt_embeds``, so guidance is SmartEdit's and
InstructPix2Pix's: branches (f_final, src), (null, src), (null, 0), ε = ε_u + s_T (ε_text − ε_img) + s_I (ε_img −
ε_u). BIM's v_sp (``conv_in_residual``) and the reward condition (by default the best rewards, (5, 5, 5) with no
failure text) are applied in every branch.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from PIL import Image

from mredit.pipelines.reward_edit import AUTO_SCHEDULER, RewardEditPipeline
from mredit.pipelines.sizing import choose_resolution, fit_image, size_multiple, to_rgb

log = logging.getLogger(__name__)


@torch.no_grad()
def edit_tensors(
    module,
    source: torch.Tensor,
    instructions: list[str],
    scores: Any = None,
    feedback: list[str] | list[list[str]] | None = None,
    num_inference_steps: int | None = None,
    text_guidance_scale: float | None = None,
    image_guidance_scale: float | None = None,
    seed: int = 0,
    scheduler: str = AUTO_SCHEDULER,
    progress: bool = False,
) -> torch.Tensor:
    """Edit ``source`` ``[B, 3, H, W]`` in [-1, 1]; returns ``[B, 3, H, W]`` in [-1, 1].

    ``num_inference_steps``/``text_guidance_scale``/``image_guidance_scale`` default to the module's
    hyperparameters (SmartEdit: 100, 7.5, 1.5). ``scores``/``feedback``: one triple for the batch or one per image;
    default the best rewards. ``progress``: a progress bar over the denoising steps (stderr).
    """
    hp = module.hparams
    if module.stage == "align":
        raise ValueError("a stage-1 (align) SmartEdit model has not learned to edit: train stage mllmsd/smartedit")
    if len(instructions) != source.shape[0]:
        raise ValueError(f"{source.shape[0]} images for {len(instructions)} instructions")
    pipe = RewardEditPipeline.from_module(module, scheduler=scheduler)
    if progress:
        pipe.set_progress_bar_config(disable=False, desc="denoising", unit="step")
    source = source.to(module.device, module.vae.dtype)
    latent_size = (source.shape[-2] // pipe.vae_scale_factor, source.shape[-1] // pipe.vae_scale_factor)
    text, spatial, _, _ = module.condition(source, list(instructions), latent_size, False)
    edited = pipe(
        source,
        prompt_embeds=text,
        negative_prompt_embeds=module.null_text,
        conv_in_residual=spatial,
        scores=scores,
        feedback=feedback,
        num_inference_steps=num_inference_steps or hp.num_inference_steps,
        text_guidance_scale=hp.text_guidance_scale if text_guidance_scale is None else text_guidance_scale,
        image_guidance_scale=hp.image_guidance_scale if image_guidance_scale is None else image_guidance_scale,
        generator=torch.Generator("cpu").manual_seed(seed),
        output_type="pt",
    )
    return edited * 2 - 1


def edit_images(
    module, images: list[Image.Image], instructions: list[str], resolution: int | None = None, **options: Any
) -> list[Image.Image]:
    """PIL in, PIL out: images are fitted to ``resolution`` (long side, snapped to the model's size multiple;
    default: the resolution the module was trained at, else ``FALLBACK_RESOLUTION`` with a note), edited with
    ``edit_tensors(**options)``; images of different sizes are edited one at a time."""
    if len(images) != len(instructions):
        raise ValueError(f"{len(images)} images for {len(instructions)} instructions")
    choice = choose_resolution(resolution, getattr(module, "trained_resolution", None), "this model", "resolution")
    for message in (choice.note, choice.warning):
        if message is not None:
            log.warning(message)
    vae_factor = 2 ** (len(module.vae.config.block_out_channels) - 1)
    multiple = size_multiple(vae_factor, len(module.unet.config.down_block_types))
    fitted = [fit_image(to_rgb(image), choice.resolution, multiple) for image in images]
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
