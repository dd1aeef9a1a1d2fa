"""Loading a trained mredit module from a Lightning checkpoint, whatever its class.

The class comes from the checkpoint's ``_class_path`` (written by LightningCLI); only the project's own classes
are imported. Checkpoints written before a class moved name their old path, which ``LEGACY_CLASS_PATHS`` maps.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.core.saving import _load_state
from lightning.pytorch.utilities.migration.utils import _pl_migrate_checkpoint
from transformers import CLIPTextModel, CLIPTokenizer

from mredit.models.components import VAE_CLASSES

DEFAULT_MODULE_CLASS = "mredit.models.ip2p.InstructPix2PixModule"
# class paths of checkpoints written before the class moved
LEGACY_CLASS_PATHS = {"mredit.models.instruct_pix2pix.InstructPix2PixModule": DEFAULT_MODULE_CLASS}


def checkpoint_class_path(ckpt: str | Path) -> str | None:
    """The LightningModule class a checkpoint was trained with, as LightningCLI records it (None if absent)."""
    state = torch.load(str(ckpt), map_location="cpu", weights_only=False, mmap=True)
    return state.get("hyper_parameters", {}).get("_class_path")


def load_module_from_checkpoint(ckpt: str | Path):
    """The editing module (InstructPix2Pix, SmartEdit, ...) of a Lightning checkpoint, on the CPU, in eval mode.

    The class comes from the checkpoint's ``_class_path``; only the project's own classes are imported.
    """
    ckpt = Path(ckpt)
    if not ckpt.is_file():
        raise FileNotFoundError(f"checkpoint not found: {ckpt}")
    # memory-mapped, and without the optimizer state, which no user of the module reads: at SD1.5 size AdamW's
    # moments are twice the weights, and reading them all made `mredit export` need more than 19 GiB
    checkpoint = torch.load(str(ckpt), map_location="cpu", weights_only=False, mmap=True)
    for unused in ("optimizer_states", "lr_schedulers"):
        checkpoint.pop(unused, None)
    hparams = checkpoint.setdefault("hyper_parameters", {})
    recorded = hparams.get("_class_path")
    class_path = LEGACY_CLASS_PATHS.get(recorded, recorded or DEFAULT_MODULE_CLASS)
    if not class_path.startswith("mredit."):
        raise ValueError(f"{ckpt}: not a checkpoint of an mredit module (class {class_path})")
    module_name, class_name = class_path.rsplit(".", 1)
    module_class = getattr(importlib.import_module(module_name), class_name)
    # an old class path is replaced by the current one (Lightning refuses a class path it cannot import)
    if recorded in LEGACY_CLASS_PATHS:
        hparams["_class_path"] = class_path
    # what LightningModule.load_from_checkpoint does after reading the file, which it cannot memory-map
    checkpoint = _pl_migrate_checkpoint(checkpoint, checkpoint_path=ckpt)
    return _load_state(module_class, checkpoint).eval()


def load_encoders(model: str | Path) -> tuple[Any, Any, Any]:
    """(vae, text_encoder, tokenizer) in eval mode, of a diffusers-layout folder (an export or an SD folder) or of
    a module ``.ckpt``: what precomputing latents needs."""
    path = Path(model)
    if path.is_file():
        module = load_module_from_checkpoint(path)
        return module.vae.eval(), module.text_encoder.eval(), module.tokenizer
    if not path.is_dir():
        raise FileNotFoundError(f"model not found: {model} (expected a diffusers-layout folder or a .ckpt)")
    vae_class = json.loads((path / "vae" / "config.json").read_text()).get("_class_name", "AutoencoderKL")
    if vae_class not in VAE_CLASSES:
        raise ValueError(f"{path}/vae: unsupported VAE class {vae_class!r}")
    vae = VAE_CLASSES[vae_class].from_pretrained(path / "vae")
    text_encoder = CLIPTextModel.from_pretrained(path / "text_encoder")
    return vae.eval(), text_encoder.eval(), CLIPTokenizer.from_pretrained(path / "tokenizer")
