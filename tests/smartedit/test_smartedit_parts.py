"""The SmartEdit building blocks on their own: prompt layout, MLLM trainables, Q-Former and BIM shapes."""

from __future__ import annotations

import pytest
import torch
from peft import PeftModel

from mredit.models.smartedit.bim import BidirectionalInteractionModule, BIMConfig
from mredit.models.smartedit.mllm import LlavaMLLM, MLLMConfig
from mredit.models.smartedit.prompt import IGNORE_INDEX
from mredit.models.smartedit.qformer import ImgTokenResampler, QFormerConfig
from mredit.models.smartedit.tiny import tiny_llm, tiny_llm_tokenizer, tiny_projector, tiny_vision_tower
from mredit.models.tiny_tokenizer import tokenizer_words


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


def test_full_llm_training_injects_no_lora_and_offers_every_llm_weight():
    tokenizer = tiny_llm_tokenizer()
    llm = tiny_llm(len(tokenizer))
    mllm = LlavaMLLM(llm, tiny_vision_tower(), tiny_projector(), tokenizer, MLLMConfig(4, llm_training="full"))
    assert mllm.llm is llm and mllm.base_llm is llm and not mllm.lora_parameters()
    assert {id(p) for p in mllm.llm_parameters()} == {id(p) for p in llm.parameters()}
    new_rows = {id(p) for p in mllm.new_token_parameters()}
    assert not any(p.requires_grad for p in mllm.parameters() if id(p) not in new_rows)  # the module unfreezes
    out = mllm(["make it red"], mllm.patch_features(torch.zeros(1, 3, 32, 32)))
    assert out.img_hidden.shape == (1, 4, 64)


def test_lora_llm_training_offers_the_lora_matrices(tiny_mllm):
    assert isinstance(tiny_mllm.llm, PeftModel) and tiny_mllm.base_llm is tiny_mllm.llm.get_base_model()
    assert tiny_mllm.llm_parameters() == tiny_mllm.lora_parameters() and len(tiny_mllm.llm_parameters()) == 8


def test_llm_training_must_be_lora_or_full():
    with pytest.raises(ValueError, match="llm_training must be 'lora' or 'full', got 'frozen'"):
        MLLMConfig(llm_training="frozen")


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


def test_word_level_llm_tokenizer_makes_each_synth_word_one_token():
    words = tokenizer_words("synth_words")
    tokenizer = tiny_llm_tokenizer(words)
    assert len(tiny_llm_tokenizer()) == 259 and len(tokenizer) > 259 + len(words)
    assert all(len(tokenizer(" " + word, add_special_tokens=False).input_ids) == 1 for word in words)
    text = " make the brown diamond yellow. Été: 5 × 2"  # other text still tokenises, byte by byte
    ids = tokenizer(text, add_special_tokens=False).input_ids
    byte_ids = tiny_llm_tokenizer()(text, add_special_tokens=False).input_ids
    assert tokenizer.decode(ids) == text and len(ids) < len(byte_ids)
    with pytest.raises(ValueError, match="ASCII letters"):
        tiny_llm_tokenizer(["two words"])
