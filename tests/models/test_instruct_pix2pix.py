from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from diffusers import DDPMScheduler, UNet2DConditionModel
from models_helpers import SMALLEST_TEXT, SMALLEST_UNET, loader, make_batch, make_module, make_trainer

from mredit.models.components import TINY_UNET, build_tiny_components, resolve_pretrained_path
from mredit.models.ip2p import InstructPix2PixModule, widen_conv_in
from mredit.models.objective import diffusion_objective, edit_region_balanced_mse


def test_forward_backward_trains_only_the_unet(module):
    module.train()
    loss = module.diffusion_loss(make_batch())
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in module.unet.parameters() if p.requires_grad)
    assert all(not p.requires_grad for p in (*module.vae.parameters(), *module.text_encoder.parameters()))
    assert not module.text_encoder.training


def test_widen_conv_in_copies_weights_and_bias_and_zeroes_new_channels():
    torch.manual_seed(0)
    config = {**TINY_UNET, **SMALLEST_UNET, "in_channels": 4, "out_channels": 4, "cross_attention_dim": 16}
    unet = UNet2DConditionModel(**config)
    old_weight, old_bias = unet.conv_in.weight.detach().clone(), unet.conv_in.bias.detach().clone()
    x, t, ctx = torch.randn(2, 4, 8, 8), torch.tensor([10, 500]), torch.randn(2, 5, 16)
    with torch.no_grad():
        before = unet(x, t, encoder_hidden_states=ctx).sample
    widen_conv_in(unet, 8)
    assert unet.config.in_channels == 8 and unet.conv_in.weight.shape[1] == 8
    assert torch.equal(unet.conv_in.weight[:, :4], old_weight)
    assert torch.equal(unet.conv_in.bias, old_bias)
    assert torch.count_nonzero(unet.conv_in.weight[:, 4:]) == 0
    with torch.no_grad():
        after = unet(torch.cat([x, torch.randn_like(x)], 1), t, encoder_hidden_states=ctx).sample
    torch.testing.assert_close(after, before)


def _save_components(path, text_to_image: bool) -> None:
    torch.manual_seed(0)
    parts = build_tiny_components(SMALLEST_UNET, SMALLEST_TEXT)
    if text_to_image:
        latent = parts.vae.config.latent_channels
        parts.unet = UNet2DConditionModel(**{**dict(parts.unet.config), "in_channels": latent})
    for name in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        getattr(parts, name).save_pretrained(path / name)


@pytest.mark.parametrize("text_to_image", [True, False])
def test_loads_stage1_and_stage2_layouts_from_a_folder(tmp_path, text_to_image):
    _save_components(tmp_path, text_to_image)
    module = InstructPix2PixModule(pretrained_path=str(tmp_path), scheduler_config={"prediction_type": "epsilon"})
    latent = module.vae.config.latent_channels
    assert module.unet.config.in_channels == 2 * latent
    assert module.noise_scheduler.config.prediction_type == "epsilon"
    assert torch.isfinite(module.diffusion_loss(make_batch(2)))


def test_missing_pretrained_path_lists_subfolders_and_names_env_var(tmp_path, monkeypatch):
    monkeypatch.delenv("MREDIT_TEST_SD15", raising=False)
    with pytest.raises(FileNotFoundError, match="MREDIT_TEST_SD15 is not set.*unet/, vae/, text_encoder/"):
        resolve_pretrained_path("$MREDIT_TEST_SD15")
    (tmp_path / "unet").mkdir()
    with pytest.raises(FileNotFoundError, match="lacks vae/, text_encoder/, tokenizer/, scheduler/"):
        resolve_pretrained_path(str(tmp_path))


def test_conditioning_dropout_proportions(module):
    drop_text, drop_image = module.dropout_masks(200_000, torch.Generator().manual_seed(0))
    text_only = (drop_text & ~drop_image).float().mean().item()
    both = (drop_text & drop_image).float().mean().item()
    image_only = (~drop_text & drop_image).float().mean().item()
    for share in (text_only, both, image_only):
        assert share == pytest.approx(0.05, abs=0.003)


