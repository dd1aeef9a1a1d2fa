from __future__ import annotations

import pytest
import torch
from models_helpers import make_batch, make_module

from mredit.models.pixel_autoencoder import PixelShuffleAutoencoder
from mredit.models.tiny_tokenizer import build_tiny_tokenizer, learn_word_merges, tokenizer_words


def test_pixel_autoencoder_is_exactly_invertible_and_round_trips(tmp_path):
    vae = PixelShuffleAutoencoder(factor=4)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    posterior = vae.encode(x).latent_dist
    assert posterior.mode().shape == (2, 48, 4, 4) and torch.equal(posterior.sample(), posterior.mode())
    assert torch.equal(vae.decode(posterior.mode()).sample, x)
    vae.save_pretrained(tmp_path)
    loaded = PixelShuffleAutoencoder.from_pretrained(tmp_path)
    assert loaded.config.latent_channels == 48 and 2 ** (len(loaded.config.block_out_channels) - 1) == 4
    with pytest.raises(ValueError, match="not divisible by 4"):
        vae.encode(torch.zeros(1, 3, 10, 10))


def test_tiny_tokenizer_is_deterministic_and_round_trips(tmp_path):
    tokenizer = build_tiny_tokenizer()
    ids = tokenizer("Turn the circle red").input_ids
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id and len(ids) == 2 + 16
    assert build_tiny_tokenizer()("Turn the circle red").input_ids == ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == "turn the circle red"
    tokenizer.save_pretrained(tmp_path)
    assert type(tokenizer).from_pretrained(tmp_path)("Turn the circle red").input_ids == ids


def test_word_tokenizer_keeps_each_listed_word_whole(tmp_path):
    words = tokenizer_words("synth_words")
    tokenizer = build_tiny_tokenizer(words=words)
    for word in words:
        assert tokenizer.tokenize(word) == [word + "</w>"], word
    assert tokenizer.tokenize("turn the red circle purplish") == [
        *("turn</w>", "the</w>", "red</w>", "circle</w>"),
        *tokenizer.tokenize("purplish"),
    ]
    assert len(tokenizer.tokenize("purplish")) > 1  # an unknown word still falls back to smaller pieces
    ids = tokenizer("Paint the box in cyan").input_ids
    assert len(ids) == 2 + 5 and tokenizer.decode(ids, skip_special_tokens=True) == "paint the box in cyan"
    assert build_tiny_tokenizer(words=words)("Paint the box in cyan").input_ids == ids  # deterministic
    tokenizer.save_pretrained(tmp_path)  # vocab.json + merges.txt, as the export writes it
    assert type(tokenizer).from_pretrained(tmp_path)("Paint the box in cyan").input_ids == ids


def test_word_merges_are_learned_until_every_word_is_one_symbol():
    merges = learn_word_merges(["red", "bed", "be"])
    # "ed</w>" is shared by red and bed, so it is merged first
    assert merges[0] == ("e", "d</w>") and len(merges) == 4
    assert build_tiny_tokenizer(words=["red", "bed", "be"]).tokenize("bed be red") == ["bed</w>", "be</w>", "red</w>"]
    assert learn_word_merges([]) == [] and len(build_tiny_tokenizer()) == 514


def test_tiny_autoencoder_kl_trains_too():
    vae_config = {
        "_class_name": "AutoencoderKL",
        "block_out_channels": [8, 8],
        "down_block_types": ["DownEncoderBlock2D"] * 2,
        "up_block_types": ["UpDecoderBlock2D"] * 2,
        "latent_channels": 4,
        "norm_num_groups": 4,
        "layers_per_block": 1,
        "scaling_factor": 0.18215,
    }
    module = make_module(vae_config=vae_config)
    assert module.unet.config.in_channels == 8
    module.train()
    loss = module.diffusion_loss(make_batch(2))
    loss.backward()
    assert torch.isfinite(loss) and module.unet.conv_in.weight.grad is not None
