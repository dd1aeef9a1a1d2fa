"""SmartEdit (LLaVA-1.1 MLLM + Q-Former + BIM + InstructPix2Pix UNet) with multi-reward conditioning; see
docs/smartedit.md. The LightningCLI class path is ``mredit.models.smartedit.SmartEditModule``."""

from mredit.models.smartedit.module import SmartEditModule

__all__ = ["SmartEditModule"]
