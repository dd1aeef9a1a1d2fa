"""The pretrained-weights path, exercised on tiny models saved in the real layouts: a LLaVA-1.1 folder (LLaMA
weights + ``model.mm_projector.*`` in the same shard + tokenizer), a CLIP vision folder and a diffusers folder whose
UNet has 4 input channels (SD1.5-style), plus stage chaining with ``init_from``."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file
from smartedit_helpers import TINY_SIZES, make_batch, tiny_module

from mredit.models.components import build_tiny_components
from mredit.models.smartedit.loading import PretrainedWeights, load_llava_projector, resolve_paths
from mredit.models.smartedit.module import SmartEditModule
from mredit.models.smartedit.tiny import tiny_llm, tiny_llm_tokenizer, tiny_vision_tower

REAL_SIZES = {k: v for k, v in TINY_SIZES.items() if k != "tiny"}


@pytest.fixture(scope="module")
def pretrained_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrained")
    tokenizer = tiny_llm_tokenizer()
    tiny_llm(len(tokenizer), seed=1).save_pretrained(root / "llava")
    tokenizer.save_pretrained(root / "llava")
    shard = root / "llava" / "model.safetensors"
    weights = load_file(shard)
    projector = {"model.mm_projector.weight": torch.randn(64, 32), "model.mm_projector.bias": torch.randn(64)}
    save_file({**weights, **projector}, shard, metadata={"format": "pt"})
    tiny_vision_tower(seed=1).save_pretrained(root / "clip")
    components = build_tiny_components(unet_config={"in_channels": 12})  # a text-to-image UNet: 1 x latent channels
    for name in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        getattr(components, name).save_pretrained(root / "sd" / name)
    return root, projector


def test_unset_and_empty_paths_are_all_named(monkeypatch):
    monkeypatch.delenv("MREDIT_LLAVA_PATH", raising=False)
    with pytest.raises(FileNotFoundError, match=r"MREDIT_LLAVA_PATH \(llava_path.*vision_path is empty"):
        resolve_paths({"llava_path": "${MREDIT_LLAVA_PATH}", "vision_path": "", "diffusion_path": "/x"})


def test_paths_are_checked_at_init_and_read_in_configure_model(monkeypatch, tmp_path):
    monkeypatch.setenv("MREDIT_LLAVA_PATH", str(tmp_path / "llava"))
    monkeypatch.delenv("MREDIT_CLIP_VISION_PATH", raising=False)
    with pytest.raises(FileNotFoundError, match=r"^SmartEdit needs pretrained weights; set MREDIT_CLIP_VISION_PATH"):
        SmartEditModule(**REAL_SIZES, pretrained=PretrainedWeights(diffusion_path=str(tmp_path / "sd")))
    weights = PretrainedWeights(vision_path="~/clip", diffusion_path=str(tmp_path / "sd"))
    module = SmartEditModule(**REAL_SIZES, pretrained=weights)  # every path set: nothing is read yet
    assert not module.is_built and module.hparams.pretrained["llava_path"] == "$MREDIT_LLAVA_PATH"
    assert weights.resolve().llava_path == str(tmp_path / "llava") and not weights.resolve().vision_path.startswith("~")
    with pytest.raises(OSError):  # the folders do not exist
        module.configure_model()


def test_projector_must_be_in_the_llava_shards(tmp_path):
    save_file({"model.embed_tokens.weight": torch.zeros(2, 2)}, tmp_path / "model.safetensors")
    with pytest.raises(FileNotFoundError, match="mm_projector"):
        load_llava_projector(str(tmp_path), 32, 64)


def test_build_from_pretrained_folders_via_env_vars(pretrained_dirs, monkeypatch):
    root, projector = pretrained_dirs
    monkeypatch.setenv("MREDIT_LLAVA_PATH", str(root / "llava"))
    monkeypatch.setenv("MREDIT_CLIP_VISION_PATH", str(root / "clip"))
    monkeypatch.setenv("MREDIT_SMARTEDIT_SD_PATH", str(root / "sd"))
    module = SmartEditModule(stage="smartedit", **REAL_SIZES)
    module.configure_model()
    assert torch.equal(module.mllm.projector.weight, projector["model.mm_projector.weight"])
    conv_in = module.unet.conv_in
    assert conv_in.in_channels == module.unet.config.in_channels == 24  # noisy target + source latents
    assert not conv_in.weight[:, 12:].any()  # the added source-latent channels start at zero
    assert module.mllm.base_vocab == 259 and len(module.mllm.tokenizer) == 259 + 3 + 4
    losses = module.compute_losses(make_batch())
    assert torch.isfinite(losses["loss"])


def test_init_from_previous_stage(tmp_path):
    align = tiny_module(stage="align")
    with torch.no_grad():
        align.qformer.queries.add_(1.0)
        align.mllm.new_token_embeds.add_(1.0)
    torch.save({"state_dict": align.state_dict()}, tmp_path / "stage1.ckpt")
    stage2a = tiny_module(stage="mllmsd", init_from=str(tmp_path / "stage1.ckpt"))
    assert torch.equal(stage2a.qformer.queries, align.qformer.queries)
    assert torch.equal(stage2a.mllm.new_token_embeds, align.mllm.new_token_embeds)
    missing = SmartEditModule(stage="mllmsd", init_from=str(tmp_path / "missing.ckpt"), **TINY_SIZES)
    with pytest.raises(FileNotFoundError, match="init_from"):  # read once the parts are built
        missing.configure_model()
