"""Random-weight folders in the real layouts: the real sizes (counted on the meta device, against the published
parameter counts), and tiny folders that the project's loaders, stock diffusers and transformers read."""

from __future__ import annotations

import json
import math

import pytest
import torch
from diffusers import StableDiffusionInstructPix2PixPipeline
from safetensors.torch import load_file

from mredit.cli import main
from mredit.models import random_init
from mredit.models.components import load_pretrained_components
from mredit.models.random_init import architecture_config, init_random, parameter_counts
from mredit.models.smartedit.loading import load_mllm_parts
from mredit.models.smartedit.mllm import LlavaMLLM, MLLMConfig

SD15 = {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480}  # the published SD1.5 sizes
LLAMA_7B, LLAVA_PROJECTOR, CLIP_VIT_L14 = 6_738_415_616, 1024 * 4096 + 4096, 427_616_513


def test_real_sizes_are_the_published_ones():
    assert parameter_counts("sd15") == SD15
    # InstructPix2Pix: four more input channels of the 3x3 conv_in into 320
    assert parameter_counts("sd15-ip2p") == {**SD15, "unet": SD15["unet"] + 4 * 320 * 9}
    assert parameter_counts("llava-smartedit") == {"llava": LLAMA_7B + LLAVA_PROJECTOR, "clip-vision": CLIP_VIT_L14}
    # --layers keeps every width: 2 of the 32 identical decoder layers, the embeddings, the head and the norm
    per_layer = (LLAMA_7B - 2 * 32000 * 4096 - 4096) // 32
    assert per_layer == 4 * 4096**2 + 3 * 4096 * 11008 + 2 * 4096
    two = parameter_counts("llava-smartedit", layers=2)["llava"]
    assert two == LLAMA_7B - 30 * per_layer + LLAVA_PROJECTOR


def test_sd15_ip2p_folder_loads_in_mredit_and_in_stock_diffusers(tmp_path, capsys):
    out = tmp_path / "sd15-ip2p"
    assert main(["init-random", "--arch", "sd15-ip2p", "--out", str(out), "--tiny", "true"]) == 0
    assert f"export MREDIT_STAGE1_PATH={out}" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == {
        "unet",
        "vae",
        "text_encoder",
        "tokenizer",
        "scheduler",
        "model_index.json",
    }
    assert {p.name for p in (out / "tokenizer").iterdir()} == {
        *("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json")
    }
    unet_config = json.loads((out / "unet" / "config.json").read_text())
    tiny_unet = {**architecture_config("sd15_unet"), **architecture_config("tiny")["unet"]}
    assert unet_config == {**tiny_unet, "in_channels": 8}
    components = load_pretrained_components(str(out))
    assert components.unet.config.in_channels == 8 and components.vae.config.scaling_factor == 0.18215
    # the init: unit norms, zero biases, matrices with unit-variance outputs
    state = load_file(str(out / "unet" / "diffusion_pytorch_model.safetensors"))
    assert torch.equal(state["conv_norm_out.weight"], torch.ones(32)) and not state["conv_in.bias"].any()
    weight = state["down_blocks.0.attentions.0.proj_in.weight"]
    assert weight.std().item() == pytest.approx(1 / math.sqrt(weight[0].numel()), rel=0.2)
    # CLIP's special ids; EOS has the highest id, which the config's legacy pooling (argmax of the ids) relies on
    tokenizer = components.tokenizer
    assert (len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (
        *(49408, 49406, 49407, 49407),
    )
    ids = tokenizer(["make the sky purple"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    assert tokenizer.decode(ids[0], skip_special_tokens=True).strip() == "make the sky purple"
    with torch.no_grad():
        out_text = components.text_encoder(ids)
    eos = int((ids[0] == tokenizer.eos_token_id).nonzero()[0])
    assert torch.equal(out_text.pooler_output[0], out_text.last_hidden_state[0, eos])
    pipe = StableDiffusionInstructPix2PixPipeline.from_pretrained(out)
    pipe.set_progress_bar_config(disable=True)
    image = torch.rand(1, 3, 64, 64)
    edited = pipe("make it blue", image=image, num_inference_steps=1, output_type="np").images
    assert edited.shape == (1, 64, 64, 3) and (edited >= 0).all() and (edited <= 1).all()
    # same seed, same bytes
    again = init_random("sd15-ip2p", tmp_path / "again", tiny=True)
    for part in ("unet/diffusion_pytorch_model.safetensors", "tokenizer/merges.txt"):
        assert (again / part).read_bytes() == (out / part).read_bytes()


def test_llava_folder_loads_as_smartedit_reads_llava(tmp_path, monkeypatch):
    monkeypatch.setattr(random_init, "LLAVA_MAX_SHARD_BYTES", 2**20)  # several shards and an index, as released
    out = init_random("llava-smartedit", tmp_path / "llava-smartedit", layers=1, tiny=True)
    llava = out / "llava"
    index = json.loads((llava / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1 and "model.mm_projector.weight" in index["weight_map"]
    assert json.loads((llava / "config.json").read_text())["model_type"] == "llava"
    parts = load_mllm_parts(str(llava), str(out / "clip-vision"), "float32")
    assert parts.llm.config.num_hidden_layers == 1 and parts.llm.config.hidden_size == 64
    assert parts.projector.weight.shape == (64, 32) and parts.vision_tower.config.image_size == 32
    tokenizer = parts.tokenizer
    assert len(tokenizer) == 32000 and (tokenizer.unk_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id) == (
        0,
        1,
        2,
    )
    assert tokenizer.convert_tokens_to_ids("<0x41>") == 3 + 0x41
    text = "Make the sky purple, 2x!"
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False).input_ids) == text
    # SmartEdit's 35 new tokens come after the LLaMA's 32000 rows
    mllm = LlavaMLLM(parts.llm, parts.vision_tower, parts.projector, tokenizer, MLLMConfig())
    assert len(tokenizer) == 32035 and mllm.new_token_embeds.shape == (35, 64)


def test_bad_requests_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="arch must be one of"):
        init_random("sd21", tmp_path / "a")
    with pytest.raises(ValueError, match="--layers truncates the LLaMA"):
        init_random("sd15", tmp_path / "b", layers=2)
    with pytest.raises(ValueError, match=r"--layers must be in \[1, 32\]"):
        init_random("llava-smartedit", tmp_path / "c", layers=33)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x").write_text("")
    with pytest.raises(ValueError, match="exists and is not empty"):
        init_random("sd15", tmp_path / "d", tiny=True)
