from __future__ import annotations

import itertools

import pytest
import torch
from models_helpers import make_batch, make_module

from mredit.conditioning.feedback import encode_feedback
from mredit.conditioning.paper import PaperRewardConditioner
from mredit.conditioning.registry import build_conditioner, conditioner_class
from mredit.conditioning.seams import reward_conditioning


def _unet_inputs(module, batch_size=2):
    g = torch.Generator().manual_seed(1)
    latent = module.unet.config.in_channels
    x = torch.randn(batch_size, latent, 8, 8, generator=g)
    t = torch.tensor([100, 900][:batch_size])
    ctx = module.encode_instructions(["make it blue"] * batch_size)
    return x, t, ctx


def _feedback(module, batch_size=2):
    texts = [["None", "the background changed", "blurry"]] * batch_size
    return encode_feedback(texts, module.tokenizer, module.text_encoder, ("tokens",))


def test_zero_init_is_a_no_op_with_live_gradients(module):
    conditioner = build_conditioner("paper", module.unet.config, text_dim=module.text_encoder.config.hidden_size)
    x, t, ctx = _unet_inputs(module)
    with torch.no_grad():
        plain = module.unet(x, t, encoder_hidden_states=ctx).sample
    condition = conditioner(torch.tensor([[5.0, 5.0, 5.0], [1.0, 2.0, 3.0]]), _feedback(module))
    with reward_conditioning(module.unet, condition):
        conditioned = module.unet(x, t, encoder_hidden_states=ctx).sample
    assert torch.equal(conditioned, plain)
    conditioned.pow(2).mean().backward()
    for projection in (conditioner.time_proj, conditioner.latent_proj_out):
        assert projection.weight.grad is not None and projection.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "use_scores,use_feedback,time_path,latent_path",
    [s for s in itertools.product([True, False], repeat=4) if (s[0] or s[1]) and (s[2] or s[3])],
)
def test_ablation_switches(module, use_scores, use_feedback, time_path, latent_path):
    conditioner = PaperRewardConditioner.for_unet(
        module.unet.config,
        text_dim=16,
        use_scores=use_scores,
        use_feedback=use_feedback,
        time_path=time_path,
        latent_path=latent_path,
    )
    assert conditioner.num_tokens == 3 * (int(use_scores) + int(use_feedback))
    assert hasattr(conditioner, "score_mlp") == use_scores and hasattr(conditioner, "feedback_proj") == use_feedback
    condition = conditioner(torch.full((2, 3), 5.0), _feedback(module))
    assert (condition.time_emb is not None) == time_path and (condition.latent is not None) == latent_path
    if time_path:
        assert condition.time_emb.shape == (2, module.unet.config.block_out_channels[0] * 4)
    if latent_path:
        h0 = torch.randn(2, module.unet.config.block_out_channels[0], 8, 8)
        assert condition.latent(h0).shape == h0.shape


def test_scores_and_feedback_change_the_tokens(module):
    conditioner = build_conditioner("paper", module.unet.config, text_dim=16)
    feedback = _feedback(module)
    high = conditioner.reward_tokens(torch.full((2, 3), 5.0), feedback)
    low = conditioner.reward_tokens(torch.zeros(2, 3), feedback)
    other = encode_feedback([["None"] * 3] * 2, module.tokenizer, module.text_encoder, ("tokens",))
    assert not torch.allclose(high[:, :3], low[:, :3]) and torch.allclose(high[:, 3:], low[:, 3:])
    assert not torch.allclose(conditioner.reward_tokens(torch.zeros(2, 3), other)[:, 3:], low[:, 3:])


def test_null_condition_replaces_dropped_rewards(module):
    conditioner = build_conditioner("paper", module.unet.config, text_dim=16, null_condition=True)
    feedback, drop = _feedback(module), torch.tensor([True, False])
    a = conditioner.reward_tokens(torch.tensor([[5.0, 5, 5], [5, 5, 5]]), feedback, drop)
    b = conditioner.reward_tokens(torch.tensor([[0.0, 1, 2], [0, 1, 2]]), feedback, drop)
    assert torch.equal(a[0], b[0]) and not torch.allclose(a[1], b[1])
    without_null = build_conditioner("paper", module.unet.config, text_dim=16)
    with pytest.raises(ValueError, match="null_condition"):
        without_null.reward_tokens(torch.zeros(2, 3), feedback, drop)


def test_registry_errors_and_config_round_trip(module, tmp_path):
    with pytest.raises(ValueError, match="unknown reward conditioner variant 'nope'.*official.*paper"):
        conditioner_class("nope")
    with pytest.raises(ValueError, match="not a RewardConditioner"):
        conditioner_class("torch.nn.Linear")
    conditioner = build_conditioner("paper", module.unet.config, text_dim=16, token_dim=16, num_heads=2)
    conditioner.save_pretrained(tmp_path)
    loaded = PaperRewardConditioner.from_pretrained(tmp_path)
    assert loaded.config.token_dim == 16 and loaded.num_heads == 2
    for (name, a), (_, b) in zip(conditioner.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name


def test_training_with_the_conditioner_moves_its_output_projections():
    module = make_module()
    conditioner = build_conditioner("paper", module.unet.config, text_dim=16)
    module.attach_reward_conditioner(conditioner)
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-2)
    module.train()
    for step in range(2):
        optimizer.zero_grad()
        module.diffusion_loss(make_batch(seed=step)).backward()
        optimizer.step()
    assert conditioner.time_proj.weight.abs().sum() > 0 and conditioner.latent_proj_out.weight.abs().sum() > 0
