"""Tiny randomly initialised CLIP, DINO (ViT) and DINOv2 models built in code, and an independent reference of the
standard metrics written from their formulas (for tests/eval)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import CLIPConfig, CLIPModel, Dinov2Config, Dinov2Model, ViTConfig, ViTModel

from mredit.models.tiny_tokenizer import build_tiny_tokenizer

TINY = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 2}


def tiny_clip(seed: int = 0) -> tuple[CLIPModel, object]:
    torch.manual_seed(seed)
    tokenizer = build_tiny_tokenizer()
    text = {**TINY, "vocab_size": 514, "max_position_embeddings": 77, "bos_token_id": 512, "eos_token_id": 513}
    config = CLIPConfig(
        text_config={**text, "pad_token_id": 513},
        vision_config={**TINY, "image_size": 224, "patch_size": 32},
        projection_dim=16,
    )
    return CLIPModel(config).eval(), tokenizer


def tiny_vit(seed: int = 1, image_size: int = 64) -> ViTModel:
    """A DINO-style ViT made for ``image_size`` px (the metric feeds 224 px: position embeddings interpolated)."""
    torch.manual_seed(seed)
    return ViTModel(ViTConfig(**TINY, image_size=image_size, patch_size=16), add_pooling_layer=False).eval()


def tiny_dinov2(seed: int = 2) -> Dinov2Model:
    torch.manual_seed(seed)
    return Dinov2Model(Dinov2Config(**TINY, image_size=32, patch_size=16)).eval()


def save_tiny_models(root: Path) -> tuple[Path, Path]:
    """A tiny CLIP (with its tokenizer) and a tiny DINO ViT saved as local model folders."""
    clip, tokenizer = tiny_clip()
    clip.save_pretrained(root / "clip")
    tokenizer.save_pretrained(root / "clip")
    tiny_vit().save_pretrained(root / "dino")
    return root / "clip", root / "dino"


def random_image(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


# --- the reference: written from the definitions, independently of mredit.eval -----------------------------------


def ref_pixels(image: Image.Image, resize: int, crop: int, mean, std) -> torch.Tensor:
    """Short side scaled to ``resize`` (long side truncated, bicubic), the centered ``crop`` square (offsets rounded),
    values in [0, 1] normalised per channel."""
    width, height = image.size
    short = min(width, height)
    size = (resize, int(resize * height / width)) if width == short else (int(resize * width / height), resize)
    scaled = image.resize(size, Image.BICUBIC) if size != image.size else image
    left, top = round((scaled.width - crop) / 2), round((scaled.height - crop) / 2)
    array = np.array(scaled, dtype=np.float64)[top : top + crop, left : left + crop] / 255.0
    array = (array - np.array(mean)) / np.array(std)
    return torch.tensor(array.transpose(2, 0, 1)[None], dtype=torch.float32)


CLIP_NORM = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))
IMAGENET_NORM = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def ref_clip_image(model: CLIPModel, image: Image.Image) -> np.ndarray:
    """The unit CLIP image embedding, through the model's full forward (``image_embeds``)."""
    pixels = ref_pixels(image, 224, 224, *CLIP_NORM)
    with torch.no_grad():
        out = model(input_ids=torch.tensor([[512, 513]]), pixel_values=pixels)
    return out.image_embeds[0].double().numpy()


def ref_clip_text(model: CLIPModel, tokenizer, text: str) -> np.ndarray:
    """The unit CLIP text embedding (``text_embeds`` of the full forward)."""
    ids = torch.tensor([tokenizer(text)["input_ids"]])
    with torch.no_grad():
        out = model(input_ids=ids, pixel_values=torch.zeros(1, 3, 224, 224))
    return out.text_embeds[0].double().numpy()


def ref_dino(model, image: Image.Image) -> np.ndarray:
    """The final layer-normed class token, from the hidden states (not the encoder's path)."""
    pixels = ref_pixels(image, 256, 224, *IMAGENET_NORM)
    kwargs = {"interpolate_pos_encoding": True} if isinstance(model, ViTModel) else {}
    with torch.no_grad():
        hidden = model(pixel_values=pixels, output_hidden_states=True, **kwargs).hidden_states[-1]
        return model.layernorm(hidden)[0, 0].double().numpy()


def ref_cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def ref_l1_l2(edit: Image.Image, reference: Image.Image) -> tuple[float, float]:
    if edit.size != reference.size:
        edit = edit.resize(reference.size, Image.BICUBIC)
    diff = np.array(edit, dtype=np.float64) / 255 - np.array(reference, dtype=np.float64) / 255
    return float(np.mean(np.abs(diff))), float(np.mean(diff**2))


def ref_directional(src: np.ndarray, edit: np.ndarray, text_in: np.ndarray, text_out: np.ndarray) -> float:
    """cos(E_I(edit) - E_I(src), E_T(out) - E_T(in)) of unit embeddings; 0 for a zero change."""
    image_change, text_change = edit - src, text_out - text_in
    norms = np.linalg.norm(image_change) * np.linalg.norm(text_change)
    return float(image_change @ text_change / norms) if norms > 0 else 0.0
