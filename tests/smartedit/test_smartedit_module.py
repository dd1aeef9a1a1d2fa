"""SmartEditModule on tiny random parts: building in configure_model, losses per stage, trainables, conv_in hook
order, rewards, export, editing."""

from __future__ import annotations

import json
from dataclasses import asdict

import lightning
import pytest
import torch
from diffusers import UNet2DConditionModel
from peft import PeftModel
from PIL import Image
from safetensors.torch import load_file
from smartedit_helpers import TINY_SIZES, make_batch, tiny_module
from transformers import LlamaForCausalLM

from mredit.conditioning.base import RewardCondition
from mredit.conditioning.registry import build_conditioner
from mredit.models.smartedit.mllm import MLLMConfig
from mredit.models.smartedit.module import FROZEN_PREFIXES, SmartEditModule, conditioning_dropout_masks
from mredit.models.smartedit.pipeline import edit_tensors


def test_conditioning_dropout_thresholds():
    random_p = torch.tensor([0.0, 0.049, 0.05, 0.099, 0.1, 0.149, 0.15, 0.9])
    drop_text, drop_image = conditioning_dropout_masks(random_p, 0.05)
    assert drop_text.tolist() == [True, True, True, True, False, False, False, False]
    assert drop_image.tolist() == [False, False, True, True, True, True, False, False]


def test_stage_trainables(smartedit_module):
    module = smartedit_module
    trainable = {name for name, p in module.named_parameters() if p.requires_grad}
    llm_trainable = {name for name in trainable if name.startswith("mllm.")}
    assert llm_trainable == {"mllm.new_token_embeds", "mllm.new_token_head"} | {
        name for name, _ in module.mllm.named_parameters(prefix="mllm") if "lora_" in name
    }
    assert all(name.startswith(("mllm.", "qformer.", "unet.", "bim.")) for name in trainable)
    for frozen in (module.vae, module.text_encoder, module.mllm.vision_tower, module.mllm.projector):
        assert not any(p.requires_grad for p in frozen.parameters())
    assert all(p.requires_grad for p in module.unet.parameters()) and all(
        p.requires_grad for p in module.bim.parameters()
    )


def test_align_stage_trains_rows_and_qformer_only():
    module = tiny_module(stage="align")
    trainable = {name.split(".")[0] for name, p in module.named_parameters() if p.requires_grad}
    assert trainable == {"mllm", "qformer"}
    assert not any(p.requires_grad for p in module.mllm.lora_parameters())
    losses = module.compute_losses(make_batch())
    assert set(losses) == {"loss", "lm_loss", "align_loss"}
    losses["loss"].backward()
    assert module.qformer.queries.grad.abs().sum() > 0 and module.mllm.new_token_embeds.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="align"):
        edit_tensors(module, make_batch()["source"], ["x", "y"])


def test_forward_backward_and_one_step_changes_only_trainables(smartedit_module):
    module = smartedit_module
    frozen_before = {n: p.detach().clone() for n, p in module.named_parameters() if not p.requires_grad}
    lora_b_before = [p.detach().clone() for n, p in module.named_parameters() if "lora_B" in n]
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
    losses = module.compute_losses(make_batch())
    assert set(losses) == {"loss", "lm_loss", "diffusion_loss"} and torch.isfinite(losses["loss"])
    losses["loss"].backward()
    assert module.bim.spatial_head.weight.grad.abs().sum() > 0  # zero-init heads still receive gradients
    assert all(p.grad.abs().sum() > 0 for p in module.unet.conv_in.parameters())
    optimizer.step()
    optimizer.zero_grad()
    assert all(torch.equal(p, frozen_before[n]) for n, p in module.named_parameters() if not p.requires_grad)
    lora_b_after = [p for n, p in module.named_parameters() if "lora_B" in n]
    assert all(not torch.equal(a, b) for a, b in zip(lora_b_before, lora_b_after))


