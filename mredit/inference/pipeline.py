"""``RewardEditPipeline``: InstructPix2Pix sampling with the multi-reward condition applied in every branch.

It follows diffusers' ``StableDiffusionInstructPix2PixPipeline`` step for step (same prompt encoding, image
processing, noise draw, scheduler calls and 3-way guidance), so with no conditioner it gives the stock pipeline's
image for the same seed, and composes the stock pieces instead of forking them. What it adds:

- the reward condition (scores + embedded failure feedback) is computed for the whole branch batch and applied
  through ``mredit.conditioning.seams.reward_conditioning``, so it is tiled correctly for any batch size,
  ``num_images_per_prompt`` and guidance setting (the official pipeline needs the caller to pre-tile it);
- optional reward guidance for conditioners with a learned null condition (see ``__call__``);
- images are repeated per prompt consistently with the prompts (sample ``i * n + j`` is image ``i``).
"""

from __future__ import annotations

import importlib
import inspect
import json
import warnings
from pathlib import Path

import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler
from diffusers.image_processor import VaeImageProcessor
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

from mredit import schema
from mredit.conditioning.base import FeedbackEmbedding, RewardConditioner
from mredit.conditioning.feedback import FEEDBACK_SEPARATOR, encode_feedback
from mredit.conditioning.seams import reward_conditioning
from mredit.inference.sizing import size_multiple

SCHEDULERS = {
    "euler_a": (EulerAncestralDiscreteScheduler, {}),
    "ddim": (DDIMScheduler, {}),
    "dpmpp": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++"}),
}
# "auto": Euler ancestral (the paper's sampler) unless the model predicts x0, which it cannot sample; DDIM then
AUTO_SCHEDULER = "auto"
SCHEDULER_CHOICES = (AUTO_SCHEDULER, *SCHEDULERS)
BEST_SCORES = schema.BEST_SCORES
# the training data's no-failure text per perspective ("None"); joined with "; " it is the official eval's
# "None; None; None"
NO_FAILURE = (schema.NO_FAILURE,) * len(schema.PERSPECTIVES)


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


def warn_if_truncated(tokenizer, texts: list[str], what: str) -> None:
    """The text encoder reads ``model_max_length`` tokens; say so instead of truncating silently."""
    limit = tokenizer.model_max_length
    for index, ids in enumerate(tokenizer(texts, truncation=False).input_ids):
        if len(ids) > limit:
            warnings.warn(
                f"{what} {index} has {len(ids)} tokens; the text encoder reads only the first {limit}: "
                f"{texts[index][:60]!r}...",
                stacklevel=3,
            )


