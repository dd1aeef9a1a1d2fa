"""Sampling speed: RewardEditPipeline vs diffusers' StableDiffusionInstructPix2PixPipeline, and the cost of rewards.

Same random UNet / VAE / text encoder for every arm, Euler-Ancestral, 3-way guidance. Prints seconds per image
and two ratios: ours (rewards off) / stock (goal <= 1.05) and ours with the official conditioner / ours without
(goal <= 1.05). ``--gpu`` loads the random-weight SD1.5 InstructPix2Pix folder of ``mredit.models.random_init``
at 512 px on CUDA (fp16); the default is a tiny CPU model. ``benchmarks/gpu_check.py`` reuses these functions.

    python benchmarks/sample.py                   # tiny, CPU
    python benchmarks/sample.py --gpu --steps 30  # SD1.5 size, CUDA
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from contextlib import nullcontext

import numpy as np
import torch
from diffusers import AutoencoderKL, EulerAncestralDiscreteScheduler, StableDiffusionInstructPix2PixPipeline
from harness import random_sd15_ip2p, synchronize
from PIL import Image

from mredit.conditioning.official import OfficialRewardConditioner
from mredit.models.components import Components, build_tiny_components, load_pretrained_components
from mredit.pipelines.reward_edit import RewardEditPipeline

TINY_KL = dict(
    block_out_channels=[16, 32],
    down_block_types=["DownEncoderBlock2D"] * 2,
    up_block_types=["UpDecoderBlock2D"] * 2,
    latent_channels=4,
    layers_per_block=1,
    norm_num_groups=8,
)


def tiny_components() -> Components:
    """The CPU model: a two-level UNet with 8 input channels, the tiny text encoder and a small AutoencoderKL."""
    unet = {"in_channels": 8, "out_channels": 4, "block_out_channels": [32, 64]}
    parts = build_tiny_components(unet_config=unet)
    parts.vae = AutoencoderKL(**TINY_KL)
    return parts


def seconds_per_image(arms: dict, repeats: int, batch: int, device: str) -> dict[str, float]:
    """Median time per image of each arm; arms alternate within each round so machine drift hits all alike."""
    for run in arms.values():
        run()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(repeats):
        for name, run in arms.items():
            synchronize(device)
            start = time.perf_counter()
            run()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(values)) / batch for name, values in times.items()}


ARMS = ("stock diffusers", "ours, rewards off", "ours, official rewards")


def sampling_arms(
    parts: Components, device: str, dtype: torch.dtype, resolution: int, steps: int, batch: int
) -> dict[str, Callable[[], object]]:
    """The three ``ARMS`` as calls sampling ``batch`` random ``resolution`` px images with ``steps`` Euler-ancestral
    steps and 3-way guidance, each from the same seed; moves the components to ``device`` / ``dtype``."""
    for model in (parts.unet, parts.vae, parts.text_encoder):
        model.to(device, dtype).eval()
    scheduler = EulerAncestralDiscreteScheduler.from_config(parts.scheduler.config)
    conditioner = OfficialRewardConditioner.for_unet(parts.unet.config, parts.text_encoder.config.hidden_size)
    conditioner.to(device, dtype).eval()
    stock = StableDiffusionInstructPix2PixPipeline(
        parts.vae, parts.text_encoder, parts.tokenizer, parts.unet, scheduler, None, None, requires_safety_checker=False
    )
    plain = RewardEditPipeline(parts.unet, parts.vae, parts.text_encoder, parts.tokenizer, scheduler)
    rewarded = RewardEditPipeline(parts.unet, parts.vae, parts.text_encoder, parts.tokenizer, scheduler, conditioner)
    for pipe in (stock, plain, rewarded):
        pipe.set_progress_bar_config(disable=True)
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (resolution, resolution, 3), dtype=np.uint8))] * batch
    prompts = ["make it look like winter"] * batch

    def generator():
        return torch.Generator(device).manual_seed(0)

    return {
        ARMS[0]: lambda: stock(prompts, image=images, num_inference_steps=steps, generator=generator()),
        ARMS[1]: lambda: plain(images, prompts, num_inference_steps=steps, generator=generator()),
        ARMS[2]: lambda: rewarded(images, prompts, num_inference_steps=steps, generator=generator()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="SD1.5-size components at 512 px on CUDA, fp16")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--resolution", type=int, default=None, help="default 512 (gpu) / 64 (tiny)")
    args = parser.parse_args()
    device, dtype = ("cuda", torch.float16) if args.gpu else ("cpu", torch.float32)
    resolution = args.resolution or (512 if args.gpu else 64)
    torch.manual_seed(0)
    with random_sd15_ip2p() if args.gpu else nullcontext() as folder:
        parts = load_pretrained_components(str(folder)) if args.gpu else tiny_components()
    arms = sampling_arms(parts, device, dtype, resolution, args.steps, args.batch)
    with torch.inference_mode():
        seconds = seconds_per_image(arms, args.repeats, args.batch, device)
    print(
        f"device={device} dtype={str(dtype).split('.')[-1]} resolution={resolution} steps={args.steps} "
        f"batch={args.batch} repeats={args.repeats} unet_params={sum(p.numel() for p in parts.unet.parameters()):,}"
    )
    for name, value in seconds.items():
        print(f"  {name:24s} {value * 1000:9.1f} ms/image")
    print(f"ours (rewards off) / stock:  {seconds[ARMS[1]] / seconds[ARMS[0]]:.3f}  (goal <= 1.05)")
    print(f"rewards on / rewards off:    {seconds[ARMS[2]] / seconds[ARMS[1]]:.3f}  (goal <= 1.05)")


if __name__ == "__main__":
    main()