def test_dropped_conditions_reach_the_unet(module, monkeypatch):
    """Dropped text is the encoding of "", a dropped image is zero source latents."""
    seen = {}
    forward = module.unet.forward

    def spy(sample, timestep, encoder_hidden_states, **kwargs):
        seen["sample"], seen["text"] = sample, encoder_hidden_states
        return forward(sample, timestep, encoder_hidden_states=encoder_hidden_states, **kwargs)

    monkeypatch.setattr(module.unet, "forward", spy)
    drop = torch.tensor([True, False, False, False]), torch.tensor([True, True, False, False])
    monkeypatch.setattr(module, "dropout_masks", lambda n: drop)
    module.train()
    module.diffusion_loss(make_batch())
    latent = module.vae.config.latent_channels
    null = module.null_text_embedding()[0]
    assert torch.equal(seen["text"][0], null) and not torch.equal(seen["text"][2], null)
    assert torch.count_nonzero(seen["sample"][:2, latent:]) == 0
    assert torch.count_nonzero(seen["sample"][2:, latent:]) > 0


def test_precomputed_latents_skip_the_frozen_encoders(monkeypatch):
    module = make_module(conditioning_dropout=0.0)
    batch = make_batch(2)
    posterior = module.vae.encode(batch["target"]).latent_dist
    precomputed = {
        "key": batch["key"],
        "source_latents": module.vae.encode(batch["source"]).latent_dist.mode(),
        "target_latent_mean": posterior.mean,
        "target_latent_logvar": posterior.logvar,
        "instruction_embeds": module.encode_instructions(batch["instruction"]),
        "scores": batch["scores"],
        "feedback": batch["feedback"],
    }

    def forbidden(*args, **kwargs):
        raise AssertionError("a frozen encoder ran on a precomputed batch")

    monkeypatch.setattr(module.vae, "encode", forbidden)
    monkeypatch.setattr(module, "encode_instructions", forbidden)
    module.train()
    assert torch.isfinite(module.training_step(precomputed, 0))


def test_objective_per_prediction_type():
    clean, noise = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    timesteps = torch.tensor([10, 900])
    for prediction_type, expected in [
        ("epsilon", noise),
        ("sample", clean),
        ("v_prediction", DDPMScheduler(prediction_type="v_prediction").get_velocity(clean, noise, timesteps)),
    ]:
        scheduler = DDPMScheduler(prediction_type=prediction_type)
        assert torch.equal(diffusion_objective(scheduler, clean, noise, timesteps), expected)
    with pytest.raises(ValueError, match="unsupported prediction_type 'flow'"):
        diffusion_objective(SimpleNamespace(config=SimpleNamespace(prediction_type="flow")), clean, noise, timesteps)


def test_x0_prediction_trains():
    module = make_module(scheduler_config={"prediction_type": "sample"})
    assert module.noise_scheduler.config.prediction_type == "sample"
    assert torch.isfinite(module.diffusion_loss(make_batch(2)))
    assert make_module().noise_scheduler.config.prediction_type == "v_prediction"


def test_bad_conditioning_dropout_is_rejected():
    with pytest.raises(ValueError, match="conditioning_dropout"):
        make_module(conditioning_dropout=0.5)


def test_edit_residual_objective_is_target_minus_source():
    """With x0 prediction and an unchanged target, a UNet predicting zero is exact only in residual mode."""
    batch = make_batch(2)
    batch["target"] = batch["source"].clone()
    for edit_residual, exact in [(True, True), (False, False)]:
        module = make_module(scheduler_config={"prediction_type": "sample"}, edit_residual=edit_residual)
        module.hparams.conditioning_dropout = 0.0
        with torch.no_grad():
            module.unet.conv_out.weight.zero_()
            module.unet.conv_out.bias.zero_()
        loss = module.diffusion_loss(batch).item()
        assert (loss == 0.0) is exact, (edit_residual, loss)


