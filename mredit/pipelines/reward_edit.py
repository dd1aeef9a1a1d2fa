"""``RewardEditPipeline``: InstructPix2Pix sampling with the multi-reward condition applied in every branch.

A diffusers ``DiffusionPipeline`` (components registered with ``register_modules``, so ``from_pretrained`` /
``save_pretrained`` are diffusers' own) that follows ``StableDiffusionInstructPix2PixPipeline`` step for step
(same prompt encoding, image processing, noise draw, scheduler calls and 3-way guidance): with no conditioner it
gives the stock pipeline's image for the same seed. What it adds:

- the reward condition (scores + embedded failure feedback) is computed for the whole branch batch and applied
  through ``mredit.conditioning.seams.reward_conditioning``, so it is tiled correctly for any batch size,
  ``num_images_per_prompt`` and guidance setting (the official pipeline needs the caller to pre-tile it);
- optional reward guidance for conditioners with a learned null condition (see ``__call__``);
- ``prompt_embeds`` / ``negative_prompt_embeds`` and a ``conv_in_residual``, so that SmartEdit (whose text
  states come from its MLLM and Q-Former, plus BIM's spatial feature) samples through this same loop;
- images are repeated per prompt consistently with the prompts (sample ``i * n + j`` is image ``i``).

It is the only sampling loop of the project: ``mredit edit``, Lightning ``predict``, training previews and
SmartEdit all call it.
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import warnings
from pathlib import Path

import torch
from diffusers import DiffusionPipeline
from diffusers.image_processor import VaeImageProcessor
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

from mredit import schema
from mredit.conditioning import seams
from mredit.conditioning.base import FeedbackEmbedding, RewardConditioner
from mredit.conditioning.feedback import FEEDBACK_SEPARATOR, encode_feedback
from mredit.pipelines.schedulers import AUTO_SCHEDULER, SCHEDULER_CHOICES, build_scheduler
from mredit.pipelines.sizing import choose_resolution, fit_image, size_multiple

log = logging.getLogger(__name__)

__all__ = ["AUTO_SCHEDULER", "BEST_SCORES", "NO_FAILURE", "SCHEDULER_CHOICES", "RewardEditPipeline", "build_scheduler"]

BEST_SCORES = schema.BEST_SCORES
# the training data's no-failure text per perspective ("None"); joined with "; " it is the official eval's
# "None; None; None"
NO_FAILURE = (schema.NO_FAILURE,) * len(schema.PERSPECTIVES)
# what an export folder's model_index.json names, so that stock diffusers loads a baseline export as is
EXPORT_PIPELINE_CLASS = "StableDiffusionInstructPix2PixPipeline"


def import_mredit_components(folder: Path) -> None:
    """Import the mredit modules that ``model_index.json`` names as component libraries (the reward conditioners,
    the tiny models' pixel autoencoder): diffusers loads a component only from a library already imported, and
    trusts none by name. Only ``mredit.`` modules are imported."""
    index = json.loads((folder / "model_index.json").read_text()) if (folder / "model_index.json").is_file() else {}
    for value in index.values():
        if isinstance(value, list) and len(value) == 2 and str(value[0]).startswith("mredit."):
            importlib.import_module(value[0])


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


class RewardEditPipeline(DiffusionPipeline):
    """Edit images by instruction, conditioned on rewards (default: the best scores and no failure text).

    ``conditioner``: a ``RewardConditioner`` (None: a baseline). ``edit_residual``: the UNet denoises the edit
    (target minus source latents), as trained with ``InstructPix2PixModule(edit_residual=True)``; the source
    latents are added back before decoding. ``resolution``: the image side the model was trained at (None:
    not recorded), the default of ``fit_image``. All are saved in and loaded from the folder (``conditioner/``,
    ``model_index.json``).
    """

    model_cpu_offload_seq = "text_encoder->unet->vae"
    _optional_components = ["conditioner"]

    def __init__(
        self,
        unet,
        vae,
        text_encoder,
        tokenizer,
        scheduler,
        conditioner: RewardConditioner | None = None,
        edit_residual: bool = False,
        resolution: int | None = None,
    ) -> None:
        super().__init__()
        self.register_modules(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            scheduler=scheduler,
            conditioner=conditioner,
        )
        self.register_to_config(edit_residual=edit_residual, resolution=resolution)
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor)
        self._resolution_messages: set[str] = set()  # what fit_image said already

    # --- construction -------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | Path, scheduler: str = AUTO_SCHEDULER, **kwargs) -> RewardEditPipeline:
        """Load an export folder (``mredit export`` / ``mredit import official``) with diffusers' loader, then
        set the inference ``scheduler`` by name (``auto``, ``euler_a``, ``ddim``, ``dpmpp``; built from the saved
        training scheduler's config). ``kwargs`` go to ``DiffusionPipeline.from_pretrained`` (``torch_dtype``...).
        """
        folder = Path(path)
        if folder.exists() and not (folder / "unet").is_dir():
            raise FileNotFoundError(f"{path} is not an export folder (no unet/)")
        if folder.is_dir():
            import_mredit_components(folder)
        pipe = super().from_pretrained(path, **kwargs)
        pipe.set_scheduler(scheduler)
        return pipe

    @classmethod
    def from_module(cls, module, scheduler: str = AUTO_SCHEDULER) -> RewardEditPipeline:
        """Share the components of a training module (the weights it holds now: wrap in ``ema_weights()``);
        ``scheduler`` is the inference scheduler's name (None: keep the training scheduler, for export)."""
        pipe = cls(
            vae=module.vae,
            text_encoder=module.text_encoder,
            tokenizer=module.tokenizer,
            unet=module.unet,
            scheduler=module.noise_scheduler,
            conditioner=getattr(module, "reward_conditioner", None),
            edit_residual=bool(getattr(module, "hparams", {}).get("edit_residual", False)),
            resolution=getattr(module, "trained_resolution", None),
        )
        if scheduler is not None:
            pipe.set_scheduler(scheduler)
        pipe.set_progress_bar_config(disable=True)  # inside training or predict loops, which have their own
        return pipe

    def set_scheduler(self, name: str) -> None:
        """Replace the scheduler by the inference scheduler ``name`` built from the current one's config."""
        self.scheduler = build_scheduler(name, dict(self.scheduler.config))

    def save_export(self, out_dir: str | Path) -> Path:
        """``save_pretrained`` plus what makes the folder load in stock diffusers too: ``model_index.json`` names
        ``StableDiffusionInstructPix2PixPipeline`` with no safety checker (a stock pipeline ignores
        ``conditioner/``, which this class loads)."""
        self.save_pretrained(out_dir)
        index_path = Path(out_dir) / "model_index.json"
        index = self.load_config(out_dir)
        index.update(
            _class_name=EXPORT_PIPELINE_CLASS,
            safety_checker=[None, None],
            feature_extractor=[None, None],
            requires_safety_checker=False,
        )
        if not index.get("edit_residual"):
            index.pop("edit_residual", None)
        if index.get("resolution") is None:
            index.pop("resolution", None)
        if index.get("conditioner") == [None, None]:
            index.pop("conditioner")
        index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
        return Path(out_dir)

    @property
    def size_multiple(self) -> int:
        """Input sides must be multiples of this (64 for SD1.5; see ``mredit.pipelines.sizing``)."""
        return size_multiple(self.vae_scale_factor, len(self.unet.config.down_block_types))

    @property
    def trained_resolution(self) -> int | None:
        """The image side the model was trained at, as its checkpoint or export records it (None: not recorded)."""
        return self.config.get("resolution")

    def fit_image(self, image: Image.Image, resolution: int | None = None, crop: bool = False) -> Image.Image:
        """``image`` sized for this model (``mredit.pipelines.sizing.fit_image``): its long side at ``resolution``,
        by default the resolution the model was trained at (``FALLBACK_RESOLUTION``, 512, with a one-line note
        when the model does not record it); a ``resolution`` far above the trained one warns. Each message is
        logged once per pipeline."""
        choice = choose_resolution(resolution, self.trained_resolution, "this model", "resolution")
        for message in (choice.note, choice.warning):
            if message is not None and message not in self._resolution_messages:
                self._resolution_messages.add(message)
                log.warning(message)
        return fit_image(image, choice.resolution, self.size_multiple, crop=crop)

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
                "(pipe.fit_image(image): to the resolution the model was trained at)"
            )
        return self.image_processor.preprocess(images)

    # --- sampling -----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(
        self,
        image: Image.Image | list[Image.Image] | torch.Tensor,
        instruction: str | list[str] | None = None,
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
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        conv_in_residual: torch.Tensor | None = None,
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
        ``prompt_embeds`` ``[B, L, D]`` (and ``negative_prompt_embeds``, the unconditional text states; default
        the encoding of ""): text states given directly instead of ``instruction``.
        ``conv_in_residual`` ``[B, C, h, w]``: added to the UNet's ``conv_in`` output in every branch.
        """
        pixels = self._prepare_image(image).to(self.device, self.vae.dtype)
        if (instruction is None) == (prompt_embeds is None):
            raise ValueError("give either instruction or prompt_embeds")
        if prompt_embeds is None:
            instructions = [instruction] if isinstance(instruction, str) else list(instruction)
            warn_if_truncated(self.tokenizer, instructions, "instruction")
            batch = len(instructions)
        else:
            batch = prompt_embeds.shape[0]
        if pixels.shape[0] != batch:
            raise ValueError(f"{pixels.shape[0]} images for {batch} instructions")
        per = num_images_per_prompt
        guided = text_guidance_scale > 1.0 and image_guidance_scale >= 1.0
        reward_guided = reward_guidance_scale != 1.0
        if reward_guided and not (self.conditioner is not None and self.conditioner.config.get("null_condition")):
            raise ValueError("reward guidance needs a conditioner trained with a null condition (reward dropout)")

        text = self.encode_text(instructions) if prompt_embeds is None else prompt_embeds.to(self.device)
        text = text.repeat_interleave(per, dim=0)
        image_latents = self.vae.encode(pixels).latent_dist.mode().repeat_interleave(per, dim=0)
        branch_text, branch_image = [text], [image_latents]
        if guided:
            if negative_prompt_embeds is None:
                null_text = self.encode_text([""] * batch)
            else:
                null_text = negative_prompt_embeds.to(self.device, text.dtype).expand(batch, *text.shape[1:])
            null_text = null_text.repeat_interleave(per, dim=0)
            branch_text += [null_text, null_text]
            branch_image += [image_latents, torch.zeros_like(image_latents)]
        if reward_guided:
            branch_text.append(text)
            branch_image.append(image_latents)
        branches = len(branch_text)
        text_states, image_states = torch.cat(branch_text), torch.cat(branch_image)
        condition = self._reward_condition(scores, feedback, batch, per, branches, reward_guided)
        residual = None
        if conv_in_residual is not None:
            residual = conv_in_residual.to(self.device).repeat_interleave(per, dim=0).repeat(branches, 1, 1, 1)

        self.scheduler.set_timesteps(num_inference_steps, device=self.device)
        shape = (batch * per, self.vae.config.latent_channels, *image_latents.shape[-2:])
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=self.device, dtype=text.dtype)
        elif latents.shape != shape:
            raise ValueError(f"latents must have shape {shape}, got {tuple(latents.shape)}")
        latents = latents.to(self.device, text.dtype)
        latents = latents * self.scheduler.init_noise_sigma
        step_kwargs = self._step_kwargs(generator, eta)
        # the residual's hook is registered first: h = conv_in(x) + residual, then h + reward_latent(h)
        with seams.conv_in_residual(self.unet, residual), seams.reward_conditioning(self.unet, condition):
            for t in self.progress_bar(self.scheduler.timesteps):
                model_input = self.scheduler.scale_model_input(torch.cat([latents] * branches), t)
                model_input = torch.cat([model_input, image_states.to(model_input.dtype)], dim=1)
                eps = self.unet(model_input, t, encoder_hidden_states=text_states, return_dict=False)[0]
                eps = self._combine(
                    eps.chunk(branches), guided, text_guidance_scale, image_guidance_scale, reward_guidance_scale
                )
                latents = self.scheduler.step(eps, t, latents, **step_kwargs, return_dict=False)[0]
        if self.config.edit_residual:
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