class RewardEditPipeline:
    """Edit images by instruction, conditioned on rewards (default: the best scores and no failure text)."""

    def __init__(
        self,
        unet,
        vae,
        text_encoder,
        tokenizer,
        scheduler,
        conditioner: RewardConditioner | None = None,
        edit_residual: bool = False,
    ):
        """``edit_residual``: the UNet denoises the edit (target minus source latents), as trained with
        ``InstructPix2PixModule(edit_residual=True)``; the source latents are added back before decoding."""
        self.unet, self.vae, self.text_encoder, self.tokenizer = unet, vae, text_encoder, tokenizer
        self.scheduler, self.conditioner, self.edit_residual = scheduler, conditioner, edit_residual
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor)

    # --- construction -------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls, path: str | Path, scheduler: str = AUTO_SCHEDULER, torch_dtype: torch.dtype | None = None
    ) -> RewardEditPipeline:
        """Load an export folder (``mredit export`` / ``mredit import official``)."""
        from diffusers import UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        from mredit.models.components import VAE_CLASSES

        path = Path(path)
        if not (path / "unet").is_dir():
            raise FileNotFoundError(f"{path} is not an export folder (no unet/)")
        vae_class_name = json.loads((path / "vae" / "config.json").read_text()).get("_class_name", "AutoencoderKL")
        if vae_class_name not in VAE_CLASSES:
            raise ValueError(f"{path}/vae: unsupported VAE class {vae_class_name!r}")
        dtype = {"torch_dtype": torch_dtype} if torch_dtype is not None else {}
        conditioner = None
        if (path / "conditioner").is_dir():
            from mredit.export.export import component_library

            class_name = json.loads((path / "conditioner" / "config.json").read_text())["_class_name"]
            conditioner_class = getattr(importlib.import_module(component_library(class_name)), class_name)
            conditioner = conditioner_class.from_pretrained(path / "conditioner", **dtype).eval()
        base_config = json.loads((path / "scheduler" / "scheduler_config.json").read_text())
        index_path = path / "model_index.json"
        index = json.loads(index_path.read_text()) if index_path.is_file() else {}
        return cls(
            unet=UNet2DConditionModel.from_pretrained(path / "unet", **dtype).eval(),
            vae=VAE_CLASSES[vae_class_name].from_pretrained(path / "vae", **dtype).eval(),
            text_encoder=CLIPTextModel.from_pretrained(path / "text_encoder", **dtype).eval(),
            tokenizer=CLIPTokenizer.from_pretrained(path / "tokenizer"),
            scheduler=build_scheduler(scheduler, base_config),
            conditioner=conditioner,
            edit_residual=bool(index.get("edit_residual", False)),
        )

    @classmethod
    def from_module(cls, module, scheduler: str = AUTO_SCHEDULER) -> RewardEditPipeline:
        """Share the components of a training module (the weights it holds now: wrap in ``ema_weights()``)."""
        return cls(
            unet=module.unet,
            vae=module.vae,
            text_encoder=module.text_encoder,
            tokenizer=module.tokenizer,
            scheduler=build_scheduler(scheduler, dict(module.noise_scheduler.config)),
            conditioner=getattr(module, "reward_conditioner", None),
            edit_residual=bool(getattr(module, "hparams", {}).get("edit_residual", False)),
        )

    def set_scheduler(self, name: str) -> None:
        self.scheduler = build_scheduler(name, dict(self.scheduler.config))

    @property
    def device(self) -> torch.device:
        return self.unet.device

    @property
    def size_multiple(self) -> int:
        """Input sides must be multiples of this (64 for SD1.5; see ``mredit.inference.sizing``)."""
        return size_multiple(self.vae_scale_factor, len(self.unet.config.down_block_types))

    # --- encoders -----------------------------------------------------------------------------------------------
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """Last hidden states of the text encoder on ``texts`` padded/truncated to ``model_max_length``."""
        ids = self.tokenizer(
            texts,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        return self.text_encoder(ids.to(self.device))[0]

    def _reward_feedback(self, feedback: list[list[str]]) -> FeedbackEmbedding:
        fmt = self.conditioner.feedback_format
        if fmt == "pooled":
            warn_if_truncated(self.tokenizer, [FEEDBACK_SEPARATOR.join(f) for f in feedback], "feedback")
        return encode_feedback(feedback, self.tokenizer, self.text_encoder, formats=(fmt,))

    def _prepare_image(self, images) -> torch.Tensor:
        if isinstance(images, torch.Tensor):
            return images if images.dim() == 4 else images[None]
        images = [images] if isinstance(images, Image.Image) else list(images)
        sizes = {image.size for image in images}
        if len(sizes) != 1:
            raise ValueError(f"images in one batch must share a size, got {sorted(sizes)}")
        width, height = sizes.pop()
        multiple = self.size_multiple
        if width % multiple or height % multiple:
            raise ValueError(
                f"image size {width}x{height} is not a multiple of {multiple}: resize it first "
                "(mredit.inference.sizing.fit_image)"
            )
        return self.image_processor.preprocess(images)

    # --- sampling -----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(
        self,
        image: Image.Image | list[Image.Image] | torch.Tensor,
        instruction: str | list[str],
        scores: tuple[float, float, float] | list[tuple[float, float, float]] | torch.Tensor | None = None,
        feedback: list[str] | list[list[str]] | None = None,
        num_inference_steps: int = 30,
        text_guidance_scale: float = 7.5,
        image_guidance_scale: float = 1.5,
        reward_guidance_scale: float = 1.0,
        num_images_per_prompt: int = 1,
        generator: torch.Generator | None = None,
        eta: float = 0.0,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
    ) -> list[Image.Image] | torch.Tensor:
        """Edit ``image`` (PIL, list of PIL, or ``[B, 3, H, W]`` in [-1, 1]) following ``instruction``.

        ``scores``/``feedback``: one triple for the batch or one per image; default (5, 5, 5) and "None" per
        perspective. Guidance (InstructPix2Pix; R = the reward condition, ∅R = the conditioner's null condition):
        ε = ε(∅, ∅, R) + s_T [ε(T, I, R) − ε(∅, I, R)] + s_I [ε(∅, I, R) − ε(∅, ∅, R)]
            + (s_R − 1) [ε(T, I, R) − ε(T, I, ∅R)],
        i.e. with ``reward_guidance_scale`` s_R ≠ 1 the full-condition term is extrapolated away from the
        reward-null branch, ε(T, I, ∅R) + s_R [ε(T, I, R) − ε(T, I, ∅R)], on top of IP2P guidance. Guidance is
        on when s_T > 1 and s_I >= 1 (as in diffusers); otherwise only ε(T, I, R) (and its ∅R branch) is used.
        ``latents``: optional initial noise ``[B * n, C, h, w]`` (else drawn from ``generator``).
        ``output_type``: "pil", "pt" (``[N, 3, H, W]`` in [0, 1]) or "latent".
        """
        pixels = self._prepare_image(image).to(self.device, self.unet.dtype)
        instructions = [instruction] if isinstance(instruction, str) else list(instruction)
        batch = len(instructions)
        if pixels.shape[0] != batch:
            raise ValueError(f"{pixels.shape[0]} images for {batch} instructions")
        warn_if_truncated(self.tokenizer, instructions, "instruction")
        per = num_images_per_prompt
        guided = text_guidance_scale > 1.0 and image_guidance_scale >= 1.0
        reward_guided = reward_guidance_scale != 1.0
        if reward_guided and not (self.conditioner is not None and self.conditioner.config.get("null_condition")):
            raise ValueError("reward guidance needs a conditioner trained with a null condition (reward dropout)")

        text = self.encode_text(instructions).repeat_interleave(per, dim=0)
        image_latents = self.vae.encode(pixels).latent_dist.mode().repeat_interleave(per, dim=0)
        branch_text, branch_image = [text], [image_latents]
        if guided:
            null_text = self.encode_text([""] * batch).repeat_interleave(per, dim=0)
            branch_text += [null_text, null_text]
            branch_image += [image_latents, torch.zeros_like(image_latents)]
        if reward_guided:
            branch_text.append(text)
            branch_image.append(image_latents)
        branches = len(branch_text)
        text_states, image_states = torch.cat(branch_text), torch.cat(branch_image)
        condition = self._reward_condition(scores, feedback, batch, per, branches, reward_guided)

        self.scheduler.set_timesteps(num_inference_steps, device=self.device)
        shape = (batch * per, self.vae.config.latent_channels, *image_latents.shape[-2:])
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=self.device, dtype=text.dtype)
        elif latents.shape != shape:
            raise ValueError(f"latents must have shape {shape}, got {tuple(latents.shape)}")
        latents = latents.to(self.device, text.dtype)
        latents = latents * self.scheduler.init_noise_sigma
        step_kwargs = self._step_kwargs(generator, eta)
        with reward_conditioning(self.unet, condition):
            for t in self.scheduler.timesteps:
                model_input = self.scheduler.scale_model_input(torch.cat([latents] * branches), t)
                model_input = torch.cat([model_input, image_states], dim=1)
                eps = self.unet(model_input, t, encoder_hidden_states=text_states, return_dict=False)[0]
                eps = self._combine(
                    eps.chunk(branches), guided, text_guidance_scale, image_guidance_scale, reward_guidance_scale
                )
                latents = self.scheduler.step(eps, t, latents, **step_kwargs, return_dict=False)[0]
        if self.edit_residual:
            latents = latents + image_latents * self.vae.config.scaling_factor
        if output_type == "latent":
            return latents
        decoded = self.vae.decode(latents / self.vae.config.scaling_factor, return_dict=False)[0]
        return self.image_processor.postprocess(decoded, output_type=output_type, do_denormalize=[True] * len(decoded))

    @staticmethod
    def _combine(chunks, guided: bool, s_text: float, s_image: float, s_reward: float) -> torch.Tensor:
        full = chunks[0]
        eps = full
        if guided:
            _, with_image, uncond = chunks[:3]
            eps = uncond + s_text * (full - with_image) + s_image * (with_image - uncond)
        if s_reward != 1.0:
            eps = eps + (s_reward - 1.0) * (full - chunks[-1])
        return eps

    def _reward_condition(self, scores, feedback, batch: int, per: int, branches: int, reward_guided: bool):
        if self.conditioner is None:
            asks_best = scores is None or bool((torch.as_tensor(scores, dtype=torch.float32) == schema.MAX_SCORE).all())
            if not asks_best or feedback is not None:  # asking a baseline for the best rewards is a no-op
                warnings.warn("this model has no reward conditioner: scores and feedback are ignored", stacklevel=3)
            return None
        score_tensor = torch.as_tensor(BEST_SCORES if scores is None else scores, dtype=torch.float32)
        score_tensor = score_tensor.reshape(-1, 3).expand(batch, 3) if score_tensor.numel() == 3 else score_tensor
        if score_tensor.shape != (batch, 3):
            raise ValueError(f"scores must be one triple or one per image ({batch}), got {tuple(score_tensor.shape)}")
        feedback = [list(NO_FAILURE)] if feedback is None else feedback
        feedback = [list(feedback)] if isinstance(feedback[0], str) else [list(f) for f in feedback]
        if any(len(f) != 3 for f in feedback):
            raise ValueError("feedback must hold 3 texts (following, preserving, quality) per image")
        feedback = feedback * batch if len(feedback) == 1 else feedback
        if len(feedback) != batch:
            raise ValueError(f"feedback must be one triple or one per image ({batch}), got {len(feedback)}")
        embedded = self._reward_feedback(feedback).to(self.device).repeat_interleave(per).repeat(branches)
        all_scores = score_tensor.to(self.device).repeat_interleave(per, dim=0).repeat(branches, 1)
        drop_mask = None
        if reward_guided:
            drop_mask = torch.zeros(branches * batch * per, dtype=torch.bool, device=self.device)
            drop_mask[-batch * per :] = True
        return self.conditioner(all_scores, embedded, drop_mask)

    def _step_kwargs(self, generator, eta: float) -> dict:
        accepted = set(inspect.signature(self.scheduler.step).parameters)
        kwargs = {"eta": eta} if "eta" in accepted else {}
        if "generator" in accepted:
            kwargs["generator"] = generator
        return kwargs
