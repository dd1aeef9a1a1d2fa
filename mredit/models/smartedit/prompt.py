"""SmartEdit's conversation prompt, tokenised around an image slot and ending in the r [IMG] tokens.

The sequence is ``[BOS] system USER: <im_start> | image features | <im_end> instruction ASSISTANT: answer
<img_0> ... <img_{r-1}> [EOS]`` (vicuna-v1 roles), right-padded. The prefix before the image slot is the same for
every sample, so the image features are *inserted* at one fixed position (SmartEdit prepends them and relies on the
padding being on the right; inserting is what it means). Loss is on the answer, the [IMG] tokens and EOS only.
In the alignment stage (text only) the image slot and the ``<im_start>/<im_end>`` markers are left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

IMAGE_TOKEN, IM_START, IM_END = "<img>", "<im_start>", "<im_end>"
IGNORE_INDEX = -100
DEFAULT_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant can generate <img> "
    "and performs image-to-image translation."
)
DEFAULT_ANSWER = "Sure, this is the edited image."


def img_token_names(count: int) -> list[str]:
    return [f"<img_{i}>" for i in range(count)]


@dataclass
class PromptIds:
    """``prefix`` ``[P]`` (shared), ``suffix``/``suffix_labels``/``suffix_mask`` ``[B, T]`` right-padded, and
    ``img_index`` ``[B, r]``: the [IMG] token positions inside the suffix."""

    prefix: torch.Tensor
    suffix: torch.Tensor
    suffix_labels: torch.Tensor
    suffix_mask: torch.Tensor
    img_index: torch.Tensor


class SmartEditPrompt:
    """Tokenises instructions into ``PromptIds`` with ``tokenizer`` (which must already hold the special tokens)."""

    def __init__(
        self,
        tokenizer,
        num_img_tokens: int,
        system: str = DEFAULT_SYSTEM,
        answer: str = DEFAULT_ANSWER,
        max_instruction_tokens: int = 128,
    ) -> None:
        self.tokenizer, self.system, self.answer = tokenizer, system, answer
        self.max_instruction_tokens = max_instruction_tokens
        self.img_ids = tokenizer.convert_tokens_to_ids(img_token_names(num_img_tokens))
        self.im_start, self.im_end = tokenizer.convert_tokens_to_ids([IM_START, IM_END])
        if tokenizer.bos_token_id is None or tokenizer.eos_token_id is None:
            raise ValueError("the LLM tokenizer needs BOS and EOS tokens")
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.unk_token_id or 0

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def build(self, instructions: list[str], with_image: bool = True) -> PromptIds:
        prefix = [self.tokenizer.bos_token_id, *self._ids(f"{self.system} USER:")]
        if with_image:
            prefix.append(self.im_start)
        rows, labels = [], []
        answer = self._ids(f" {self.answer}")
        for instruction in instructions:
            text = self._ids(" " + " ".join(instruction.split()))[: self.max_instruction_tokens]
            context = ([self.im_end] if with_image else []) + text + self._ids(" ASSISTANT:")
            supervised = answer + list(self.img_ids) + [self.tokenizer.eos_token_id]
            rows.append(context + supervised)
            labels.append([IGNORE_INDEX] * len(context) + supervised)
        width = max(len(row) for row in rows)
        suffix = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        suffix_labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        suffix_mask = torch.zeros((len(rows), width), dtype=torch.bool)
        img_index = torch.empty((len(rows), len(self.img_ids)), dtype=torch.long)
        for i, (row, label) in enumerate(zip(rows, labels)):
            suffix[i, : len(row)] = torch.tensor(row)
            suffix_labels[i, : len(row)] = torch.tensor(label)
            suffix_mask[i, : len(row)] = True
            start = len(row) - 1 - len(self.img_ids)  # [IMG] tokens sit right before EOS
            img_index[i] = torch.arange(start, start + len(self.img_ids))
        return PromptIds(torch.tensor(prefix), suffix, suffix_labels, suffix_mask, img_index)
