"""The LLaVA-1.1-style MLLM of SmartEdit: frozen CLIP vision tower, frozen linear projector, LLaMA with LoRA, and
the added special tokens (``<img>``, ``<im_start>``, ``<im_end>``, ``<img_0>`` ... ``<img_{r-1}>``).

Only the added tokens learn, so their embedding and LM-head rows live in two small parameters of their own
(``new_token_embeds``, ``new_token_head``) next to the untouched, frozen LLaMA matrices: ids below the LLM's vocabulary
size use the original rows, ids above it the new ones. SmartEdit resizes the matrices and copies the old rows back at
every forward; with weight decay 0 both give the same training, and here the trainable LLM parameters are exactly the
LoRA A/B matrices plus these two tensors (no optimizer state for 32000 frozen rows, nothing to copy back).

``MLLMConfig.llm_training="full"`` trains every LLM weight instead of a LoRA (no adapter is injected). That is for
the tiny random LLM of the CPU configs: it carries no language for a LoRA to adapt, so it must learn to read.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn
from transformers import CLIPVisionModel, LlamaForCausalLM

from mredit.models.smartedit.prompt import (
    DEFAULT_ANSWER,
    DEFAULT_SYSTEM,
    IGNORE_INDEX,
    IM_END,
    IM_START,
    IMAGE_TOKEN,
    SmartEditPrompt,
    img_token_names,
)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
LLMTraining = Literal["lora", "full"]


@dataclass(frozen=True)
class MLLMConfig:
    """The conversation around the LLM and the [IMG] tokens it ends with (SmartEdit's by default).

    Args:
        num_img_tokens: r, the [IMG] tokens ``<img_0> ... <img_{r-1}>`` whose hidden states feed the Q-Former.
        vision_select_layer: hidden layer of the CLIP vision tower whose patch features are used (LLaVA-1.1: -2,
            CLS dropped).
        max_instruction_tokens: instructions are truncated to this many LLM tokens.
        system_prompt: the conversation's system message.
        answer_text: the assistant's words before the [IMG] tokens (SmartEdit draws them from templates; a fixed
            text keeps the [IMG] positions deterministic).
        llm_training: how the LLM learns in the stages that train it (``mllmsd``, ``smartedit``): ``lora``
            (SmartEdit's: LoRA adapters on the frozen LLM, the module's ``lora`` setting) or ``full`` (every LLM
            weight trains and ``lora`` is not used; for the tiny random LLM, which has no language to keep).
    """

    num_img_tokens: int = 32
    vision_select_layer: int = -2
    max_instruction_tokens: int = 128
    system_prompt: str = DEFAULT_SYSTEM
    answer_text: str = DEFAULT_ANSWER
    llm_training: LLMTraining = "lora"

    def __post_init__(self) -> None:
        if self.llm_training not in get_args(LLMTraining):
            raise ValueError(f"mllm.llm_training must be 'lora' or 'full', got {self.llm_training!r}")


def smartedit_lora() -> LoraConfig:
    """SmartEdit's LoRA of the LLaMA: r 8, alpha 16, dropout 0.05 on ``q_proj`` and ``v_proj``."""
    return LoraConfig(
        r=8,
        lora_alpha=16,
        lora_dropout=0.05,
        target_modules=["q_proj", "v_proj"],
        bias="none",
        task_type="CAUSAL_LM",
    )


def resolve_lora(lora: LoraConfig | None) -> LoraConfig:
    """The LoRA to inject: a copy of ``lora`` (peft writes into its config) with ``task_type`` ``CAUSAL_LM`` when
    unset; None: ``smartedit_lora()``."""
    if lora is None:
        return smartedit_lora()
    lora = copy.deepcopy(lora)
    lora.task_type = lora.task_type or "CAUSAL_LM"
    return lora


@dataclass
class MLLMOutput:
    """``img_hidden`` ``[B, r, D]``: last hidden states at the [IMG] positions; ``lm_loss`` when labels were used."""

    img_hidden: torch.Tensor
    lm_loss: torch.Tensor | None


