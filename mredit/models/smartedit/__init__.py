"""SmartEdit (LLaVA-1.1 MLLM + Q-Former + BIM + InstructPix2Pix UNet) with multi-reward conditioning; see
docs/smartedit.md. The LightningCLI class path is ``mredit.models.smartedit.SmartEditModule``; its part configs are
exported here too."""

from mredit.models.smartedit.bim import BIMConfig
from mredit.models.smartedit.loading import PretrainedWeights
from mredit.models.smartedit.mllm import MLLMConfig
from mredit.models.smartedit.module import SmartEditModule
from mredit.models.smartedit.qformer import QFormerConfig

__all__ = ["BIMConfig", "MLLMConfig", "PretrainedWeights", "QFormerConfig", "SmartEditModule"]
