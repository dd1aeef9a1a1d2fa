"""Training throughput of ``InstructPix2PixModule``: Lightning Trainer vs a plain PyTorch loop doing the same step.

CPU (default): the tiny model; the goal is Lightning / plain >= 0.97 (the framework adds no measurable cost).

    python benchmarks/train_step.py --steps 30 --batch-size 16

GPU (``--gpu``): the random-weight SD1.5 InstructPix2Pix folder of ``mredit.models.random_init`` (published
UNet, VAE and CLIP-L configurations, 8 UNet input channels), 256 px, bf16 autocast; prints images/s, MFU and peak
memory. ``--precomputed`` feeds latent batches (no VAE/CLIP in the step). The FLOPs per sample are counted on one
sample of the batch (``flops_per_sample``; docs/benchmarks.md gives the SD1.5 counts); MFU = FLOPs/s / the dense
bf16 peak of the GPU (``benchmarks/common.py``, or ``--peak-tflops``).

    python benchmarks/train_step.py --gpu --batch-size 32 --steps 50 [--compile] [--channels-last]

``benchmarks/gpu_check.py`` runs these functions stage by stage on a lent GPU.
"""

from __future__ import annotations

import argparse
import time
from contextlib import nullcontext
from dataclasses import dataclass

import lightning.pytorch as pl
import torch
from harness import peak_tflops, random_sd15_ip2p, synchronize
from precomputed_latents import image_batch, precompute
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from mredit.conditioning.registry import build_conditioner
from mredit.models.ip2p import InstructPix2PixModule

GPU_RESOLUTION = 256


def build_module(
    pretrained_path: str | None = None,
    gradient_checkpointing: bool = False,
    channels_last: bool = False,
    compile_unet: bool = False,
    rewards: bool = False,
) -> InstructPix2PixModule:
    """The module from a diffusers folder (None: the tiny CPU model); ``rewards`` attaches the official
    conditioner (rewards on: its modules train and run in every step)."""
    torch.manual_seed(0)
    if pretrained_path is None:
        module = InstructPix2PixModule(learning_rate=1e-3, gradient_checkpointing=gradient_checkpointing)
    else:
        module = InstructPix2PixModule(
            pretrained_path=pretrained_path,
            gradient_checkpointing=gradient_checkpointing,
            channels_last=channels_last,
            compile_unet=compile_unet,
        )
    if rewards:
        text_dim = module.text_encoder.config.hidden_size
        module.attach_reward_conditioner(build_conditioner("official", module.unet.config, text_dim))
    return module


def training_batch(module: InstructPix2PixModule, batch_size: int, resolution: int, precomputed: bool) -> dict:
    """A batch on the module's device: images, instructions, scores and feedback, or (``precomputed``) what
    ``mredit data encode`` stores instead: latents and text embeddings, encoded here by the module itself."""
    images = image_batch(batch_size, resolution, str(module.device))
    return precompute(module, images) if precomputed else images


def flops_per_sample(module: InstructPix2PixModule, batch: dict) -> float:
    """Model FLOPs of one training sample: ``diffusion_loss`` and its backward on the batch's first sample, counted
    by ``FlopCounterMode`` (a multiply-accumulate is 2 FLOPs; matmuls and convolutions, as MFU conventionally
    counts). In eval mode (the dropout branch would add a null-text encoding), eager (a compiled UNet would compile
    for batch 1), without gradient checkpointing (its recompute is not model FLOPs), with the math attention, whose
    matmuls the counter sees on every device."""
    one = {key: value[:1] for key, value in batch.items()}
    was_training, checkpointing = module.training, module.unet.is_gradient_checkpointing
    module.eval()
    if checkpointing:
        module.unet.disable_gradient_checkpointing()
    try:
        with (
            torch.compiler.set_stance("force_eager"),
            sdpa_kernel(SDPBackend.MATH),
            FlopCounterMode(display=False) as c,
        ):
            module.diffusion_loss(one).backward()
    finally:
        module.zero_grad(set_to_none=True)
        module.train(was_training)
        if checkpointing:
            module.unet.enable_gradient_checkpointing()
    return float(c.get_total_flops())


class _Repeat(torch.utils.data.IterableDataset):
    def __init__(self, batch: dict) -> None:
        self.batch = batch

    def __iter__(self):
        while True:
            yield self.batch


@dataclass
class TimedRun:
    images_per_second: float
    warmup_seconds: float  # the untimed first steps (with torch.compile: mostly compilation)


class _Timer(pl.Callback):
    def __init__(self, warmup: int) -> None:
        self.warmup, self.begin, self.start = warmup, 0.0, None

    def on_train_start(self, trainer, pl_module) -> None:
        self.begin = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup and self.start is None:
            synchronize(pl_module.device)
            self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        synchronize(pl_module.device)
        self.elapsed = time.perf_counter() - self.start


