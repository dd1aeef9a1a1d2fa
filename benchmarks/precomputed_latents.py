"""Training-step time with and without precomputed latents (``mredit data encode`` + ``LatentDataModule``).

One optimiser step of ``InstructPix2PixModule`` with the official reward conditioner, on an image batch (the
step runs the frozen VAE on source and target and the CLIP text encoder on the instruction and the feedback)
versus the same batch precomputed (the step runs only the UNet and the conditioner). Prints ms/step and the
ratio. The default is a tiny CPU model with a tiny AutoencoderKL; ``--gpu`` loads the random-weight SD1.5
InstructPix2Pix folder of ``mredit.models.random_init`` at 256 px, batch 4, bf16 autocast, on CUDA.
``image_batch`` and ``precompute`` are also the batches of ``train_step.py`` and ``gpu_check.py``.

    python benchmarks/precomputed_latents.py
    python benchmarks/precomputed_latents.py --gpu
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from harness import random_sd15_ip2p, synchronize
from sample import tiny_components

from mredit.conditioning.base import FeedbackEmbedding
from mredit.conditioning.feedback import encode_feedback
from mredit.conditioning.registry import build_conditioner
from mredit.models.ip2p import InstructPix2PixModule


def save_components(parts, folder: Path) -> None:
    parts.unet.save_pretrained(folder / "unet")
    parts.vae.save_pretrained(folder / "vae")
    parts.text_encoder.save_pretrained(folder / "text_encoder")
    parts.tokenizer.save_pretrained(folder / "tokenizer")
    parts.scheduler.save_pretrained(folder / "scheduler")


def image_batch(batch: int, resolution: int, device: str) -> dict:
    g = torch.Generator().manual_seed(0)
    return {
        "key": [str(i) for i in range(batch)],
        "source": (torch.rand(batch, 3, resolution, resolution, generator=g) * 2 - 1).to(device),
        "target": (torch.rand(batch, 3, resolution, resolution, generator=g) * 2 - 1).to(device),
        "instruction": ["turn the sky into a sunset over the mountains"] * batch,
        "scores": torch.tensor([[5.0, 3.0, 4.0]] * batch, device=device),
        "feedback": [["The sky is still blue.", "The trees changed colour.", "None"]] * batch,
        "reward_mask": torch.ones(batch, dtype=torch.bool, device=device),
        "meta": [{}] * batch,
    }


@torch.no_grad()
def precompute(module: InstructPix2PixModule, batch: dict) -> dict:
    vae = module.vae
    posterior = vae.encode(batch["target"].to(vae.dtype)).latent_dist
    embedded: FeedbackEmbedding = encode_feedback(batch["feedback"], module.tokenizer, module.text_encoder)
    return {
        **{k: batch[k] for k in ("key", "instruction", "scores", "feedback", "reward_mask", "meta")},
        "source_latents": vae.encode(batch["source"].to(vae.dtype)).latent_dist.mode(),
        "target_latent_mean": posterior.mean,
        "target_latent_logvar": posterior.logvar,
        "instruction_embeds": module.encode_instructions(batch["instruction"]),
        "feedback_pooled": embedded.pooled,
    }


def step_time(module, batch: dict, steps: int, device: str, autocast: torch.dtype | None) -> float:
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-5)
    times = []
    for index in range(steps + 1):  # the first step is warm-up
        synchronize(device)
        start = time.perf_counter()
        with torch.autocast(device, dtype=autocast, enabled=autocast is not None):
            loss = module.diffusion_loss(batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        synchronize(device)
        if index:
            times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="SD1.5-size components on CUDA, bf16 autocast")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--resolution", type=int, default=None, help="default 256 (gpu) / 64 (tiny)")
    args = parser.parse_args()
    device, autocast = ("cuda", torch.bfloat16) if args.gpu else ("cpu", None)
    resolution = args.resolution or (256 if args.gpu else 64)
    torch.manual_seed(0)
    with random_sd15_ip2p() if args.gpu else tempfile.TemporaryDirectory() as folder:
        if not args.gpu:
            save_components(tiny_components(), Path(folder))
        module = InstructPix2PixModule(pretrained_path=str(folder), conditioning_dropout=0.05, use_ema=False)
    conditioner = build_conditioner("official", module.unet.config, module.text_encoder.config.hidden_size)
    module.attach_reward_conditioner(conditioner)
    module.to(device).train()
    images = image_batch(args.batch, resolution, device)
    latents = precompute(module, images)
    from_images = step_time(module, images, args.steps, device, autocast)
    from_latents = step_time(module, latents, args.steps, device, autocast)
    print(
        f"device={device} resolution={resolution} batch={args.batch} steps={args.steps} "
        f"unet_params={sum(p.numel() for p in module.unet.parameters()):,}"
    )
    print(f"  from images:  {from_images * 1000:9.1f} ms/step")
    print(f"  from latents: {from_latents * 1000:9.1f} ms/step")
    print(f"latents / images step time: {from_latents / from_images:.3f}")


if __name__ == "__main__":
    main()
