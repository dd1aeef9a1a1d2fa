"""The training step's fast paths compute what the plain ones did: memoised tokenization, feedback encoded once
per distinct feedback, the null text encoded with the batch, the multi-tensor EMA update and the fused AdamW;
and the tiny tokenizer's length is a setting that old checkpoints do not need."""

from __future__ import annotations

import pytest
import torch
from models_helpers import loader, make_batch, make_module, make_trainer

from mredit.conditioning.feedback import encode_feedback
from mredit.models.ema import ExponentialMovingAverage
from mredit.models.ip2p import InstructPix2PixModule
from mredit.models.optimization import adamw
from mredit.models.reward_mixin import encode_unique_feedback
from mredit.models.tiny_tokenizer import build_tiny_tokenizer
from mredit.models.token_cache import CachedTokenizer, cached_tokenizer

TEXTS = ["make the red square blue", "", "None", "make the red square blue", "x" * 200, "None"]


def _plain(tokenizer, texts, max_length=None):
    length = max_length or tokenizer.model_max_length
    return tokenizer(texts, padding="max_length", max_length=length, truncation=True, return_tensors="pt")


def test_cached_tokenizer_returns_the_tokenizers_encodings_and_tokenizes_each_text_once(monkeypatch):
    tokenizer = build_tiny_tokenizer(24)
    cache = CachedTokenizer(tokenizer)
    calls = []
    real_call = type(tokenizer).__call__
    monkeypatch.setattr(
        type(tokenizer), "__call__", lambda self, texts, **kw: calls.append(texts) or real_call(self, texts, **kw)
    )
    for max_length in (None, 10):
        expected = _plain(tokenizer, TEXTS, max_length)
        for _ in range(2):
            got = cache(TEXTS, padding="max_length", max_length=max_length, truncation=True, return_tensors="pt")
            assert torch.equal(got.input_ids, expected.input_ids)
            assert torch.equal(got.attention_mask, expected.attention_mask)
    memoised = [texts for texts in calls if len(texts) == 4]  # the distinct texts, once per length
    assert len(memoised) == 2 and cache.model_max_length == 24
    plain = cache(TEXTS[:2], padding=True)  # any other call goes to the tokenizer
    assert plain.input_ids == tokenizer(TEXTS[:2], padding=True).input_ids


def test_cached_tokenizer_forgets_when_full_and_stays_right():
    tokenizer = build_tiny_tokenizer(16)
    cache = CachedTokenizer(tokenizer, max_entries=3)
    for start in range(0, 5):
        texts = [f"text {i}" for i in range(start, start + 3)]
        got = cache(texts, padding="max_length", truncation=True, return_tensors="pt")
        assert torch.equal(got.input_ids, _plain(tokenizer, texts).input_ids)
        assert len(cache._rows) <= 3


def test_module_keeps_one_cache_per_tokenizer():
    module = make_module()
    first = cached_tokenizer(module)
    assert cached_tokenizer(module) is first
    module.tokenizer = build_tiny_tokenizer(77)
    assert cached_tokenizer(module) is not first and cached_tokenizer(module).tokenizer is module.tokenizer


@pytest.mark.parametrize("fmt", ["pooled", "tokens"])
def test_feedback_encoded_once_per_distinct_feedback_matches_per_sample_encoding(fmt):
    module = make_module()
    feedback = [["None"] * 3, ["None", "the sky changed", "blurry"], ["None"] * 3, ["a", "b", "c"], ["None"] * 3]
    expected = encode_feedback(feedback, module.tokenizer, module.text_encoder, (fmt,))
    got = encode_unique_feedback(feedback, cached_tokenizer(module), module.text_encoder, (fmt,))
    for name in ("pooled", "tokens"):
        want, have = getattr(expected, name), getattr(got, name)
        assert (want is None) == (have is None)
        if want is not None:
            assert have.shape == want.shape
            torch.testing.assert_close(have, want, atol=1e-6, rtol=0)
    if fmt == "tokens":
        assert torch.equal(got.mask, expected.mask)