def test_conv_in_hooks_add_spatial_before_reward(smartedit_module):
    module = smartedit_module
    sample = torch.randn(2, module.unet.config.in_channels, 8, 8)
    timesteps = torch.tensor([10, 500])
    text = torch.randn(2, 8, module.unet.config.cross_attention_dim)
    spatial = torch.randn(2, module.unet.config.block_out_channels[0], 8, 8)
    seen = []

    def reward_latent(h0: torch.Tensor) -> torch.Tensor:
        seen.append(h0.detach().clone())
        return torch.zeros_like(h0)

    with torch.no_grad():
        module.unet_forward(sample, timesteps, text, spatial, RewardCondition(latent=reward_latent))
        expected = module.unet.conv_in(sample) + spatial
        assert torch.allclose(seen[0], expected, atol=1e-6)  # reward sees conv_in(x) + v_sp
        conv = module.unet.conv_in  # a plain convolution again after the call: its hook's slots are empty
        assert torch.equal(conv(sample), torch.nn.functional.conv2d(sample, conv.weight, conv.bias, 1, conv.padding))
        plain = module.unet_forward(sample, timesteps, text, None, None)
        zero = module.unet_forward(sample, timesteps, text, torch.zeros_like(spatial), None)
        assert torch.equal(plain, zero)


def test_reward_conditioner_attach_detach(smartedit_module):
    module = smartedit_module
    conditioner = build_conditioner(
        "official", unet_config=module.unet.config, text_dim=module.text_encoder.config.hidden_size
    )
    module.attach_reward_conditioner(conditioner)
    try:
        assert module.reward_conditioner is conditioner
        losses = module.compute_losses(make_batch())
        losses["loss"].backward()
        assert any(p.grad is not None for p in conditioner.parameters())
        module.eval()
        edited = edit_tensors(module, make_batch(1)["source"], ["make it red"], num_inference_steps=2, seed=3)
        assert edited.shape == (1, 3, 32, 32) and edited.abs().max() <= 1
    finally:
        module.detach_reward_conditioner()
        module.train()
    assert module.reward_conditioner is None
    assert not any(name.startswith("reward_conditioner") for name in module.state_dict())


def test_edit_is_deterministic_and_returns_pil(smartedit_module):
    module = smartedit_module.eval()
    source = make_batch()["source"]
    first = edit_tensors(module, source, ["make it red", "remove it"], num_inference_steps=2, seed=1)
    again = edit_tensors(module, source, ["make it red", "remove it"], num_inference_steps=2, seed=1)
    assert torch.equal(first, again) and first.shape == source.shape
    image = Image.new("RGB", (40, 30), (200, 10, 10))
    images = module.edit([image], ["make it blue"], resolution=32, num_inference_steps=2)
    assert images[0].size == (32, 24) and images[0].mode == "RGB"
    out = module.predict_step(make_batch(), 0)
    assert out["key"] == ["k0", "k1"] and [image.size for image in out["images"]] == [(32, 32)] * 2
    module.train()


def test_edit_residual_recipe_trains_on_the_edit_and_adds_the_source_back():
    """x0 prediction on edit residuals (the tiny recipe): a UNet that predicts zero is exact for an unchanged
    target only in residual mode, and its edit returns the source."""
    batch = make_batch()
    batch["target"] = batch["source"].clone()
    for edit_residual in (True, False):
        module = tiny_module(scheduler_config={"prediction_type": "sample"}, edit_residual=edit_residual)
        assert module.noise_scheduler.config.prediction_type == "sample"
        module.hparams.conditioning_dropout = 0.0
        with torch.no_grad():
            module.unet.conv_out.weight.zero_()
            module.unet.conv_out.bias.zero_()
            diffusion = module.compute_losses(batch)["diffusion_loss"].item()
            edited = edit_tensors(
                module.eval(), batch["source"], batch["instruction"], num_inference_steps=3, scheduler="ddim"
            )
        assert (diffusion == 0.0) is edit_residual, (edit_residual, diffusion)
        assert torch.allclose(edited, batch["source"], atol=1e-5) is edit_residual


