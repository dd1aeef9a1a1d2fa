"""A short, dependency-free DDIM loop for previews during training (validation image grids).

Plain conditional sampling (no classifier-free guidance): the tiny-scale run showed that InstructPix2Pix
guidance ruins the outputs of small models, and a preview should show what the network itself learned. The
full editing pipeline with guidance lives in ``mredit.inference``.
"""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler

from mredit.conditioning.seams import reward_conditioning
from mredit.schema import BEST_SCORES, NO_FAILURE, PERSPECTIVES


@torch.no_grad()
def sample_edits(
    module,
    source: torch.Tensor,
    instructions: list[str],
    scores: tuple[float, float, float] = BEST_SCORES,
    num_inference_steps: int = 10,
    seed: int = 0,
) -> torch.Tensor:
    """Edited images ``[B, 3, H, W]`` in [-1, 1] from sources in [-1, 1], at the given rewards (no failure text).

    ``module``: an editing LightningModule (``unet``, ``vae``, ``noise_scheduler``, ``encode_instructions``,
    and the ``RewardConditionedMixin``).
    """
    device, batch = module.device, source.shape[0]
    source_latents = module.vae.encode(source.to(device, module.vae.dtype)).latent_dist.mode().float()
    text = module.encode_instructions(instructions).to(module.unet.dtype)
    condition = module.compute_reward_condition(
        torch.tensor([scores] * batch, dtype=torch.float32, device=device), [[NO_FAILURE] * len(PERSPECTIVES)] * batch
    )
    scheduler = DDIMScheduler.from_config(module.noise_scheduler.config, clip_sample=False, set_alpha_to_one=True)
    scheduler.set_timesteps(num_inference_steps, device=device)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    latents = torch.randn(source_latents.shape, generator=generator).to(device) * scheduler.init_noise_sigma
    with reward_conditioning(module.unet, condition):
        for t in scheduler.timesteps:
            model_input = torch.cat([scheduler.scale_model_input(latents, t), source_latents], dim=1)
            timestep = t.expand(batch).to(device)
            prediction = module.unet(model_input.to(module.unet.dtype), timestep, encoder_hidden_states=text).sample
            latents = scheduler.step(prediction.float(), t, latents).prev_sample
    if getattr(module, "hparams", {}).get("edit_residual", False):
        latents = latents + source_latents * module.vae.config.scaling_factor
    decoded = module.vae.decode((latents / module.vae.config.scaling_factor).to(module.vae.dtype)).sample
    return decoded.float().clamp(-1, 1)
