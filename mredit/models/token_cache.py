"""Fixed-length tokenizations memoised per text, for the training step's instructions and failure texts.

Training batches repeat a small set of texts (the synthetic world has about a thousand instructions and a few
hundred failure texts; "None" is most of the feedback), and the slow Python ``CLIPTokenizer`` costs tens of
microseconds per text: on the tiny CPU model that was 1.5 % of a step. The encodings are the tokenizer's own,
so the text encoder sees exactly the same ids.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import BatchEncoding

DEFAULT_MAX_ENTRIES = 100_000


class CachedTokenizer:
    """Calls the tokenizer the way the training step does (``padding="max_length"``, ``truncation=True``,
    ``return_tensors="pt"``) and remembers each text's ``input_ids`` and ``attention_mask``; any other call goes
    straight to the tokenizer. The memo is dropped when it holds ``max_entries`` texts (a stream of ever-new
    texts only costs the tokenizer's time, not memory)."""

    def __init__(self, tokenizer: Any, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self.tokenizer, self.max_entries = tokenizer, max_entries
        self._rows: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def model_max_length(self) -> int:
        return self.tokenizer.model_max_length

    def __call__(
        self,
        texts: str | list[str],
        padding: bool | str = False,
        max_length: int | None = None,
        truncation: bool | None = None,
        return_tensors: str | None = None,
        **kwargs: Any,
    ) -> BatchEncoding:
        memoisable = padding == "max_length" and truncation is True and return_tensors == "pt" and not kwargs
        if not memoisable or isinstance(texts, str):
            return self.tokenizer(
                texts, padding=padding, max_length=max_length, truncation=truncation, return_tensors=return_tensors
            )
        length = max_length or self.tokenizer.model_max_length
        unique = list(dict.fromkeys(texts))
        if len(self._rows) + len(unique) > self.max_entries:
            self._rows.clear()
        missing = [text for text in unique if (text, length) not in self._rows]
        if missing:
            encoded = self.tokenizer(
                missing, padding="max_length", max_length=length, truncation=True, return_tensors="pt"
            )
            for text, ids, mask in zip(missing, encoded.input_ids, encoded.attention_mask):
                self._rows[text, length] = (ids, mask)
        rows = [self._rows[text, length] for text in texts]
        if not rows:
            empty = torch.zeros(0, length, dtype=torch.long)
            return BatchEncoding({"input_ids": empty, "attention_mask": empty.clone()})
        ids, masks = zip(*rows)
        return BatchEncoding({"input_ids": torch.stack(ids), "attention_mask": torch.stack(masks)})


def cached_tokenizer(module: Any) -> CachedTokenizer:
    """``module.tokenizer`` behind a memo kept on the module (a new one when the tokenizer is replaced)."""
    cache = module.__dict__.get("_cached_tokenizer")
    if cache is None or cache.tokenizer is not module.tokenizer:
        cache = module.__dict__["_cached_tokenizer"] = CachedTokenizer(module.tokenizer)
    return cache
