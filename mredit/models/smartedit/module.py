"""``SmartEditModule``: SmartEdit (LLaVA-1.1 MLLM -> [IMG] tokens -> Q-Former -> BIM -> InstructPix2Pix UNet) as a
LightningModule, with optional multi-reward conditioning through the shared ``RewardConditioning`` callback.

Stages (``stage``): ``align`` (SmartEdit stage 1: the Q-Former output of the [IMG] states regresses the CLIP text
embedding of the instruction; trains the new token rows and the Q-Former), ``mllmsd`` (stage 2a: editing without
BIM; + LoRA, or the whole LLM with ``mllm.llm_training: full``, and the whole UNet), ``smartedit`` (stage 2b: + the
zero-initialised BIM). Every stage builds every part, so a stage's checkpoint feeds the next one through
``init_from``.

``__init__`` only checks and records the settings (and that every pretrained path is set); the parts are built, and
the pretrained weights read, in ``configure_model``.

The UNet stays a stock ``UNet2DConditionModel``; BIM's spatial feature and the reward condition reach it through
forward hooks on ``conv_in`` that are registered in a fixed order, so ``h = conv_in(x); h += v_sp; h += reward(h)``.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal, NamedTuple

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from peft import LoraConfig
from PIL import Image

from mredit.conditioning.base import RewardCondition
from mredit.conditioning.seams import conv_in_residual, reward_conditioning
from mredit.data.transforms import pixels_to_float
from mredit.models.ema import EMAMixin
from mredit.models.objective import diffusion_objective
from mredit.models.optimization import LRSchedulerName, adamw, lr_scheduler_config
from mredit.models.resolution import TrainedResolutionMixin
from mredit.models.reward_mixin import RewardConditionedMixin
from mredit.models.smartedit.bim import BidirectionalInteractionModule, BIMConfig
from mredit.models.smartedit.export import export_smartedit
from mredit.models.smartedit.hparams import LEGACY_NAMES, config_dict, to_config, upgrade_legacy_hparams
from mredit.models.smartedit.loading import PretrainedWeights, diffusion_components, load_mllm_parts, tiny_mllm_parts
from mredit.models.smartedit.mllm import LlavaMLLM, MLLMConfig, resolve_lora
from mredit.models.smartedit.pipeline import edit_images, edit_tensors, to_pil
from mredit.models.smartedit.qformer import ImgTokenResampler, QFormerConfig
from mredit.models.tiny_tokenizer import TinyTokenizer, tokenizer_words
from mredit.pipelines.reward_edit import AUTO_SCHEDULER

log = logging.getLogger(__name__)
# jsonargparse gives a LoraConfig parsed from a config an empty LoftQConfig for peft's ``loftq_config={}``, which
# peft then drops with this warning on every run
warnings.filterwarnings("ignore", message="`loftq_config` specified but will be ignored", category=UserWarning)

Stage = Literal["align", "mllmsd", "smartedit"]
# never trained: left out of checkpoints (rebuilt from the pretrained paths, or the seeded tiny init)
FROZEN_PREFIXES = ("mllm.vision_tower.", "mllm.projector.", "vae.", "text_encoder.")


def conditioning_dropout_masks(random_p: torch.Tensor, p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """SmartEdit's masks from one uniform draw per sample: text dropped below 2p, source image in [p, 3p), so p of
    the samples lose the text only, p both, p the image only. BIM's spatial feature is never dropped."""
    return random_p < 2 * p, (random_p >= p) & (random_p < 3 * p)


@contextmanager
def fp32_on_cpu() -> Iterator[None]:
    """New tensors on the CPU in float32, whatever device or dtype context the caller is in."""
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        with torch.device("cpu"):
            yield
    finally:
        torch.set_default_dtype(dtype)


class Condition(NamedTuple):
    """What the MLLM side gives the UNet, plus what the losses read."""

    text: torch.Tensor  # f_final [B, Q, width]: the UNet's encoder_hidden_states
    spatial: torch.Tensor | None  # v_sp, added after conv_in (stage 2b only)
    lm_loss: torch.Tensor | None
    qformer_out: torch.Tensor  # f, the Q-Former output before the BIM: what the alignment loss compares