def test_export_layout(smartedit_module, tmp_path):
    smartedit_module.export(str(tmp_path))
    unet = UNet2DConditionModel.from_pretrained(tmp_path / "unet")
    assert unet.config.in_channels == smartedit_module.unet.config.in_channels
    assert (tmp_path / "lora" / "adapter_config.json").is_file() and not (tmp_path / "llm").exists()
    assert json.loads((tmp_path / "lora" / "adapter_config.json").read_text())["r"] == 8
    heads = load_file(tmp_path / "smartedit_heads.safetensors")
    assert {"mllm.new_token_embeds", "mllm.new_token_head", "qformer.queries", "null_text"} <= set(heads)
    assert any(k.startswith("bim.") for k in heads) and any(k.startswith("mllm.projector.") for k in heads)
    meta = json.loads((tmp_path / "smartedit.json").read_text())
    assert meta["hparams"]["stage"] == "smartedit" and meta["reward_conditioner"] is None


def test_real_config_needs_env_vars(monkeypatch):
    for name in ("MREDIT_LLAVA_PATH", "MREDIT_CLIP_VISION_PATH", "MREDIT_SMARTEDIT_SD_PATH"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(FileNotFoundError, match="MREDIT_LLAVA_PATH.*MREDIT_CLIP_VISION_PATH.*MREDIT_SMARTEDIT_SD_PATH"):
        SmartEditModule()


def test_init_seed_follows_the_global_seed_and_is_recorded():
    torch.manual_seed(5)
    first = tiny_module(init_seed=None)
    torch.manual_seed(5)
    again = tiny_module(init_seed=None)
    assert first.hparams.init_seed == 5
    pairs = zip(first.mllm.vision_tower.parameters(), again.mllm.vision_tower.parameters())
    assert all(torch.equal(a, b) for a, b in pairs)
    other = tiny_module(init_seed=6)
    assert not torch.equal(next(other.unet.parameters()), next(first.unet.parameters()))


def test_init_records_settings_and_configure_model_builds_once():
    module = SmartEditModule(**TINY_SIZES)
    assert not module.is_built and not hasattr(module, "unet") and len(list(module.parameters())) == 0
    module.configure_model()
    unet, params = module.unet, len(list(module.parameters()))
    module.configure_model()  # idempotent: Lightning and RewardConditioning.setup may both call it
    assert module.unet is unet and len(list(module.parameters())) == params
    assert module.mllm.prompt.img_ids and module.qformer.queries.shape == (1, 8, 32)
    assert module.lora_config.r == 8 and module.lora_config.task_type == "CAUSAL_LM"


def test_parts_are_built_on_the_cpu_in_fp32_whatever_the_context():
    """Lightning calls configure_model inside its device and dtype contexts; the seeded tiny parts (left out of
    checkpoints) and the random inits must not depend on them."""
    module = SmartEditModule(**TINY_SIZES)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)  # the trainable parts (LoRA, Q-Former, BIM) start from the global RNG
    try:
        with torch.device("meta"):
            module.configure_model()
    finally:
        torch.set_default_dtype(default)
    torch.manual_seed(0)
    reference = tiny_module().state_dict()
    for key, value in module.state_dict().items():
        assert value.device.type == "cpu" and torch.equal(value, reference[key]), key


def test_hparams_are_plain_and_rebuild_the_module(smartedit_module):
    hparams = dict(smartedit_module.hparams)
    assert json.loads(json.dumps(hparams)) == hparams  # checkpoints load with weights_only; smartedit.json is JSON
    assert hparams["qformer"] == {
        "num_queries": 8,
        "num_layers": 2,
        "num_heads": 4,
        "intermediate_size": 64,
        "cross_attention_frequency": 2,
    }
    assert hparams["lora"] == {
        "r": 8,
        "lora_alpha": 16,
        "lora_dropout": 0.05,
        "target_modules": ["q_proj", "v_proj"],
        "bias": "none",
        "task_type": "CAUSAL_LM",
    }
    rebuilt = SmartEditModule(**hparams)
    assert dict(rebuilt.hparams) == hparams
    assert rebuilt.qformer_config == smartedit_module.qformer_config
    assert rebuilt.bim_config == smartedit_module.bim_config and rebuilt.mllm_config == smartedit_module.mllm_config