class LlavaMLLM(nn.Module):
    """Args:
    llm: a ``LlamaForCausalLM`` (LLaVA-1.1 weights); frozen, LoRA is injected here (``llm_training="lora"``).
    vision_tower: a ``CLIPVisionModel`` (ViT-L/14 @ 224 for LLaVA-1.1); frozen.
    projector: LLaVA-1.1's single ``nn.Linear(vision_dim, llm_dim)``; frozen.
    tokenizer: the LLM tokenizer; the special tokens are added to it here.
    config: the prompt, the [IMG] tokens and how the LLM trains (``MLLMConfig``).
    lora: the LoRA injected into the LLM (see ``resolve_lora``; None: ``smartedit_lora()``); unused when
        ``config.llm_training`` is ``full``.

    The LLM, vision tower and projector are frozen here; the module unfreezes ``llm_parameters()`` in the stages
    that train the LLM.
    """

    def __init__(
        self,
        llm: LlamaForCausalLM,
        vision_tower: CLIPVisionModel,
        projector: nn.Linear,
        tokenizer,
        config: MLLMConfig = MLLMConfig(),
        lora: LoraConfig | None = None,
    ) -> None:
        super().__init__()
        self.vision_select_layer = config.vision_select_layer
        self.base_vocab = llm.get_input_embeddings().num_embeddings
        img_tokens = img_token_names(config.num_img_tokens)
        tokenizer.add_tokens([IMAGE_TOKEN, IM_START, IM_END, *img_tokens], special_tokens=True)
        self.tokenizer = tokenizer
        self.prompt = SmartEditPrompt(
            tokenizer, config.num_img_tokens, config.system_prompt, config.answer_text, config.max_instruction_tokens
        )
        if min(self.prompt.img_ids) < self.base_vocab:
            raise ValueError(
                f"the [IMG] token ids must come after the LLM's {self.base_vocab} embedding rows; "
                f"the tokenizer has {len(tokenizer)} tokens (use the LLM's own tokenizer)"
            )
        num_new = len(tokenizer) - self.base_vocab
        for module in (llm, vision_tower, projector):
            module.requires_grad_(False)
        old_embeds, old_head = llm.get_input_embeddings().weight, llm.get_output_embeddings().weight
        self.new_token_embeds = nn.Parameter(old_embeds.detach().float().mean(0).repeat(num_new, 1))
        self.new_token_head = nn.Parameter(old_head.detach().float().mean(0).repeat(num_new, 1))
        self.llm_training = config.llm_training
        self.llm: PeftModel | LlamaForCausalLM = (
            get_peft_model(llm, resolve_lora(lora)) if config.llm_training == "lora" else llm
        )
        self.vision_tower, self.projector = vision_tower, projector

    @property
    def base_llm(self) -> LlamaForCausalLM:
        """The ``LlamaForCausalLM`` itself (inside the peft wrapper when a LoRA is injected)."""
        return self.llm.get_base_model() if isinstance(self.llm, PeftModel) else self.llm

    @property
    def hidden_size(self) -> int:
        return self.base_llm.config.hidden_size

    @property
    def vision_size(self) -> int:
        return self.vision_tower.config.hidden_size

    def lora_parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.llm.named_parameters() if "lora_" in name]

    def llm_parameters(self) -> list[nn.Parameter]:
        """The LLM weights its training stages train: the LoRA A/B matrices (``lora``) or all of them (``full``);
        the new token rows (``new_token_parameters``) come on top in every stage."""
        return self.lora_parameters() if self.llm_training == "lora" else list(self.llm.parameters())

    def new_token_parameters(self) -> list[nn.Parameter]:
        return [self.new_token_embeds, self.new_token_head]

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` in [-1, 1] -> CLIP pixel values at the tower's resolution."""
        size = self.vision_tower.config.image_size
        x = (images.float() + 1) / 2
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
        mean, std = x.new_tensor(CLIP_MEAN).view(1, 3, 1, 1), x.new_tensor(CLIP_STD).view(1, 3, 1, 1)
        return (x - mean) / std

    def patch_features(self, images: torch.Tensor) -> torch.Tensor:
        """CLIP patch features ``[B, N, vision_dim]`` of the selected layer, CLS dropped (LLaVA-1.1)."""
        pixels = self.preprocess(images).to(self.vision_tower.dtype)
        out = self.vision_tower(pixel_values=pixels, output_hidden_states=True, return_dict=True)
        return out.hidden_states[self.vision_select_layer][:, 1:]

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        base = self.llm.get_input_embeddings()(ids.clamp(max=self.base_vocab - 1))
        new = self.new_token_embeds[(ids - self.base_vocab).clamp(min=0)].to(base.dtype)
        return torch.where((ids >= self.base_vocab).unsqueeze(-1), new, base)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        hidden = hidden.float()
        old = F.linear(hidden, self.llm.get_output_embeddings().weight.float())
        return torch.cat([old, hidden @ self.new_token_head.t()], dim=-1)

    def forward(
        self, instructions: list[str], patch_features: torch.Tensor | None, compute_lm_loss: bool = True
    ) -> MLLMOutput:
        """Run the LLM on the prompts (teacher-forcing the answer and the r [IMG] tokens).

        ``patch_features`` ``[B, N, vision_dim]`` (None: the text-only alignment prompt).
        """
        prompt = self.prompt.build(instructions, with_image=patch_features is not None)
        device = self.new_token_embeds.device
        batch = len(instructions)
        prefix = self.embed(prompt.prefix.to(device)).unsqueeze(0).expand(batch, -1, -1)
        suffix = self.embed(prompt.suffix.to(device))
        parts, masks = [prefix], [torch.ones(prefix.shape[:2], dtype=torch.bool, device=device)]
        if patch_features is not None:
            image = self.projector(patch_features.to(self.projector.weight.dtype)).to(suffix.dtype)
            parts.append(image)
            masks.append(torch.ones(image.shape[:2], dtype=torch.bool, device=device))
        offset = sum(part.shape[1] for part in parts)
        parts.append(suffix)
        masks.append(prompt.suffix_mask.to(device))
        hidden = self.base_llm.model(
            inputs_embeds=torch.cat(parts, 1),
            attention_mask=torch.cat(masks, 1).long(),
            use_cache=False,
            return_dict=True,
        ).last_hidden_state
        img_index = (prompt.img_index.to(device) + offset).unsqueeze(-1).expand(-1, -1, hidden.shape[-1])
        img_hidden = hidden.gather(1, img_index)
        lm_loss = None
        if compute_lm_loss:
            labels = torch.full(hidden.shape[:2], IGNORE_INDEX, dtype=torch.long, device=device)
            labels[:, offset:] = prompt.suffix_labels.to(device)
            logits = self.logits(hidden[:, :-1])
            lm_loss = F.cross_entropy(logits.flatten(0, 1), labels[:, 1:].flatten(), ignore_index=IGNORE_INDEX)
        return MLLMOutput(img_hidden=img_hidden, lm_loss=lm_loss)