def test_null_text_encoded_with_the_batch_equals_separate_encodings():
    module = make_module(train_text_encoder=True)
    module.train()
    batch = make_batch(3)
    batch["instruction"] = ["make it red", "remove the circle", "make it red"]
    text, null = module._instruction_embeds(batch, with_null=True)
    torch.testing.assert_close(text, module.encode_instructions(batch["instruction"]), atol=1e-6, rtol=0)
    torch.testing.assert_close(null, module.encode_instructions([""]), atol=1e-6, rtol=0)
    assert null.requires_grad  # the live encoder learns from dropped instructions too
    plain, none = module._instruction_embeds(batch)
    assert none is None and plain.shape == text.shape


def test_multi_tensor_ema_update_equals_a_lerp_per_tensor():
    torch.manual_seed(0)
    params = [(f"p{i}", torch.nn.Parameter(torch.randn(5, i + 1))) for i in range(4)]
    ema = ExponentialMovingAverage(decay=0.9, warmup=True)
    ema.track(params)
    expected = {name: p.detach().clone() for name, p in params}
    for _ in range(3):
        with torch.no_grad():
            for _, p in params:
                p.add_(torch.randn_like(p))
        decay = ema.current_decay()
        for name, p in params:
            expected[name].lerp_(p.detach(), 1.0 - decay)
        ema.update(params)
    assert all(torch.equal(ema.shadow[name], expected[name]) for name in expected)
    late = ("late", torch.nn.Parameter(torch.ones(2)))  # a parameter attached later joins with its value
    ema.update([*params, late])
    assert torch.equal(ema.shadow["late"], torch.ones(2))


def test_adamw_is_fused_on_the_cpu_and_follows_the_per_tensor_loop():
    torch.manual_seed(0)
    shapes = [(4, 3), (7,), (2, 2, 3)]
    fused_params = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    loop_params = [torch.nn.Parameter(p.detach().clone()) for p in fused_params]
    fused = adamw(fused_params, 1e-2, (0.9, 0.999), 1e-8, 1e-2)
    loop = torch.optim.AdamW(loop_params, lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, foreach=False)
    assert fused.defaults["fused"] is True
    for _ in range(5):
        grads = [torch.randn(s) for s in shapes]
        for params, optimizer in ((fused_params, fused), (loop_params, loop)):
            for p, g in zip(params, grads):
                p.grad = g.clone()
            optimizer.step()
    for a, b in zip(fused_params, loop_params):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_tokenizer_max_length_sets_the_text_length_and_keeps_checkpoint_shapes(tmp_path):
    short = make_module(tiny_tokenizer="synth_words", tokenizer_max_length=16, train_text_encoder=True)
    default = make_module(tiny_tokenizer="synth_words", train_text_encoder=True)
    assert short.encode_instructions(["make the red square blue"]).shape[1] == 16
    shapes = lambda m: {k: v.shape for k, v in m.state_dict().items()}  # noqa: E731
    assert shapes(short) == shapes(default)  # the encoder keeps its 77 positions
    trainer = make_trainer(tmp_path, max_steps=1)
    trainer.fit(short, loader(1))
    path = tmp_path / "short.ckpt"
    trainer.save_checkpoint(path)
    assert InstructPix2PixModule.load_from_checkpoint(path).tokenizer.model_max_length == 16
    # a checkpoint from before the setting existed loads with the old length
    checkpoint = torch.load(path, weights_only=False)
    del checkpoint["hyper_parameters"]["tokenizer_max_length"]
    torch.save(checkpoint, tmp_path / "old.ckpt")
    assert InstructPix2PixModule.load_from_checkpoint(tmp_path / "old.ckpt").tokenizer.model_max_length == 77


def test_tokenizer_max_length_is_refused_when_too_short_or_with_pretrained_components():
    with pytest.raises(ValueError, match="tokenizer_max_length must be >= 3"):
        make_module(tokenizer_max_length=2)
    with pytest.raises(ValueError, match="tokenizer_max_length=32 is for tiny components"):
        InstructPix2PixModule(pretrained_path="/nowhere", tokenizer_max_length=32)