def test_edit_region_balanced_mse_gives_the_edited_positions_half_the_weight():
    objective = torch.zeros(2, 4, 8, 8)
    edit = torch.zeros(2, 4, 8, 8)
    edit[0, :, :2, :2] = 1.0  # sample 0: a local edit on 4 of 64 positions; sample 1: no change
    prediction = torch.zeros(2, 4, 8, 8)
    prediction[0, :, :2, :2] = 2.0  # wrong only where the edit is
    prediction[1] = 1.0
    plain = torch.nn.functional.mse_loss(prediction, objective).item()
    balanced = edit_region_balanced_mse(prediction, objective, edit).item()
    # sample 0: 0.5 * 4 inside + 0.5 * 0 outside = 2 (its plain MSE is 4 * 4 / 64 = 0.25); sample 1: plain MSE 1
    assert balanced == pytest.approx((2.0 + 1.0) / 2) and plain == pytest.approx((0.25 + 1.0) / 2)
    everywhere = torch.ones(2, 4, 8, 8)
    assert edit_region_balanced_mse(prediction, objective, everywhere).item() == pytest.approx(plain)


def test_balance_edit_region_trains():
    module = make_module(scheduler_config={"prediction_type": "sample"}, edit_residual=True, balance_edit_region=True)
    module.train()
    loss = module.diffusion_loss(make_batch(2))
    loss.backward()
    assert torch.isfinite(loss) and module.unet.conv_out.weight.grad.abs().sum() > 0


def test_train_text_encoder_gets_gradients_and_ema():
    module = make_module(train_text_encoder=True)
    module.train()
    module.hparams.conditioning_dropout = 1.0 / 3.0  # dropped instructions use the live null encoding too
    module.diffusion_loss(make_batch()).backward()
    grads = [p.grad for p in module.text_encoder.parameters()]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    names = {name for name, _ in module.trainable_named_parameters()}
    assert any(name.startswith("text_encoder.") for name in names)
    assert module._null_text is None  # never cached while the encoder changes
    with torch.no_grad():
        assert not module.encode_instructions(["make it red"]).requires_grad


def test_train_text_encoder_refuses_precomputed_embeddings():
    module = make_module(train_text_encoder=True)
    module.train()
    batch = make_batch(2)
    batch["instruction_embeds"] = module.encode_instructions(batch["instruction"]).detach()
    with pytest.raises(ValueError, match="train_text_encoder"):
        module.diffusion_loss(batch)


def test_synth_words_tokenizer_trains_and_survives_a_checkpoint(tmp_path):
    module = make_module(tiny_tokenizer="synth_words", train_text_encoder=True)
    tokens = module.tokenizer.tokenize("make the red square blue")
    assert tokens == ["make</w>", "the</w>", "red</w>", "square</w>", "blue</w>"]
    assert module.text_encoder.config.vocab_size == len(module.tokenizer) > 514
    module.train()
    module.diffusion_loss(make_batch(2)).backward()
    assert module.text_encoder.get_input_embeddings().weight.grad.abs().sum() > 0
    trainer = make_trainer(tmp_path, max_steps=1)
    trainer.fit(module, loader(1))
    path = tmp_path / "words.ckpt"
    trainer.save_checkpoint(path)
    reloaded = InstructPix2PixModule.load_from_checkpoint(path)  # rebuilt from the hyperparameters
    assert reloaded.tokenizer.tokenize("make the red square blue") == tokens


def test_tiny_tokenizer_is_refused_with_pretrained_components(tmp_path):
    _save_components(tmp_path, text_to_image=False)
    with pytest.raises(ValueError, match="tiny_tokenizer='synth_words' is for tiny components"):
        InstructPix2PixModule(pretrained_path=str(tmp_path), tiny_tokenizer="synth_words")


def test_uint8_batches_from_the_loader_give_the_float_batches_loss(module):
    """The loader keeps images uint8 (0..255); the module converts them on its device to the same [-1, 1]."""
    batch = make_batch()
    pixels = {**batch, "source": torch.randint(0, 256, batch["source"].shape, dtype=torch.uint8)}
    pixels["target"] = 255 - pixels["source"]
    floats = {**pixels, "source": pixels["source"] / 127.5 - 1, "target": pixels["target"] / 127.5 - 1}
    module.eval()
    losses = [module.diffusion_loss(b, generator=torch.Generator().manual_seed(0)) for b in (pixels, floats)]
    assert torch.allclose(losses[0], losses[1], atol=1e-6)
