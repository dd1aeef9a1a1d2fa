"""The callback, the checkpointed conditioner spec, reward dropout, EMA, gradient clipping and the NaN guard,
each through a real (tiny) Lightning Trainer."""

from __future__ import annotations

import pytest
import torch
from models_helpers import loader, make_batch, make_module, make_trainer

from mredit.callbacks.reward_conditioning import RewardConditioning
from mredit.conditioning.paper import PaperRewardConditioner
from mredit.models.ip2p import InstructPix2PixModule
from mredit.models.reward_mixin import CHECKPOINT_KEY


def test_callback_attaches_before_the_optimizer(tmp_path):
    module = make_module()
    trainer = make_trainer(tmp_path, max_steps=1, callbacks=[RewardConditioning(variant="paper", token_dim=16)])
    trainer.fit(module, loader(1))
    conditioner = module.reward_conditioner
    assert isinstance(conditioner, PaperRewardConditioner) and conditioner.config.token_dim == 16
    optimized = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert all(id(p) in optimized for p in conditioner.parameters())
    assert any(key.startswith("reward_conditioner.") for key in module.state_dict())
    assert any(name.startswith("reward_conditioner.") for name in module.ema.shadow)


def test_checkpoint_round_trip_without_the_callback(tmp_path):
    module = make_module()
    callback = RewardConditioning(variant="paper", reward_dropout=0.2, use_feedback=False)
    trainer = make_trainer(tmp_path, max_steps=2, callbacks=[callback])
    trainer.fit(module, loader(2))
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=False)
    assert checkpoint[CHECKPOINT_KEY]["class_path"] == "mredit.conditioning.paper.PaperRewardConditioner"
    assert checkpoint[CHECKPOINT_KEY]["reward_dropout"] == 0.2 and "ema" in checkpoint

    restored = InstructPix2PixModule.load_from_checkpoint(path)
    assert restored.reward_dropout == 0.2 and restored.reward_conditioner.config.use_feedback is False
    for key, value in module.state_dict().items():
        assert torch.equal(restored.state_dict()[key], value), key
    assert restored.ema.num_updates == module.ema.num_updates == 2
    for name, value in module.ema.shadow.items():
        assert torch.equal(restored.ema.shadow[name], value.cpu()), name
    # validate with --ckpt_path and no callback: the spec rebuilds the conditioner before the weights load
    fresh = make_module()
    make_trainer(tmp_path).validate(fresh, loader(1), ckpt_path=path)
    assert isinstance(fresh.reward_conditioner, PaperRewardConditioner)


def test_reward_dropout_uses_the_null_condition():
    module = make_module()
    module.attach_reward_conditioner(
        PaperRewardConditioner.for_unet(module.unet.config, text_dim=16, null_condition=True), reward_dropout=0.5
    )
    module.train()
    batch = make_batch(4000)
    mask = module.reward_drop_mask(batch, 4000)
    assert mask.float().mean().item() == pytest.approx(0.5, abs=0.03)
    batch["reward_mask"][:10] = False
    module.eval()
    assert module.reward_drop_mask(batch, 4000).sum() == 10  # no dropout in eval; missing rewards are null
    with pytest.raises(ValueError, match="null_condition=True"):
        module.attach_reward_conditioner(PaperRewardConditioner.for_unet(module.unet.config, 16), 0.1)


def test_ema_warmup_update_and_swap(tmp_path):
    module = make_module(ema_decay=0.9)
    trainer = make_trainer(tmp_path, max_steps=3)
    trainer.fit(module, loader(3))
    assert module.ema.num_updates == 3 and module.ema.current_decay() == pytest.approx(4 / 13)
    name, param = next(iter(module.trainable_named_parameters()))
    raw = param.detach().clone()
    assert not torch.equal(module.ema.shadow[name], raw)
    with module.ema_weights():
        assert torch.equal(param, module.ema.shadow[name])
    assert torch.equal(param, raw)


class GradNormRecorder(torch.optim.AdamW):
    norms: list[float] = []

    def step(self, closure=None):
        loss = closure() if closure is not None else None  # Lightning clips inside the closure
        grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
        GradNormRecorder.norms.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())
        super().step()
        return loss


def test_gradient_clipping_really_clips(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.optim, "AdamW", GradNormRecorder)
    GradNormRecorder.norms = []
    make_trainer(tmp_path, max_steps=2).fit(make_module(), loader(2))
    unclipped = list(GradNormRecorder.norms)
    GradNormRecorder.norms = []
    make_trainer(tmp_path, max_steps=2, gradient_clip_val=1e-3).fit(make_module(), loader(2))
    assert min(unclipped) > 1e-2
    assert max(GradNormRecorder.norms) == pytest.approx(1e-3, rel=1e-3)


def _nan_loader():
    batch = make_batch()
    batch["target"][0, 0, 0, 0] = float("nan")
    return torch.utils.data.DataLoader([batch, make_batch(seed=1)], batch_size=None)


def test_nan_loss_stops_the_run_naming_the_step(tmp_path):
    with pytest.raises(RuntimeError, match="non-finite training loss .* at global step 0"):
        make_trainer(tmp_path, max_steps=2).fit(make_module(), _nan_loader())


def test_nan_loss_can_skip_the_batch(tmp_path):
    module = make_module(on_nonfinite_loss="skip")
    before = {k: v.clone() for k, v in module.unet.state_dict().items()}
    trainer = make_trainer(tmp_path, max_steps=1, limit_train_batches=1)
    trainer.fit(module, _nan_loader())
    assert all(torch.equal(before[k], v) for k, v in module.unet.state_dict().items())
    assert all(torch.isfinite(v).all() for v in module.unet.state_dict().values())


def test_bf16_mixed_runs_the_frozen_encoders_in_bf16(tmp_path):
    module = make_module()
    module.attach_reward_conditioner(PaperRewardConditioner.for_unet(module.unet.config, text_dim=16))
    make_trainer(tmp_path, max_steps=1, precision="bf16-mixed").fit(module, loader(1))
    assert module.text_encoder.dtype == torch.bfloat16 and module.vae.anchor.dtype == torch.bfloat16
    assert module.unet.dtype == torch.float32 and module.reward_conditioner.dtype == torch.float32
    assert all(torch.isfinite(p).all() for p in module.unet.parameters())
