"""Export a trained editing module to a diffusers-layout folder.

The folder is ``RewardEditPipeline.save_export``: ``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``,
``scheduler/`` (the training scheduler's config), ``conditioner/`` when a reward conditioner is attached, and a
``model_index.json`` naming ``StableDiffusionInstructPix2PixPipeline``. A baseline export (AutoencoderKL, no
conditioner) therefore loads in stock diffusers; the stock pipeline ignores ``conditioner/``, which
``RewardEditPipeline.from_pretrained`` loads. The trainable weights are saved as their EMA unless asked otherwise.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

from mredit.models.ip2p import InstructPix2PixModule
from mredit.models.loading import load_module_from_checkpoint
from mredit.pipelines.reward_edit import RewardEditPipeline


def check_empty(out_dir: str | Path) -> Path:
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ValueError(f"output folder {out_dir} exists and is not empty")
    return out_dir


def export_module(module: InstructPix2PixModule, out_dir: str | Path, use_ema: bool = True) -> Path:
    """Write ``module``'s components to ``out_dir``; the trainable ones with their EMA weights when ``use_ema``."""
    out_dir = check_empty(out_dir)
    pipe = RewardEditPipeline.from_module(module, scheduler=None)  # keeps the training scheduler
    with module.ema_weights() if use_ema and hasattr(module, "ema_weights") else nullcontext():
        return pipe.save_export(out_dir)


def export_checkpoint(ckpt: str | Path, out_dir: str | Path, use_ema: bool = True) -> Path:
    """Export a checkpoint; modules with their own layout (SmartEdit) provide ``export(out_dir)``."""
    module = load_module_from_checkpoint(ckpt)
    if isinstance(module, InstructPix2PixModule):
        return export_module(module, out_dir, use_ema=use_ema)
    if not hasattr(module, "export"):
        raise ValueError(f"{type(module).__name__} cannot be exported (it has no export(out_dir) method)")
    if not use_ema:
        raise ValueError(f"{type(module).__name__} exports its EMA weights only; use_ema must stay true")
    module.export(str(out_dir))
    return Path(out_dir)
