import json

import pytest
import torch
from official_reference import official_forward, score_pe
from safetensors.torch import load_file, save_file

from mredit.conditioning.base import FeedbackEmbedding
from mredit.conditioning.official import OfficialRewardConditioner
from mredit.export.official_import import (
    OFFICIAL_EXTRA_KEYS,
    SD15_CONDITIONER_PARAMETERS,
    OfficialDenoiser,
    import_official,
    load_official_unet,
    split_official_state_dict,
)

SD15_UNET = {"block_out_channels": [320, 640, 1280, 1280], "flip_sin_to_cos": True, "freq_shift": 0}


def test_sd15_sizes_match_the_released_keys() -> None:
    conditioner = OfficialRewardConditioner.for_unet(SD15_UNET, text_dim=768)
    state = conditioner.state_dict()
    assert sorted(state) == sorted(OFFICIAL_EXTRA_KEYS) and len(state) == 34
    assert sum(p.numel() for p in conditioner.parameters()) == SD15_CONDITIONER_PARAMETERS
    assert conditioner.ca.attention.self.num_heads == 8 and conditioner.proj_deal.norm.num_groups == 32
    assert state["text_linear2.weight"].shape == (1280, 768) and state["add_embedding2.linear_1.weight"].shape == (
        320,
        768,
    )


def test_score_pe_matches_diffusers_timesteps() -> None:
    conditioner = OfficialRewardConditioner.for_unet({"block_out_channels": [32]}, text_dim=16)
    scores = torch.tensor([[5.0, 0.0, 2.5], [1.0, 4.0, 3.0]])
    assert torch.allclose(conditioner.score_embedding(scores), score_pe(scores), atol=1e-6)


def _inputs(unet, text_dim: int, batch: int = 2):
    g = torch.Generator().manual_seed(1)
    size = unet.config.sample_size
    x = torch.randn(batch, unet.config.in_channels, size, size, generator=g)
    states = torch.randn(batch, 7, unet.config.cross_attention_dim, generator=g)
    scores = torch.tensor([[5.0, 5.0, 5.0], [1.0, 3.0, 0.0]])[:batch]
    return x, torch.tensor([10, 500])[:batch], states, scores, torch.randn(batch, text_dim, generator=g)


def test_import_parity_with_reference_forward(official_folder) -> None:
    raw = load_file(str(official_folder / "unet" / "diffusion_pytorch_model.safetensors"))
    unet_state, extra = split_official_state_dict(raw)
    assert len(extra) == 34
    denoiser = OfficialDenoiser.from_official(official_folder / "unet")
    text_dim = denoiser.conditioner.config.text_dim
    x, t, states, scores, fb = _inputs(denoiser.unet, text_dim)
    with torch.no_grad():
        ours = denoiser(x, t, states, scores, fb)
        plain = denoiser.unet(x, t, encoder_hidden_states=states).sample
    unet_config = {k: v for k, v in denoiser.unet.config.items() if not k.startswith("_")}
    cfg = denoiser.conditioner.config
    reference = official_forward(
        unet_state, unet_config, extra, x, t, states, scores, fb, cfg.num_heads, cfg.norm_groups
    )
    assert torch.allclose(ours, reference, atol=1e-5, rtol=0)
    # both injected terms are live: the rewards change the output
    assert (ours - plain).abs().max() > 1e-3


def test_import_writes_an_export_folder(official_folder, tmp_path) -> None:
    out = import_official(official_folder, tmp_path / "imported")
    index = json.loads((out / "model_index.json").read_text())
    assert index["conditioner"] == ["mredit.conditioning.official", "OfficialRewardConditioner"]
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"]
    conditioner = OfficialRewardConditioner.from_pretrained(out / "conditioner")
    _, extra = split_official_state_dict(
        load_file(str(official_folder / "unet" / "diffusion_pytorch_model.safetensors"))
    )
    for key, value in conditioner.state_dict().items():
        assert torch.equal(value, extra[key]), key
    # the converted UNet is a stock UNet without any reward key
    assert not any(
        k.startswith(("ca.", "proj_deal."))
        for k in load_file(str(out / "unet" / "diffusion_pytorch_model.safetensors"))
    )


def _rewrite(folder, mutate) -> None:
    path = folder / "unet" / "diffusion_pytorch_model.safetensors"
    state = load_file(str(path))
    mutate(state)
    save_file(state, str(path))


def test_missing_reward_key_is_named(official_folder) -> None:
    _rewrite(official_folder, lambda s: s.pop("ca.output.LayerNorm.bias"))
    with pytest.raises(ValueError, match=r"missing \[ca\.output\.LayerNorm\.bias\]"):
        load_official_unet(official_folder / "unet")


def test_unknown_keys_are_named(official_folder) -> None:
    def add(state):
        state["ca.extra.weight"] = torch.zeros(1)
        state["img_linear.weight"] = torch.zeros(1)

    _rewrite(official_folder, add)
    with pytest.raises(ValueError, match=r"unknown \[img_linear\.weight\]"):
        load_official_unet(official_folder / "unet")
    _rewrite(official_folder, lambda s: s.pop("img_linear.weight"))
    with pytest.raises(ValueError, match=r"unknown \[ca\.extra\.weight\]"):
        load_official_unet(official_folder / "unet")


def test_conditioner_switches_and_null_condition() -> None:
    unet_config = {"block_out_channels": [24]}
    scores, fb = torch.rand(3, 3) * 5, FeedbackEmbedding(pooled=torch.randn(3, 16))
    scores_only = OfficialRewardConditioner.for_unet(unet_config, 16, use_feedback=False, latent_path=False)
    assert scores_only.config.num_heads == 8 and scores_only.config.norm_groups == 24
    assert not any(k.startswith(("text_linear", "ca.", "proj_deal.")) for k in scores_only.state_dict())
    condition = scores_only(scores, fb)
    assert condition.latent is None and condition.time_emb.shape == (3, 96)
    with_null = OfficialRewardConditioner.for_unet(unet_config, 16, null_condition=True).eval()
    drop = torch.tensor([True, False, True])
    dropped, kept = with_null(scores, fb, drop), with_null(scores, fb)
    assert torch.equal(dropped.time_emb[0], torch.zeros(96)) and torch.equal(dropped.time_emb[1], kept.time_emb[1])
    h0 = torch.randn(3, 24, 4, 4)
    assert torch.allclose(dropped.latent(h0)[1], kept.latent(h0)[1], atol=1e-6)
    with pytest.raises(ValueError, match="no null_condition"):
        scores_only(scores, fb, drop)


def test_import_cli_then_edit(official_folder, tmp_path, capsys) -> None:
    from PIL import Image

    from mredit.cli import main

    out = tmp_path / "imported"
    assert main(["import", "official", "--src", str(official_folder), "--out", str(out)]) == 0
    Image.new("RGB", (16, 16), (200, 30, 30)).save(tmp_path / "in.png")
    edit = ["edit", "--model", str(out), "--image", str(tmp_path / "in.png"), "--instruction", "make it blue"]
    assert main([*edit, "--num_inference_steps", "2", "--resolution", "16", "--out", str(tmp_path / "out.png")]) == 0
    assert Image.open(tmp_path / "out.png").size == (16, 16)
    assert main(["import", "official", "--src", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")]) == 1
    assert "has no unet/" in capsys.readouterr().err
