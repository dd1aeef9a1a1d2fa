"""Tiny, randomly initialised SmartEdit MLLM parts for CPU training and tests (same classes as the real ones).

The LLM tokenizer is a byte-level BPE built in memory: every UTF-8 string tokenises, nothing is downloaded, and it
is a ``PreTrainedTokenizerFast`` like LLaMA's, so the special [IMG] tokens are added through the same ``add_tokens``
call. Without words it has no merges (one token per byte); given words (``SmartEditModule(tiny_tokenizer=
"synth_words")``), merges are learned until each word after a space (how an instruction's words reach it) is one
token, as the tiny CLIP tokenizer of InstructPix2Pix does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

TINY_LLM_SPECIALS = ("<unk>", "<s>", "</s>")
TINY_LLM_HIDDEN = 64
TINY_VISION_HIDDEN = 32
SPACE_SYMBOL = "\u0120"  # "Ġ": the byte-level symbol of a space, which starts every word after the first


def learn_spaced_word_merges(words: Sequence[str]) -> list[tuple[str, str]]:
    """Byte-pair merges, most frequent pair first (ties in lexical order), until every ``" " + word`` is one
    byte-level symbol. Words must be ASCII letters (their byte-level symbols are themselves)."""
    symbols = {}
    for word in sorted(set(words)):
        if not word.isascii() or not word.isalpha():
            raise ValueError(f"tiny LLM tokenizer words must be ASCII letters, got {word!r}")
        symbols[word] = (SPACE_SYMBOL, *word)
    merges: list[tuple[str, str]] = []
    while True:
        pairs = Counter(pair for s in symbols.values() for pair in zip(s, s[1:]))
        if not pairs:
            return merges
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        merges.append(best)
        symbols = {word: _merge(s, best) for word, s in symbols.items()}


def _merge(symbols: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    out, i = [], 0
    while i < len(symbols):
        if symbols[i : i + 2] == pair:
            out.append(pair[0] + pair[1])
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return tuple(out)


def tiny_llm_tokenizer(words: Sequence[str] = ()) -> PreTrainedTokenizerFast:
    """Byte-level tokenizer: ids 0..2 = ``<unk> <s> </s>``, then the 256 byte symbols, then the merged symbols
    that make each of ``words`` (after a space) one token (none: one token per byte)."""
    tokens = [*TINY_LLM_SPECIALS, *sorted(set(pre_tokenizers.ByteLevel.alphabet()))]
    merges = learn_spaced_word_merges(words)
    known = set(tokens)
    for left, right in merges:
        if left + right not in known:
            tokens.append(left + right)
            known.add(left + right)
    vocab = {token: i for i, token in enumerate(tokens)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>"))
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
