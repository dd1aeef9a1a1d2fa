"""``SmartEditModule``: SmartEdit (LLaVA-1.1 MLLM -> [IMG] tokens -> Q-Former -> BIM -> InstructPix2Pix UNet) as a
LightningModule, with optional multi-reward conditioning through the shared ``RewardConditioning`` callback.

Stages (``stage``): ``align`` (SmartEdit stage 1: the Q-Former output of the [IMG] states regresses the CLIP text
embedding of the instruction; trains the new token rows and the Q-Former), ``mllmsd`` (stage 2a: editing without
BIM; + LoRA and the whole UNet), ``smartedit`` (stage 2b: + the zero-initialised BIM). Every stage builds every
part, so a stage's checkpoint feeds the next one through ``init_from``.

The UNet stays a stock ``UNet2DConditionModel``; BIM's spatial feature and the reward condition reach it through
forward hooks on ``conv_in`` that are registered in a fixed order, so ``h = conv_in(x); h += v_sp; h += reward(h)``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn

from mredit.conditioning.base import RewardCondition
from mredit.conditioning.seams import reward_conditioning
from mredit.models.ema import EMAMixin
from mredit.models.objective import diffusion_objective
from mredit.models.reward_mixin import RewardConditionedMixin
from mredit.models.smartedit.bim import BidirectionalInteractionModule
from mredit.models.smartedit.loading import diffusion_components, load_mllm_parts, resolve_paths, tiny_mllm_parts
from mredit.models.smartedit.mllm import LlavaMLLM
from mredit.models.smartedit.prompt import DEFAULT_ANSWER, DEFAULT_SYSTEM
from mredit.models.smartedit.qformer import ImgTokenResampler

log = logging.getLogger(__name__)

Stage = Literal["align", "mllmsd", "smartedit"]
# never trained: left out of checkpoints (rebuilt from the pretrained paths, or the seeded tiny init)
FROZEN_PREFIXES = ("mllm.vision_tower.", "mllm.projector.", "vae.", "text_encoder.")


@contextmanager
def spatial_residual(unet: nn.Module, spatial: torch.Tensor | None) -> Iterator[None]:
    """Within the block, ``unet.conv_in``'s output gets ``spatial`` added (SmartEdit's v_sp); None: no-op."""
    if spatial is None:
        yield
        return

    def add(_module: nn.Module, _inputs: tuple, h0: torch.Tensor) -> torch.Tensor:
        if spatial.shape[0] != h0.shape[0] or spatial.shape[1:] != h0.shape[1:]:
            raise ValueError(f"BIM spatial feature {tuple(spatial.shape)} does not match conv_in {tuple(h0.shape)}")
        return h0 + spatial.to(h0.dtype)

    handle = unet.conv_in.register_forward_hook(add)
    try:
        yield
    finally:
        handle.remove()


def conditioning_dropout(random_p: torch.Tensor, p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """SmartEdit's masks from one uniform draw per sample: text dropped below 2p, source image in [p, 3p), so p of
    the samples lose the text only, p both, p the image only. BIM's spatial feature is never dropped."""
    return random_p < 2 * p, (random_p >= p) & (random_p < 3 * p)


