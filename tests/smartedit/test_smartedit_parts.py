"""The SmartEdit building blocks on their own: prompt layout, MLLM trainables, Q-Former and BIM shapes."""

from __future__ import annotations

import torch

from mredit.models.smartedit.bim import BidirectionalInteractionModule, BIMConfig
from mredit.models.smartedit.prompt import IGNORE_INDEX
from mredit.models.smartedit.qformer import ImgTokenResampler, QFormerConfig


def test_prompt_supervises_answer_and_img_tokens_only(tiny_mllm):
    prompt = tiny_mllm.prompt.build(["make it red", "a much longer instruction here"])
    for row, labels, mask, img_index in zip(prompt.suffix, prompt.suffix_labels, prompt.suffix_mask, prompt.img_index):
        assert row[img_index].tolist() == tiny_mllm.prompt.img_ids
        length = int(mask.sum())
        assert row[length - 1] == tiny_mllm.tokenizer.eos_token_id
        supervised = labels[labels != IGNORE_INDEX]
        assert supervised[-5:-1].tolist() == tiny_mllm.prompt.img_ids  # the [IMG] tokens, then EOS
        assert (labels[length:] == IGNORE_INDEX).all()
    assert prompt.prefix[0] == tiny_mllm.tokenizer.bos_token_id
    assert prompt.prefix[-1] == tiny_mllm.prompt.im_start


def test_only_lora_and_new_token_rows_train(tiny_mllm):
    trainable = {name for name, p in tiny_mllm.named_parameters() if p.requires_grad}
    assert trainable == {"new_token_embeds", "new_token_head"} | {
        name for name, _ in tiny_mllm.named_parameters() if "lora_" in name
    }
    assert len([n for n in trainable if "lora_" in n]) == 2 * 2 * 2  # 2 layers x (q_proj, v_proj) x (A, B)
    assert tiny_mllm.new_token_embeds.shape[0] == len(tiny_mllm.tokenizer) - tiny_mllm.base_vocab == 3 + 4


def test_mllm_forward_backward_reaches_new_rows_and_lora(tiny_mllm):
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    out = tiny_mllm(["make it red", "remove the circle"], tiny_mllm.patch_features(images))
    assert out.img_hidden.shape == (2, 4, 64)
    out.lm_loss.backward()
    assert tiny_mllm.new_token_head.grad.abs().sum() > 0
    assert tiny_mllm.new_token_embeds.grad.abs().sum() > 0
    lora_a = [p for n, p in tiny_mllm.named_parameters() if "lora_A" in n]
    assert all(p.grad is not None for p in lora_a)  # B is zero-initialised, so only A's gradient is zero here


def test_text_only_prompt_has_no_image_slot(tiny_mllm):
    out = tiny_mllm(["a red square"], None, compute_lm_loss=False)
    assert out.lm_loss is None and out.img_hidden.shape == (1, 4, 64)


def test_qformer_and_bim_shapes_and_zero_init():
    torch.manual_seed(0)
    qformer = ImgTokenResampler(64, 32, QFormerConfig(num_queries=8, num_layers=2, num_heads=4, intermediate_size=64))
    text = qformer(torch.randn(2, 4, 64))
    assert text.shape == (2, 8, 32)
    bim = BidirectionalInteractionModule(32, 24, 16, BIMConfig(depth=2, num_heads=4, mlp_dim=48))
    image = torch.randn(2, 9, 24)
    f_final, spatial = bim(text, image, (6, 6))
    assert torch.equal(f_final, text) and spatial.shape == (2, 16, 6, 6) and not spatial.any()
    torch.nn.init.normal_(bim.text_head.weight)
    torch.nn.init.normal_(bim.spatial_head.weight)
    f_final, spatial = bim(text, image, (6, 6))
    assert not torch.equal(f_final, text) and spatial.abs().sum() > 0
    f_final.sum().backward()
    assert bim.blocks[0].token_to_image.q_proj.weight.grad is not None
