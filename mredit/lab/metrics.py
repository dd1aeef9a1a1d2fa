"""The standard metrics in the demo and the experiments: the MagicBrush protocol against the synthetic world's exact
targets (``mredit eval metrics --protocol magicbrush``).

Without ``--clip`` / ``--dino`` the models are tiny and randomly initialised (built here, seeded, no download):
their CLIP-I and DINO only check that the metrics are wired (edits are read, batched, embedded, compared and
reported); they measure nothing. L1 and L2 are real pixel distances to the exact answer either way. With paths (or
hub ids) of real CLIP and DINO models the numbers are real. The synthetic world has no captions: no CLIP-T.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mredit.eval.encoders import ClipEncoder, DinoEncoder

PROTOCOL = "magicbrush"
TINY_NOTE = (
    "CLIP-I and DINO here come from tiny randomly initialised CLIP and DINO models: a wiring check, not a "
    "measurement (L1 and L2 are real pixel distances to the exact target); pass --clip and --dino for real numbers"
)
_TINY = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 2}


@dataclass
class MetricModels:
    """The CLIP and DINO encoders of the metrics and the note the reports print (None for real models)."""

    clip: ClipEncoder
    dino: DinoEncoder
    note: str | None

    @property
    def names(self) -> dict[str, str]:
        return {"clip": self.clip.name, "dino": self.dino.name}


def tiny_clip_encoder(seed: int = 0, device: str = "cpu") -> ClipEncoder:
    """A randomly initialised CLIP ViT with 224 px input, 32 px patches, width 32, no tokenizer (no captions)."""
    from transformers import CLIPConfig, CLIPModel

    config = CLIPConfig(
        text_config={
            **_TINY,
            "vocab_size": 514,
            "max_position_embeddings": 77,
            "bos_token_id": 512,
            "eos_token_id": 513,
        },
        vision_config={**_TINY, "image_size": 224, "patch_size": 32},
        projection_dim=16,
    )
    with torch.random.fork_rng(devices=[]):  # the caller's random state is left as it was
        torch.manual_seed(seed)
        model = CLIPModel(config)
    return ClipEncoder(model, None, f"tiny random CLIP (seed {seed})", device)


def tiny_dino_encoder(seed: int = 0, device: str = "cpu") -> DinoEncoder:
    """A randomly initialised DINO-style ViT (224 px, 32 px patches, width 32)."""
    from transformers import ViTConfig, ViTModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ViTModel(ViTConfig(**_TINY, image_size=224, patch_size=32), add_pooling_layer=False)
    return DinoEncoder(model, f"tiny random DINO ViT (seed {seed})", device)


def metric_models(clip: str | None = None, dino: str | None = None, device: str = "auto") -> MetricModels:
    """Real models from a folder or hub id where given, tiny random ones otherwise (with the wiring-check note)."""
    clip_encoder = ClipEncoder.from_pretrained(clip, device) if clip else tiny_clip_encoder(device=device)
    dino_encoder = DinoEncoder.from_pretrained(dino, device) if dino else tiny_dino_encoder(device=device)
    return MetricModels(clip_encoder, dino_encoder, None if clip and dino else TINY_NOTE)