class SmartEditModule(RewardConditionedMixin, EMAMixin, pl.LightningModule):
    """Args (real sizes are SmartEdit's defaults; the tiny configs shrink them):
    stage: ``align`` | ``mllmsd`` | ``smartedit`` (see the module docstring).
    tiny: random tiny parts (CPU) instead of the pretrained paths.
    llava_path, vision_path, diffusion_path: pretrained sources; ``$VARS`` are expanded (see ``loading.py``).
    init_from: a Lightning checkpoint of the previous stage; its weights are loaded non-strictly.
    num_img_tokens, num_queries: r [IMG] tokens (32) and Q-Former queries (77).
    qformer_*: the SD-Q-Former; its width is the UNet ``cross_attention_dim``.
    bim_*: the two-way transformer; its width is the vision tower's.
    system_prompt, answer_text: the conversation's system message and the assistant's words before the [IMG]
        tokens (SmartEdit draws the answer from templates; a fixed one keeps the [IMG] positions deterministic).
    cond_dropout: p of SmartEdit's dropout (text 2p, image [p, 3p), both p).
    *_loss_weight: LM cross-entropy, diffusion MSE, stage-1 alignment MSE.
    llm_dtype: LLM weight dtype (SmartEdit runs LLaMA in bf16; the LoRA weights stay fp32).
    ema_decay: EMA of the trainable weights (None: off, as in SmartEdit).
    scheduler_config: overrides of the noise scheduler's config (tiny or pretrained), e.g. ``prediction_type``.
    edit_residual: diffuse the edit (target minus source latents) instead of the target, as
        ``InstructPix2PixModule(edit_residual=True)``; ``edit`` adds the source latents back. With
        ``prediction_type: sample`` this is the tiny-scale recipe of docs/training.md.
    init_seed: the seed of the tiny random parts (None: the run's ``seed_everything`` seed). It is recorded in the
        hyperparameters, so a checkpoint, which leaves the frozen parts out, rebuilds the same ones.
    inference_steps, text_guidance, image_guidance: ``predict_step``/``edit`` defaults (SmartEdit: 100, 7.5, 1.5).
    """

    def __init__(
        self,
        stage: Stage = "smartedit",
        tiny: bool = False,
        llava_path: str = "$MREDIT_LLAVA_PATH",
        vision_path: str = "$MREDIT_CLIP_VISION_PATH",
        diffusion_path: str = "$MREDIT_SMARTEDIT_SD_PATH",
        init_from: str | None = None,
        num_img_tokens: int = 32,
        num_queries: int = 77,
        qformer_layers: int = 6,
        qformer_heads: int = 12,
        qformer_intermediate: int = 3072,
        qformer_cross_frequency: int = 2,
        bim_depth: int = 2,
        bim_heads: int = 8,
        bim_mlp_dim: int = 2048,
        bim_downsample: int = 2,
        bim_text_scale: float = 0.5,
        vision_select_layer: int = -2,
        lora_r: int = 8,
        lora_alpha: int = 16,
        lora_dropout: float = 0.05,
        lora_targets: tuple[str, ...] = ("q_proj", "v_proj"),
        max_instruction_tokens: int = 128,
        system_prompt: str = DEFAULT_SYSTEM,
        answer_text: str = DEFAULT_ANSWER,
        cond_dropout: float = 0.05,
        llm_loss_weight: float = 1.0,
        diffusion_loss_weight: float = 1.0,
        align_loss_weight: float = 1.0,
        learning_rate: float = 1e-5,
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        llm_dtype: Literal["float32", "bfloat16", "float16"] = "float32",
        gradient_checkpointing: bool = False,
        ema_decay: float | None = None,
        scheduler_config: dict[str, Any] | None = None,
        edit_residual: bool = False,
        init_seed: int | None = None,
        inference_steps: int = 100,
        text_guidance: float = 7.5,
        image_guidance: float = 1.5,
    ) -> None:
        super().__init__()
        if stage not in ("align", "mllmsd", "smartedit"):
            raise ValueError(f"stage must be align, mllmsd or smartedit, got {stage!r}")
        if not 0.0 <= cond_dropout <= 1 / 3:
            raise ValueError(f"cond_dropout must be in [0, 1/3] (text 2p, image [p, 3p)), got {cond_dropout}")
        self.save_hyperparameters()
        if init_seed is None:
            init_seed = self.hparams.init_seed = torch.initial_seed() % 2**32
        if tiny:
            parts, components = tiny_mllm_parts(init_seed), diffusion_components(None, init_seed, scheduler_config)
        else:  # check every path first: a run without weights fails here, in seconds
            paths = resolve_paths(
                {"llava_path": llava_path, "vision_path": vision_path, "diffusion_path": diffusion_path}
            )
            components = diffusion_components(paths["diffusion_path"], scheduler_config=scheduler_config)
            parts = load_mllm_parts(paths["llava_path"], paths["vision_path"], llm_dtype)
        self.stage = stage
        self.unet, self.vae = components.unet, components.vae
        self.text_encoder, self.tokenizer = components.text_encoder, components.tokenizer
        self.noise_scheduler = components.scheduler
        width = self.unet.config.cross_attention_dim
        if self.text_encoder.config.hidden_size != width:
            raise ValueError(f"CLIP text width {self.text_encoder.config.hidden_size} != UNet cross-attention {width}")
        self.mllm = LlavaMLLM(
            parts.llm,
            parts.vision_tower,
            parts.projector,
            parts.tokenizer,
            num_img_tokens=num_img_tokens,
            vision_select_layer=vision_select_layer,
            lora_r=lora_r,
            lora_alpha=lora_alpha,
            lora_dropout=lora_dropout,
            lora_targets=tuple(lora_targets),
            max_instruction_tokens=max_instruction_tokens,
            system_prompt=system_prompt,
            answer_text=answer_text,
        )
        self.qformer = ImgTokenResampler(
            self.mllm.hidden_size,
            width,
            num_queries,
            qformer_layers,
            qformer_heads,
            qformer_intermediate,
            qformer_cross_frequency,
        )
        self.bim = BidirectionalInteractionModule(
            width,
            self.mllm.vision_size,
            self.unet.config.block_out_channels[0],
            bim_depth,
            bim_heads,
            bim_mlp_dim,
            bim_downsample,
            bim_text_scale,
        )
        self.register_buffer("null_text", self.clip_text_embedding([""]), persistent=True)
        self._set_trainable()
        if gradient_checkpointing:
            self.mllm.llm.get_base_model().gradient_checkpointing_enable({"use_reentrant": False})
            self.unet.enable_gradient_checkpointing()
        self.init_reward_conditioning()
        self.configure_ema(ema_decay or 0.0, enabled=ema_decay is not None)
        self.strict_loading = False  # checkpoints leave out the frozen pretrained weights (FROZEN_PREFIXES)
        if init_from is not None:
            self.load_previous_stage(init_from)

    # ---- parts -------------------------------------------------------------------------------------------
    def _set_trainable(self) -> None:
        """align: new token rows + Q-Former; mllmsd: + LoRA + UNet; smartedit: + BIM. The rest stays frozen."""
        for module in (self.vae, self.text_encoder, self.unet, self.qformer, self.bim):
            module.requires_grad_(False)
        for param in self.mllm.lora_parameters():
            param.requires_grad_(self.stage != "align")
        for param in self.mllm.new_token_parameters():
            param.requires_grad_(True)
        self.qformer.requires_grad_(True)
        self.unet.requires_grad_(self.stage != "align")
        self.bim.requires_grad_(self.stage == "smartedit")

    @torch.no_grad()
    def clip_text_embedding(self, texts: list[str]) -> torch.Tensor:
        """Frozen CLIP text ``last_hidden_state`` ``[B, num_queries, width]``: the null text and the stage-1 target."""
        ids = self.tokenizer(
            texts,
            padding="max_length",
            max_length=self.hparams.num_queries,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(self.text_encoder.device)
        return self.text_encoder(ids, return_dict=True).last_hidden_state

    def load_previous_stage(self, path: str) -> None:
        path = os.path.expanduser(os.path.expandvars(path))
        if not os.path.isfile(path):
            raise FileNotFoundError(f"init_from: checkpoint of the previous stage not found: {path}")
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        result = self.load_state_dict(checkpoint.get("state_dict", checkpoint), strict=False)
        missing = [k for k in result.missing_keys if not k.startswith(FROZEN_PREFIXES) and "base_layer" not in k]
        log.info(
            "init_from %s: %d missing keys (%s...), %d unexpected",
            path,
            len(missing),
            missing[:3],
            len(result.unexpected_keys),
        )

    def condition(
        self, images: torch.Tensor, instructions: list[str], latent_size: tuple[int, int], compute_lm_loss: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """MLLM -> Q-Former -> (BIM): ``(f_final [B, Q, width], v_sp or None, lm_loss or None)``."""
        with torch.no_grad():
            patches = self.mllm.patch_features(images)
        out = self.mllm(instructions, patches, compute_lm_loss=compute_lm_loss)
        text = self.qformer(out.img_hidden.float())
        spatial = None
        if self.stage == "smartedit":
            text, spatial = self.bim(text, patches.float(), latent_size)
        return text, spatial, out.lm_loss

    def unet_forward(
        self,
        sample: torch.Tensor,
        timesteps: torch.Tensor,
        text: torch.Tensor,
        spatial: torch.Tensor | None,
        reward: RewardCondition | None,
    ) -> torch.Tensor:
        # hooks run in registration order: h = conv_in(x) + v_sp, then h + reward_latent(h)
        with spatial_residual(self.unet, spatial), reward_conditioning(self.unet, reward):
            return self.unet(sample, timesteps, encoder_hidden_states=text, return_dict=False)[0]

    # ---- training ----------------------------------------------------------------------------------------
    def compute_losses(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        instructions = list(batch["instruction"])
        if self.stage == "align":
            out = self.mllm(instructions, None)
            aligned = self.qformer(out.img_hidden.float())
            align = F.mse_loss(aligned, self.clip_text_embedding(instructions).float())
            loss = self.hparams.llm_loss_weight * out.lm_loss + self.hparams.align_loss_weight * align
            return {"loss": loss, "lm_loss": out.lm_loss, "align_loss": align}
        source, target = batch["source"], batch["target"]
        batch_size = source.shape[0]
        with torch.no_grad():
            target_latents = self.vae.encode(target.to(self.vae.dtype)).latent_dist.sample()
            target_latents = target_latents * self.vae.config.scaling_factor
            source_latents = self.vae.encode(source.to(self.vae.dtype)).latent_dist.mode()
            if self.hparams.edit_residual:  # before the image dropout: the edit is always relative to the source
                target_latents = target_latents - source_latents * self.vae.config.scaling_factor
        text, spatial, lm_loss = self.condition(source, instructions, tuple(source_latents.shape[-2:]), True)
        drop_text, drop_image = conditioning_dropout(
            torch.rand(batch_size, device=self.device), self.hparams.cond_dropout
        )
        text = torch.where(drop_text.view(-1, 1, 1), self.null_text.to(text.dtype).expand_as(text), text)
        source_latents = source_latents * (~drop_image).view(-1, 1, 1, 1).to(source_latents.dtype)
        noise = torch.randn_like(target_latents)
        steps = self.noise_scheduler.config.num_train_timesteps
        timesteps = torch.randint(0, steps, (batch_size,), device=self.device)
        noisy = self.noise_scheduler.add_noise(target_latents, noise, timesteps)
        reward = self.compute_reward_condition(
            batch["scores"], batch["feedback"], self.reward_drop_mask(batch, batch_size)
        )
        prediction = self.unet_forward(torch.cat([noisy, source_latents], 1), timesteps, text, spatial, reward)
        objective = diffusion_objective(self.noise_scheduler, target_latents, noise, timesteps)
        diffusion = F.mse_loss(prediction.float(), objective.float())
        loss = self.hparams.llm_loss_weight * lm_loss + self.hparams.diffusion_loss_weight * diffusion
        return {"loss": loss, "lm_loss": lm_loss, "diffusion_loss": diffusion}

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        losses = self.compute_losses(batch)
        size = len(batch["instruction"])
        self.log_dict({f"train/{k}": v.detach() for k, v in losses.items()}, prog_bar=True, batch_size=size)
        return losses["loss"]

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        losses = self.compute_losses(batch)
        self.log_dict({f"val/{k}": v for k, v in losses.items()}, sync_dist=True, batch_size=len(batch["instruction"]))

    def configure_optimizers(self) -> dict[str, Any]:
        from transformers import get_cosine_schedule_with_warmup

        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.hparams.learning_rate, weight_decay=self.hparams.weight_decay)
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        schedule = get_cosine_schedule_with_warmup(optimizer, self.hparams.warmup_steps, total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        state = checkpoint["state_dict"]
        for key in list(state):
            frozen_llm = key.startswith("mllm.llm.") and "lora_" not in key
            if frozen_llm or key.startswith(FROZEN_PREFIXES):
                del state[key]

    # ---- inference ---------------------------------------------------------------------------------------
    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        """``{"key": [...], "images": [PIL]}`` (the contract of ``mredit.inference.predict.EditedImageWriter``),
        at the best rewards, with the EMA weights, seeded per batch."""
        from mredit.models.smartedit.pipeline import edit_tensors, to_pil

        with self.ema_weights():
            edited = edit_tensors(self, batch["source"], list(batch["instruction"]), seed=batch_idx)
        return {"key": list(batch["key"]), "images": [to_pil(image) for image in edited]}

    def edit(self, images: list, instructions: list[str], **options: Any) -> list:
        """PIL images + instructions -> edited PIL images (EMA weights); options: ``pipeline.edit_images``."""
        from mredit.models.smartedit.pipeline import edit_images

        with self.ema_weights():
            return edit_images(self, images, instructions, **options)

    def export(self, out_dir: str) -> None:
        """Write the trained parts (EMA weights if enabled); see ``export.export_smartedit``."""
        from mredit.models.smartedit.export import export_smartedit

        export_smartedit(self, out_dir)
