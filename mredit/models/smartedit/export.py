"""Export of a trained ``SmartEditModule``: only what training changed, in reusable formats.

Layout of ``out_dir``::

    unet/                     diffusers UNet2DConditionModel (8 input channels), loads in stock diffusers
    lora/                     peft LoRA adapter of the LLaMA (adapter_config.json + adapter_model.safetensors), or
    llm/                      with ``mllm.llm_training: full``: the whole trained LLaMA (transformers save_pretrained)
    llm_tokenizer/            the LLM tokenizer with the added <img>, <im_start>, <im_end>, <img_i> tokens
    smartedit_heads.safetensors  qformer.*, bim.*, mllm.projector.*, mllm.new_token_embeds/new_token_head, null_text
    reward_conditioner/       the multi-reward conditioner (diffusers save_pretrained), when one is attached
    smartedit.json            the module's hyperparameters, the conditioner spec and the training resolution

The frozen pretrained parts (LLaVA's LLaMA, unless it was fully trained, and vision tower, the VAE, the CLIP text
encoder) are not copied: they are named by the paths in ``smartedit.json``. Weights are the EMA weights when EMA is
enabled.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import save_file

from mredit.models.reward_mixin import conditioner_spec

HEAD_PREFIXES = ("qformer.", "bim.", "mllm.projector.", "mllm.new_token_", "null_text")
# the LLM's folder per MLLMConfig.llm_training: the peft adapter, or the whole fully trained LlamaForCausalLM
LLM_FOLDERS = {"lora": "lora", "full": "llm"}


def export_smartedit(module, out_dir: str) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with module.ema_weights():
        module.unet.save_pretrained(out / "unet")
        module.mllm.llm.save_pretrained(out / LLM_FOLDERS[module.mllm.llm_training])
        module.mllm.tokenizer.save_pretrained(out / "llm_tokenizer")
        heads = {
            name: tensor.detach().cpu().contiguous()
            for name, tensor in module.state_dict().items()
            if name.startswith(HEAD_PREFIXES)
        }
        save_file(heads, out / "smartedit_heads.safetensors")
        spec = None
        if module.reward_conditioner is not None:
            module.reward_conditioner.save_pretrained(out / "reward_conditioner")
            spec = conditioner_spec(module.reward_conditioner, module.reward_dropout)
    hparams = {k: list(v) if isinstance(v, tuple) else v for k, v in dict(module.hparams).items()}
    info = {"hparams": hparams, "reward_conditioner": spec, "resolution": module.trained_resolution}
    (out / "smartedit.json").write_text(json.dumps(info, indent=2))
    return out
