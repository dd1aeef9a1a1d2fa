"""The SD-Q-Former: learned queries that read the LLM's [IMG] hidden states into a UNet-ready condition.

transformers' ``Blip2QFormerModel`` has SmartEdit's structure (LayerNorm + dropout on the query embeddings,
cross-attention every ``cross_attention_frequency`` layers starting at layer 0, query-only FFN), so it is used as is.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import Blip2QFormerConfig, Blip2QFormerModel


@dataclass(frozen=True)
class QFormerConfig:
    """The SD-Q-Former (SmartEdit's sizes by default); its width is the UNet's ``cross_attention_dim``.

    Args:
        num_queries: learned queries: the length of the UNet condition (and of the CLIP text embedding that stage 1
            aligns it to).
        num_layers: transformer layers.
        num_heads: attention heads (they must divide the UNet's ``cross_attention_dim``).
        intermediate_size: width of the feed-forward layers.
        cross_attention_frequency: cross-attention to the [IMG] states every this many layers, from layer 0.
    """

    num_queries: int = 77
    num_layers: int = 6
    num_heads: int = 12
    intermediate_size: int = 3072
    cross_attention_frequency: int = 2


class ImgTokenResampler(nn.Module):
    """``[B, R, llm_dim]`` [IMG] hidden states -> ``[B, num_queries, width]`` (SmartEdit: 32 -> 77 x 768).

    Only the [IMG] positions are passed in (gathered by the MLLM), which is exactly SmartEdit's cross-attention
    mask over the full sequence without carrying the rest of it.
    """

    def __init__(self, llm_dim: int, width: int = 768, config: QFormerConfig = QFormerConfig()) -> None:
        super().__init__()
        qformer_config = Blip2QFormerConfig(
            hidden_size=width,
            num_hidden_layers=config.num_layers,
            num_attention_heads=config.num_heads,
            intermediate_size=config.intermediate_size,
            cross_attention_frequency=config.cross_attention_frequency,
            encoder_hidden_size=llm_dim,
            use_qformer_text_input=False,
        )
        self.qformer = Blip2QFormerModel(qformer_config)
        self.queries = nn.Parameter(torch.randn(1, config.num_queries, width) * 0.02)

    def forward(self, img_hidden: torch.Tensor) -> torch.Tensor:
        queries = self.queries.expand(img_hidden.shape[0], -1, -1)
        out = self.qformer(query_embeds=queries, encoder_hidden_states=img_hidden, return_dict=True)
        return out.last_hidden_state
