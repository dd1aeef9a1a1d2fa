"""Tiny, randomly initialised SmartEdit MLLM parts for CPU training and tests (same classes as the real ones).

The LLM tokenizer is a byte-level BPE without merges, built in memory: every UTF-8 string tokenises (one token per
byte), nothing is downloaded, and it is a ``PreTrainedTokenizerFast`` like LLaMA's, so the special [IMG] tokens are
added through the same ``add_tokens`` call.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

TINY_LLM_SPECIALS = ("<unk>", "<s>", "</s>")
TINY_LLM_HIDDEN = 64
TINY_VISION_HIDDEN = 32


def tiny_llm_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level tokenizer: ids 0..2 = ``<unk> <s> </s>``, then the 256 byte symbols."""
    byte_symbols = sorted(set(pre_tokenizers.ByteLevel.alphabet()))
    vocab = {token: i for i, token in enumerate([*TINY_LLM_SPECIALS, *byte_symbols])}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<unk>"
    )


def tiny_llm(vocab_size: int, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=TINY_LLM_HIDDEN,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    return LlamaForCausalLM(config)


def tiny_vision_tower(image_size: int = 32, seed: int = 0) -> CLIPVisionModel:
    torch.manual_seed(seed)
    config = CLIPVisionConfig(
        hidden_size=TINY_VISION_HIDDEN,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=image_size,
        patch_size=image_size // 4,  # a 4x4 patch grid whatever the resolution
    )
    return CLIPVisionModel(config)


def tiny_projector(seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(TINY_VISION_HIDDEN, TINY_LLM_HIDDEN)