class SmartEditModule(RewardConditionedMixin, EMAMixin, TrainedResolutionMixin, pl.LightningModule):
    """SmartEdit as a LightningModule (real sizes are SmartEdit's defaults; the tiny configs shrink them).

    The parts are built in ``configure_model`` (Lightning calls it; call it yourself on a module you create in
    Python): ``__init__`` only records the settings and checks that every pretrained path is set.

    Args:
        stage: ``align`` | ``mllmsd`` | ``smartedit`` (see the module docstring).
        tiny: random tiny parts (CPU) instead of the pretrained weights; ``pretrained`` is then ignored.
        tiny_tokenizer: the tiny parts' tokenizers (the LLM's and the CLIP text encoder's): ``characters`` spells
            every word out (one LLM token per byte); ``synth_words`` makes each word of the synthetic world's
            instructions and feedback one token (``mredit.synth.vocabulary``), as ``InstructPix2PixModule``'s.
        pretrained: where the LLaVA-1.1 folder, the CLIP vision tower and the diffusers InstructPix2Pix folder come
            from (``$VARS`` are expanded), and the LLM's dtype.
        init_from: a Lightning checkpoint of the previous stage; its weights are loaded non-strictly once the parts
            are built.
        init_seed: the seed of the tiny random parts (None: the run's ``seed_everything`` seed). It is recorded in
            the hyperparameters, so a checkpoint, which leaves the frozen parts out, rebuilds the same ones.
        mllm: the conversation prompt, the number of [IMG] tokens and how the LLM trains (``llm_training``:
            ``lora``, SmartEdit's, or ``full``, the tiny configs', whose random LLM has no language to adapt).
        lora: the LoRA of the LLaMA (a ``peft.LoraConfig``; None: SmartEdit's, r 8, alpha 16, dropout 0.05 on
            q_proj/v_proj; ``task_type`` defaults to ``CAUSAL_LM``). Fields left out of a given one take peft's
            defaults (lora_alpha 8, lora_dropout 0), so the configs spell out SmartEdit's four. Not used with
            ``mllm.llm_training: full``.
        qformer: the SD-Q-Former; its width is the UNet ``cross_attention_dim``.
        bim: the bidirectional interaction module; its width is the vision tower's.
        conditioning_dropout: p of SmartEdit's dropout (text 2p, image [p, 3p), both p); in [0, 1/3].
        llm_loss_weight: weight of the LM cross-entropy.
        diffusion_loss_weight: weight of the diffusion MSE.
        align_loss_weight: weight of the stage-1 alignment MSE.
        edit_align_loss_weight: weight of the same alignment MSE (Q-Former output against the CLIP text embedding
            of the instruction) kept in the editing stages. 0 is SmartEdit's recipe. The tiny configs set it: their
            random LLM carries no language, and without it the diffusion and LM losses alone let the condition forget
            the instruction (docs/smartedit.md, "Reading the instruction").
        learning_rate: AdamW learning rate.
        weight_decay: AdamW weight decay.
        lr_warmup_steps: linear warm-up steps of the learning rate.
        lr_scheduler: diffusers' schedule name (SmartEdit: ``cosine``, decaying to 0 over the run after the warm-up;
            see ``mredit.models.optimization``).
        gradient_checkpointing: activation checkpointing in the LLaMA and the UNet.
        ema_decay: EMA of the trainable weights (None: off, as in SmartEdit).
        scheduler_config: overrides of the noise scheduler's config (tiny or pretrained), e.g. ``prediction_type``.
        edit_residual: diffuse the edit (target minus source latents) instead of the target, as
            ``InstructPix2PixModule(edit_residual=True)``; ``edit`` adds the source latents back. With
            ``prediction_type: sample`` this is the tiny recipe of docs/training.md.
        num_inference_steps: sampling steps of ``predict_step``/``edit`` (SmartEdit: 100).
        text_guidance_scale: text guidance of ``predict_step``/``edit`` (SmartEdit: 7.5).
        image_guidance_scale: image guidance of ``predict_step``/``edit`` (SmartEdit: 1.5).
        **legacy_hparams: the flat names of checkpoints written before the part configs (``qformer_layers``,
            ``lora_r``, ``cond_dropout``, ``inference_steps``, ... see ``hparams.LEGACY_NAMES``), so that
            ``load_from_checkpoint`` and ``--ckpt_path`` read them; they are recorded under the current names.
    """

    def __init__(
        self,
        stage: Stage = "smartedit",
        tiny: bool = False,
        tiny_tokenizer: TinyTokenizer = "characters",
        pretrained: PretrainedWeights = PretrainedWeights(),
        init_from: str | None = None,
        init_seed: int | None = None,
        mllm: MLLMConfig = MLLMConfig(),
        lora: LoraConfig | None = None,
        qformer: QFormerConfig = QFormerConfig(),
        bim: BIMConfig = BIMConfig(),
        conditioning_dropout: float = 0.05,
        llm_loss_weight: float = 1.0,
        diffusion_loss_weight: float = 1.0,
        align_loss_weight: float = 1.0,
        edit_align_loss_weight: float = 0.0,
        learning_rate: float = 1e-5,
        weight_decay: float = 0.0,
        lr_warmup_steps: int = 0,
        lr_scheduler: LRSchedulerName = "cosine",
        gradient_checkpointing: bool = False,
        ema_decay: float | None = None,
        scheduler_config: dict[str, Any] | None = None,
        edit_residual: bool = False,
        num_inference_steps: int = 100,
        text_guidance_scale: float = 7.5,
        image_guidance_scale: float = 1.5,
        **legacy_hparams: Any,
    ) -> None:
        super().__init__()
        unknown = sorted(set(legacy_hparams) - set(LEGACY_NAMES))
        if unknown:
            raise TypeError(f"SmartEditModule got unexpected arguments: {', '.join(unknown)}")
        self.save_hyperparameters()  # (LightningCLI adds _class_path and _instantiator)
        for name in legacy_hparams:  # recorded under the current names below
            self.hparams.pop(name, None)
        settings = {
            "pretrained": pretrained,
            "mllm": mllm,
            "lora": lora,
            "qformer": qformer,
            "bim": bim,
            "conditioning_dropout": conditioning_dropout,
            "lr_warmup_steps": lr_warmup_steps,
            "num_inference_steps": num_inference_steps,
            "text_guidance_scale": text_guidance_scale,
            "image_guidance_scale": image_guidance_scale,
        }
        settings = upgrade_legacy_hparams({**settings, **legacy_hparams})
        if stage not in ("align", "mllmsd", "smartedit"):
            raise ValueError(f"stage must be align, mllmsd or smartedit, got {stage!r}")
        tokenizer_words(tiny_tokenizer)  # one clear error for an unknown name, before anything is built
        if tiny_tokenizer != "characters" and not tiny:
            raise ValueError(f"tiny_tokenizer={tiny_tokenizer!r} is for tiny parts: the pretrained ones have theirs")
        if not 0.0 <= settings["conditioning_dropout"] <= 1 / 3:
            raise ValueError(
                "conditioning_dropout must be in [0, 1/3] (text 2p, image [p, 3p)), "
                f"got {settings['conditioning_dropout']}"
            )
        self.stage = stage
        self.pretrained_weights = to_config(PretrainedWeights, settings["pretrained"])
        self.mllm_config = to_config(MLLMConfig, settings["mllm"])
        self.lora_config = resolve_lora(to_config(LoraConfig, settings["lora"]))
        self.qformer_config = to_config(QFormerConfig, settings["qformer"])
        self.bim_config = to_config(BIMConfig, settings["bim"])
        # a run without weights fails here, in seconds, naming every variable to set
        self._weights = None if tiny else self.pretrained_weights.resolve()
        if init_seed is None:
            init_seed = torch.initial_seed() % 2**32
        parts = {
            "pretrained": self.pretrained_weights,
            "mllm": self.mllm_config,
            "lora": self.lora_config,
            "qformer": self.qformer_config,
            "bim": self.bim_config,
        }
        # plain values only: checkpoints load with weights_only, smartedit.json is JSON
        self.save_hyperparameters({**settings, **{k: config_dict(v) for k, v in parts.items()}, "init_seed": init_seed})
        self.init_reward_conditioning()
        self.configure_ema(ema_decay or 0.0, enabled=ema_decay is not None)
        self.strict_loading = False  # checkpoints leave out the frozen pretrained weights (FROZEN_PREFIXES)

    # ---- parts -------------------------------------------------------------------------------------------
    @property
    def is_built(self) -> bool:
        return "unet" in self._modules

    def configure_model(self) -> None:
        """Build the parts (reading the pretrained weights, or the seeded tiny ones), then load ``init_from``.

        Idempotent: returns at once when the parts exist. Lightning calls it before fit/validate/test/predict and in
        ``load_from_checkpoint`` (before the state dict is loaded); ``RewardConditioning.setup``, which runs
        earlier, calls it to read the UNet config. The parts are built on the CPU in float32, as a module built
        in ``__init__`` was, whatever device or precision context the caller is in: the tiny parts and the random
        inits do not depend on it, and Lightning moves and casts the module afterwards.
        """
        if self.is_built:
            return
        hp = self.hparams
        with fp32_on_cpu():
            if self._weights is None:
                words = tokenizer_words(hp.tiny_tokenizer)
                parts = tiny_mllm_parts(hp.init_seed, words)
                components = diffusion_components(None, hp.init_seed, hp.scheduler_config, words)
            else:
                weights = self._weights
                components = diffusion_components(weights.diffusion_path, scheduler_config=hp.scheduler_config)
                parts = load_mllm_parts(weights.llava_path, weights.vision_path, weights.llm_dtype)
            width = components.unet.config.cross_attention_dim
            if components.text_encoder.config.hidden_size != width:
                text_width = components.text_encoder.config.hidden_size
                raise ValueError(f"CLIP text width {text_width} != UNet cross-attention {width}")
            self.unet, self.vae = components.unet, components.vae
            self.text_encoder, self.tokenizer = components.text_encoder, components.tokenizer
            self.noise_scheduler = components.scheduler
            self.mllm = LlavaMLLM(
                parts.llm, parts.vision_tower, parts.projector, parts.tokenizer, self.mllm_config, self.lora_config
            )
            self.qformer = ImgTokenResampler(self.mllm.hidden_size, width, self.qformer_config)
            self.bim = BidirectionalInteractionModule(
                width, self.mllm.vision_size, self.unet.config.block_out_channels[0], self.bim_config
            )
            self.register_buffer("null_text", self.clip_text_embedding([""]), persistent=True)
        self._set_trainable()
        if hp.gradient_checkpointing:
            self.mllm.base_llm.gradient_checkpointing_enable({"use_reentrant": False})
            self.unet.enable_gradient_checkpointing()
        if hp.init_from is not None:
            self.load_previous_stage(hp.init_from)

    def _set_trainable(self) -> None:
        """align: new token rows + Q-Former; mllmsd: + LoRA (or the whole LLM) + UNet; smartedit: + BIM. The rest
        stays frozen."""
        for module in (self.vae, self.text_encoder, self.unet, self.qformer, self.bim):
            module.requires_grad_(False)
        for param in self.mllm.llm_parameters():
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
            max_length=self.qformer_config.num_queries,
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
    ) -> Condition:
        """MLLM -> Q-Former -> (BIM): f_final, v_sp (None before stage 2b), the LM loss (if asked) and f."""
        with torch.no_grad():
            patches = self.mllm.patch_features(images)
        out = self.mllm(instructions, patches, compute_lm_loss=compute_lm_loss)
        qformer_out = self.qformer(out.img_hidden.float())
        text, spatial = qformer_out, None
        if self.stage == "smartedit":
            text, spatial = self.bim(qformer_out, patches.float(), latent_size)
        return Condition(text, spatial, out.lm_loss, qformer_out)

    def unet_forward(
        self,
        sample: torch.Tensor,
        timesteps: torch.Tensor,
        text: torch.Tensor,
        spatial: torch.Tensor | None,
        reward: RewardCondition | None,
    ) -> torch.Tensor:
        # hooks run in registration order: h = conv_in(x) + v_sp, then h + reward_latent(h)
        with conv_in_residual(self.unet, spatial), reward_conditioning(self.unet, reward):
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
        source, target = pixels_to_float(batch["source"]), pixels_to_float(batch["target"])
        batch_size = source.shape[0]
        with torch.no_grad():
            target_latents = self.vae.encode(target.to(self.vae.dtype)).latent_dist.sample()
            target_latents = target_latents * self.vae.config.scaling_factor
            source_latents = self.vae.encode(source.to(self.vae.dtype)).latent_dist.mode()
            if self.hparams.edit_residual:  # before the image dropout: the edit is always relative to the source
                target_latents = target_latents - source_latents * self.vae.config.scaling_factor
        latent_size = tuple(source_latents.shape[-2:])
        text, spatial, lm_loss, qformer_out = self.condition(source, instructions, latent_size, True)
        drop_text, drop_image = conditioning_dropout_masks(
            torch.rand(batch_size, device=self.device), self.hparams.conditioning_dropout
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
        losses = {"loss": loss, "lm_loss": lm_loss, "diffusion_loss": diffusion}
        if self.hparams.edit_align_loss_weight > 0:
            align = F.mse_loss(qformer_out, self.clip_text_embedding(instructions).float())
            losses["align_loss"] = align
            losses["loss"] = loss + self.hparams.edit_align_loss_weight * align
        return losses

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        losses = self.compute_losses(batch)
        size = len(batch["instruction"])
        self.log_dict({f"train/{k}": v.detach() for k, v in losses.items()}, prog_bar=True, batch_size=size)
        return losses["loss"]

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        losses = self.compute_losses(batch)
        self.log_dict({f"val/{k}": v for k, v in losses.items()}, sync_dist=True, batch_size=len(batch["instruction"]))

    def configure_optimizers(self) -> dict[str, Any]:
        params = [p for p in self.parameters() if p.requires_grad]
        # PyTorch's AdamW defaults for betas and eps, fused where every parameter allows it (as InstructPix2Pix)
        optimizer = adamw(params, self.hparams.learning_rate, (0.9, 0.999), 1e-8, self.hparams.weight_decay)
        schedule = lr_scheduler_config(self, optimizer, self.hparams.lr_scheduler, self.hparams.lr_warmup_steps)
        return {"optimizer": optimizer, "lr_scheduler": schedule}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        state = checkpoint["state_dict"]
        lora = self.mllm_config.llm_training == "lora"  # else the whole LLM trained: it is saved
        for key in list(state):
            frozen_llm = lora and key.startswith("mllm.llm.") and "lora_" not in key
            if frozen_llm or key.startswith(FROZEN_PREFIXES):
                del state[key]

    # ---- inference ---------------------------------------------------------------------------------------
    def edit_tensors(self, source: torch.Tensor, instructions: list[str], **options: Any) -> torch.Tensor:
        """Edit ``source`` ``[B, 3, H, W]`` in [-1, 1] with the current weights (training previews wrap it in the
        EMA weights); returns ``[B, 3, H, W]`` in [-1, 1]. ``options``: ``pipeline.edit_tensors``'s."""
        return edit_tensors(self, source, list(instructions), **options)

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        """``{"key": [...], "images": [PIL]}`` (the contract of
        ``mredit.callbacks.edited_image_writer.EditedImageWriter``), at the best rewards, with the EMA weights,
        seeded per batch."""
        with self.ema_weights():
            edited = edit_tensors(self, pixels_to_float(batch["source"]), list(batch["instruction"]), seed=batch_idx)
        return {"key": list(batch["key"]), "images": [to_pil(image) for image in edited]}

    def edit(
        self,
        images: list[Image.Image],
        instructions: list[str],
        scores: Any = None,
        feedback: list[str] | list[list[str]] | None = None,
        num_inference_steps: int | None = None,
        text_guidance_scale: float | None = None,
        image_guidance_scale: float | None = None,
        seed: int = 0,
        scheduler: str = AUTO_SCHEDULER,
        resolution: int | None = None,
        progress: bool = False,
    ) -> list[Image.Image]:
        """PIL images + instructions -> edited PIL images, with the EMA weights (builds the parts first if needed).

        ``scores``: one ``(following, preserving, quality)`` triple or one per image (default the best, 5, 5, 5);
        ``feedback``: three texts or one triple per image (default no failure). The step count and guidance scales
        default to the hyperparameters; images are fitted to ``resolution`` (long side; default the resolution the
        module was trained at, ``trained_resolution``, else 512 with a note). ``progress``: a progress bar over the
        denoising steps of each image (stderr).
        """
        self.configure_model()
        with self.ema_weights():
            return edit_images(
                self,
                images,
                instructions,
                resolution=resolution,
                scores=scores,
                feedback=feedback,
                num_inference_steps=num_inference_steps,
                text_guidance_scale=text_guidance_scale,
                image_guidance_scale=image_guidance_scale,
                seed=seed,
                scheduler=scheduler,
                progress=progress,
            )

    def export(self, out_dir: str) -> None:
        """Write the trained parts (EMA weights if enabled); see ``export.export_smartedit``."""
        self.configure_model()
        export_smartedit(self, out_dir)