def test_settings_are_checked_without_building():
    with pytest.raises(ValueError, match="conditioning_dropout"):
        SmartEditModule(**TINY_SIZES, conditioning_dropout=0.5)
    with pytest.raises(ValueError, match="stage"):
        SmartEditModule(**{**TINY_SIZES, "stage": "stage2"})
    with pytest.raises(TypeError, match="qformer_depth"):
        SmartEditModule(**TINY_SIZES, qformer_depth=2)


FULL_LLM = {"mllm": MLLMConfig(**{**asdict(TINY_SIZES["mllm"]), "llm_training": "full"})}


@pytest.fixture(scope="module")
def full_llm_module() -> SmartEditModule:
    return tiny_module(**FULL_LLM, ema_decay=0.9)


def test_full_llm_training_trains_every_llm_weight_from_the_edit_loss(full_llm_module):
    module = full_llm_module
    llm = {name for name, _ in module.mllm.llm.named_parameters(prefix="mllm.llm")}
    trainable = {name for name, p in module.named_parameters() if p.requires_grad}
    assert {n for n in trainable if n.startswith("mllm.")} == llm | {"mllm.new_token_embeds", "mllm.new_token_head"}
    assert "mllm.llm.model.embed_tokens.weight" in trainable and not module.mllm.lora_parameters()
    for frozen in (module.mllm.vision_tower, module.mllm.projector, module.vae, module.text_encoder):
        assert not any(p.requires_grad for p in frozen.parameters())
    module.compute_losses(make_batch())["diffusion_loss"].backward()  # the editing loss alone reaches the LLM
    q_proj = module.mllm.llm.model.layers[0].self_attn.q_proj.weight
    assert q_proj.grad is not None and q_proj.grad.abs().sum() > 0
    module.zero_grad()
    assert not any(p.requires_grad for p in tiny_module(**FULL_LLM, stage="align").mllm.llm.parameters())


def test_edit_align_loss_ties_the_qformer_output_to_the_instruction_in_the_editing_stage():
    torch.manual_seed(0)
    module = tiny_module(**FULL_LLM, edit_align_loss_weight=0.5).eval()  # eval: no Q-Former dropout
    batch = make_batch()
    torch.manual_seed(1)
    losses = module.compute_losses(batch)
    assert set(losses) == {"loss", "lm_loss", "diffusion_loss", "align_loss"}
    # the alignment term from the formula: the Q-Former output (before the BIM) against the CLIP text embedding
    with torch.no_grad():
        out = module.mllm(list(batch["instruction"]), module.mllm.patch_features(batch["source"]), False)
        expected = module.qformer(out.img_hidden.float()) - module.clip_text_embedding(list(batch["instruction"]))
    torch.testing.assert_close(losses["align_loss"], expected.pow(2).mean())
    total = losses["lm_loss"] + losses["diffusion_loss"] + 0.5 * losses["align_loss"]
    torch.testing.assert_close(losses["loss"], total)
    losses["align_loss"].backward()  # it reaches the LLM as well as the Q-Former
    assert module.qformer.queries.grad.abs().sum() > 0
    assert module.mllm.llm.model.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0


def test_full_llm_checkpoint_keeps_the_llm_and_its_ema_and_round_trips(full_llm_module, tmp_path):
    module = full_llm_module
    with torch.no_grad():
        for param in module.mllm.llm.parameters():
            param.add_(0.01)
    module.ema.update(module.trainable_named_parameters())
    checkpoint = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}
    module.on_save_checkpoint(checkpoint)
    llm_keys = {k for k in checkpoint["state_dict"] if k.startswith("mllm.llm.")}
    assert llm_keys == {f"mllm.llm.{k}" for k in module.mllm.llm.state_dict()}  # all of it, not only adapters
    assert llm_keys <= set(checkpoint["ema"]["shadow"])
    assert not any(k.startswith(FROZEN_PREFIXES) for k in checkpoint["state_dict"])
    torch.save({**checkpoint, "pytorch-lightning_version": lightning.__version__}, tmp_path / "full.ckpt")
    loaded = SmartEditModule.load_from_checkpoint(tmp_path / "full.ckpt", map_location="cpu")
    assert loaded.mllm_config.llm_training == "full"
    state = loaded.state_dict()
    assert all(torch.equal(state[k], checkpoint["state_dict"][k]) for k in llm_keys)
    assert loaded.ema.shadow.keys() == checkpoint["ema"]["shadow"].keys()


