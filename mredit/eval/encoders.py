"""CLIP and DINO embeddings through transformers, from a local folder or a hub id (or models built in code).

``ClipEncoder``: ``CLIPModel`` image embeddings (the vision tower's pooled output through ``visual_projection``,
what OpenAI's ``encode_image`` returns) and text embeddings (the text tower's pooled end-of-text token through
``text_projection``, ``encode_text``); texts longer than the model's context are truncated. ``DinoEncoder``: the
final, layer-normed class token of a ``ViTModel`` (DINO, e.g. ``facebook/dino-vits16``, what the hub model of the
MagicBrush script returns) or a ``Dinov2Model``. Both run in float32 (no TF32) on ``device`` without gradients.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from PIL import Image

from mredit.eval import DEFAULT_CLIP, DEFAULT_DINO
from mredit.eval.metrics import DINO_CROP, clip_pixels, dino_pixels

__all__ = ["DEFAULT_CLIP", "DEFAULT_DINO", "ClipEncoder", "DinoEncoder", "resolve_device"]


def resolve_device(device: str) -> torch.device:
    """``auto``: the first CUDA device when there is one, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as e:
        raise ValueError(f"unknown device {device!r} (auto, cpu, cuda, cuda:1, ...)") from e
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: no CUDA device is available")
    return resolved


@contextmanager
def full_float32() -> Iterator[None]:
    """No TF32 in matrix products and convolutions while embedding: GPU numbers match the CPU's to ~1e-6."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def _load(loader: Any, name: str, what: str) -> Any:
    try:
        return loader.from_pretrained(name)
    except (OSError, ValueError) as e:  # a missing folder, an unknown hub id offline, a wrong architecture
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"cannot load the {what} model {name!r}: {first}") from e


class ClipEncoder:
    """Image and text embeddings of a ``CLIPModel`` (``tokenizer``: None when no text is needed)."""

    def __init__(self, model: Any, tokenizer: Any = None, name: str = "clip", device: str = "cpu") -> None:
        self.device = resolve_device(device)
        self.model = model.to(self.device, torch.float32).eval()
        self.tokenizer, self.name = tokenizer, name
        self.tokenizer_error = f"the CLIP model {name!r} has no tokenizer: captions cannot be encoded"
        self.image_size = int(model.config.vision_config.image_size)
        self.max_length = int(model.config.text_config.max_position_embeddings)

    @classmethod
    def from_pretrained(cls, name: str, device: str = "auto") -> ClipEncoder:
        """The model and its tokenizer; a folder without a tokenizer still gives image embeddings."""
        from transformers import AutoTokenizer, CLIPModel

        encoder = cls(_load(CLIPModel, name, "CLIP"), None, name, device)
        try:
            encoder.tokenizer = _load(AutoTokenizer, name, "CLIP tokenizer")
        except ValueError as e:
            encoder.tokenizer_error = str(e)
        return encoder

    @torch.no_grad()
    def encode_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """``[B, D]`` float32 on the CPU."""
        pixels = clip_pixels(images, self.image_size).to(self.device)
        with full_float32():
            pooled = self.model.vision_model(pixel_values=pixels).pooler_output
            return self.model.visual_projection(pooled).float().cpu()

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """``[B, D]`` float32 on the CPU."""
        if self.tokenizer is None:
            raise ValueError(self.tokenizer_error)
        tokens = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        with full_float32():
            pooled = self.model.text_model(
                input_ids=tokens["input_ids"].to(self.device), attention_mask=tokens["attention_mask"].to(self.device)
            ).pooler_output
            return self.model.text_projection(pooled).float().cpu()


class DinoEncoder:
    """The class-token embedding of a DINO ``ViTModel`` or a ``Dinov2Model``."""

    def __init__(self, model: Any, name: str = "dino", device: str = "cpu") -> None:
        self.device = resolve_device(device)
        self.model = model.to(self.device, torch.float32).eval()
        self.name = name
        accepts = "interpolate_pos_encoding" in inspect.signature(model.forward).parameters
        # a ViT made for another input size (a tiny test model) interpolates its position embeddings to 224 px
        self._kwargs = {"interpolate_pos_encoding": True} if accepts and model.config.image_size != DINO_CROP else {}

    @classmethod
    def from_pretrained(cls, name: str, device: str = "auto") -> DinoEncoder:
        from transformers import AutoModel

        return cls(_load(AutoModel, name, "DINO"), name, device)

    @torch.no_grad()
    def encode_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """``[B, D]`` float32 on the CPU."""
        pixels = dino_pixels(images).to(self.device)
        with full_float32():
            hidden = self.model(pixel_values=pixels, **self._kwargs).last_hidden_state
            return hidden[:, 0].float().cpu()
