"""The tiny text encoder's tokenizer: a ``CLIPTokenizer`` built offline and deterministically at run time.

Character level by default (every byte, and every byte ending a word). Given a word list, byte-pair merges are
learned on it until each listed word is a single token; other words still fall back to characters. A tiny
encoder trained from scratch then reads "red" as one token instead of composing it from r, e, d.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Literal

from transformers import CLIPTokenizer

from mredit.synth.vocabulary import synth_words

BOS_TOKEN, EOS_TOKEN = "<|startoftext|>", "<|endoftext|>"
END_OF_WORD = "</w>"


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte-level alphabet: every byte maps to a printable unicode character."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = list(printable), 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


def _merge(symbols: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    out, i = [], 0
    while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
            out.append(pair[0] + pair[1])
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return tuple(out)


def learn_word_merges(words: Sequence[str]) -> list[tuple[str, str]]:
    """Byte-pair merges, most frequent pair first (ties in lexical order), until every word is one symbol.

    Words are lower-case ASCII as CLIP's pre-tokenizer yields them; the last symbol carries ``</w>`` as in CLIP.
    """
    byte_chars = _bytes_to_unicode()
    symbols = {}
    for word in sorted(set(words)):
        chars = tuple(byte_chars[b] for b in word.lower().encode("utf-8"))
        if chars:
            symbols[word] = (*chars[:-1], chars[-1] + END_OF_WORD)
    merges: list[tuple[str, str]] = []
    while True:
        pairs = Counter(pair for s in symbols.values() for pair in zip(s, s[1:]))
        if not pairs:
            return merges
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        merges.append(best)
        symbols = {word: _merge(s, best) for word, s in symbols.items()}


def build_tiny_tokenizer(model_max_length: int = 77, words: Sequence[str] = ()) -> CLIPTokenizer:
    """A CLIP tokenizer over the byte alphabet, with ``words`` as single tokens (none: character level).

    Character level: 514 ids, BOS = 512 and EOS = pad = 513. With words, the merged symbols follow the 512
    byte tokens and BOS/EOS come last (``components.tiny_text_encoder_config`` reads the ids from the tokenizer).
    """
    alphabet = list(_bytes_to_unicode().values())
    tokens = alphabet + [c + END_OF_WORD for c in alphabet]
    merges = learn_word_merges(words)
    known = set(tokens)
    for left, right in merges:
        if left + right not in known:
            tokens.append(left + right)
            known.add(left + right)
    tokens += [BOS_TOKEN, EOS_TOKEN]
    vocab = {token: index for index, token in enumerate(tokens)}
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)


TinyTokenizer = Literal["characters", "synth_words"]


def tokenizer_words(kind: TinyTokenizer) -> tuple[str, ...]:
    """The words a tiny tokenizer keeps whole: none (``characters``) or the synthetic world's vocabulary."""
    if kind == "characters":
        return ()
    if kind == "synth_words":
        return synth_words()
    raise ValueError(f"tiny_tokenizer must be 'characters' or 'synth_words', got {kind!r}")
