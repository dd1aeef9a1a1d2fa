"""``torch.compile`` with the reward hooks: compiled and eager UNets agree under several reward conditions and
under none, and compiled training does not recompile once warm.

Backend ``aot_eager``: dynamo captures the graphs, installs the guards and decides on recompiles, and AOTAutograd
traces the backward, exactly as with ``inductor``; only the kernels are PyTorch's eager ones. Inductor's C++
code generation takes 90 s or more for even the one-block UNet below on a CPU, and adds nothing to what is tested
here (which graphs exist, when they are reused, whether the hooks are in them).
"""

from __future__ import annotations

import functools

import lightning.pytorch as pl
import pytest
import torch
import torch._dynamo
from models_helpers import loader, make_module, make_trainer
from torch._dynamo.utils import counters

from mredit.conditioning.registry import build_conditioner
from mredit.conditioning.seams import reward_conditioning

BACKEND = "aot_eager"
# the smallest UNet with a cross-attention block: one level, 8 channels
ONE_BLOCK_UNET = {
    "block_out_channels": [8],
    "down_block_types": ["CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D"],
    "norm_num_groups": 4,
    "attention_head_dim": 4,
}


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()
    counters.clear()


def _graphs() -> int:
    return counters["stats"]["unique_graphs"]


@pytest.mark.parametrize("variant", ["official", "paper"])
def test_compiled_unet_matches_eager_with_and_without_rewards(variant):
    module = make_module(unet_config=ONE_BLOCK_UNET)
    conditioner = build_conditioner(variant, module.unet.config, text_dim=16, null_condition=True)
    with torch.no_grad():  # the paper conditioner's output projections start at zero: give them weights
        for name, param in conditioner.named_parameters():
            if name.startswith(("time_proj", "latent_proj_out")):
                param.normal_(0.0, 0.5)
    module.attach_reward_conditioner(conditioner)
    module.eval()  # the official conditioner's attention dropout would draw differently in the two runs
    compiled = torch.compile(module.unet, backend=BACKEND, fullgraph=True)  # fullgraph: the hooks break no graph
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, module.unet.config.in_channels, 8, 8, generator=g)
    t = torch.tensor([10, 700])
    text = module.encode_instructions(["make it blue", "remove the cat"]).detach()
    feedback = [["None", "the sky changed", "blurry"], ["the cat is still there", "None", "None"]]
    cases = {  # in this order: no reward -> rewards -> no reward -> rewards, so both transitions are crossed
        "none": None,
        "scores A": ([[5.0, 3.0, 4.0], [1.0, 2.0, 0.0]], None),
        "scores B": ([[0.0, 0.0, 0.0], [5.0, 5.0, 5.0]], None),
        "null condition": ([[5.0, 3.0, 4.0], [1.0, 2.0, 0.0]], [True, True]),
        "one dropped": ([[2.0, 4.0, 1.0], [3.0, 3.0, 3.0]], [False, True]),
        "none again": None,
        "scores A again": ([[5.0, 3.0, 4.0], [1.0, 2.0, 0.0]], None),
    }
    eager_outputs, graphs_after = {}, {}
    for name, case in cases.items():
        condition = None
        if case is not None:
            scores, drop = case
            condition = module.compute_reward_condition(
                torch.tensor(scores), feedback, None if drop is None else torch.tensor(drop)
            )
        with reward_conditioning(module.unet, condition):
            eager = module.unet(x, t, encoder_hidden_states=text).sample
            out = compiled(x, t, encoder_hidden_states=text).sample
        torch.testing.assert_close(out, eager, rtol=1e-4, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}")
        eager_outputs[name], graphs_after[name] = eager, _graphs()
    # the conditions do change the output (else matching would prove nothing)
    for a, b in [("none", "scores A"), ("scores A", "scores B"), ("scores A", "null condition")]:
        assert (eager_outputs[a] - eager_outputs[b]).abs().max() > 1e-3, (a, b)
    torch.testing.assert_close(eager_outputs["none again"], eager_outputs["none"])
    # one graph without rewards, one with: new rewards, the null condition and drop masks reuse them
    assert graphs_after["none"] == 1 and graphs_after["scores A"] == 2
    assert graphs_after["scores A again"] == 2

    # gradients reach the conditioner through the compiled graph as through the eager one
    condition_grads = []
    for unet in (module.unet, compiled):
        condition = module.compute_reward_condition(torch.tensor(cases["scores B"][0]), feedback)
        with reward_conditioning(module.unet, condition):
            loss = unet(x, t, encoder_hidden_states=text).sample.square().mean()
        condition_grads.append(torch.autograd.grad(loss, list(conditioner.parameters()), allow_unused=True))
    for eager_grad, compiled_grad in zip(*condition_grads):
        assert (eager_grad is None) == (compiled_grad is None)
        if eager_grad is not None:
            torch.testing.assert_close(compiled_grad, eager_grad, rtol=1e-4, atol=1e-6)


def test_compiled_training_does_not_recompile_per_step(tmp_path, monkeypatch):
    """A real ``compile_unet=True`` Trainer run with the official conditioner and reward dropout: after the first
    step, no step compiles anything (torch's counters stay put and the ``fail_on_recompile`` stance holds)."""
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend=BACKEND))
    module = make_module(unet_config=ONE_BLOCK_UNET, compile_unet=True, conditioning_dropout=0.3)
    conditioner = build_conditioner("official", module.unet.config, text_dim=16, null_condition=True)
    module.attach_reward_conditioner(conditioner, reward_dropout=0.5)
    warmup, steps = 1, 5
    seen: list[tuple[int, int]] = []

    class CountCompiles(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step == warmup:
                torch.compiler.set_stance("fail_on_recompile")

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append((_graphs(), counters["frames"]["total"]))

    try:
        make_trainer(tmp_path, max_steps=steps, callbacks=[CountCompiles()]).fit(module, loader(steps))
    finally:
        torch.compiler.set_stance("default")
    assert len(seen) == steps and seen[0][0] >= 1  # the UNet was compiled
    assert all(counts == seen[warmup - 1] for counts in seen[warmup:]), seen
