"""What the benchmark scripts share: the random SD1.5-size InstructPix2Pix folder, device synchronisation, the
run's environment, and the dense bf16 peaks that MFU divides by.

The SD1.5-size models of every ``--gpu`` benchmark come from one place, ``mredit.models.random_init`` (the
published configurations shipped in the package, random weights, nothing downloaded), written to a temporary
folder and loaded with ``from_pretrained`` like a real checkpoint.
"""

from __future__ import annotations

import platform
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

# dense (not 2:4-sparse) bf16 tensor-core peaks in TFLOP/s, by a substring of torch.cuda.get_device_name()
DENSE_BF16_PEAK_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0, "L40S": 362.05, "A10G": 70.0}


@contextmanager
def random_sd15_ip2p(tiny: bool = False, parent: str | None = None) -> Iterator[Path]:
    """A random-weight SD1.5 InstructPix2Pix folder (``unet`` with 8 input channels, ``vae``, ``text_encoder``,
    ``tokenizer``, ``scheduler``, ``model_index.json``) in a temporary directory, removed on exit; ``tiny``: the
    same layout at tiny widths."""
    from mredit.models.random_init import init_random

    with tempfile.TemporaryDirectory(prefix="mredit-sd15-ip2p-", dir=parent) as folder:
        yield init_random("sd15-ip2p", Path(folder) / "model", tiny=tiny)


def synchronize(device: torch.device | str) -> None:
    """Wait for the device's queued work, so that a wall-clock interval covers it."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def peak_tflops(device: torch.device | str, override: float | None = None) -> float | None:
    """The dense bf16 peak of the device (``override`` first); None when unknown (a CPU, an unlisted GPU)."""
    if override is not None:
        return override
    if torch.device(device).type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in DENSE_BF16_PEAK_TFLOPS.items() if key in name), None)


def environment(device: torch.device | str) -> dict[str, str | None]:
    """Device name and library versions, for the record of a run."""
    import diffusers
    import lightning

    device = torch.device(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    return {
        "device": name,
        "device_type": device.type,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "diffusers": diffusers.__version__,
        "lightning": lightning.__version__,
        "python": platform.python_version(),
    }
