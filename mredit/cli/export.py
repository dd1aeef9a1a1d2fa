"""``mredit export`` (a Lightning checkpoint -> a diffusers-layout folder) and ``mredit import official``."""

from __future__ import annotations

from mredit.cli.parsing import CommandGroup
from mredit.export.export import export_checkpoint
from mredit.export.official_import import import_official


def export(ckpt: str, out: str, use_ema: bool = True) -> None:
    """Export a checkpoint to a diffusers-layout folder that `mredit edit --model` loads.

    Args:
        ckpt: Lightning checkpoint of an mredit module (InstructPix2Pix or SmartEdit).
        out: Output folder (must not exist or be empty).
        use_ema: Export the EMA weights (false: the raw ones; InstructPix2Pix only).
    """
    written = export_checkpoint(ckpt, out, use_ema=use_ema)
    print(f"exported {ckpt} to {written}")


def official(src: str, out: str) -> None:
    """Import the released Reward-InsPix2Pix stage-2 folder (Gstar666/Reward-InsPix2Pix).

    The stock UNet is kept and the extra tensors become the official reward conditioner, in an export folder
    that `mredit edit --model` loads.

    Args:
        src: The released stage2_reward_instruct_pix2pix folder (with unet/, vae/, ...).
        out: Output folder (must not exist or be empty).
    """
    written = import_official(src, out)
    print(f"imported {src} to {written} (stock UNet + conditioner/)")


COMMANDS = export
IMPORT_COMMANDS = CommandGroup("Import released weights into an mredit export folder.", {"official": official})
