"""The BIM's two-way transformer against transformers' ``SamTwoWayTransformer`` (same maths as SmartEdit's
``two_way_transformer.py``, which is Segment Anything's) with copied weights."""

from __future__ import annotations

import torch
from transformers.models.sam.configuration_sam import SamMaskDecoderConfig
from transformers.models.sam.modeling_sam import SamTwoWayTransformer

from mredit.models.smartedit.bim import BidirectionalInteractionModule, BIMConfig

ATTENTION_NAMES = {
    "self_attn": "self_attn",
    "token_to_image": "cross_attn_token_to_image",
    "image_to_token": "cross_attn_image_to_token",
}


def _copy_into_sam(bim: BidirectionalInteractionModule, sam: SamTwoWayTransformer) -> None:
    target = {}
    for i, block in enumerate(bim.blocks):
        for ours, theirs in ATTENTION_NAMES.items():
            for name, value in getattr(block, ours).state_dict().items():
                target[f"layers.{i}.{theirs}.{name}"] = value
        for j, norm in enumerate(block.norms):
            for name, value in norm.state_dict().items():
                target[f"layers.{i}.layer_norm{j + 1}.{name}"] = value
        for ours, theirs in (("0", "lin1"), ("2", "lin2")):
            for name in ("weight", "bias"):
                target[f"layers.{i}.mlp.{theirs}.{name}"] = block.mlp.state_dict()[f"{ours}.{name}"]
    for name, value in bim.final_attn.state_dict().items():
        target[f"final_attn_token_to_image.{name}"] = value
    for name, value in bim.final_norm.state_dict().items():
        target[f"layer_norm_final_attn.{name}"] = value
    sam.load_state_dict(target, strict=True)


def test_two_way_transformer_matches_sam():
    torch.manual_seed(0)
    dim, side = 32, 3
    bim = BidirectionalInteractionModule(16, dim, 8, BIMConfig(depth=2, num_heads=4, mlp_dim=48, downsample=2)).eval()
    config = SamMaskDecoderConfig(
        hidden_size=dim, num_hidden_layers=2, num_attention_heads=4, mlp_dim=48, layer_norm_eps=1e-5
    )
    sam = SamTwoWayTransformer(config).eval()
    _copy_into_sam(bim, sam)
    text, image = torch.randn(2, 5, 16), torch.randn(2, side * side, dim)
    captured = {}
    bim.final_norm.register_forward_hook(lambda _m, _i, out: captured.update(tokens=out))
    bim.final_attn.register_forward_hook(lambda _m, inputs, _o: captured.update(image=inputs[2]))
    with torch.no_grad():
        bim(text, image, (side, side))
        tokens = bim.modulate_head(text)
        image_pe = bim.positions(side, side).T.reshape(1, dim, side, side).expand(2, -1, -1, -1)
        grid = image.transpose(1, 2).reshape(2, dim, side, side)
        expected, expected_image = sam(tokens.unsqueeze(1), grid, image_pe, attention_similarity=None)
    torch.testing.assert_close(captured["tokens"], expected.squeeze(1), atol=1e-5, rtol=1e-5)  # f'
    torch.testing.assert_close(captured["image"], expected_image.squeeze(1), atol=1e-5, rtol=1e-5)  # v'
