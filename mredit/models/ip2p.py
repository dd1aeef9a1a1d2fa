"""InstructPix2Pix as a LightningModule, optionally multi-reward conditioned.

The typed ``__init__`` is the ``model`` section of a LightningCLI config. Components come from a diffusers
SD-layout folder / hub id (``pretrained_path``) or from tiny config dicts. A text-to-image UNet (stage 1)
gets its ``conv_in`` widened to take the source latents; an InstructPix2Pix UNet (stage 2) is used as is.
The VAE and CLIP text encoder are frozen; the UNet (and an attached reward conditioner) trains.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn

from mredit.conditioning.base import FeedbackEmbedding
from mredit.conditioning.seams import reward_conditioning
from mredit.data.transforms import pixels_to_float
from mredit.models.components import Components, build_tiny_components, load_pretrained_components
from mredit.models.ema import EMAMixin
from mredit.models.nan_guard import NonFiniteLossPolicy, guard_loss
from mredit.models.objective import diffusion_objective, edit_region_balanced_mse
from mredit.models.optimization import LRSchedulerName, adamw, lr_scheduler_config
from mredit.models.resolution import TrainedResolutionMixin
from mredit.models.reward_mixin import RewardConditionedMixin
from mredit.models.tiny_tokenizer import TinyTokenizer, tokenizer_words
from mredit.models.token_cache import cached_tokenizer
from mredit.pipelines.reward_edit import AUTO_SCHEDULER, RewardEditPipeline

PRECISION_DTYPES = {"bf16-mixed": torch.bfloat16, "bf16-true": torch.bfloat16, "16-mixed": torch.float16}


def widen_conv_in(unet: nn.Module, in_channels: int) -> None:
    """Give a text-to-image UNet extra input channels for the source latents.

    The original weights and bias are copied and the new channels start at zero, so the widened UNet computes
    exactly what the original did until the new channels learn something.
    """
    old = unet.conv_in
    if in_channels <= old.in_channels:
        raise ValueError(f"conv_in already has {old.in_channels} input channels, cannot widen to {in_channels}")
    new = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding, dtype=old.weight.dtype)
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, : old.in_channels].copy_(old.weight)
        new.bias.copy_(old.bias)
    unet.conv_in = new.to(old.weight.device)
    unet.register_to_config(in_channels=in_channels)


class InstructPix2PixModule(EMAMixin, RewardConditionedMixin, TrainedResolutionMixin, pl.LightningModule):
    """Args:
    pretrained_path: diffusers SD-layout folder or hub id (``$VAR`` expanded); None: tiny random components.
    unet_config, text_encoder_config, vae_config, scheduler_config: tiny components (override the defaults of
        ``mredit.models.components``); ``scheduler_config`` also overrides a pretrained scheduler's config.
    tiny_tokenizer: the tiny text encoder's tokenizer: ``characters`` spells every word out; ``synth_words`` makes
        each word of the synthetic world's instructions and feedback one token (``mredit.synth.vocabulary``).
    tokenizer_max_length: the tiny tokenizer's length in tokens (instructions and feedback texts are padded or
        truncated to it; the text encoder keeps at least 77 positions, so checkpoints keep their shapes).
    conditioning_dropout: InstructPix2Pix dropout p: per sample, text only / text and image / image only are
        dropped with probability p each.
    edit_residual: diffuse the edit (target latents minus source latents) instead of the target; the pipeline
        adds the source back. Unchanged regions are then zero and free to learn, which is what lets the tiny CPU
        models spend their few thousand steps on the edits; pretrained SD weights expect False.
    train_text_encoder: train the text encoder with the UNet (EMA and export included). For tiny random
        encoders, whose frozen features the UNet would otherwise have to decode; InstructPix2Pix freezes CLIP.
    balance_edit_region: weigh, per sample, the latent positions the edit changes and those it keeps half each in
        the loss (``edit_region_balanced_mse``), so that small local edits are not drowned by global ones; off in
        InstructPix2Pix.
    ema_decay, ema_warmup, use_ema: EMA of the trainable weights (validation and export use it).
    learning_rate, weight_decay, adam_betas, adam_eps: AdamW.
    lr_warmup_steps, lr_scheduler: warm-up steps and diffusers' schedule name (``constant_with_warmup``, ``cosine``,
        ``linear``...; see ``mredit.models.optimization``).
    gradient_checkpointing, channels_last, compile_unet: speed/memory switches for the UNet.
    on_nonfinite_loss: "raise" stops the run naming the step; "skip" skips the batch (all ranks together).
    sampling: ``predict_step``'s options: ``RewardEditPipeline.__call__``'s (``num_inference_steps``,
        ``text_guidance_scale``, ...) plus ``scheduler`` and ``seed``.
    """

    def __init__(
        self,
        pretrained_path: str | None = None,
        unet_config: dict[str, Any] | None = None,
        text_encoder_config: dict[str, Any] | None = None,
        vae_config: dict[str, Any] | None = None,
        scheduler_config: dict[str, Any] | None = None,
        tiny_tokenizer: TinyTokenizer = "characters",
        tokenizer_max_length: int = 77,
        conditioning_dropout: float = 0.05,
        edit_residual: bool = False,
        train_text_encoder: bool = False,
        balance_edit_region: bool = False,
        ema_decay: float = 0.9999,
        ema_warmup: bool = True,
        use_ema: bool = True,
        learning_rate: float = 5e-5,
        weight_decay: float = 1e-2,
        adam_betas: tuple[float, float] = (0.9, 0.999),
        adam_eps: float = 1e-8,
        lr_warmup_steps: int = 0,
        lr_scheduler: LRSchedulerName = "constant_with_warmup",
        gradient_checkpointing: bool = False,
        channels_last: bool = False,
        compile_unet: bool = False,
        on_nonfinite_loss: NonFiniteLossPolicy = "raise",
        sampling: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 <= conditioning_dropout <= 1.0 / 3.0:
            raise ValueError(f"conditioning_dropout must be in [0, 1/3], got {conditioning_dropout}")
        self.save_hyperparameters()
        if tokenizer_max_length < 3:
            raise ValueError(f"tokenizer_max_length must be >= 3 (start, a token, end), got {tokenizer_max_length}")
        if pretrained_path:
            for name, value, default in (
                ("tiny_tokenizer", tiny_tokenizer, "characters"),
                ("tokenizer_max_length", tokenizer_max_length, 77),
            ):
                if value != default:
                    raise ValueError(f"{name}={value!r} is for tiny components: {pretrained_path} has its tokenizer")
            components = load_pretrained_components(pretrained_path, scheduler_config)
        else:
            words = tokenizer_words(tiny_tokenizer)
            components = build_tiny_components(
                unet_config,
                text_encoder_config,
                vae_config,
                scheduler_config,
                tokenizer_max_length=tokenizer_max_length,
                tokenizer_words=words,
            )
        self._adopt(components)
        self.init_reward_conditioning()
        self.configure_ema(ema_decay, ema_warmup, enabled=use_ema)
        self._null_text: torch.Tensor | None = None

    def _adopt(self, components: Components) -> None:
        latent_channels = components.vae.config.latent_channels
        unet = components.unet
        if unet.config.in_channels == latent_channels:  # stage 1: a text-to-image UNet
            widen_conv_in(unet, 2 * latent_channels)
        elif unet.config.in_channels != 2 * latent_channels:
            raise ValueError(
                f"UNet has {unet.config.in_channels} input channels; expected {latent_channels} (text-to-image) "
                f"or {2 * latent_channels} (InstructPix2Pix) for a VAE with {latent_channels} latent channels"
            )
        self.unet, self.vae, self.text_encoder = unet, components.vae, components.text_encoder
        self.tokenizer, self.noise_scheduler = components.tokenizer, components.scheduler
        self.vae.requires_grad_(False).eval()
        self.text_encoder.requires_grad_(self.hparams.train_text_encoder).eval()
        if self.hparams.gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()
        if self.hparams.channels_last:
            self.unet.to(memory_format=torch.channels_last)
        if self.hparams.compile_unet:
            self.unet.compile()  # in place: parameter names and checkpoints stay those of the plain UNet

    # the encoders stay in eval mode (CLIP has no dropout to train with); the frozen ones run in the training dtype
    def train(self, mode: bool = True) -> InstructPix2PixModule:
        super().train(mode)
        self.vae.eval()
        self.text_encoder.eval()
        return self

    def setup(self, stage: str) -> None:
        dtype = PRECISION_DTYPES.get(str(self.trainer.precision)) if self._trainer is not None else None
        if dtype is not None:
            self.vae.to(dtype)
            if not self.hparams.train_text_encoder:  # a trained encoder keeps fp32 weights, like the UNet
                self.text_encoder.to(dtype)

    # -- encoders
    def encode_instructions(self, instructions: list[str]) -> torch.Tensor:
        """CLIP last hidden states ``[B, L, D]`` of the instructions (padded to the tokenizer max length); with
        gradients only when the text encoder trains."""
        tokens = cached_tokenizer(self)(
            list(instructions),
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        with torch.set_grad_enabled(self.hparams.train_text_encoder and torch.is_grad_enabled()):
            return self.text_encoder(tokens.input_ids.to(self.device)).last_hidden_state

    def null_text_embedding(self) -> torch.Tensor:
        """The encoding of "" ``[1, L, D]``, used for dropped instructions (cached per device and dtype while the
        text encoder is frozen)."""
        if self.hparams.train_text_encoder:
            return self.encode_instructions([""])
        cached = self._null_text
        dtype = self.text_encoder.dtype
        if cached is None or cached.device != self.device or cached.dtype != dtype:
            with torch.no_grad():
                self._null_text = cached = self.encode_instructions([""])
        return cached

    @torch.no_grad()
    def _latents(
        self, batch: dict[str, Any], generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(target latents: posterior sample x scaling factor, source latents: posterior mode, unscaled)."""
        scale = self.vae.config.scaling_factor
        vae_dtype = self.vae.dtype
        if "target_latent_mean" in batch:
            mean, logvar = batch["target_latent_mean"].float(), batch["target_latent_logvar"].float()
            eps = torch.randn(mean.shape, generator=generator, device=mean.device)
            target = (mean + torch.exp(0.5 * logvar) * eps) * scale
        else:
            posterior = self.vae.encode(pixels_to_float(batch["target"]).to(vae_dtype)).latent_dist
            target = posterior.sample(generator=generator).float() * scale
        if "source_latents" in batch:
            source = batch["source_latents"].float()
        else:
            source = self.vae.encode(pixels_to_float(batch["source"]).to(vae_dtype)).latent_dist.mode().float()
        return target, source

    def _instruction_embeds(
        self, batch: dict[str, Any], with_null: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(the batch's instruction embeddings, the null text embedding when ``with_null``)."""
        if "instruction_embeds" in batch:
            if self.hparams.train_text_encoder and self.training:
                raise ValueError("precomputed instruction_embeds cannot train the text encoder: train_text_encoder")
            return batch["instruction_embeds"], self.null_text_embedding() if with_null else None
        instructions = list(batch["instruction"])
        if with_null and self.hparams.train_text_encoder:
            # the live encoder's "" changes every step: encode it with the batch, in one call of the encoder
            encoded = self.encode_instructions([*instructions, ""])
            return encoded[:-1], encoded[-1:]
        return self.encode_instructions(instructions), self.null_text_embedding() if with_null else None

    def _feedback(self, batch: dict[str, Any]) -> list[list[str]] | FeedbackEmbedding:
        if any(key in batch for key in ("feedback_pooled", "feedback_tokens")):
            return FeedbackEmbedding(
                batch.get("feedback_pooled"), batch.get("feedback_tokens"), batch.get("feedback_mask")
            )
        return batch["feedback"]

    # -- the diffusion loss
    def dropout_masks(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """InstructPix2Pix conditioning dropout, one uniform draw r per sample: r < p drops the text only,
        p <= r < 2p both, 2p <= r < 3p the image only. Returns (drop_text, drop_image) bool masks."""
        p = self.hparams.conditioning_dropout
        r = torch.rand(batch_size, generator=generator, device=generator.device if generator else self.device)
        return (r < 2 * p).to(self.device), ((r >= p) & (r < 3 * p)).to(self.device)

    def diffusion_loss(self, batch: dict[str, Any], generator: torch.Generator | None = None) -> torch.Tensor:
        target_latents, source_latents = self._latents(batch, generator)
        edit = target_latents - source_latents * self.vae.config.scaling_factor
        if self.hparams.edit_residual:
            target_latents = edit
        dropout = self.training and self.hparams.conditioning_dropout > 0
        text, null_text = self._instruction_embeds(batch, with_null=dropout)
        text = text.to(self.unet.dtype)
        batch_size = target_latents.shape[0]
        if dropout:
            drop_text, drop_image = self.dropout_masks(batch_size)
            text = torch.where(drop_text.view(-1, 1, 1), null_text.to(text.dtype), text)
            source_latents = source_latents * (~drop_image).view(-1, 1, 1, 1).to(source_latents.dtype)
        device = target_latents.device
        noise = torch.randn(target_latents.shape, generator=generator, device=device)
        steps = self.noise_scheduler.config.num_train_timesteps
        timesteps = torch.randint(0, steps, (batch_size,), generator=generator, device=device)
        noisy = self.noise_scheduler.add_noise(target_latents, noise, timesteps)
        objective = diffusion_objective(self.noise_scheduler, target_latents, noise, timesteps)
        model_input = torch.cat([noisy, source_latents], dim=1)
        if self.hparams.channels_last:
            model_input = model_input.contiguous(memory_format=torch.channels_last)
        condition = None
        if self.reward_conditioner is not None:
            drop_mask = self.reward_drop_mask(batch, batch_size)
            condition = self.compute_reward_condition(batch["scores"], self._feedback(batch), drop_mask)
        with reward_conditioning(self.unet, condition):
            prediction = self.unet(model_input, timesteps, encoder_hidden_states=text).sample
        if self.hparams.balance_edit_region:
            return edit_region_balanced_mse(prediction, objective, edit)
        return F.mse_loss(prediction.float(), objective.float())

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        loss = guard_loss(self, self.diffusion_loss(batch), self.hparams.on_nonfinite_loss)
        if loss is not None:
            self.log("train/loss", loss, prog_bar=True, batch_size=_batch_size(batch))
        return loss

    def _eval_loss(self, batch: dict[str, Any], batch_idx: int, split: str) -> torch.Tensor:
        # a fixed generator per batch makes the validation loss comparable across steps
        generator = torch.Generator(device=self.device).manual_seed(batch_idx)
        loss = self.diffusion_loss(batch, generator=generator)
        self.log(f"{split}/loss", loss, prog_bar=True, sync_dist=True, batch_size=_batch_size(batch))
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self._eval_loss(batch, batch_idx, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        with self.ema_weights():
            return self._eval_loss(batch, batch_idx, "test")

    def edit_tensors(
        self, source: torch.Tensor, instructions: list[str], scheduler: str = AUTO_SCHEDULER, seed: int = 0, **options
    ) -> torch.Tensor:
        """Edit ``source`` ``[B, 3, H, W]`` in [-1, 1] with the module's current weights (wrap in ``ema_weights()``
        for the EMA); returns ``[B, 3, H, W]`` in [-1, 1]. ``options``: ``RewardEditPipeline.__call__``'s
        (``scores``, ``num_inference_steps``, ``text_guidance_scale``, ...)."""
        pipe = RewardEditPipeline.from_module(self, scheduler=scheduler)
        generator = torch.Generator(device=self.device).manual_seed(seed)
        return pipe(source, list(instructions), generator=generator, output_type="pt", **options) * 2 - 1

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """``{"key": [...], "images": [PIL]}`` (what ``EditedImageWriter`` writes) with the EMA weights, sampled
        with ``hparams.sampling`` (``RewardEditPipeline.__call__`` options plus ``scheduler`` and ``seed``); the
        generator is seeded per batch, so a batch's result does not depend on the batches before it."""
        options = dict(self.hparams.sampling or {})
        scheduler, seed = options.pop("scheduler", AUTO_SCHEDULER), options.pop("seed", 0)
        with self.ema_weights():
            pipe = RewardEditPipeline.from_module(self, scheduler=scheduler)
            generator = torch.Generator(device=self.device).manual_seed(seed)
            images = pipe(pixels_to_float(batch["source"]), list(batch["instruction"]), generator=generator, **options)
        return {"key": list(batch["key"]), "images": images}

    # -- optimisation
    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        params = [p for _, p in self.trainable_named_parameters()]
        optimizer = adamw(params, hp.learning_rate, tuple(hp.adam_betas), hp.adam_eps, hp.weight_decay)
        schedule = lr_scheduler_config(self, optimizer, hp.lr_scheduler, hp.lr_warmup_steps)
        return {"optimizer": optimizer, "lr_scheduler": schedule}


def _batch_size(batch: dict[str, Any]) -> int:
    for key in ("target", "target_latent_mean", "source_latents"):
        if key in batch:
            return batch[key].shape[0]
    return len(batch["key"])