def test_lora_checkpoint_leaves_the_frozen_llm_out(smartedit_module):
    checkpoint = {"state_dict": smartedit_module.state_dict()}
    smartedit_module.on_save_checkpoint(checkpoint)
    llm_keys = [k for k in checkpoint["state_dict"] if k.startswith("mllm.llm.")]
    assert llm_keys and all("lora_" in k for k in llm_keys)


def test_full_llm_export_writes_the_whole_llm_with_the_ema_weights(full_llm_module, tmp_path):
    module = full_llm_module
    module.export(str(tmp_path))
    assert not (tmp_path / "lora").exists()
    exported = LlamaForCausalLM.from_pretrained(tmp_path / "llm")
    for name, value in exported.state_dict().items():
        assert torch.equal(value, module.ema.shadow[f"mllm.llm.{name}"]), name
    meta = json.loads((tmp_path / "smartedit.json").read_text())
    assert meta["hparams"]["mllm"]["llm_training"] == "full"


def test_hparams_without_llm_training_build_the_lora_model(smartedit_module):
    """Checkpoints written before the option have an ``mllm`` without ``llm_training``: SmartEdit's LoRA."""
    hparams = dict(smartedit_module.hparams)
    hparams["mllm"] = {k: v for k, v in hparams["mllm"].items() if k != "llm_training"}
    module = SmartEditModule(**hparams)
    module.configure_model()
    assert module.mllm_config.llm_training == "lora" and isinstance(module.mllm.llm, PeftModel)
    assert module.hparams.mllm["llm_training"] == "lora"


def test_tiny_tokenizer_synth_words_reads_words_in_both_tokenizers_and_rebuilds():
    module = tiny_module(tiny_tokenizer="synth_words")
    assert len(module.mllm.tokenizer(" brown diamond", add_special_tokens=False).input_ids) == 2
    assert len(module.tokenizer("brown diamond", add_special_tokens=False).input_ids) == 2  # the CLIP text one
    assert module.mllm.base_vocab == module.mllm.base_llm.config.vocab_size > 259
    rebuilt = SmartEditModule(**dict(module.hparams))
    rebuilt.configure_model()
    assert rebuilt.mllm.base_vocab == module.mllm.base_vocab
    assert torch.equal(rebuilt.mllm.base_llm.model.embed_tokens.weight, module.mllm.base_llm.model.embed_tokens.weight)
    assert all(torch.isfinite(v).all() for v in module.compute_losses(make_batch()).values())
    with pytest.raises(ValueError, match="tiny_tokenizer='synth_words' is for tiny parts"):
        SmartEditModule(**{**TINY_SIZES, "tiny": False}, tiny_tokenizer="synth_words")
    with pytest.raises(ValueError, match="tiny_tokenizer"):
        SmartEditModule(**TINY_SIZES, tiny_tokenizer="bytes")


def test_uint8_batches_from_the_loader_give_the_float_batches_losses(smartedit_module):
    """The loader keeps images uint8 (0..255); the module converts them on its device to the same [-1, 1]."""
    pixels = make_batch()
    pixels["source"] = torch.randint(0, 256, pixels["source"].shape, dtype=torch.uint8)
    pixels["target"] = 255 - pixels["source"]
    floats = {**pixels, "source": pixels["source"] / 127.5 - 1, "target": pixels["target"] / 127.5 - 1}
    losses = []
    for batch in (pixels, floats):
        torch.manual_seed(0)
        with torch.no_grad():
            losses.append(smartedit_module.compute_losses(batch)["loss"])
    assert torch.allclose(losses[0], losses[1], atol=1e-6)
