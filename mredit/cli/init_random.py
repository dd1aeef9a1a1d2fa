"""``mredit init-random``: a random-weight folder in the exact layout and sizes of a real pretrained checkpoint."""

from __future__ import annotations

from pathlib import Path

from mredit.models.random_init import CLIP_VISION_SUBFOLDER, LLAVA_SUBFOLDER, Arch, check_empty_folder, components
from mredit.models.random_init import init_random as write_random_folder

# the environment variables of the configs that each folder stands in for
CONFIG_VARIABLES = {
    "sd15": {"MREDIT_SD15_PATH": ""},
    "sd15-ip2p": {"MREDIT_STAGE1_PATH": "", "MREDIT_SMARTEDIT_SD_PATH": ""},
    "llava-smartedit": {"MREDIT_LLAVA_PATH": LLAVA_SUBFOLDER, "MREDIT_CLIP_VISION_PATH": CLIP_VISION_SUBFOLDER},
}


def init_random(arch: Arch, out: str, layers: int | None = None, tiny: bool = False, seed: int = 0) -> None:
    """Write a random-weight folder in the layout, configs and tensor sizes of a real pretrained checkpoint.

    For wiring and memory checks without a download (shapes, dtypes, config keys, export, peak memory): the
    weights and the tokenizers are synthetic, so these folders cannot edit images. sd15: Stable Diffusion 1.5
    (unet/ vae/ text_encoder/ tokenizer/ scheduler/ model_index.json); sd15-ip2p: the same with InstructPix2Pix's
    8-channel UNet input; llava-smartedit: llava/ (LLaVA-1.1 7B widths) and clip-vision/ (CLIP ViT-L/14) for
    SmartEdit. See docs/real_size.md.

    Args:
        arch: The checkpoint to imitate.
        out: Output folder (must not exist or be empty).
        layers: Keep the first N of the LLaMA's 32 layers, every width unchanged (llava-smartedit only; the full
            7B model needs more than 24 GiB to train).
        tiny: The same layout at tiny widths (seconds; for tests).
        seed: Seed of the random weights.
    """
    parts = components(arch, layers, tiny)
    check_empty_folder(out)
    total = sum(part.num_parameters for part in parts)
    size = sum(part.num_bytes for part in parts) / 1024**3
    print(f"writing {arch} to {out}: {total / 1e6:.1f}M parameters, {size:.2f} GiB")
    folder = write_random_folder(arch, Path(out), layers=layers, tiny=tiny, seed=seed)
    for part in parts:
        print(f"  {part.subfolder}/: {part.num_parameters:,} parameters ({str(part.dtype).removeprefix('torch.')})")
    print("random weights and synthetic tokenizers: for wiring and memory checks, not for editing")
    for variable, subfolder in CONFIG_VARIABLES[arch].items():
        print(f"export {variable}={(folder / subfolder).resolve() if subfolder else folder.resolve()}")


COMMANDS = init_random
