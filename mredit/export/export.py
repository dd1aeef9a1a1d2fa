"""Export a trained editing module to a diffusers-layout folder.

Layout: ``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/`` (the training scheduler's config),
``conditioner/`` when a reward conditioner is attached, and a ``model_index.json`` naming
``StableDiffusionInstructPix2PixPipeline``. A baseline export (AutoencoderKL, no conditioner) therefore loads in
stock diffusers; the stock pipeline ignores ``conditioner/``, which ``RewardEditPipeline.from_pretrained`` loads.
The UNet and the conditioner are saved with the EMA weights unless asked otherwise.
"""

from __future__ import annotations

import importlib
import json
from contextlib import nullcontext
from pathlib import Path

import diffusers
import transformers

# mredit classes that may appear as components, by class name
_MREDIT_COMPONENT_MODULES = (
    "mredit.conditioning.official",
    "mredit.conditioning.paper",
    "mredit.models.pixel_autoencoder",
)
PIPELINE_CLASS = "StableDiffusionInstructPix2PixPipeline"


def component_library(class_name: str) -> str:
    """The importable library of a component class, as ``model_index.json`` records it."""
    for library in (diffusers, transformers):
        if hasattr(library, class_name):
            return library.__name__
    for module_name in _MREDIT_COMPONENT_MODULES:
        try:
            if hasattr(importlib.import_module(module_name), class_name):
                return module_name
        except ModuleNotFoundError:
            continue
    raise ValueError(f"unknown component class {class_name!r}")


def _component_class(folder: Path) -> str | None:
    for config_name, field in (
        ("config.json", "_class_name"),
        ("scheduler_config.json", "_class_name"),
        ("tokenizer_config.json", "tokenizer_class"),
    ):
        path = folder / config_name
        if path.is_file():
            config = json.loads(path.read_text())
            if config.get(field):
                return config[field]
            if config.get("architectures"):  # transformers models
                return config["architectures"][0]
    return None


def write_model_index(out_dir: str | Path, edit_residual: bool = False) -> dict:
    """Write ``model_index.json`` from the component folders present in ``out_dir``; ``edit_residual`` is the
    pipeline option of models trained on edit residuals (``InstructPix2PixModule(edit_residual=True)``)."""
    out_dir = Path(out_dir)
    index: dict = {"_class_name": PIPELINE_CLASS, "_diffusers_version": diffusers.__version__}
    for name in ("unet", "vae", "text_encoder", "tokenizer", "scheduler", "conditioner"):
        folder = out_dir / name
        if not folder.is_dir():
            if name != "conditioner":
                raise FileNotFoundError(f"export folder {out_dir} has no {name}/")
            continue
        class_name = _component_class(folder)
        if class_name is None:
            raise ValueError(f"cannot tell the class of {folder}: no config naming it")
        if name == "tokenizer" and class_name.endswith("Fast") and not hasattr(transformers, class_name):
            class_name = class_name[: -len("Fast")]
        index[name] = [component_library(class_name), class_name]
    index.update(safety_checker=[None, None], feature_extractor=[None, None], requires_safety_checker=False)
    if edit_residual:
        index["edit_residual"] = True
    (out_dir / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    return index


def export_module(module, out_dir: str | Path, use_ema: bool = True) -> Path:
    """Write ``module``'s components (``unet``, ``vae``, ``text_encoder``, ``tokenizer``, ``noise_scheduler``,
    ``reward_conditioner``) to ``out_dir``; the trainable ones with their EMA weights when ``use_ema``."""
    out_dir = Path(out_dir)
    for attr in ("unet", "vae", "text_encoder", "tokenizer", "noise_scheduler"):
        if getattr(module, attr, None) is None:
            raise ValueError(f"cannot export {type(module).__name__}: it has no {attr}")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ValueError(f"output folder {out_dir} exists and is not empty")
    out_dir.mkdir(parents=True, exist_ok=True)
    ema = module.ema_weights() if use_ema and hasattr(module, "ema_weights") else nullcontext()
    with ema:
        module.unet.save_pretrained(out_dir / "unet")
        conditioner = getattr(module, "reward_conditioner", None)
        if conditioner is not None:
            conditioner.save_pretrained(out_dir / "conditioner")
        module.text_encoder.save_pretrained(out_dir / "text_encoder")  # trainable in some tiny configs
    module.vae.save_pretrained(out_dir / "vae")
    module.tokenizer.save_pretrained(out_dir / "tokenizer")
    module.noise_scheduler.save_pretrained(out_dir / "scheduler")
    write_model_index(out_dir, edit_residual=bool(getattr(module, "hparams", {}).get("edit_residual", False)))
    return out_dir


DEFAULT_MODULE_CLASS = "mredit.models.instruct_pix2pix.InstructPix2PixModule"


def checkpoint_class_path(ckpt: str | Path) -> str | None:
    """The LightningModule class a checkpoint was trained with, as LightningCLI records it (None if absent)."""
    import torch

    state = torch.load(str(ckpt), map_location="cpu", weights_only=False, mmap=True)
    return state.get("hyper_parameters", {}).get("_class_path")


def load_module_from_checkpoint(ckpt: str | Path):
    """The editing module (InstructPix2Pix, SmartEdit, ...) of a Lightning checkpoint, on the CPU, in eval mode.

    The class comes from the checkpoint's ``_class_path``; only the project's own classes are imported.
    """
    ckpt = Path(ckpt)
    if not ckpt.is_file():
        raise FileNotFoundError(f"checkpoint not found: {ckpt}")
    class_path = checkpoint_class_path(ckpt) or DEFAULT_MODULE_CLASS
    if not class_path.startswith("mredit."):
        raise ValueError(f"{ckpt}: not a checkpoint of an mredit module (class {class_path})")
    module_name, class_name = class_path.rsplit(".", 1)
    module_class = getattr(importlib.import_module(module_name), class_name)
    return module_class.load_from_checkpoint(str(ckpt), map_location="cpu").eval()


def export_checkpoint(ckpt: str | Path, out_dir: str | Path, use_ema: bool = True) -> Path:
    """Export a checkpoint; modules with their own layout (SmartEdit) provide ``export(out_dir)``."""
    from mredit.models.instruct_pix2pix import InstructPix2PixModule

    module = load_module_from_checkpoint(ckpt)
    if isinstance(module, InstructPix2PixModule):
        return export_module(module, out_dir, use_ema=use_ema)
    if not hasattr(module, "export"):
        raise ValueError(f"{type(module).__name__} cannot be exported (it has no export(out_dir) method)")
    if not use_ema:
        raise ValueError(f"{type(module).__name__} exports its EMA weights only; drop --no-ema")
    module.export(str(out_dir))
    return Path(out_dir)