def lightning_run(module: InstructPix2PixModule, batch: dict, steps: int, warmup: int, gpu: bool) -> TimedRun:
    """``warmup`` + ``steps`` optimizer steps of ``Trainer.fit`` on the batch (bf16-mixed on the GPU, fp32 on the
    CPU, gradient clipping, AdamW + EMA); images/s over the timed steps."""
    timer = _Timer(warmup)
    trainer = pl.Trainer(
        accelerator="gpu" if gpu else "cpu",
        devices=1,
        precision="bf16-mixed" if gpu else "32-true",
        max_steps=warmup + steps,
        gradient_clip_val=1.0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    loader = torch.utils.data.DataLoader(_Repeat(batch), batch_size=None)
    trainer.fit(module, loader)
    return TimedRun(steps * _batch_size(batch) / timer.elapsed, timer.start - timer.begin)


def plain_run(module: InstructPix2PixModule, batch: dict, steps: int, warmup: int, gpu: bool) -> TimedRun:
    """The same step by hand: loss, backward, clip, AdamW, EMA update, LR schedule."""
    device = torch.device("cuda" if gpu else "cpu")
    begin = time.perf_counter()
    module.to(device).train()
    if gpu:
        module.vae.to(torch.bfloat16)
        module.text_encoder.to(torch.bfloat16)
    batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
    optimizers = module.configure_optimizers()
    optimizer, scheduler = optimizers["optimizer"], optimizers["lr_scheduler"]["scheduler"]
    params = [p for _, p in module.trainable_named_parameters()]
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=gpu)
    for step in range(warmup + steps):
        if step == warmup:
            synchronize(device)
            start = time.perf_counter()
        with autocast:
            loss = module.diffusion_loss(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        module.ema.update(module.trainable_named_parameters())
    synchronize(device)
    return TimedRun(steps * _batch_size(batch) / (time.perf_counter() - start), start - begin)


def _batch_size(batch: dict) -> int:
    return len(batch["key"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpu", action="store_true", help="SD1.5-sized UNet at 256 px in bf16 on CUDA")
    parser.add_argument("--steps", type=int, default=20, help="timed optimizer steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--resolution", type=int, default=32, help="CPU mode image size")
    parser.add_argument("--repeats", type=int, default=2, help="alternate the two loops this many times")
    parser.add_argument("--precomputed", action="store_true", help="latent batches: no VAE / CLIP in the step")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak (default: by GPU name)")
    args = parser.parse_args()
    if args.gpu and not torch.cuda.is_available():
        raise SystemExit("--gpu needs a CUDA device")
    torch.set_float32_matmul_precision("high")
    resolution = GPU_RESOLUTION if args.gpu else args.resolution
    options = dict(
        gradient_checkpointing=args.gradient_checkpointing, channels_last=args.channels_last, compile_unet=args.compile
    )
    lightning, plain, flops = [], [], []
    with random_sd15_ip2p() if args.gpu else nullcontext() as folder:

        def measure(loop) -> float:
            module = build_module(str(folder) if folder else None, **options)
            if args.gpu:  # the latents of --precomputed are encoded on the GPU too
                module.to("cuda")
            batch = training_batch(module, args.batch_size, resolution, args.precomputed)
            if not flops:
                flops.append(flops_per_sample(module, batch))
            return loop(module, batch, args.steps, args.warmup, args.gpu).images_per_second

        for _ in range(args.repeats):  # alternate so that load changes on a shared machine hit both
            plain.append(measure(plain_run))
            if args.gpu:
                torch.cuda.reset_peak_memory_stats()
            lightning.append(measure(lightning_run))
    best_l, best_p = max(lightning), max(plain)
    mode = "gpu SD1.5 UNet 256px bf16" if args.gpu else f"cpu tiny {args.resolution}px fp32"
    print(f"mode: {mode}, batch {args.batch_size}, {args.steps} timed steps, precomputed={args.precomputed}")
    print(f"plain PyTorch loop : {best_p:8.2f} images/s  (runs: {', '.join(f'{v:.2f}' for v in plain)})")
    print(f"Lightning Trainer  : {best_l:8.2f} images/s  (runs: {', '.join(f'{v:.2f}' for v in lightning)})")
    print(f"ratio Lightning / plain: {best_l / best_p:.3f}  (goal >= 0.97)")
    print(f"FLOPs/sample {flops[0] / 1e9:.2f} GF (counted)")
    peak = peak_tflops("cuda" if args.gpu else "cpu", args.peak_tflops)
    if peak is not None:
        print(f"MFU {100 * best_l * flops[0] / (peak * 1e12):.1f} % of {peak} TFLOP/s")
    if args.gpu:
        print(f"peak memory (Lightning run): {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
